package hub

import (
	"net/http"
	"testing"
)

// IPv6 peers count per /64 (finding 9: each IPv6 address counted alone,
// so a /64 was unlimited); IPv4, and IPv4 mapped in IPv6, per address.
func TestIPKey(t *testing.T) {
	tests := []struct{ ip, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2::ffff", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"::1", "::/64"},
		{"not an address", "not an address"},
	}
	for _, tt := range tests {
		if got := ipKey(tt.ip); got != tt.want {
			t.Errorf("ipKey(%q) = %q, want %q", tt.ip, got, tt.want)
		}
	}
	// An IPv4 connection's key is its address as it came: a connection
	// holds no string of its own for it.
	if n := testing.AllocsPerRun(100, func() { ipKey("192.0.2.7") }); n != 0 {
		t.Errorf("ipKey of an IPv4 address: %v allocations, want 0", n)
	}
	h := New(&Options{MaxConnectionsPerIP: 2})
	defer h.Shutdown(t.Context())
	for _, ip := range []string{"2001:db8::1", "2001:db8::2"} {
		if status, why := h.admit(ipKey(ip)); status != 0 {
			t.Fatalf("admit %s: %d %s", ip, status, why)
		}
		defer h.release(ipKey(ip))
	}
	if status, _ := h.admit(ipKey("2001:db8::ffff:3")); status != http.StatusTooManyRequests {
		t.Errorf("a third address of the /64: %d, want 429", status)
	}
	if status, _ := h.admit(ipKey("2001:db8:0:1::1")); status != 0 {
		t.Errorf("another /64: %d, want admitted", status)
	} else {
		h.release(ipKey("2001:db8:0:1::1"))
	}
}
