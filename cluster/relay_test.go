package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sessionhub/sessionhub/cluster"
	"github.com/sessionhub/sessionhub/internal/redistest"
)

// A request reaches the named node, whose handler's answer comes back to
// the caller, concurrently and matched to each request; a node nobody runs
// is ErrNoNode; an answer that does not come ends with the context.
func TestRelayCallsTheNamedNode(t *testing.T) {
	srv := redistest.Start(t)
	block := make(chan struct{})
	echo := func(name string) func(context.Context, []byte) []byte {
		return func(ctx context.Context, req []byte) []byte {
			if string(req) == "block" {
				select {
				case <-block:
				case <-ctx.Done():
				}
			}
			return []byte(name + ":" + string(req))
		}
	}
	a := cluster.NewRelay(client(t, srv), &cluster.RelayOptions{NodeID: "a", Logger: testLogger(t, "a")}, echo("a"))
	defer a.Close()
	b := cluster.NewRelay(client(t, srv), &cluster.RelayOptions{NodeID: "b", Logger: testLogger(t, "b")}, echo("b"))
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			from, to := a, "b"
			if i%2 == 1 {
				from, to = b, "a"
			}
			got, err := from.Call(ctx, to, []byte(fmt.Sprint(i)))
			if want := to + ":" + fmt.Sprint(i); err != nil || string(got) != want {
				t.Errorf("call %d: %q, %v; want %q", i, got, err, want)
			}
		}()
	}
	wg.Wait()

	if _, err := a.Call(ctx, "nobody", []byte("x")); !errors.Is(err, cluster.ErrNoNode) {
		t.Errorf("call to a node nobody runs: %v, want ErrNoNode", err)
	}
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	if _, err := a.Call(short, "b", []byte("block")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("unanswered call: %v, want the deadline", err)
	}
	close(block)
}
