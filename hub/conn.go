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
	sendChanSize = 16

	// maxPooledFrame is the largest batch buffer returned to the pool.
	maxPooledFrame = 16 << 10
)

// framePool holds the buffers in which writers join a batch into one frame:
// a writer holds one only while it writes.
var framePool = sync.Pool{New: func() any { return new([]byte) }}

// readPool holds the buffers into which readers read a frame.
var readPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// conn is one WebSocket connection. Its reader (serve and readPump) and its
// writer (writePump) each run on a goroutine of their own, started once the
// upgrade is done; both talk to the hub's run loop over channels.
type conn struct {
	id       uint64
	hub      *Hub
	ws       *websocket.Conn
	batch    bool // the peer negotiated protocol.BatchSubprotocol
	start    time.Time
	addr     string
	netConn  net.Conn    // the hijacked TCP connection
	ip       string      // the remote address without its port, for the per-IP limit
	identity *identity   // from the token in token mode; nil in open mode
	joined   atomic.Bool // it has been in a session (the handshake timeout)

	// send is the head of the send queue: run puts encoded messages on it
	// without blocking, writePump drains it.
	send chan []byte
	// writer is the writer's state (writerIdle, …); wrote is closed when the
	// last writer ended with the connection.
	writer atomic.Int32
	wrote  chan struct{}
	// pingTimer runs ping; pingOff, once set, keeps it from being re-armed.
	pingMu    sync.Mutex
	pingTimer *time.Timer
	pingOff   bool
	// backlogged is set by run while it holds a backlog for the connection;
	// the writer then tells run (Hub.drained) when it has emptied send.
	backlogged atomic.Bool
	// queued mirrors len(backlog) for the send-queue metrics.
	queued atomic.Int32

	// closing is closed, once, when the server decides to close the
	// connection, for closeWhy.
	closeOnce  sync.Once
	closing    chan struct{}
	closeWhy   closeReason
	closeTimer *time.Timer

	// Owned by run.
	joining     *pendingJoin  // a cluster join waiting for Redis
	held        []inbound     // what arrived meanwhile, handled after it
	departGrace time.Duration // the grace of a connection that ended while joining
	room        *room
	userID      string
	presence    protocol.Presence
	idx         int      // index in room.conns
	gone        bool     // run will deliver nothing more to it
	backlog     [][]byte // the send queue past send, allocated while needed
	replayRoom  int      // extra queue room for a recovery replay, until the backlog drains

	// Owned by the reader.
	msgLimiter  *rate.Limiter
	abuseStart  time.Time
	lastRefusal time.Time
	cursor      cursorGate
}

// kill asks the connection to close for why. It never blocks, and only the
// first call counts. A code of 0 drops the TCP connection without a close
// frame (a peer that stopped answering pings).
func (c *conn) kill(why closeReason) {
	c.closeOnce.Do(func() {
		c.closeWhy = why
		close(c.closing)
		c.startWriter() // the writer writes the close frame
		c.hub.metrics.closes.WithLabelValues(why.label).Inc()
		if why.code == 0 {
			c.drop() // unblocks a writer stuck on the dead peer
			return
		}
		// A writer stuck on a peer that does not read cannot write the close
		// frame: drop the connection after closeWait whatever happens.
		c.closeTimer = time.AfterFunc(closeWait+time.Second, c.drop)
	})
}

// drop closes the TCP connection at once, even while a close handshake is
// in flight (the library's CloseNow would wait for that to time out).
func (c *conn) drop() {
	if c.netConn != nil {
		c.netConn.Close()
	}
	c.ws.CloseNow()
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

// writePump writes what the hub queued and returns when send is empty; it
// closes the connection when asked to. At most one runs at a time
// (startWriter), so that messages go out in order.
//
// Writes use a context that is never done, so that the WebSocket library
// sets up no cancellation per write; a write stuck on a peer that does not
// read is ended by dropping the TCP connection (ping timeout, or the timer
// of kill).
func (c *conn) writePump() {
	write := context.Background()
	for {
		select {
		case <-c.closing:
			if c.closeWhy.code == 0 {
				c.drop()
			} else {
				c.ws.Close(websocket.StatusCode(c.closeWhy.code), c.closeWhy.text)
			}
			c.writerEnded()
			return
		default:
		}
		select {
		case b := <-c.send:
			var err error
			if c.batch && len(c.send) > 0 {
				err = c.writeBatch(write, b)
			} else {
				err = c.ws.Write(write, websocket.MessageText, b)
			}
			if err != nil {
				c.drop()
				c.writerEnded()
				return
			}
			if len(c.send) == 0 && c.backlogged.Load() {
				c.hub.wake(c)
			}
		default:
			// Nothing queued: park by ending. Whatever was queued or asked
			// after the check above starts a writer again; if that raced
			// with this one, this one goes on.
			c.writer.Store(writerIdle)
			if (len(c.send) > 0 || c.isClosing()) && c.writer.CompareAndSwap(writerIdle, writerRunning) {
				continue
			}
			return
		}
	}
}

// writerEnded records that no writer will run again, and tells serve.
func (c *conn) writerEnded() {
	c.writer.Store(writerDone)
	close(c.wrote)
}

func (c *conn) isClosing() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

// ping pings the peer every Options.PingInterval on a timer, without a
// goroutine of its own between pings, and closes a connection whose pong
// does not come within Options.PingTimeout.
func (c *conn) ping() {
	opts := &c.hub.opts
	ctx, cancel := context.WithTimeout(context.Background(), opts.PingTimeout)
	err := c.ws.Ping(ctx)
	cancel()
	if c.isClosing() {
		return
	}
	if err != nil {
		c.kill(closePingTimeout)
		return
	}
	c.pingMu.Lock()
	if !c.pingOff {
		c.pingTimer.Reset(opts.PingInterval)
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

// writeBatch writes first and what else is queued as one frame, the
// messages separated by '\n' (protocol.BatchSubprotocol).
func (c *conn) writeBatch(ctx context.Context, first []byte) error {
	bp := framePool.Get().(*[]byte)
	frame := append((*bp)[:0], first...)
	for n := len(c.send); n > 0; n-- {
		frame = append(frame, '\n')
		frame = append(frame, <-c.send...)
	}
	c.hub.metrics.batchedFrames.Inc()
	err := c.ws.Write(ctx, websocket.MessageText, frame)
	if cap(frame) <= maxPooledFrame {
		*bp = frame
		framePool.Put(bp)
	}
	return err
}

// readPump reads and decodes the client's frames and hands them to the hub
// until the connection ends. It reports whether the peer closed cleanly
// (close 1000 or 1001), in which case the user leaves at once.
func (c *conn) readPump(ctx context.Context) (clean bool, why string) {
	for {
		typ, r, err := c.ws.Reader(ctx)
		if err == nil && typ == websocket.MessageBinary {
			c.kill(closeBinary)
			return false, "binary frame"
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
			if _, _, ok := c.killed(); ok {
				return false, c.serverClosed()
			}
			switch status := websocket.CloseStatus(err); {
			case status == websocket.StatusNormalClosure || status == websocket.StatusGoingAway:
				return true, "client closed (" + status.String() + ")"
			case errors.Is(err, websocket.ErrMessageTooBig):
				c.hub.metrics.closes.WithLabelValues("too_big").Inc()
				return false, "frame too large"
			case status != -1:
				return false, "client closed (" + status.String() + ")"
			}
			return false, "connection lost"
		}
		ok := c.handle(buf.Bytes())
		if buf.Cap() <= maxPooledFrame {
			readPool.Put(buf)
		}
		if !ok {
			return false, c.serverClosed()
		}
	}
}

// serverClosed says why the server closed c, for the disconnect log line.
func (c *conn) serverClosed() string {
	if c.closeWhy.code == 0 {
		return c.closeWhy.text
	}
	return c.closeWhy.text + " (" + websocket.StatusCode(c.closeWhy.code).String() + ")"
}

// handle decodes one frame, applies the connection's rate limits and hands
// the message to the hub. It reports false when the connection must stop
// reading.
func (c *conn) handle(b []byte) bool {
	h := c.hub
	now := time.Now()
	m, err := protocol.Decode(b)
	if err == nil && m.Type == protocol.TypeCursorUpdate {
		h.metrics.in(m.Type)
		if c.cursor.offer(m, now) {
			h.metrics.cursorCoalesced.Inc()
		}
		return true
	}
	if !c.msgLimiter.AllowN(now, 1) {
		h.metrics.rateLimited.Inc()
		if now.Sub(c.lastRefusal) > abuseGap {
			c.abuseStart = now
		}
		c.lastRefusal = now
		if now.Sub(c.abuseStart) >= h.opts.AbuseWindow {
			c.kill(closeRateAbuse)
			return false
		}
		h.metrics.out(protocol.TypeError, 1)
		return h.submit(inbound{c: c, at: now, optional: true, reply: protocol.EncodeError(m.Ref,
			protocol.Errorf(protocol.CodeRateLimited, "over %g messages per second", h.opts.MessageRate))})
	}
	if err != nil {
		h.metrics.in("invalid")
		h.metrics.out(protocol.TypeError, 1)
		return h.submit(inbound{c: c, at: now, reply: protocol.EncodeError(m.Ref, err)})
	}
	h.metrics.in(m.Type)
	if m.Type == protocol.TypeJoinSession || m.Type == protocol.TypeLeaveSession {
		// A waiting cursor update belongs to the session it was sent in:
		// deliver it there before the membership changes.
		c.cursor.flushNow(now)
	}
	in := inbound{c: c, msg: m, at: now}
	if m.Type == protocol.TypePing {
		b, err := protocol.Encode(protocol.TypePong, m.Ref, m.Payload)
		if err != nil {
			b = protocol.EncodeError(m.Ref, err)
		}
		in.reply = b
	}
	return h.submit(in)
}

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
