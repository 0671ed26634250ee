package hub

// A connection's code is split by the goroutine that runs it:
//
//   - conn.go (this file): the conn type, its fields grouped by owner, and
//     its lifecycle: newConn and admitted on the upgrade's goroutine
//     (ServeWS, ServeSSE), then serve on the connection's serving
//     goroutine, which is its reader until reading ends and then tears the
//     connection down. The helpers marked "run's" run on the hub's run
//     loop.
//   - reader.go: the reader (readPump, readFrames, handle), on the serving
//     goroutine and the short-lived goroutine of each burst of reads.
//   - writer.go: the send queue's writer (writePump, write), on a goroutine
//     of its own while there is something to write; under a write delay,
//     the hub's flusher (flusher.go) writes the frame due at a delay's end.
//   - pinger.go: pings, on the ping timer's goroutine; pongs.
//   - close.go: why and how the server closes a connection (kill, drop),
//     from any goroutine; the writer writes the close.
//   - cursorgate.go: the cursor gate, on the reader and its timer.
//   - transport.go: what differs between a WebSocket and an SSE stream
//     (sse.go); a WebSocket's fast path is hub/internal/wsfast.

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/sessionhub/sessionhub/hub/internal/wsfast"
	"github.com/sessionhub/sessionhub/protocol"
)

// conn is one connection: a WebSocket or an SSE stream (its transport,
// transport.go). Its reader (serve and its transport's read) runs from the
// upgrade on; its writer (writePump) runs on a goroutine of its own while
// there is something to write; both talk to the hub's run loop over
// channels. Everything but how bytes come and go (the queue, the writer,
// pings, closes, rate limits, lifetimes) is the same for both. A
// WebSocket's data frames, pings and pongs are the hub's own (the fast
// path, hub/internal/wsfast); the WebSocket library does the rest.
//
// Its fields are grouped by the goroutine that owns them.
type conn struct {
	// Set when the connection is made (newConn, admitted, ServeWS or
	// ServeSSE), before it is served; read-only after, on any goroutine.
	id    uint64
	hub   *Hub
	tr    transport       // a WebSocket (wsTransport) or an SSE stream (*sseTransport)
	ws    *websocket.Conn // WebSocket only
	out   *wsfast.Out     // WebSocket only: the hijacked TCP connection's writing end
	batch bool            // the peer negotiated protocol.BatchSubprotocol
	// delay is set for a batch connection under Options.WriteDelay: its
	// writer writes when run says the delay is over (flushDue) or when the
	// send channel is full, not as soon as something is queued.
	delay bool
	start time.Time
	addr  string
	ip    string // the remote address without its port, for the per-IP limit
	// tokenUser is the sub of the token the connection was accepted with
	// (a refreshed token has the same), for the log lines and to check
	// the token of a stream's sends.
	tokenUser string

	// The send queue and its writer (writer.go). run, the pinger and the
	// closer ask through these; the writer, started by startWriter, does.
	//
	// send is the head of the send queue: run puts encoded messages on it
	// without blocking, the writer drains it.
	send chan []byte
	// writer is the writer's state (writerIdle, …); writersDone is closed
	// when the last writer ended with the connection.
	writer      atomic.Int32
	writersDone chan struct{}
	// pingDue asks the writer to send a ping (the pinger sets it).
	pingDue atomic.Bool
	// flushDue asks the writer of a delay connection to write what is
	// queued (run's flushDelayed, or a full queue).
	flushDue atomic.Bool
	// backlogged is set by run while it holds a backlog for the connection;
	// the writer then tells run (Hub.drained) when it has emptied send.
	backlogged atomic.Bool
	// queued mirrors len(backlog) for the send-queue metrics: run stores
	// it, a metrics scrape loads it.
	queued atomic.Int32
	// mark is when the event of the oldest message queued since the last
	// frame was written entered the hub (Hub.markOf), 0 for none: run sets
	// it, the writer takes it (Hub.delivered).
	mark atomic.Int64

	// The pinger's (pinger.go), guarded by pingMu. pingTimer runs ping: it
	// sends the next ping or, while a ping is out (pingOut), ends the wait
	// for its pong. pingOff, once set, keeps it from being re-armed.
	pingMu    sync.Mutex
	pingTimer *time.Timer
	pingOut   bool
	pingOff   bool
	pongs     atomic.Uint32 // pongs received, for tests

	// The closer's (close.go): set once, under closeOnce, by the first
	// kill; closing is closed then, and closeWhy and closeTimer are read
	// only after it is.
	closeOnce  sync.Once
	closing    chan struct{}
	closeWhy   closeReason
	closeTimer *time.Timer

	// Owned by run, not thread-safe.
	//
	// identity is from the token in token mode, nil in open mode: set
	// before serve, then run's (refresh-token replaces it). expiry closes
	// the connection with 4001 at its token's exp: serve sets it before
	// reading, run re-arms it when the token is refreshed (rearmExpiry).
	//
	// joining is a join that waits for the other nodes (a cluster's), with
	// what arrived meanwhile: only such a connection needs its fields.
	identity   *identity
	expiry     *time.Timer
	joining    *pendingJoin
	room       *room
	userID     string
	presence   protocol.Presence
	idx        int      // index in room.conns
	backlog    [][]byte // the send queue past send, allocated while needed
	replayRoom int      // extra queue room for a recovery replay, until the backlog drains
	ended      bool     // run will deliver nothing more to it
	delayed    bool     // a delay connection waiting in run's delay queue
	// runSeq is the seq of the last membership message run handled
	// (inbound.seq); markRoom tells the reader through roomSeq.
	runSeq uint64

	// Owned by the reader (reader.go), not thread-safe: a WebSocket's
	// serving goroutine and its bursts (one at a time), or a stream's
	// sends (under sseTransport.sendMu).
	//
	// wire is the shallow reader of a WebSocket (wsfast): it waits for the
	// next bytes and takes pongs between messages, and the writer locks it
	// around the close handshake. burstEnd carries the end of a
	// readFrames.
	wire        wsfast.Reader
	burstEnd    chan readEnd
	msgLimiter  *rate.Limiter // also used by pingReceived; rate.Limiter locks itself
	joinLimiter *rate.Limiter // join-session and leave-session (Options.JoinRate)
	refusals    *refusals     // nil until msgLimiter first refuses a message
	cursor      cursorGate    // locks itself: its timer flushes too
	// memberSeq counts the join-session and leave-session messages the
	// reader handed to run (inbound.seq).
	memberSeq uint64

	// Shared: each written by one goroutine, read by others.
	//
	// joined is set by run when the connection is first in a session; the
	// handshake timer (serve) reads it.
	joined atomic.Bool
	// roomSeq is set by run for the reader: the memberSeq of the join that
	// put the connection in its session, 0 while it is in none. The reader
	// coalesces cursor updates only while it equals memberSeq (no
	// membership change in flight): outside a session each one gets its
	// own not_in_session.
	roomSeq atomic.Uint64
	// member is the session and user of the connection's last join, set
	// by run for the disconnect log line (nil before any, and after a
	// leave-session).
	member atomic.Pointer[memberLog]
	// refusedAt is when the reader last refused a message over the rate
	// (unix ns), for run: a queue that overflows while its connection
	// floods is closed for the abuse (1008), not as a slow consumer.
	refusedAt atomic.Int64
	// pingAbuseStart and lastPingRefusal (Unix nanoseconds) are the
	// refusals' abuseStart and lastRefusal for WebSocket pings (pingReceived), which the library
	// may read on the reader or, during a close handshake, on the writer.
	pingAbuseStart  atomic.Int64
	lastPingRefusal atomic.Int64
}

// refusals is how long a connection's reader has refused its messages over
// the rate: since abuseStart, the last at lastRefusal. Only a connection
// that went over the rate has one.
type refusals struct {
	abuseStart  time.Time
	lastRefusal time.Time
}

// memberLog is who a connection is, for its log lines.
type memberLog struct{ session, user string }

// newConn makes a connection over tr from the remote address addr; delay
// is set for a batch WebSocket under Options.WriteDelay (see conn.delay).
// The caller sets what its transport needs.
func (h *Hub) newConn(tr transport, addr string, delay bool) *conn {
	chanSize := sendChanSize
	if delay {
		chanSize = delayedChanSize
	}
	c := &conn{
		id:          h.nextID.Add(1),
		hub:         h,
		tr:          tr,
		start:       time.Now(),
		addr:        addr,
		delay:       delay,
		send:        make(chan []byte, min(chanSize, h.opts.SendQueue)),
		closing:     make(chan struct{}),
		writersDone: make(chan struct{}),
		msgLimiter:  rate.NewLimiter(rate.Limit(h.opts.MessageRate), h.opts.MessageBurst),
		joinLimiter: rate.NewLimiter(rate.Limit(h.opts.JoinRate), h.opts.JoinBurst),
	}
	c.cursor = cursorGate{
		limiter: rate.NewLimiter(rate.Limit(h.opts.CursorRate), 1),
		forward: func(m protocol.Message, at time.Time) bool {
			return h.submit(inbound{c: c, msg: m, at: at})
		},
	}
	return c
}

// admitted gives c what admitRequest found: the slot of its address (ip)
// and its token's identity (nil in open mode).
func (c *conn) admitted(ip string, id *identity) {
	c.ip, c.identity = ip, id
	if id != nil {
		c.tokenUser = id.userID
	}
}

// connKey is the context key under which the reader's context holds its
// conn, for the library's OnPongReceived.
type connKey struct{}

// serve runs a connection on its serving goroutine (ServeWS's, or
// ServeSSE's handler goroutine): its reader here (its transport's read), its writer on a
// goroutine of its own while there is something to write (startWriter),
// its pings on a timer (startPings). Once reading ends it stops the
// pings, has the writer close the connection (or end), waits for it, and
// hands the departure to run.
//
// An idle connection's goroutine waits in read with serve's frame below
// it, so serve keeps that frame small: what comes before reading (arm)
// and after (teardown) has frames of its own, gone while the connection
// waits. With serve's frame of the whole, the wait took more than a
// 2 KiB stack holds, and every connection's stack grew to 4 KiB
// (BENCHMARKS.md, "What an idle connection holds").
func (h *Hub) serve(c *conn) {
	// The reader's context is never done (the reader ends when the
	// connection does), so that the library registers no cancellation per
	// read; it names the connection for OnPongReceived.
	ctx := context.WithValue(context.Background(), connKey{}, c)
	handshake := c.arm()
	end := c.tr.read(ctx, c)
	h.teardown(c, end, handshake)
}

// arm starts c's timers, on serve before reading: the pings, the
// handshake timeout it returns (teardown stops it) and, for a token
// connection, its expiry.
//
//go:noinline
func (c *conn) arm() (handshake *time.Timer) {
	c.startPings()
	handshake = time.AfterFunc(c.hub.opts.HandshakeTimeout, func() {
		if !c.joined.Load() {
			c.kill(closeHandshake)
		}
	})
	if c.identity != nil {
		// Armed for every token connection: refresh-token may give a token
		// with an exp to a connection whose first token had none.
		d := time.Duration(math.MaxInt64) // stopped below: no exp
		if !c.identity.expires.IsZero() {
			d = time.Until(c.identity.expires)
		}
		c.expiry = time.AfterFunc(d, func() { c.kill(closeTokenExpired) })
		if c.identity.expires.IsZero() {
			c.expiry.Stop()
		}
	}
	return handshake
}

// teardown ends c once reading has ended (end), on serve: it stops the
// pings, has the writer close the connection (or end), waits for it,
// hands the departure to run, logs it, and stops the timers arm started.
//
//go:noinline
func (h *Hub) teardown(c *conn, end readEnd, handshake *time.Timer) {
	defer handshake.Stop()
	if c.expiry != nil {
		defer c.expiry.Stop()
	}
	c.cursor.stop()
	c.stopPings()
	c.closeOnce.Do(func() { close(c.closing) }) // the writer stops if nobody asked
	c.startWriter()
	<-c.writersDone
	if c.closeTimer != nil {
		c.closeTimer.Stop()
	}
	c.drop() // the writer is done: nothing more goes out
	select {
	case h.departures <- departure{c: c, clean: end.clean}:
	case <-h.done:
	}
	h.metrics.closed(c.tr.name())
	h.log.Info("disconnect", append([]any{"conn", c.id, "transport", c.tr.name(), "remote", c.addr},
		append(c.logAttrs(), "code", int(end.code), "reason", end.why, "clean", end.clean,
			"duration", time.Since(c.start).Round(time.Millisecond))...)...)
}

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

// rearmExpiry makes the connection expire at exp (never for a zero exp),
// unless its old expiry has closed it already: a token refreshed too late
// does not undo a 4001. It is run's (refresh-token).
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
