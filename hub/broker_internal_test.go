package hub

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionhub/sessionhub/cluster"
	"github.com/sessionhub/sessionhub/internal/redistest"
)

// The broker tells an input error from an outage (finding 2): an ID Redis
// cannot hold never pauses the node nor makes it republish; a failure to
// reach Redis does both.
func TestBrokerInputErrorIsNoOutage(t *testing.T) {
	rs := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	defer rdb.Close()
	h := New(&Options{Redis: rdb, NodeID: "bt", NodeHeartbeat: time.Hour})
	defer h.Shutdown(t.Context())
	type state struct{ reachable, republish bool }
	// A broker of the test's own that does not serve: failed and
	// reachable run on the test's goroutine as they would on serve's.
	b := &broker{metrics: h.metrics, log: h.log, beat: time.Hour}
	inBroker := func(err error) state {
		b.up = true // as after a heartbeat that reached Redis
		b.pauseUntil, b.republish = time.Time{}, false
		b.failed("join", err)
		return state{b.reachable(), b.republish}
	}
	_, presErr := h.broker.presence.Remove(t.Context(), "s", "x\x00y")
	tests := []struct {
		name string
		err  error
		want state
	}{
		{"invalid ID", fmt.Errorf("cluster: attach: %w", fmt.Errorf("%w %q", cluster.ErrInvalidID, "x\x00y")), state{true, false}},
		{"invalid ID from presence", presErr, state{true, false}},
		{"epoch changed", cluster.ErrEpochChanged, state{true, false}},
		{"unreachable", errors.New("dial tcp: connection refused"), state{false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err == nil {
				t.Fatal("no error to classify")
			}
			if got := inBroker(tt.err); got != tt.want {
				t.Errorf("after %v: %+v, want %+v", tt.err, got, tt.want)
			}
		})
	}
}
