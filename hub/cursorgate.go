package hub

// The cursor gate runs on the connection's reader (offer and flushNow: a
// WebSocket's readFrames, a stream's send under sendMu; stop, on serve
// once reading ended) and on its timer's goroutine (flush); mu makes them
// take turns. What it forwards goes to the hub's run loop through forward
// (Hub.submit, which waits for room in the loop's inbox).

import (
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/sessionhub/sessionhub/protocol"
)

// cursorGate limits a connection's cursor updates to a rate and coalesces
// those over it: the latest waits for the limiter and replaces any update
// still waiting, so the last position always gets through. Its methods may
// be called concurrently (the reader offers, a timer flushes).
type cursorGate struct {
	limiter *rate.Limiter
	forward func(protocol.Message, time.Time) bool

	mu      sync.Mutex
	pending *protocol.Message // waiting for timer
	timer   *time.Timer
	stopped bool
}

// offer hands m (a cursor-update) on now if the rate allows, or holds it
// until it does. It reports whether m replaced an update that was already
// waiting.
func (g *cursorGate) offer(m protocol.Message, now time.Time) (coalesced bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return false
	}
	if g.pending != nil {
		*g.pending = m
		return true
	}
	r := g.limiter.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		g.pending = &m
		g.timer = time.AfterFunc(d, g.flush)
		return false
	}
	g.forward(m, now)
	return false
}

// flush forwards the update that waited for the limiter, on the timer that
// offer armed.
func (g *cursorGate) flush() {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.pending
	g.pending, g.timer = nil, nil
	if m != nil && !g.stopped {
		g.forward(*m, time.Now())
	}
}

// flushNow forwards the waiting update at once, ahead of the rate; the
// limiter's reservation for it stands, so the rate holds on average.
func (g *cursorGate) flushNow(now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.timer != nil {
		g.timer.Stop()
		g.timer = nil
	}
	if m := g.pending; m != nil && !g.stopped {
		g.pending = nil
		g.forward(*m, now)
	}
}

// stop forwards the waiting update, if any, and stops the gate: nothing is
// forwarded after it returns.
func (g *cursorGate) stop() {
	g.flushNow(time.Now())
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stopped = true
}
