package hub_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/protocol"
)

// wait is the deadline of every wait for an event.
const wait = 5 * time.Second

// server is a hub behind a real HTTP server.
type server struct {
	*hub.Hub
	ts  *httptest.Server
	url string // ws://.../ws
}

// startServer runs a hub with opts behind httptest and stops both at the
// end of the test.
func startServer(t testing.TB, opts *hub.Options) *server {
	t.Helper()
	return startServerWith(t, opts, nil)
}

// startServerWith is startServer with setup (if not nil) run on the
// httptest server before it starts: to wrap its listener or set its
// http.Server's limits.
func startServerWith(t testing.TB, opts *hub.Options, setup func(*httptest.Server)) *server {
	t.Helper()
	if opts == nil {
		opts = &hub.Options{}
	}
	if opts.Logger == nil {
		opts.Logger = discardLogger()
	}
	h := hub.New(opts)
	ts := httptest.NewUnstartedServer(h.Handler())
	if setup != nil {
		setup(ts)
	}
	ts.Start()
	s := &server{Hub: h, ts: ts, url: "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil && err != hub.ErrShuttingDown {
			t.Errorf("shutdown: %v", err)
		}
		ts.Close()
	})
	return s
}

// peer is a raw WebSocket client that reads every frame into a channel.
type peer struct {
	inbox
	ws  *websocket.Conn
	end chan error // the read error that ended the connection
}

// inbox is what a test client (a WebSocket peer or an SSE stream) has
// received: its reader goroutine puts each server message on msgs and closes
// msgs when the connection ends. Its methods wait for messages with the
// test's deadline.
type inbox struct {
	t     testing.TB
	msgs  chan protocol.Envelope
	ended func() string // after msgs closed: how the connection ended
}

// dial opens a peer to s; it is closed at the end of the test.
func dial(t testing.TB, s *server, opts *websocket.DialOptions) *peer {
	t.Helper()
	return dialURL(t, s.url, opts)
}

// dialURL dials u (a server's url, with a query maybe) with opts and wraps
// the connection as a peer, closed at the end of the test; it fails the
// test if the upgrade is refused.
func dialURL(t testing.TB, u string, opts *websocket.DialOptions) *peer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, u, opts)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (HTTP %d)", err, status)
	}
	ws.SetReadLimit(1 << 20)
	t.Cleanup(func() { ws.CloseNow() })
	return asPeer(t, ws)
}

// dialHTTP dials s with opts and returns the connection (nil on failure),
// the handshake response and the error.
func dialHTTP(t testing.TB, s *server, opts *websocket.DialOptions) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, s.url, opts)
	if ws != nil {
		t.Cleanup(func() { ws.CloseNow() })
	}
	return ws, resp, err
}

// asPeer starts reading a raw connection the harness way.
func asPeer(t testing.TB, ws *websocket.Conn) *peer {
	p := &peer{inbox: inbox{t: t, msgs: make(chan protocol.Envelope, 100000)}, ws: ws, end: make(chan error, 1)}
	p.ended = func() string { return fmt.Sprintf("connection ended: %v", <-p.end) }
	go p.readLoop()
	return p
}

func (p *peer) readLoop() {
	for {
		typ, b, err := p.ws.Read(context.Background())
		if err != nil {
			p.end <- err
			close(p.msgs)
			return
		}
		if typ != websocket.MessageText {
			p.end <- err
			close(p.msgs)
			return
		}
		for _, line := range strings.Split(string(b), "\n") {
			var env protocol.Envelope
			if err := json.Unmarshal([]byte(line), &env); err != nil {
				p.t.Errorf("server sent invalid JSON %q: %v", line, err)
				continue
			}
			p.msgs <- env
		}
	}
}

// send writes one message.
func (p *peer) send(typ string, data any, ref string) {
	p.t.Helper()
	b, err := protocol.Encode(typ, ref, data)
	if err != nil {
		p.t.Fatal(err)
	}
	p.sendRaw(b)
}

func (p *peer) sendRaw(b []byte) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := p.ws.Write(ctx, websocket.MessageText, b); err != nil {
		p.t.Fatalf("write: %v", err)
	}
}

// next returns the next message, failing the test after the deadline.
func (p *inbox) next() protocol.Envelope {
	p.t.Helper()
	select {
	case m, ok := <-p.msgs:
		if !ok {
			p.t.Fatalf("%s while waiting for a message", p.ended())
		}
		return m
	case <-time.After(wait):
		p.t.Fatal("no message within the deadline")
	}
	return protocol.Envelope{}
}

// expect returns the next message of type typ, decoded into data (if not
// nil), failing on any message of another type before it.
func (p *inbox) expect(typ string, data any) protocol.Envelope {
	p.t.Helper()
	m := p.next()
	if m.Type != typ {
		p.t.Fatalf("got %s %s, want %s", m.Type, m.Data, typ)
	}
	if data != nil {
		if err := json.Unmarshal(m.Data, data); err != nil {
			p.t.Fatalf("decode %s: %v", typ, err)
		}
	}
	return m
}

// skipUntil returns the first message of type typ, dropping others.
func (p *inbox) skipUntil(typ string, data any) protocol.Envelope {
	p.t.Helper()
	m := p.skipUntilAny(typ)
	if data != nil {
		if err := json.Unmarshal(m.Data, data); err != nil {
			p.t.Fatalf("decode %s: %v", typ, err)
		}
	}
	return m
}

// skipUntilAny returns the first message of one of types, dropping others.
func (p *inbox) skipUntilAny(types ...string) protocol.Envelope {
	p.t.Helper()
	return p.skipUntilMatch(fmt.Sprint(types), func(m protocol.Envelope) bool { return slices.Contains(types, m.Type) })
}

// skipUntilMatch returns the first message of p for which match is true,
// dropping the others, and fails after the deadline.
func (p *inbox) skipUntilMatch(what string, match func(protocol.Envelope) bool) protocol.Envelope {
	p.t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case m, ok := <-p.msgs:
			if !ok {
				p.t.Fatalf("%s while waiting for %s", p.ended(), what)
			}
			if match(m) {
				return m
			}
		case <-deadline:
			p.t.Fatalf("no %s within the deadline", what)
		}
	}
}

// closed waits for the connection to end and returns its close status (-1
// when it ended without a close frame).
func (p *peer) closed() websocket.StatusCode {
	p.t.Helper()
	deadline := time.After(wait + 10*time.Second)
	for {
		select {
		case _, ok := <-p.msgs:
			if !ok {
				return websocket.CloseStatus(<-p.end)
			}
		case <-deadline:
			p.t.Fatal("connection still open after the deadline")
		}
	}
}

// join sends join-session and returns the session-joined reply.
func (p *peer) join(sessionID, userID, name string, role protocol.Role) protocol.SessionJoined {
	p.t.Helper()
	p.send(protocol.TypeJoinSession, protocol.JoinSession{SessionID: sessionID,
		UserInfo: protocol.UserInfo{UserID: userID, Name: name, Role: role}}, "j")
	var sj protocol.SessionJoined
	p.expect(protocol.TypeSessionJoined, &sj)
	return sj
}

// sync does a ping round trip: every message the server queued for p
// before the pong has been read when it returns.
func (p *peer) sync() {
	p.t.Helper()
	p.send(protocol.TypePing, map[string]any{"sync": true}, "sync")
	p.skipUntil(protocol.TypePong, nil)
}

// strictSync does a ping round trip and fails on any message before the
// pong: nothing was queued for p.
func (p *peer) strictSync() {
	p.t.Helper()
	p.send(protocol.TypePing, map[string]any{"strict": true}, "strict-sync")
	p.expect(protocol.TypePong, nil)
}

// collect does a ping round trip and returns every message that arrived
// before the pong (the pong excluded). Because the run loop handles one
// message at a time, everything the hub queued for p before it handled the
// ping is in the result.
func (p *peer) collect() []protocol.Envelope {
	p.t.Helper()
	ref := "collect-" + uuid.NewString()
	p.send(protocol.TypePing, map[string]any{"collect": true}, ref)
	var got []protocol.Envelope
	deadline := time.After(wait)
	for {
		select {
		case m, ok := <-p.msgs:
			if !ok {
				p.t.Fatalf("connection ended while collecting: %v", <-p.end)
			}
			if m.Type == protocol.TypePong && m.Ref == ref {
				return got
			}
			got = append(got, m)
		case <-deadline:
			p.t.Fatal("no pong within the deadline while collecting")
		}
	}
}

// quiet fails if any message of one of types is queued for p.
func (p *peer) quiet(what string, types ...string) {
	p.t.Helper()
	for _, m := range p.collect() {
		for _, typ := range types {
			if m.Type == typ {
				p.t.Fatalf("%s: unexpected %s %s", what, m.Type, m.Data)
			}
		}
	}
}

// expectError reads the next message, which must be an error with code and
// ref.
func (p *peer) expectError(code protocol.Code, ref string) protocol.ErrorPayload {
	p.t.Helper()
	var e protocol.ErrorPayload
	env := p.expect(protocol.TypeError, &e)
	if e.Code != code {
		p.t.Fatalf("error code = %q (%s), want %q", e.Code, e.Message, code)
	}
	if e.Message == "" {
		p.t.Errorf("error %s has no message", code)
	}
	if env.Ref != ref {
		p.t.Errorf("error %s ref = %q, want %q", code, env.Ref, ref)
	}
	return e
}

// get fetches an HTTP path of s.
func (s *server) get(t testing.TB, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(s.ts.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body) // what was read before an error
	return resp.StatusCode, string(b)
}

// ---------------------------------------------------------------------------
// Decoding and matching messages.

// decode decodes a message's data, failing the test on error.
func decode(t testing.TB, m protocol.Envelope, v any) {
	t.Helper()
	if err := json.Unmarshal(m.Data, v); err != nil {
		t.Fatalf("decode %s %s: %v", m.Type, m.Data, err)
	}
}

// decodeBroadcast decodes a broadcast envelope.
func decodeBroadcast(t testing.TB, m protocol.Envelope) protocol.BroadcastEvent {
	t.Helper()
	if m.Type != protocol.TypeBroadcast {
		t.Fatalf("got %s %s, want broadcast", m.Type, m.Data)
	}
	var ev protocol.BroadcastEvent
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

// ids returns the userIds of ps in order.
func ids(ps []protocol.Participant) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.UserID
	}
	return out
}

// sameIDs reports whether got lists exactly the users want, in that order.
func sameIDs(got []protocol.Participant, want ...string) bool {
	return slices.Equal(ids(got), want)
}

// isUserLeft matches a user-left of userID.
func isUserLeft(userID string) func(protocol.Envelope) bool {
	return func(m protocol.Envelope) bool {
		if m.Type != protocol.TypeUserLeft {
			return false
		}
		var ul protocol.UserLeft
		return json.Unmarshal(m.Data, &ul) == nil && ul.UserID == userID
	}
}

// isActivity matches a user-activity-changed of userID to active.
func isActivity(userID string, active bool) func(protocol.Envelope) bool {
	return func(m protocol.Envelope) bool {
		if m.Type != protocol.TypeUserActivityChanged {
			return false
		}
		var ac protocol.UserActivityChanged
		return json.Unmarshal(m.Data, &ac) == nil && ac.UserID == userID && ac.IsActive == active
	}
}

// eventNames returns the event names of evs in order.
func eventNames(evs []protocol.BroadcastEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Event
	}
	return out
}

// ---------------------------------------------------------------------------
// Broadcasts and recovery.

// recoveryOpts are the options of the recovery tests: a leave grace that outlasts
// every drop, and rates that never refuse a test's bursts of broadcasts.
func recoveryOpts() *hub.Options {
	return &hub.Options{LeaveGrace: 5 * time.Second, MessageRate: 1e6, MessageBurst: 1e6}
}

// joinRecover sends join-session with rec (nil: none) and returns the reply.
func (p *peer) joinRecover(sessionID, userID string, role protocol.Role, rec *protocol.Recover) protocol.SessionJoined {
	p.t.Helper()
	p.send(protocol.TypeJoinSession, protocol.JoinSession{SessionID: sessionID, Recover: rec,
		UserInfo: protocol.UserInfo{UserID: userID, Name: "N-" + userID, Role: role}}, "j-"+userID)
	var sj protocol.SessionJoined
	p.expect(protocol.TypeSessionJoined, &sj)
	return sj
}

// broadcastAcked broadcasts event to `to` ("" leaves it out) with a ref, waits for
// its ack and returns the ack's offset. Other messages before the ack are
// dropped.
func (p *peer) broadcastAcked(event, to string) int64 {
	p.t.Helper()
	data := map[string]any{"event": event, "payload": map[string]any{"e": event}}
	if to != "" {
		data["to"] = to
	}
	ref := "ack-" + event
	p.send(protocol.TypeBroadcast, data, ref)
	for {
		m := p.next()
		switch {
		case m.Type == protocol.TypeError:
			p.t.Fatalf("broadcast %s: error %s", event, m.Data)
		case m.Type == protocol.TypeAck && m.Ref == ref:
			var ack protocol.Ack
			if err := json.Unmarshal(m.Data, &ack); err != nil {
				p.t.Fatal(err)
			}
			return ack.Offset
		}
	}
}

// queuedBroadcasts returns the broadcasts queued for p so far (a ping round
// trip), in the order received.
func (p *peer) queuedBroadcasts() []protocol.BroadcastEvent {
	p.t.Helper()
	var out []protocol.BroadcastEvent
	for _, m := range p.collect() {
		if m.Type == protocol.TypeBroadcast {
			out = append(out, decodeBroadcast(p.t, m))
		}
	}
	return out
}

// readReplay reads the n messages right after session-joined, each of which
// must be a broadcast, and returns their events.
func (p *peer) readReplay(n int) []protocol.BroadcastEvent {
	p.t.Helper()
	out := make([]protocol.BroadcastEvent, n)
	for i := range out {
		out[i] = decodeBroadcast(p.t, p.next())
	}
	return out
}

// waitRecipients makes from broadcast (with a ref, waiting for its ack)
// until one broadcast reaches exactly want connections, as counted by
// sessionhub_messages_out_total{type="broadcast"}. A connection stops
// counting once the hub has handled its end, so this synchronises on the
// hub having processed a departure that by itself sends nothing. It returns
// the other messages from received meanwhile.
func waitRecipients(t testing.TB, s *server, from *peer, want int) (others []protocol.Envelope) {
	t.Helper()
	const series = `sessionhub_messages_out_total{type="broadcast"}`
	deadline := time.Now().Add(wait)
	for i := 0; ; i++ {
		before, _ := metric(t, s, series)
		ref := "probe-" + strconv.Itoa(i)
		from.send(protocol.TypeBroadcast, map[string]any{"event": "probe"}, ref)
		for {
			m := from.next()
			if m.Type == protocol.TypeAck && m.Ref == ref {
				break
			}
			others = append(others, m)
		}
		after, _ := metric(t, s, series)
		if int(after-before) == want {
			return others
		}
		if time.Now().After(deadline) {
			t.Fatalf("a broadcast still reaches %v connections, want %d", after-before, want)
		}
		pause()
	}
}

// ---------------------------------------------------------------------------
// Metrics and polling: for a state with no event to wait on.

// metric returns the value of the sample whose name and labels are exactly
// series (for example `sessionhub_messages_in_total{type="ping"}`), and
// whether it is there.
func metric(t testing.TB, s *server, series string) (float64, bool) {
	t.Helper()
	code, body := s.get(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok || name != series {
			continue
		}
		f, err := strconv.ParseFloat(strings.Fields(val)[0], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		return f, true
	}
	return 0, false
}

func mustMetric(t testing.TB, s *server, series string) float64 {
	t.Helper()
	v, ok := metric(t, s, series)
	if !ok {
		t.Fatalf("/metrics has no %s", series)
	}
	return v
}

// metricValue is metric's value, 0 for a sample not exposed yet.
func metricValue(t testing.TB, s *server, series string) float64 {
	t.Helper()
	v, _ := metric(t, s, series)
	return v
}

// metricUntil polls /metrics until name satisfies ok, and fails after the
// deadline.
func metricUntil(t testing.TB, s *server, name string, ok func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		v := metricValue(t, s, name)
		if ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after the deadline", name, v)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for an event
	}
}

// waitFor polls cond (a state with no event to wait on) until it holds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, wait)
		}
		time.Sleep(5 * time.Millisecond) // polling
	}
}

// pause is the interval between two polls of a condition that has a
// deadline.
func pause() { <-time.After(5 * time.Millisecond) }

// ---------------------------------------------------------------------------
// Raw connections: WebSockets nobody reads, and a listener whose send
// buffers are small, for back-pressure.

// rawOptions say how rawDial dials. The zero value dials with the default
// buffers and no token.
type rawOptions struct {
	// smallRcvBuf gives the connection a small receive buffer, so that its
	// TCP buffers fill fast.
	smallRcvBuf bool
	// token, when not empty, is sent as a Bearer token (auOpts).
	token string
	// batch asks for protocol.BatchSubprotocol.
	batch bool
}

// rawDial opens a WebSocket to s that nobody reads (coder/websocket then
// answers no ping either), dialled as o says. It is dropped at the end of
// the test.
func rawDial(t testing.TB, s *server, o rawOptions) *websocket.Conn {
	t.Helper()
	tr := &http.Transport{}
	if o.smallRcvBuf {
		d := &net.Dialer{Control: setRcvBuf}
		tr.DialContext = d.DialContext
	}
	t.Cleanup(tr.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	opts := &websocket.DialOptions{}
	if o.token != "" {
		opts = auOpts(o.token)
	}
	opts.HTTPClient = &http.Client{Transport: tr}
	if o.batch {
		opts.Subprotocols = []string{protocol.BatchSubprotocol}
	}
	ws, _, err := websocket.Dial(ctx, s.url, opts)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	ws.SetReadLimit(1 << 20)
	t.Cleanup(func() { ws.CloseNow() })
	return ws
}

// sendEvery writes b to ws every interval from a goroutine of its own,
// until a write fails or until the stop it returns is called; stop waits for
// the goroutine to end.
func sendEvery(ws *websocket.Conn, b []byte, every time.Duration) (stop func()) {
	done := make(chan struct{})
	var sender sync.WaitGroup
	sender.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			err := ws.Write(ctx, websocket.MessageText, b)
			cancel()
			if err != nil {
				return
			}
		}
	})
	return func() { close(done); sender.Wait() }
}

// rawJoin sends join-session on ws and reads session-joined.
func rawJoin(t testing.TB, ws *websocket.Conn, sessionID, userID string, read bool) {
	t.Helper()
	b, err := protocol.Encode(protocol.TypeJoinSession, "j", protocol.JoinSession{SessionID: sessionID,
		UserInfo: protocol.UserInfo{UserID: userID, Name: userID}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatalf("write: %v", err)
	}
	if !read {
		return
	}
	_, b, err = ws.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	b, _, _ = bytes.Cut(b, []byte("\n")) // the first of a batch
	var env protocol.Envelope
	if err := json.Unmarshal(b, &env); err != nil || env.Type != protocol.TypeSessionJoined {
		t.Fatalf("got %s, want session-joined", b)
	}
}

// shrinkListener shrinks the send buffer of the connections it accepts while
// small is set, so that a client that does not read fills it fast (without
// it the kernel grows the buffer to megabytes).
type shrinkListener struct {
	net.Listener
	small atomic.Bool
}

func (l *shrinkListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok && l.small.Load() {
		tc.SetWriteBuffer(4096)
	}
	return c, err
}

// serverLimits are the HTTP server limits startServerSmallBuf sets. The
// zero value leaves httptest's server as it is (no header limits).
type serverLimits struct {
	// readHeaderTimeout, when not 0, sets the header limits as hubd sets
	// them: this ReadHeaderTimeout (shorter than hubd's, so that a test
	// runs fast), MaxHeaderBytes of 16 KiB, and the server's error log to
	// discardLogger at warn.
	readHeaderTimeout time.Duration
}

// startServerSmallBuf is startServer with a shrinkListener and the HTTP
// server limits lim.
func startServerSmallBuf(t testing.TB, opts *hub.Options, lim serverLimits) (*server, *shrinkListener) {
	t.Helper()
	var ln *shrinkListener
	s := startServerWith(t, opts, func(ts *httptest.Server) {
		ln = &shrinkListener{Listener: ts.Listener}
		ts.Listener = ln
		if lim.readHeaderTimeout != 0 {
			ts.Config.ReadHeaderTimeout = lim.readHeaderTimeout
			ts.Config.MaxHeaderBytes = 16 << 10
			ts.Config.ErrorLog = slog.NewLogLogger(discardLogger().Handler(), slog.LevelWarn)
		}
	})
	return s, ln
}
