package cluster

import (
	"errors"
	"log/slog"
	"testing"
	"time"
)

// The first heartbeat that fails reports the node unhealthy, with no retry
// or second failure awaited first: a node stops relying on Redis one
// heartbeat after Redis went away. (TestNodesRedisOutage checks the same
// against a real Redis, without timing it.)
func TestFirstFailedBeatIsUnhealthy(t *testing.T) {
	n := &Nodes{health: make(chan bool, 1), log: slog.New(slog.DiscardHandler)}
	n.setHealthy(true)
	<-n.health
	n.observe(beatResult{at: time.Now(), err: errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")})
	if n.Healthy() {
		t.Fatal("healthy after a failed heartbeat")
	}
	select {
	case ok := <-n.Health():
		if ok {
			t.Fatal("Health delivered true after a failed heartbeat")
		}
	default:
		t.Fatal("no change on Health after a failed heartbeat")
	}
	if !n.failed {
		t.Fatal("the failure is not remembered for the next heartbeat that succeeds (Lost)")
	}
}
