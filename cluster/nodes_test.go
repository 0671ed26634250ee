package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/sessionhub/sessionhub/cluster"
	"github.com/sessionhub/sessionhub/internal/redistest"
)

// newNodes starts the cluster.Nodes of node on srv with heartbeat beat; it
// is closed at the end of the test.
func newNodes(t *testing.T, srv *redistest.Server, node string, beat time.Duration) *cluster.Nodes {
	t.Helper()
	n := cluster.NewNodes(client(t, srv), &cluster.NodesOptions{NodeID: node, Heartbeat: beat, Logger: testLogger(t, node)})
	t.Cleanup(func() { n.Close() })
	return n
}

// healthyPair starts nodes A and B on srv with beat and waits until both
// report healthy.
func healthyPair(t *testing.T, srv *redistest.Server, beat time.Duration) (a, b *cluster.Nodes) {
	t.Helper()
	a, b = newNodes(t, srv, "A", beat), newNodes(t, srv, "B", beat)
	waitHealth(t, "A", a, true, 5*time.Second)
	waitHealth(t, "B", b, true, 5*time.Second)
	return a, b
}

// waitHealth waits for want on n.Health().
func waitHealth(t *testing.T, name string, n *cluster.Nodes, want bool, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	timeout := time.After(d)
	for {
		select {
		case ok := <-n.Health():
			if ok == want {
				if n.Healthy() != want {
					t.Fatalf("%s: Health delivered %v but Healthy is %v", name, want, !want)
				}
				return time.Since(start)
			}
		case <-timeout:
			t.Fatalf("%s: Health did not deliver %v within %v (Healthy %v)", name, want, d, n.Healthy())
		}
	}
}

// waitDead waits for id on n.Dead().
func waitDead(t *testing.T, n *cluster.Nodes, id string, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case got := <-n.Dead():
		if got != id {
			t.Fatalf("Dead reported %q; want %q", got, id)
		}
		return time.Since(start)
	case <-time.After(d):
		t.Fatalf("%s not reported dead within %v", id, d)
		return 0
	}
}

// noDead checks that n reports no dead node for d.
func noDead(t *testing.T, n *cluster.Nodes, d time.Duration) {
	t.Helper()
	timeout := time.After(d)
	select {
	case id := <-n.Dead():
		t.Fatalf("Dead reported %q", id)
	case <-timeout:
		select {
		case id := <-n.Dead():
			t.Fatalf("Dead reported %q", id)
		default:
		}
	}
}

func TestNodesDeadWithoutGoodbye(t *testing.T) {
	const beat = 100 * time.Millisecond
	srv := redistest.Start(t)
	a, b := healthyPair(t, srv, beat)
	noDead(t, a, 2*beat) // A sees B alive

	b.Close() // kill: no goodbye
	// B's key lives 3 beats after its last beat; A checks every beat.
	d := waitDead(t, a, "B", 10*time.Second)
	t.Logf("B reported dead %v after its heartbeat stopped", d)
	// (Misses+1)×Heartbeat, measured here from Close to this goroutine
	// receiving the report: a busy machine adds its delays to both ends,
	// hence a second of slack.
	if limit := 4*beat + time.Second; d > limit {
		t.Errorf("B reported dead after %v; want within %v", d, limit)
	}
	noDead(t, a, 5*beat) // once
	if !a.Healthy() {
		t.Error("A is not healthy")
	}
}

func TestNodesLeave(t *testing.T) {
	// 30 misses, so that "at once" shows by construction: without the
	// goodbye B would be found dead (Misses+1)×beat = 31 s later, far past
	// the 5 s that waitDead waits, however busy the machine.
	const beat, misses = time.Second, 30
	srv := redistest.Start(t)
	mk := func(id string) *cluster.Nodes {
		n := cluster.NewNodes(client(t, srv), &cluster.NodesOptions{NodeID: id, Heartbeat: beat, Misses: misses, Logger: testLogger(t, id)})
		t.Cleanup(func() { n.Close() })
		return n
	}
	a, b := mk("A"), mk("B")
	waitHealth(t, "A", a, true, 5*time.Second)
	waitHealth(t, "B", b, true, 5*time.Second)
	waitSubscribers(t, srv, "sessionhub:nodes:left", 2)

	start := time.Now()
	if err := b.Leave(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitDead(t, a, "B", 5*time.Second)
	t.Logf("B reported dead %v after Leave began", time.Since(start))
	if b.Healthy() {
		t.Error("B healthy after Leave")
	}
	rdb := client(t, srv)
	ctx := context.Background()
	if n, err := rdb.Exists(ctx, "sessionhub:node:B").Result(); err != nil || n != 0 {
		t.Errorf("B's key: exists %d, %v; want gone", n, err)
	}
	if err := rdb.ZScore(ctx, "sessionhub:nodes", "B").Err(); err == nil {
		t.Error("B still in the set of nodes")
	}
	b.Close()
	noDead(t, a, 2*beat) // once, though its key is gone
}

func TestNodesRedisOutage(t *testing.T) {
	const beat = 100 * time.Millisecond
	srv := redistest.Start(t)
	a, b := healthyPair(t, srv, beat)

	srv.Stop()
	// Both report it (at their first failed heartbeat: that is
	// TestFirstFailedBeatIsUnhealthy's, not timed here, where a busy
	// machine's delays would be measured too).
	da := waitHealth(t, "A", a, false, 5*time.Second)
	db := waitHealth(t, "B", b, false, 5*time.Second)
	t.Logf("unhealthy %v (A), %v (B) after Redis stopped", da, db)

	srv.Restart() // empty: the nodes must register again by themselves
	waitHealth(t, "A", a, true, 10*time.Second)
	waitHealth(t, "B", b, true, 10*time.Second)
	rdb := client(t, srv)
	ctx := context.Background()
	for _, id := range []string{"A", "B"} {
		waitFor(t, 5*time.Second, id+" registered again", func() bool {
			n, err := rdb.Exists(ctx, "sessionhub:node:"+id).Result()
			return err == nil && n == 1 && rdb.ZScore(ctx, "sessionhub:nodes", id).Err() == nil
		})
	}
	// Neither took the other for dead while Redis had forgotten both.
	noDead(t, a, 5*beat)
	noDead(t, b, 0)
}

// Lost signals the first beat, then each time Redis may have lost what was
// written: after an outage, and after a restart too quick for a heartbeat
// to fail (the node's key is gone).
func TestNodesLost(t *testing.T) {
	const beat = 100 * time.Millisecond
	srv := redistest.Start(t)
	a := newNodes(t, srv, "A", beat)
	waitLost := func(what string) {
		t.Helper()
		select {
		case <-a.Lost():
		case <-time.After(5 * time.Second):
			t.Fatalf("no Lost signal %s", what)
		}
	}
	waitLost("at the first beat")
	select {
	case <-a.Lost():
		t.Fatal("Lost signalled again with Redis untouched")
	case <-time.After(3 * beat):
	}
	if err := client(t, srv).FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	waitLost("after FLUSHALL")
	srv.Stop()
	waitHealth(t, "A", a, false, 5*time.Second)
	srv.Restart()
	waitLost("after an outage")
}
