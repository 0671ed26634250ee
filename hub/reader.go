package hub

// The reader runs on the connection's serving goroutine (serve, through
// its transport's read: readPump for a WebSocket) and, for a WebSocket
// that waits shallowly, on the short-lived goroutine of each burst of
// reads (readBurst), one at a time: the reader's fields of conn are theirs
// in turn. A stream's handle runs on its send's goroutine instead, under
// sseTransport.sendMu (sse.go). What the reader hands on goes to the hub's
// run loop (Hub.submit).

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/sessionhub/sessionhub/protocol"
)

// abuseGap is the pause in refusals after which a connection's rate abuse
// counts as over: a connection is abusive while its refusals come less
// than abuseGap apart.
const abuseGap = time.Second

// readPool holds the buffers into which readers read a frame.
var readPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readEnd is how a readFrames ended: end tells that reading is over, and
// then whether the peer closed cleanly, the close code (the one sent by
// whoever closed; 1006 when no close frame went either way) and why it
// ended.
type readEnd struct {
	end   bool
	clean bool
	code  protocol.StatusCode
	why   string
}

// readPump reads and decodes the client's frames and hands them to the hub
// until the connection ends. It reports whether the peer closed cleanly
// (close 1000 or 1001), in which case the user leaves at once.
//
// Between messages it waits for the next bytes on a shallow stack
// (c.wire.Await), and reads what came on a goroutine of its own
// (readFrames), whose stack, grown by decoding, goes when it ends: an idle
// connection holds one small goroutine.
func (c *conn) readPump(ctx context.Context) readEnd {
	for {
		if !c.wire.Shallow() {
			if r := c.readFrames(ctx); r.end {
				return r
			}
			continue
		}
		c.wire.Await()
		go c.readBurst(ctx)
		if r := <-c.burstEnd; r.end {
			return r
		}
	}
}

// readBurst is readFrames on a goroutine of its own.
func (c *conn) readBurst(ctx context.Context) { c.burstEnd <- c.readFrames(ctx) }

// readFrames reads and handles messages until nothing more is buffered, or
// until reading is over.
func (c *conn) readFrames(ctx context.Context) readEnd {
	for {
		// The library would read a pong too (OnPongReceived), but then go
		// on to wait for the next message, deep in its read.
		if c.wire.TakePong() {
			c.pong()
			if !c.wire.Buffered() {
				return readEnd{}
			}
			continue
		}
		typ, r, err := c.ws.Reader(ctx)
		if err == nil && typ == websocket.MessageBinary {
			c.kill(closeBinary)
			return c.serverEnd()
		}
		// The frame's buffer comes from a pool and goes back once handled
		// (Decode copies what it keeps), so an idle connection holds none.
		buf := readPool.Get().(*bytes.Buffer)
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(r)
		}
		if err != nil {
			readPool.Put(buf)
			return c.readFailed(err)
		}
		ok := c.handle(buf.Bytes())
		if buf.Cap() <= maxPooledFrame {
			readPool.Put(buf)
		}
		if !ok {
			return c.serverEnd()
		}
		if c.wire.Shallow() && !c.wire.Buffered() {
			return readEnd{}
		}
	}
}

// readFailed says how reading ended on err.
func (c *conn) readFailed(err error) readEnd {
	if _, _, ok := c.killed(); ok {
		return c.serverEnd()
	}
	switch status := websocket.CloseStatus(err); {
	case status == websocket.StatusNormalClosure || status == websocket.StatusGoingAway:
		return readEnd{end: true, clean: true, code: protocol.StatusCode(status), why: "client closed"}
	case errors.Is(err, websocket.ErrMessageTooBig):
		c.hub.metrics.closes.WithLabelValues(closeTooBig).Inc()
		return readEnd{end: true, code: protocol.CloseTooBig, why: "frame too large"}
	case status != -1:
		return readEnd{end: true, code: protocol.StatusCode(status), why: "client closed"}
	}
	return readEnd{end: true, code: protocol.CloseAbnormal, why: "connection lost"}
}

// serverEnd is the end of a connection the server closed, for the
// disconnect log line.
func (c *conn) serverEnd() readEnd {
	code := c.closeWhy.code
	if code == 0 {
		code = protocol.CloseAbnormal
	}
	return readEnd{end: true, code: code, why: c.closeWhy.text}
}

// handle decodes one frame, applies the connection's rate limits and hands
// the message to the hub. Every message but a cursor update in a session
// gets exactly one answer (its reply, an error, or rate_limited). It
// reports false when the connection must stop reading.
func (c *conn) handle(b []byte) bool {
	h := c.hub
	now := time.Now()
	m, err := protocol.Decode(b)
	if err == protocol.ErrInvalidUTF8 {
		// Nothing of it reaches anyone: a browser fails its connection on
		// a frame that is not UTF-8, and would get it again in a replay.
		h.metrics.in("invalid")
		c.kill(closeInvalidUTF8)
		return false
	}
	if err == nil && m.Type == protocol.TypeCursorUpdate && c.inSession() {
		h.metrics.in(m.Type)
		if c.cursor.offer(m, now) {
			h.metrics.cursorCoalesced.Inc()
		}
		return true
	}
	// Outside a session (or while a join or leave is in flight) a cursor
	// update is an ordinary message: run answers not_in_session, or
	// handles it if the join it follows succeeded.
	if !c.msgLimiter.AllowN(now, 1) {
		h.metrics.rateLimited.Inc()
		if c.refusals == nil {
			c.refusals = new(refusals)
		}
		f := c.refusals
		if now.Sub(f.lastRefusal) > abuseGap {
			f.abuseStart = now
		}
		f.lastRefusal = now
		c.refusedAt.Store(now.UnixNano())
		if now.Sub(f.abuseStart) >= h.opts.AbuseWindow {
			c.kill(closeRateAbuse)
			return false
		}
		return h.submit(inbound{c: c, at: now, refused: true, reply: h.rateLimitedReply(m.Ref)})
	}
	if err != nil {
		h.metrics.in("invalid")
		return h.submit(inbound{c: c, at: now, reply: protocol.EncodeError(m.Ref, err)})
	}
	h.metrics.in(m.Type)
	if (m.Type == protocol.TypeJoinSession || m.Type == protocol.TypeLeaveSession) && !c.joinLimiter.AllowN(now, 1) {
		// Membership changes cost every participant a message (the whole
		// list in full presence): they have a rate of their own.
		h.metrics.rateLimited.Inc()
		return h.submit(inbound{c: c, at: now, reply: protocol.EncodeError(m.Ref,
			protocol.Errorf(protocol.CodeRateLimited, "over %g joins and leaves per second", h.opts.JoinRate))})
	}
	if m.Type == protocol.TypeJoinSession || m.Type == protocol.TypeLeaveSession {
		// A waiting cursor update belongs to the session it was sent in:
		// deliver it there before the membership changes.
		c.cursor.flushNow(now)
		c.memberSeq++
	}
	in := inbound{c: c, msg: m, at: now, seq: c.memberSeq}
	if m.Type == protocol.TypeRefreshToken {
		// The signature is checked here, on the reader, not on run:
		// run does bookkeeping only.
		id, perr := h.verifyRefresh(m.Payload.(*protocol.RefreshToken).Token, now)
		if perr != nil {
			return h.submit(inbound{c: c, at: now, reply: protocol.EncodeError(m.Ref, perr)})
		}
		in.refreshed = id
	}
	if m.Type == protocol.TypePing {
		b, err := protocol.Encode(protocol.TypePong, m.Ref, m.Payload)
		if err != nil {
			b = protocol.EncodeError(m.Ref, err)
		}
		in.reply = b
	}
	return h.submit(in)
}

// inSession reports, on the reader, whether the connection is in a session
// with no membership change in flight.
func (c *conn) inSession() bool {
	return c.memberSeq != 0 && c.roomSeq.Load() == c.memberSeq
}

// pingReceived is the library's OnPingReceived: a WebSocket ping from the
// client counts against the message rate like a message. Over the rate it
// gets no pong, and a connection that keeps it up for Options.AbuseWindow
// is closed with 1008, as for any flood. It reports whether to answer.
// It runs where the library reads the ping: on the reader or, during a
// close handshake, on the writer (hence the atomics).
func (c *conn) pingReceived() bool {
	now := time.Now()
	if c.msgLimiter.AllowN(now, 1) {
		return true
	}
	c.hub.metrics.rateLimited.Inc()
	t := now.UnixNano()
	if t-c.lastPingRefusal.Swap(t) > int64(abuseGap) {
		c.pingAbuseStart.Store(t)
	}
	if time.Duration(t-c.pingAbuseStart.Load()) >= c.hub.opts.AbuseWindow {
		c.kill(closeRateAbuse)
	}
	return false
}
