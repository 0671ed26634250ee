package hub

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/sessionhub/sessionhub/protocol"
)

// A rate_limited reply is counted once: as sent
// (sessionhub_messages_out_total{type="error"}) when run queues it, or as
// dropped when the queue is full (the connection is then closed for rate
// abuse) or the connection is gone; never as both. The test plays the
// reader (conn.handle) of a connection whose every message is over the rate
// and whose writer never drains.
func TestRateLimitedReplyCountedOnce(t *testing.T) {
	const queue, frames = 4, 10
	h := New(&Options{SendQueue: queue, AbuseWindow: time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() { h.Shutdown(context.Background()) })
	c := testReadsSend(h.newConn(nil, "192.0.2.1:1", false))
	c.msgLimiter = rate.NewLimiter(0, 0) // every message over the rate

	out, limited := h.metrics.outByType[protocol.TypeError], h.metrics.rateLimited
	out0, limited0 := counterValue(out), counterValue(limited)
	full0, gone0 := counterValue(h.metrics.droppedQueued), counterValue(h.metrics.droppedGone)
	for i := range frames {
		if !c.handle([]byte(`{"type":"ping","ref":"p"}`)) {
			t.Fatalf("frame %d: the reader stopped", i)
		}
	}
	// run has handled every reply once its inbox is empty between two steps.
	for drained := false; !drained; {
		h.call(func() { drained = len(h.inbox) == 0 })
	}
	sent, refused := counterValue(out)-out0, counterValue(limited)-limited0
	full, gone := counterValue(h.metrics.droppedQueued)-full0, counterValue(h.metrics.droppedGone)-gone0
	if refused != frames {
		t.Fatalf("rate_limited counted %v times, want %d", refused, frames)
	}
	if sent != queue || full != 1 || gone != frames-queue-1 {
		t.Errorf("replies: %v sent, %v dropped on a full queue, %v dropped as gone; want %d, 1, %d",
			sent, full, gone, queue, frames-queue-1)
	}
	if code, _, killed := c.killed(); !killed || code != protocol.ClosePolicy {
		t.Errorf("killed = %v with %d, want 1008 (rate abuse)", killed, code)
	}
	if c.closeTimer != nil {
		c.closeTimer.Stop()
	}
}

// A connection holds its refusals (when its abuse of the rate started, its
// last refusal) only once its reader has refused a message: one that stays
// within the rate, as an idle one does, holds none. The abuse window runs
// from the first refusal.
func TestRefusalsHeldOnlyOverTheRate(t *testing.T) {
	h := New(&Options{AbuseWindow: time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() { h.Shutdown(context.Background()) })
	c := testReadsSend(h.newConn(nil, "192.0.2.1:1", false))
	c.msgLimiter = rate.NewLimiter(0, 1) // one message, then every one over the rate
	ping := []byte(`{"type":"ping","ref":"p"}`)

	if !c.handle(ping) {
		t.Fatal("the reader stopped at a message within the rate")
	}
	if c.refusals != nil {
		t.Fatalf("refusals = %+v within the rate, want none", *c.refusals)
	}
	for i := range 2 {
		if !c.handle(ping) {
			t.Fatalf("refused message %d: the reader stopped within the abuse window", i)
		}
	}
	f := c.refusals
	if f == nil {
		t.Fatal("no refusals after two messages over the rate")
	}
	if f.abuseStart.IsZero() || f.lastRefusal.Before(f.abuseStart) || c.refusedAt.Load() != f.lastRefusal.UnixNano() {
		t.Errorf("refusals = %+v, refusedAt %d: want an abuse start, the last refusal at or after it, and refusedAt at the last", *f, c.refusedAt.Load())
	}
	if _, _, killed := c.killed(); killed {
		t.Error("killed within the abuse window")
	}
	for drained := false; !drained; {
		h.call(func() { drained = len(h.inbox) == 0 })
	}
}
