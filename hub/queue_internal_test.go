package hub

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/sessionhub/sessionhub/protocol"
)

// TestSendQueueBacklog drives deliver on the run loop against a connection
// whose writer the test plays: messages past the send channel wait in the
// backlog, come out in order when the writer drains and wakes run, and the
// queue holds exactly Options.SendQueue before the connection is dropped.
func TestSendQueueBacklog(t *testing.T) {
	const queue = 40
	h := New(&Options{SendQueue: queue, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() { h.Shutdown(context.Background()) })
	newConn := func() *conn {
		return &conn{id: h.nextID.Add(1), hub: h, send: make(chan []byte, sendChanSize), closing: make(chan struct{})}
	}
	msg := func(i int) []byte { return fmt.Appendf(nil, "%d", i) }

	t.Run("order across channel and backlog", func(t *testing.T) {
		c := newConn()
		h.call(func() {
			for i := range queue {
				h.deliver(c, msg(i))
			}
		})
		var backlog int
		h.call(func() { backlog = len(c.backlog) })
		if want := queue - sendChanSize; backlog != want || !c.backlogged.Load() {
			t.Fatalf("backlog = %d (flag %v), want %d with the flag up", backlog, c.backlogged.Load(), want)
		}
		for i := range queue { // the writer's part: drain, wake run when empty
			if got := <-c.send; string(got) != string(msg(i)) {
				t.Fatalf("message %d = %s, want %s", i, got, msg(i))
			}
			if len(c.send) == 0 && c.backlogged.Load() {
				h.wake(c)
			}
		}
		h.call(func() { backlog = cap(c.backlog) })
		if backlog != 0 || c.backlogged.Load() || c.queued.Load() != 0 {
			t.Errorf("after draining: backlog cap %d, flag %v, queued %d; want all released", backlog, c.backlogged.Load(), c.queued.Load())
		}
		if _, _, killed := c.killed(); killed {
			t.Error("a connection that kept up was killed")
		}
	})

	t.Run("full queue is a slow consumer", func(t *testing.T) {
		c := newConn()
		h.call(func() {
			for i := range queue + 1 {
				h.deliver(c, msg(i))
			}
		})
		code, _, killed := c.killed()
		if !killed || code != protocol.CloseSlowConsumer {
			t.Fatalf("killed = %v with %d, want 1013 once %d messages wait", killed, code, queue)
		}
		var gone bool
		h.call(func() { gone = c.gone && c.backlog == nil })
		if !gone {
			t.Error("the slow consumer was not marked gone with its backlog released")
		}
		c.closeTimer.Stop()
	})
}
