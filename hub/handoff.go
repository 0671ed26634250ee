package hub

// This file holds what the other goroutines call to hand work to the run
// loop, or to finish it off the loop; nothing here runs on the loop. Each
// function says whose goroutine runs it: a connection's reader (submit,
// rateLimitedReply), the server API and the tests (call), a connection's
// writer (wake, delivered).

import (
	"encoding/json"
	"time"
)

// submit hands a message to run (on a reader, or the cursor gate's
// timer); it reports false once the hub has stopped.
func (h *Hub) submit(in inbound) bool {
	select {
	case h.inbox <- in:
		return true
	case <-h.done:
		return false
	}
}

// call runs f on the run loop and waits for it (on the API's goroutine,
// or a test's); it reports false if the hub has stopped.
func (h *Hub) call(f func()) bool {
	ran := make(chan struct{})
	select {
	case h.calls <- func() { f(); close(ran) }:
		<-ran
		return true
	case <-h.done:
		return false
	}
}

// delivered records, on a writer, that a frame went out: when a mark was
// waiting (the event of the oldest message queued since the last frame
// entered the hub at it), the time since then is one sample of
// sessionhub_delivery_seconds. One sample per frame at most, two atomic
// operations and no allocation: the fan-out path stays cheap.
func (h *Hub) delivered(c *conn) {
	if m := c.mark.Swap(0); m != 0 {
		h.metrics.delivery.Observe(time.Duration(int64(time.Since(h.started)) + 1 - m).Seconds())
	}
}

// wake tells run that c's writer emptied its channel while run holds a
// backlog for it. Like a reader's submit, it may wait for run, which never
// waits for a writer.
func (h *Hub) wake(c *conn) {
	select {
	case h.drained <- c:
	case <-h.done:
	}
}

// rateLimitedReply is the rate_limited error echoing ref: the encoding
// made once with ref spliced in, as protocol.Encode would place it (a
// flood's refusals cost no formatting and no full encoding each).
func (h *Hub) rateLimitedReply(ref string) []byte {
	if ref == "" {
		return h.rateLimited
	}
	q, err := json.Marshal(ref)
	if err != nil { // cannot happen: a string
		return h.rateLimited
	}
	b := make([]byte, 0, len(h.rateLimited)+len(`,"ref":`)+len(q))
	b = append(b, h.rateLimited[:len(h.rateLimited)-1]...)
	b = append(b, `,"ref":`...)
	b = append(b, q...)
	return append(b, '}')
}
