package hub

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionhub/sessionhub/internal/redistest"
)

// Under a write delay, a cluster node's connections wait only what the
// bus leaves of it (Options.BusLinger), so that a message from another
// node waits at most the delay in all; a single node's wait the whole
// delay, and a cluster node's too when the bus does not linger.
func TestClusterWriteDelayBudget(t *testing.T) {
	rs := redistest.Start(t)
	const ms = time.Millisecond
	tests := []struct {
		name              string
		cluster           bool
		delay, linger     time.Duration // given
		wantConn, wantBus time.Duration
	}{
		{"single node", false, 20 * ms, 5 * ms, 20 * ms, 0},
		{"cluster, the bus does not linger", true, 20 * ms, 0, 20 * ms, 0},
		{"cluster, a quarter to the bus", true, 20 * ms, 5 * ms, 15 * ms, 5 * ms},
		{"cluster, longest delay", true, time.Second, 250 * ms, 750 * ms, 250 * ms},
		{"cluster, a linger as long as the delay is a quarter", true, 20 * ms, 20 * ms, 15 * ms, 5 * ms},
		{"cluster, no delay", true, 0, 5 * ms, 0, 5 * ms},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &Options{WriteDelay: tt.delay, BusLinger: tt.linger, NodeHeartbeat: time.Hour}
			if tt.cluster {
				rdb := redis.NewClient(&redis.Options{Addr: rs.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
				defer rdb.Close()
				o.Redis, o.NodeID = rdb, "budget"
			}
			h := New(o)
			defer h.Shutdown(t.Context())
			bus := time.Duration(0)
			if tt.cluster {
				bus = h.opts.BusLinger
			}
			if h.delay != tt.wantConn || bus != tt.wantBus {
				t.Fatalf("connections wait %v and the bus %v; want %v and %v", h.delay, bus, tt.wantConn, tt.wantBus)
			}
			if tt.delay > 0 && h.delay+bus > tt.delay {
				t.Fatalf("connections wait %v and the bus %v: more than the delay %v in all", h.delay, bus, tt.delay)
			}
		})
	}
}
