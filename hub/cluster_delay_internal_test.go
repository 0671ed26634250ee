package hub

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionhub/sessionhub/internal/redistest"
)

// Under a write delay, a cluster node's connections wait only what the
// bus leaves of it (busLinger), so that a message from another node waits
// at most the delay in all; a single node's wait the whole delay.
func TestClusterWriteDelayBudget(t *testing.T) {
	rs := redistest.Start(t)
	tests := []struct {
		name       string
		cluster    bool
		delay      time.Duration
		wantConn   time.Duration
		wantLinger time.Duration
	}{
		{"single node", false, 20 * time.Millisecond, 20 * time.Millisecond, 0},
		{"cluster", true, 20 * time.Millisecond, 15 * time.Millisecond, 5 * time.Millisecond},
		{"cluster, longest delay", true, time.Second, 750 * time.Millisecond, 250 * time.Millisecond},
		{"cluster, no delay", true, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &Options{WriteDelay: tt.delay, NodeHeartbeat: time.Hour}
			if tt.cluster {
				rdb := redis.NewClient(&redis.Options{Addr: rs.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
				defer rdb.Close()
				o.Redis, o.NodeID = rdb, "budget"
			}
			h := New(o)
			defer h.Shutdown(t.Context())
			linger := time.Duration(0)
			if tt.cluster {
				linger = busLinger(tt.delay)
			}
			if h.delay != tt.wantConn || linger != tt.wantLinger || h.delay+linger != tt.delay {
				t.Fatalf("connections wait %v and the bus %v; want %v and %v, %v in all", h.delay, linger, tt.wantConn, tt.wantLinger, tt.delay)
			}
		})
	}
}
