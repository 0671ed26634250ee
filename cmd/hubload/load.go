package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionhub/sessionhub/protocol"
)

// histShards spreads latency recording over several locks.
const histShards = 16

// Latency histograms hold microseconds from 1 µs to 10 minutes.
const (
	histMin = 1
	histMax = int64(10 * time.Minute / time.Microsecond)
)

type shard struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

// counters are the running totals; the window's figures are differences of
// snapshots taken at its start and end.
type counters struct {
	sent          atomic.Int64 // every message written after the join
	cursorSent    atomic.Int64
	bcastSent     atomic.Int64
	received      atomic.Int64 // every server message, after splitting batches
	frames        atomic.Int64
	cursorRecv    atomic.Int64
	bcastRecv     atomic.Int64
	windowSent    atomic.Int64 // cursor updates sent inside the window
	windowExpect  atomic.Int64 // their expected deliveries
	windowDeliver atomic.Int64 // cursor-moved received whose send time is inside the window
	late          atomic.Int64 // cursor-moved without a parsable send time
}

type load struct {
	c        *config
	progress io.Writer
	users    []*user
	clients  []*http.Client

	// Window bounds in unix nanoseconds; 0 until known.
	winStart atomic.Int64
	winEnd   atomic.Int64
	stopping atomic.Bool // our own closes are not errors

	n       counters
	conns   atomic.Int64 // open connections
	joined  []atomic.Int64
	shards  [histShards]shard
	connMu  sync.Mutex
	connect *hdrhistogram.Histogram // dial + upgrade, µs
	join    *hdrhistogram.Histogram // join-session sent to session-joined read, µs (under connMu)
	connOK  atomic.Int64
	connBad atomic.Int64

	errMu  sync.Mutex
	errors map[string]int64
	closes map[string]int64
}

func newLoad(c *config, progress io.Writer) *load {
	l := &load{
		c:        c,
		progress: progress,
		joined:   make([]atomic.Int64, c.sessions),
		connect:  hdrhistogram.New(histMin, histMax, 3),
		join:     hdrhistogram.New(histMin, histMax, 3),
		errors:   map[string]int64{},
		closes:   map[string]int64{},
	}
	for i := range l.shards {
		l.shards[i].h = hdrhistogram.New(histMin, histMax, 3)
	}
	srcs := c.sourceAddrs
	if len(srcs) == 0 {
		srcs = []net.IP{nil}
	}
	for _, ip := range srcs {
		d := &net.Dialer{Timeout: c.connectTimeout, KeepAlive: -1, Control: bindNoPort}
		if ip != nil {
			d.LocalAddr = &net.TCPAddr{IP: ip}
		}
		l.clients = append(l.clients, &http.Client{Transport: &http.Transport{
			Proxy:               nil, // loopback only: never through a proxy
			DialContext:         d.DialContext,
			MaxIdleConns:        1,
			DisableCompression:  true,
			TLSHandshakeTimeout: c.connectTimeout,
		}})
	}
	n := 0
	for s := 0; s < c.sessions; s++ {
		for i := 0; i < c.clients; i++ {
			u := &user{
				l:      l,
				idx:    n,
				sess:   s,
				id:     fmt.Sprintf("u%d-%d", s, i),
				sessID: fmt.Sprintf("%s-%d", c.sessionPrefix, s),
				url:    c.urls[n%len(c.urls)],
				hc:     l.clients[n%len(l.clients)],
				role:   protocol.RoleLearner,
			}
			if i == 0 {
				u.role = protocol.RoleInstructor
			}
			l.users = append(l.users, u)
			n++
		}
	}
	return l
}

func (l *load) countError(key string) {
	l.errMu.Lock()
	l.errors[key]++
	l.errMu.Unlock()
}

func (l *load) countClose(code websocket.StatusCode) {
	key := strconv.Itoa(int(code))
	if code == -1 {
		key = "1006" // no close frame: the connection just ended
	}
	l.errMu.Lock()
	l.closes[key]++
	l.errMu.Unlock()
}

// inWindow reports whether the unix-ns time t falls inside the measured window.
func (l *load) inWindow(t int64) bool {
	s := l.winStart.Load()
	if s == 0 || t < s {
		return false
	}
	e := l.winEnd.Load()
	return e == 0 || t < e
}

// run drives the phases and returns the summary.
func (l *load) run(ctx context.Context) *summary {
	c := l.c
	sum := &summary{}
	sum.setConfig(c)
	srv0 := readProcs(c.serverPIDs)
	start := time.Now()

	stop := make(chan struct{}) // closed when the users must close
	var ready, done sync.WaitGroup
	traffic := make(chan struct{}) // closed when traffic may start (never in idle mode)

	prog := newProgress(l, start)
	progDone := make(chan struct{})
	progStop := make(chan struct{})
	go func() { defer close(progDone); prog.loop(progStop) }()

	// Connect phase.
	prog.setPhase("connect")
	interrupted := false
	for i, u := range l.users {
		if c.ramp > 0 {
			at := start.Add(time.Duration(float64(i) / c.ramp * float64(time.Second)))
			if d := time.Until(at); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
				}
			}
		}
		if ctx.Err() != nil {
			interrupted = true
			break
		}
		ready.Add(1)
		done.Add(1)
		go u.run(ctx, &ready, &done, traffic, stop)
	}
	waitOrCtx(ctx, &ready)
	sum.ConnectSeconds = time.Since(start).Seconds()

	// Warm-up, then the window.
	if !c.idle {
		close(traffic)
	}
	prog.setPhase("warmup")
	sleepCtx(ctx, c.warmup)
	srv1 := readProcs(c.serverPIDs)
	cpu1 := selfCPU()
	n1 := l.snapshot()
	w0 := time.Now()
	l.winStart.Store(w0.UnixNano())
	prog.setPhase("measure")
	sleepCtx(ctx, c.duration)
	w1 := time.Now()
	l.winEnd.Store(w1.UnixNano())
	n2 := l.snapshot()
	cpu2 := selfCPU()
	srv2 := readProcs(c.serverPIDs)

	// Drain: wait for the deliveries of what was sent inside the window.
	prog.setPhase("drain")
	drainEnd := time.Now().Add(c.drain)
	for time.Now().Before(drainEnd) && ctx.Err() == nil && l.n.windowDeliver.Load() < l.n.windowExpect.Load() {
		time.Sleep(20 * time.Millisecond)
	}

	// Close.
	prog.setPhase("close")
	l.stopping.Store(true)
	close(stop)
	closed := make(chan struct{})
	go func() { done.Wait(); close(closed) }()
	<-closed // each Close gives up after 5 s of waiting for the close handshake
	close(progStop)
	<-progDone
	for _, hc := range l.clients {
		hc.CloseIdleConnections()
	}
	if ctx.Err() != nil {
		interrupted = true
	}
	l.fill(sum, n1, n2, w1.Sub(w0), cpu2-cpu1)
	sum.Interrupted = interrupted
	if len(c.serverPIDs) > 0 {
		sum.setServers(c.serverPIDs, srv0, srv1, srv2, sum.Connect.OK)
	}
	return sum
}

type snapshot struct {
	sent, cursorSent, bcastSent, received, frames, cursorRecv, bcastRecv int64
}

func (l *load) snapshot() snapshot {
	return snapshot{
		sent: l.n.sent.Load(), cursorSent: l.n.cursorSent.Load(), bcastSent: l.n.bcastSent.Load(),
		received: l.n.received.Load(), frames: l.n.frames.Load(),
		cursorRecv: l.n.cursorRecv.Load(), bcastRecv: l.n.bcastRecv.Load(),
	}
}

// mergedLatency merges the shards into one histogram.
func (l *load) mergedLatency() *hdrhistogram.Histogram {
	h := hdrhistogram.New(histMin, histMax, 3)
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		h.Merge(s.h)
		s.mu.Unlock()
	}
	return h
}

func waitOrCtx(ctx context.Context, wg *sync.WaitGroup) {
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// user is one simulated participant: one connection, one session.
type user struct {
	l      *load
	idx    int
	sess   int
	id     string
	sessID string
	url    string
	hc     *http.Client
	role   protocol.Role

	joined chan struct{} // closed by the reader on session-joined
}

func (u *user) token() (string, error) {
	c := u.l.c
	exp := time.Now().Add(c.warmup + c.duration + c.connectTimeout + time.Hour)
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub":  u.id,
		"name": u.id,
		"role": string(u.role),
		"exp":  exp.Unix(),
	})
	return t.SignedString([]byte(c.jwtSecret))
}

// dialError names a failed dial for the error counts.
func dialError(err error, resp *http.Response) string {
	var ne net.Error
	switch {
	case resp != nil:
		return "connect_http_" + strconv.Itoa(resp.StatusCode)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "connect_timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connect_refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connect_reset"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "connect_addr_not_available"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "connect_too_many_open_files"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connect_eof"
	}
	return "connect_other"
}

// run dials, joins and then sends until stop; ready is done once the user
// has joined or failed, done once its connection is closed.
func (u *user) run(ctx context.Context, ready, done *sync.WaitGroup, traffic, stop <-chan struct{}) {
	defer done.Done()
	l, c := u.l, u.l.c
	readyOnce := sync.OnceFunc(ready.Done)
	defer readyOnce()

	opts := &websocket.DialOptions{HTTPClient: u.hc, CompressionMode: websocket.CompressionDisabled}
	if c.batch {
		opts.Subprotocols = []string{protocol.BatchSubprotocol}
	}
	if c.jwtSecret != "" {
		tok, err := u.token()
		if err != nil {
			l.countError("token")
			l.connBad.Add(1)
			return
		}
		opts.HTTPHeader = http.Header{"Authorization": {"Bearer " + tok}}
	}
	t0 := time.Now()
	dctx, cancel := context.WithTimeout(ctx, c.connectTimeout)
	ws, resp, err := websocket.Dial(dctx, u.url, opts)
	cancel()
	if err != nil {
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		l.connBad.Add(1)
		l.countError(dialError(err, resp))
		return
	}
	el := time.Since(t0)
	l.connOK.Add(1)
	l.conns.Add(1)
	defer l.conns.Add(-1)
	l.connMu.Lock()
	_ = l.connect.RecordValue(max(el.Microseconds(), histMin))
	l.connMu.Unlock()
	ws.SetReadLimit(4 << 20)
	// Reads and writes take a context that is never done: coder/websocket
	// then sets up no per-call cancellation (an AfterFunc per frame), and
	// closing stays ours to do, cleanly, at stop (ctx being done leads there).
	ctx = context.Background()

	u.joined = make(chan struct{})
	readDone := make(chan struct{})
	go u.read(ctx, ws, readDone)

	join, _ := protocol.Encode(protocol.TypeJoinSession, "j", protocol.JoinSession{
		SessionID: u.sessID,
		UserInfo:  protocol.UserInfo{UserID: u.id, Name: u.id, Role: u.role},
		Presence:  c.presence,
	})
	if err := ws.Write(ctx, websocket.MessageText, join); err != nil {
		l.countError("write")
	} else {
		jt := time.NewTimer(c.connectTimeout)
		j0 := time.Now()
		select {
		case <-u.joined:
			el := time.Since(j0)
			l.connMu.Lock()
			_ = l.join.RecordValue(max(el.Microseconds(), histMin))
			l.connMu.Unlock()
		case <-readDone:
		case <-stop:
		case <-jt.C:
			l.countError("join_timeout")
		}
		jt.Stop()
	}
	readyOnce()

	select {
	case <-u.joined:
		u.send(ctx, ws, traffic, stop, readDone)
	default:
	}
	select {
	case <-stop:
	case <-readDone:
	}
	_ = ws.Close(websocket.StatusNormalClosure, "")
	<-readDone
}

// send writes cursor updates and broadcasts at their rates until stop.
func (u *user) send(ctx context.Context, ws *websocket.Conn, traffic, stop, readDone <-chan struct{}) {
	l, c := u.l, u.l.c
	select {
	case <-traffic:
	case <-stop:
		return
	case <-readDone:
		return
	}
	type ticker struct {
		every time.Duration
		next  time.Time
	}
	now := time.Now()
	var cur, bc ticker
	if c.cursorRate > 0 {
		cur.every = time.Duration(float64(time.Second) / c.cursorRate)
		cur.next = now.Add(time.Duration(rand.Int64N(int64(cur.every)))) // random phase
	}
	if c.broadcastRate > 0 {
		bc.every = time.Duration(float64(time.Second) / c.broadcastRate)
		bc.next = now.Add(time.Duration(rand.Int64N(int64(bc.every))))
	}
	if cur.every == 0 && bc.every == 0 {
		return
	}
	const curPrefix = `{"type":"cursor-update","data":{"line":`
	buf := make([]byte, 0, 128)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	seq := 0
	for {
		next := cur.next
		isCur := cur.every > 0
		if bc.every > 0 && (!isCur || bc.next.Before(next)) {
			next, isCur = bc.next, false
		}
		timer.Reset(time.Until(next))
		select {
		case <-timer.C:
		case <-stop:
			return
		case <-readDone:
			return
		}
		seq++
		now := time.Now()
		ns := now.UnixNano()
		if l.winEnd.Load() != 0 { // the window is over: stop sending
			return
		}
		buf = buf[:0]
		if isCur {
			cur.next = cur.next.Add(cur.every)
			if cur.next.Before(now) { // fell behind: do not burst
				cur.next = now.Add(cur.every)
			}
			buf = append(buf, curPrefix...)
			buf = strconv.AppendInt(buf, int64(seq%10_000), 10)
			buf = append(buf, `,"column":`...)
			buf = strconv.AppendInt(buf, int64(u.idx%1000), 10)
			buf = append(buf, `,"file":"t/`...)
			buf = strconv.AppendInt(buf, ns, 10)
			buf = append(buf, `"}}`...)
		} else {
			bc.next = bc.next.Add(bc.every)
			if bc.next.Before(now) {
				bc.next = now.Add(bc.every)
			}
			buf = append(buf, `{"type":"broadcast","data":{"event":"load","payload":{"t":`...)
			buf = strconv.AppendInt(buf, ns, 10)
			buf = append(buf, `}}}`...)
		}
		if err := ws.Write(ctx, websocket.MessageText, buf); err != nil {
			if !l.stopping.Load() {
				l.countError("write")
			}
			return
		}
		l.n.sent.Add(1)
		if isCur {
			l.n.cursorSent.Add(1)
			if l.inWindow(ns) {
				l.n.windowSent.Add(1)
				l.n.windowExpect.Add(l.joined[u.sess].Load() - 1)
			}
		} else {
			l.n.bcastSent.Add(1)
		}
	}
}

// read consumes server messages until the connection ends.
func (u *user) read(ctx context.Context, ws *websocket.Conn, done chan<- struct{}) {
	defer close(done)
	l := u.l
	joined := false
	defer func() {
		if joined {
			l.joined[u.sess].Add(-1)
		}
	}()
	sh := &l.shards[u.idx%histShards]
	buf := make([]byte, 0, 512)
	for {
		_, r, err := ws.Reader(ctx)
		if err == nil {
			buf, err = readAll(r, buf[:0])
		}
		if err != nil {
			if !l.stopping.Load() {
				code := websocket.CloseStatus(err)
				l.countClose(code)
			}
			return
		}
		now := time.Now().UnixNano()
		l.n.frames.Add(1)
		for m := range protocol.SplitBatch(buf) {
			l.n.received.Add(1)
			kind, v := scan(m)
			switch kind {
			case kindCursorMoved:
				l.n.cursorRecv.Add(1)
				if v <= 0 {
					l.n.late.Add(1)
					continue
				}
				if l.inWindow(v) {
					l.n.windowDeliver.Add(1)
					us := max((now-v)/1000, histMin)
					sh.mu.Lock()
					_ = sh.h.RecordValue(min(us, histMax))
					sh.mu.Unlock()
				}
			case kindBroadcast:
				l.n.bcastRecv.Add(1)
			case kindSessionJoined:
				if !joined {
					joined = true
					l.joined[u.sess].Add(1)
					close(u.joined)
				}
			case kindError:
				l.countError("server_" + errorCode(m))
			}
		}
	}
}

// readAll reads r to its end into buf, growing it as needed.
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

type msgKind int

const (
	kindOther msgKind = iota
	kindCursorMoved
	kindSessionJoined
	kindBroadcast
	kindError
)

var (
	typeKey      = []byte(`"type":"`)
	fileKey      = []byte(`"file":"t/`)
	codeKey      = []byte(`"code":"`)
	cursorMoved  = []byte(`{"type":"cursor-moved"`)
	typeCursor   = []byte("cursor-moved")
	typeJoined   = []byte("session-joined")
	typeBcast    = []byte("broadcast")
	typeErr      = []byte("error")
	maxTimestamp = int64(1) << 62
)

// scan finds the type of one server message and, for cursor-moved, the
// send time hubload put in the cursor's file ("t/<unix ns>"; 0 when there is
// none). It scans bytes and decodes no JSON: the hub writes "type" first, so
// the common case is one prefix comparison and one Index.
func scan(m []byte) (msgKind, int64) {
	var typ []byte
	if bytes.HasPrefix(m, cursorMoved) {
		typ = typeCursor
	} else {
		i := bytes.Index(m, typeKey)
		if i < 0 {
			return kindOther, 0
		}
		rest := m[i+len(typeKey):]
		j := bytes.IndexByte(rest, '"')
		if j < 0 {
			return kindOther, 0
		}
		typ = rest[:j]
	}
	switch {
	case bytes.Equal(typ, typeCursor):
		i := bytes.Index(m, fileKey)
		if i < 0 {
			return kindCursorMoved, 0
		}
		var v int64
		for _, b := range m[i+len(fileKey):] {
			if b < '0' || b > '9' {
				if b != '"' {
					return kindCursorMoved, 0
				}
				break
			}
			if v > maxTimestamp/10 {
				return kindCursorMoved, 0
			}
			v = v*10 + int64(b-'0')
		}
		return kindCursorMoved, v
	case bytes.Equal(typ, typeJoined):
		return kindSessionJoined, 0
	case bytes.Equal(typ, typeBcast):
		return kindBroadcast, 0
	case bytes.Equal(typ, typeErr):
		return kindError, 0
	}
	return kindOther, 0
}

// errorCode is the code of an error message, or "unknown".
func errorCode(m []byte) string {
	i := bytes.Index(m, codeKey)
	if i < 0 {
		return "unknown"
	}
	rest := m[i+len(codeKey):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || j > 64 {
		return "unknown"
	}
	return string(rest[:j])
}
