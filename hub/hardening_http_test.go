package hub_test

// The HTTP side of the v1.1 hardening: the server API (UTF-8 bodies, the
// key's length, a log line per call without the key, 503 without the
// backend's text), the per-address count of plain connections (Listener)
// with IPv6 per /64, and --allowed-hosts.

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/internal/redistest"
	"github.com/sessionhub/sessionhub/protocol"
)

// The server API refuses a body that is not UTF-8 and an event with a
// control character (400): nothing reaches the session (finding 1, through
// the API). Every call is logged with its method, path and status, never
// the key (finding 9).
func TestHardeningAPI(t *testing.T) {
	logs := &auLog{}
	s := startServer(t, &hub.Options{APIKey: apiKey, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	p := dial(t, s, nil)
	p.join("api8", "u", "U", "")
	for _, body := range []string{
		`{"event":"x","payload":"` + "\xff\xfe" + `"}`,
		`{"event":"x` + "\xc3" + `","payload":1}`,
		`{"event":"x\u0000","payload":1}`,
		`{"event":"x\n","payload":1}`,
	} {
		if code := apiExpectError(t, s, "POST", "/api/sessions/api8/broadcast", apiKey, []byte(body), http.StatusBadRequest); code != "bad_request" {
			t.Errorf("%q: code %q", body, code)
		}
	}
	p.send(protocol.TypePing, nil, "after")
	if m := p.next(); m.Type != protocol.TypePong {
		t.Errorf("the participant got %s %s before its pong", m.Type, m.Data)
	}
	// A user id with a control character cannot be in a session: 404
	// without asking anyone.
	apiExpectError(t, s, "DELETE", "/api/sessions/api8/participants/u%00x", apiKey, nil, http.StatusNotFound)
	apiExpectError(t, s, "GET", "/api/sessions/api8", "wrong-key-0123456789", nil, http.StatusUnauthorized)

	log := logs.String()
	for _, want := range []string{
		"method=POST path=/api/sessions/api8/broadcast status=400",
		"method=DELETE path=/api/sessions/api8/participants/u%00x status=404",
		"method=GET path=/api/sessions/api8 status=401",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the log has no %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, apiKey) || strings.Contains(log, "wrong-key") {
		t.Errorf("the log quotes a key:\n%s", log)
	}
}

// An API key shorter than 16 bytes leaves the API off (404), and says so.
func TestHardeningAPIKeyLength(t *testing.T) {
	logs := &auLog{}
	s := startServer(t, &hub.Options{APIKey: "short-key", Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if status, _, _ := apiDo(t, s, "GET", "/api/sessions", "short-key", nil); status != http.StatusNotFound {
		t.Errorf("GET /api/sessions with a 9-byte key = %d, want 404", status)
	}
	if !strings.Contains(logs.String(), "shorter than 16 bytes") {
		t.Errorf("nothing logged:\n%s", logs.String())
	}
}

// A 503 of the API carries no backend error text (finding 9: it carried
// Redis's), which stays in the log.
func TestHardeningAPI503(t *testing.T) {
	rs := redistest.Start(t)
	logs := &auLog{}
	n := startNode(t, rs, "a503", &hub.Options{APIKey: apiKey, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	rs.Stop()
	status, _, body := apiDo(t, n, "GET", "/api/sessions/s", apiKey, nil)
	if status != http.StatusServiceUnavailable {
		t.Fatalf("GET = %d %s, want 503", status, body)
	}
	if want := `{"error":{"code":"unavailable","message":"the cluster's Redis did not answer"}}`; strings.TrimSpace(string(body)) != want {
		t.Errorf("503 body %s, want %s", body, want)
	}
	if !strings.Contains(logs.String(), "api: redis failed") {
		t.Errorf("the failure is not logged:\n%s", logs.String())
	}
}

// startLimited runs a hub with opts behind httptest on the hub's Listener.
func startLimited(t *testing.T, opts *hub.Options) *httptest.Server {
	t.Helper()
	opts.Logger = discardLogger()
	h := hub.New(opts)
	ts := httptest.NewUnstartedServer(h.Handler())
	ts.Listener = h.Listener(ts.Listener)
	ts.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		h.Shutdown(ctx)
		ts.Close()
	})
	return ts
}

// getOn sends GET path on the open connection c and returns the status.
func getOn(t *testing.T, c net.Conn, br *bufio.Reader, host, path string) int {
	t.Helper()
	c.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// Plain HTTP connections count toward the per-address limit while open
// (finding 5: 3 000 idle keep-alive connections from one address, beside
// --max-connections-per-ip 50): past it a connection gets 429, and a
// WebSocket is refused too; once one closes, the next is served.
func TestHardeningPlainConnectionsCount(t *testing.T) {
	ts := startLimited(t, &hub.Options{MaxConnectionsPerIP: 2})
	addr := ts.Listener.Addr().String()
	var idle []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if code := getOn(t, c, bufio.NewReader(c), addr, "/healthz"); code != http.StatusOK {
			t.Fatalf("GET /healthz = %d", code)
		}
		idle = append(idle, c) // kept alive, idle
	}
	third, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	if code := getOn(t, third, bufio.NewReader(third), addr, "/healthz"); code != http.StatusTooManyRequests {
		t.Errorf("a third connection got %d, want 429", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	u := "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"
	if ws, resp, err := websocket.Dial(ctx, u, nil); err == nil {
		ws.CloseNow()
		t.Error("a WebSocket beside two idle connections was accepted")
	} else if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("WebSocket refused with %v, want 429", err)
	}
	idle[0].Close()
	// The slot comes back when the server sees the close: poll.
	deadline := time.Now().Add(wait)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		code := getOn(t, c, bufio.NewReader(c), addr, "/healthz")
		c.Close()
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no slot came back after a connection closed")
		}
		pause()
	}
}

// --allowed-hosts: a Host not listed gets 403 (finding 8: DNS rebinding),
// the health checks excepted; listed hosts, with or without a port, and
// patterns pass.
func TestHardeningAllowedHosts(t *testing.T) {
	s := startServer(t, &hub.Options{AllowedHosts: []string{"hub.example.com", "*.internal", "127.0.0.1"}})
	addr := s.ts.Listener.Addr().String()
	tests := []struct {
		host, path string
		want       int
	}{
		{"hub.example.com", "/hub.js", http.StatusOK},
		{"HUB.example.com:8080", "/hub.js", http.StatusOK},
		{"a.internal", "/metrics", http.StatusOK},
		{addr, "/metrics", http.StatusOK},
		{"attacker.example", "/hub.js", http.StatusForbidden},
		{"attacker.example", "/ws", http.StatusForbidden},
		{"attacker.example:80", "/metrics", http.StatusForbidden},
		{"attacker.example", "/healthz", http.StatusOK},
		{"attacker.example", "/readyz", http.StatusOK},
	}
	for _, tt := range tests {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if code := getOn(t, c, bufio.NewReader(c), tt.host, tt.path); code != tt.want {
			t.Errorf("Host %s, GET %s = %d, want %d", tt.host, tt.path, code, tt.want)
		}
		c.Close()
	}
}
