package hub

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/sessionhub/sessionhub/hub/internal/wsfast"
	"github.com/sessionhub/sessionhub/protocol"
)

// Wire timings that are not configuration.
const (
	// closeWait is how long a close the server starts may take (writing the
	// close frame to a peer that does not read, then waiting for its reply)
	// before the TCP connection is dropped.
	closeWait = 5 * time.Second

	// abuseGap is the pause in refusals after which a connection's rate abuse
	// counts as over: a connection is abusive while its refusals come less
	// than abuseGap apart.
	abuseGap = time.Second

	// sendChanSize is the capacity of a connection's send channel: what the
	// writer can take without the hub keeping a backlog for it. The rest of
	// the send queue (Options.SendQueue) is a backlog the hub allocates only
	// while a connection falls behind, so that an idle connection holds
	// sendChanSize slots, not SendQueue.
	sendChanSize = 8

	// delayedChanSize is the send channel of a connection under
	// Options.WriteDelay: what one frame can carry before the writer writes
	// without waiting for the delay to end.
	delayedChanSize = 32

	// maxPooledFrame is the largest batch buffer returned to the pool.
	maxPooledFrame = 16 << 10
)

// framePool holds the buffers in which writers join a batch into one frame:
// a writer holds one only while it writes.
var framePool = sync.Pool{New: func() any { return new([]byte) }}

// readPool holds the buffers into which readers read a frame.
var readPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// conn is one connection: a WebSocket or an SSE stream (its transport,
// transport.go). Its reader (serve and its transport's read) runs from the
// upgrade on; its writer (writePump) runs on a goroutine of its own while
// there is something to write; both talk to the hub's run loop over
// channels. Everything but how bytes come and go (the queue, the writer,
// pings, closes, rate limits, lifetimes) is the same for both. A
// WebSocket's data frames, pings and pongs are the hub's own (the fast
// path, hub/internal/wsfast); the WebSocket library does the rest.
type conn struct {
	id    uint64
	hub   *Hub
	tr    transport       // a WebSocket (wsTransport) or an SSE stream (*sseTransport)
	ws    *websocket.Conn // WebSocket only
	batch bool            // the peer negotiated protocol.BatchSubprotocol
	// delay is set for a batch connection under Options.WriteDelay: its
	// writer writes when run says the delay is over (flushDue) or when the
	// send channel is full, not as soon as something is queued.
	delay   bool
	start   time.Time
	addr    string
	netConn net.Conn // the hijacked TCP connection
	ip      string   // the remote address without its port, for the per-IP limit
	// identity is from the token in token mode, nil in open mode. Set
	// before serve, then owned by run (refresh-token replaces it).
	identity *identity
	joined   atomic.Bool // it has been in a session (the handshake timeout)
	// expiry closes the connection with 4001 at its token's exp; serve sets
	// it before reading, run re-arms it when the token is refreshed.
	expiry *time.Timer

	// send is the head of the send queue: run puts encoded messages on it
	// without blocking, writePump drains it.
	send chan []byte
	// writer is the writer's state (writerIdle, …); writersDone is closed
	// when the last writer ended with the connection.
	writer      atomic.Int32
	writersDone chan struct{}
	// pingTimer runs ping: it sends the next ping or, while a ping is out
	// (pingOut), ends the wait for its pong. pingOff, once set, keeps it
	// from being re-armed. pingDue asks the writer to send a ping.
	pingMu    sync.Mutex
	pingTimer *time.Timer
	pingOut   bool
	pingOff   bool
	pingDue   atomic.Bool
	// flushDue asks the writer of a delay connection to write what is
	// queued (run's flushDelayed, or a full queue).
	flushDue atomic.Bool
	pongs    atomic.Uint32 // pongs received, for tests
	// backlogged is set by run while it holds a backlog for the connection;
	// the writer then tells run (Hub.drained) when it has emptied send.
	backlogged atomic.Bool
	// queued mirrors len(backlog) for the send-queue metrics.
	queued atomic.Int32
	// mark is when the event of the oldest message queued since the last
	// frame was written entered the hub (Hub.markOf), 0 for none: run sets
	// it, the writer takes it (Hub.delivered).
	mark atomic.Int64

	// closing is closed, once, when the server decides to close the
	// connection, for closeWhy.
	closeOnce  sync.Once
	closing    chan struct{}
	closeWhy   closeReason
	closeTimer *time.Timer

	// Owned by run.
	joining        *pendingJoin  // a cluster join waiting for Redis
	heldDuringJoin []inbound     // what arrived meanwhile, handled after it
	departGrace    time.Duration // the grace of a connection that ended while joining
	room           *room
	userID         string
	presence       protocol.Presence
	idx            int      // index in room.conns
	ended          bool     // run will deliver nothing more to it
	backlog        [][]byte // the send queue past send, allocated while needed
	replayRoom     int      // extra queue room for a recovery replay, until the backlog drains
	delayed        bool     // a delay connection waiting in run's delay queue

	// The reader's. wire is the shallow reader of a WebSocket (wsfast):
	// it waits for the next bytes and takes pongs between messages, and
	// the writer locks it around the close handshake. burstEnd carries the
	// end of a readFrames.
	wire     wsfast.Reader
	burstEnd chan readEnd

	// Owned by the reader.
	msgLimiter  *rate.Limiter
	joinLimiter *rate.Limiter // join-session and leave-session (Options.JoinRate)
	abuseStart  time.Time
	lastRefusal time.Time
	cursor      cursorGate
	// memberSeq counts the join-session and leave-session messages the
	// reader handed to run (inbound.seq).
	memberSeq uint64

	// roomSeq is set by run for the reader: the memberSeq of the join that
	// put the connection in its session, 0 while it is in none. The reader
	// coalesces cursor updates only while it equals memberSeq (no
	// membership change in flight): outside a session each one gets its
	// own not_in_session. runSeq is run's: the seq of the last membership
	// message it handled.
	roomSeq atomic.Uint64
	runSeq  uint64
	// member is the session and user of the connection's last join, set
	// by run for the disconnect log line (nil before any, and after a
	// leave-session).
	member atomic.Pointer[memberLog]
	// tokenUser is the sub of the token the connection was accepted with
	// (a refreshed token has the same), for the log lines and to check
	// the token of a stream's sends; set before it is served.
	tokenUser string
	// refusedAt is when the reader last refused a message over the rate
	// (unix ns), for run: a queue that overflows while its connection
	// floods is closed for the abuse (1008), not as a slow consumer.
	refusedAt atomic.Int64

	// pingAbuseStart and lastPingRefusal (Unix nanoseconds) are abuseStart
	// and lastRefusal for WebSocket pings (pingReceived), which the library
	// may read on the reader or, during a close handshake, on the writer.
	pingAbuseStart  atomic.Int64
	lastPingRefusal atomic.Int64
}

// memberLog is who a connection is, for its log lines.
type memberLog struct{ session, user string }

// logAttrs are the session and user of c, as far as they are known: from
// its last join, else (token mode) from its token.
func (c *conn) logAttrs() []any {
	if m := c.member.Load(); m != nil {
		return []any{"session", m.session, "user", m.user}
	}
	if c.tokenUser != "" {
		return []any{"user", c.tokenUser}
	}
	return nil
}

// inSession reports, on the reader, whether the connection is in a session
// with no membership change in flight.
func (c *conn) inSession() bool {
	return c.memberSeq != 0 && c.roomSeq.Load() == c.memberSeq
}

// markRoom tells the reader, from run, whether c is in a session now.
func (c *conn) markRoom() {
	if c.room != nil {
		c.roomSeq.Store(c.runSeq)
	} else {
		c.roomSeq.Store(0)
	}
}

// flooding reports, on run, whether c's reader refused a message over the
// rate within the last abuseGap.
func (c *conn) flooding(now time.Time) bool {
	at := c.refusedAt.Load()
	return at != 0 && now.UnixNano()-at < int64(abuseGap)
}

// pingReceived is the library's OnPingReceived: a WebSocket ping from the
// client counts against the message rate like a message. Over the rate it
// gets no pong, and a connection that keeps it up for Options.AbuseWindow
// is closed with 1008, as for any flood. It reports whether to answer.
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

// rearmExpiry makes the connection expire at exp (never for a zero exp),
// unless its old expiry has closed it already: a token refreshed too late
// does not undo a 4001.
func (c *conn) rearmExpiry(exp time.Time) {
	if c.expiry == nil {
		return
	}
	if exp.IsZero() {
		c.expiry.Stop()
		return
	}
	c.expiry.Reset(time.Until(exp))
}

// kill asks the connection to close for why. It never blocks, and only the
// first call counts. A code of 0 drops the TCP connection without a close
// frame (a peer that stopped answering pings).
func (c *conn) kill(why closeReason) {
	c.closeOnce.Do(func() {
		c.closeWhy = why
		// Counted, and the timer set, before the writer can write the close
		// (a peer that sees it may look at the metrics; serve reads the timer).
		c.hub.metrics.closes.WithLabelValues(why.label).Inc()
		if why.code != 0 {
			// A writer stuck on a peer that does not read cannot write the
			// close frame: drop the connection after closeWait whatever
			// happens.
			c.closeTimer = time.AfterFunc(closeWait+time.Second, c.drop)
		}
		close(c.closing)
		c.startWriter() // the writer writes the close frame
		if why.code == 0 {
			c.drop() // unblocks a writer stuck on the dead peer
		}
	})
}

// drop ends the connection at once, without a close: for a WebSocket it
// closes the TCP connection even while a close handshake is in flight (the
// library's CloseNow would wait for that to time out).
func (c *conn) drop() {
	if c.tr != nil {
		c.tr.drop(c)
	}
}

// killed reports whether kill was called, and with which code.
func (c *conn) killed() (protocol.StatusCode, string, bool) {
	select {
	case <-c.closing:
		return c.closeWhy.code, c.closeWhy.text, true
	default:
		return 0, "", false
	}
}

// The writer's states (conn.writer).
const (
	writerIdle    = iota // no writer goroutine: nothing to write
	writerRunning        // a writePump is running
	writerDone           // the connection is closed (or written by a test)
)

// startWriter makes sure a writePump runs for what was just queued on send
// or for the close that was just asked: an idle connection holds no writer
// goroutine. Any goroutine may call it.
func (c *conn) startWriter() {
	// Load first: on the hot path a writer usually runs already, and a
	// failed CompareAndSwap still takes the cache line.
	if c.writer.Load() == writerIdle && c.writer.CompareAndSwap(writerIdle, writerRunning) {
		go c.writePump()
	}
}

// writePump writes what the hub queued and returns when send is empty (a
// delay connection: once it has written what was due); it closes the
// connection when asked to, after writing what is queued when the server
// shuts down. At most one runs at a time (startWriter), so that messages go
// out in order.
//
// It writes through the transport with no deadline: a write stuck on a
// peer that does not read is ended by dropping the connection (ping
// timeout, or the timer of kill).
func (c *conn) writePump() {
	for {
		select {
		case <-c.closing:
			if c.closeWhy.code == 0 {
				c.drop()
			} else {
				if c.closeWhy == closeShutdown {
					c.flushQueued()
				}
				c.tr.close(c, c.closeWhy)
			}
			c.writerEnded()
			return
		default:
		}
		if c.pingDue.Swap(false) {
			if err := c.tr.ping(c); err != nil {
				c.drop()
				c.writerEnded()
				return
			}
		}
		if !c.delay || c.flushDue.Swap(false) {
			select {
			case b := <-c.send:
				if err := c.tr.write(c, b); err != nil {
					c.drop()
					c.writerEnded()
					return
				}
				c.hub.delivered(c)
				if len(c.send) == 0 && c.backlogged.Load() {
					c.hub.wake(c)
				}
				continue
			default:
			}
		}
		// Nothing (due) to write: park by ending. Whatever was queued or
		// asked after the checks above starts a writer again; if that raced
		// with this one, this one goes on.
		c.writer.Store(writerIdle)
		if (c.hasWork() || c.isClosing() || c.pingDue.Load()) && c.writer.CompareAndSwap(writerIdle, writerRunning) {
			continue
		}
		return
	}
}

// hasWork reports whether the writer has messages to write now: any queued
// ones, or, on a delay connection, those whose delay run ended.
func (c *conn) hasWork() bool {
	if c.delay {
		return c.flushDue.Load()
	}
	return len(c.send) > 0
}

// flushQueued writes what waits on send, before the close of a shutdown.
// The backlog run may hold is not written.
func (c *conn) flushQueued() {
	for {
		select {
		case b := <-c.send:
			if c.tr.write(c, b) != nil {
				return
			}
		default:
			return
		}
	}
}

// writerEnded records that no writer will run again, and tells serve.
func (c *conn) writerEnded() {
	c.writer.Store(writerDone)
	close(c.writersDone)
}

func (c *conn) isClosing() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

// ping runs on pingTimer: it has the writer send a ping every
// Options.PingInterval, and closes a connection whose pong does not come
// within Options.PingTimeout (an SSE stream's pong is its ping's write
// going through). No goroutine waits for the pong: pong re-arms the timer.
func (c *conn) ping() {
	opts := &c.hub.opts
	c.pingMu.Lock()
	if c.pingOff {
		c.pingMu.Unlock()
		return
	}
	if c.pingOut {
		c.pingMu.Unlock()
		c.kill(closePingTimeout)
		return
	}
	c.pingOut = true
	c.pingTimer.Reset(opts.PingTimeout)
	c.pingMu.Unlock()
	c.pingDue.Store(true)
	c.startWriter()
}

// pong records the peer's pong: the next ping goes Options.PingInterval
// after it.
func (c *conn) pong() {
	c.pongs.Add(1)
	c.pingMu.Lock()
	if c.pingOut && !c.pingOff {
		c.pingOut = false
		c.pingTimer.Reset(c.hub.opts.PingInterval)
	}
	c.pingMu.Unlock()
}

// stopPings stops the pings for good, even one that is in flight.
func (c *conn) stopPings() {
	c.pingMu.Lock()
	c.pingOff = true
	c.pingTimer.Stop()
	c.pingMu.Unlock()
}

// write writes first as one text frame, with what else is queued when the
// peer takes batches (protocol.BatchSubprotocol: the messages separated by
// '\n'). The frame is built in a pooled buffer and leaves in one Write.
func (c *conn) write(first []byte) error {
	bp := framePool.Get().(*[]byte)
	var frame, out []byte
	if c.batch {
		frame = append(wsfast.ReserveHeader(*bp), first...)
		if len(c.send) > 0 {
			for n := len(c.send); n > 0; n-- {
				frame = append(frame, '\n')
				frame = append(frame, <-c.send...)
			}
			c.hub.metrics.batchedFrames.Inc()
		}
		out = wsfast.FinishFrame(frame)
	} else {
		// One message per frame, but the frames already queued behind
		// first leave in the same Write: a burst of replies (a flood's
		// rate_limited answers) costs one system call, not one each.
		frame = wsfast.AppendFrame((*bp)[:0], first)
		for n := len(c.send); n > 0 && len(frame) < maxPooledFrame; n-- {
			frame = wsfast.AppendFrame(frame, <-c.send)
		}
		out = frame
	}
	_, err := c.netConn.Write(out)
	if cap(frame) <= maxPooledFrame {
		*bp = frame
		framePool.Put(bp)
	}
	return err
}

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
		if now.Sub(c.lastRefusal) > abuseGap {
			c.abuseStart = now
		}
		c.lastRefusal = now
		c.refusedAt.Store(now.UnixNano())
		if now.Sub(c.abuseStart) >= h.opts.AbuseWindow {
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
