package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sessionhub/sessionhub/client"
	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/protocol"
)

// cutProxy is a TCP proxy in front of a hub: the test can cut every
// connection through it at once, with no close frame (as a network failure
// would), silence them (they stay open but nothing goes through any more,
// as when a NAT or a mobile network forgets a connection), and refuse new
// ones for a while.
type cutProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	links  map[*atomic.Bool]struct{} // one per proxied connection: set when it is silenced
	paused bool
	closed bool
}

// startProxy proxies to the hub at target (host:port); it is closed at the
// end of the test.
func startProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}, links: map[*atomic.Bool]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *cutProxy) url() string { return "ws://" + p.ln.Addr().String() + "/ws" }

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := p.paused || p.closed
		p.mu.Unlock()
		if refuse {
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		silent := new(atomic.Bool)
		if !p.track(silent, in, out) {
			continue
		}
		p.wg.Add(2)
		go p.pipe(in, out, silent)
		go p.pipe(out, in, silent)
	}
}

func (p *cutProxy) track(silent *atomic.Bool, cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	p.links[silent] = struct{}{}
	return true
}

// pipe copies src to dst until either ends, then closes both, unless the
// link was silenced: then it swallows what src sends, and leaves dst open
// when src ends (close or cut ends it).
func (p *cutProxy) pipe(dst, src net.Conn, silent *atomic.Bool) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !silent.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			break
		}
	}
	if silent.Load() {
		return
	}
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	delete(p.links, silent)
	p.mu.Unlock()
}

// silence stops every connection through the proxy from forwarding
// anything, in both directions, without closing it; with pause, new
// connections are refused until resume. New connections after that are
// forwarded as usual.
func (p *cutProxy) silence(pause bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = pause
	for l := range p.links {
		l.Store(true)
		delete(p.links, l)
	}
}

// cut closes every connection through the proxy (both ends: the client sees
// its connection end with no close frame, and so does the hub) and, with
// pause, refuses new connections until resume.
func (p *cutProxy) cut(pause bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = pause
	for c := range p.conns {
		c.Close()
	}
}

func (p *cutProxy) resume() {
	p.mu.Lock()
	p.paused = false
	p.mu.Unlock()
}

func (p *cutProxy) close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

// proxiedPair is a session of two clients of one hub: Ann (a) connects
// through a cutProxy, Bob (b) straight to the hub.
type proxiedPair struct {
	s      *testHub
	px     *cutProxy
	a, b   *client.Client
	joined *protocol.SessionJoined // Ann's join
}

// startProxiedPair starts a hub with opts and a cutProxy in front of it, and
// joins Ann ("ann", through the proxy, with aOpts and fastReconnect) and
// then Bob ("bob", with fastReconnect) to session. It returns once Ann has
// seen Bob join.
func startProxiedPair(t *testing.T, opts hub.Options, session string, aOpts client.Options) *proxiedPair {
	t.Helper()
	s := startHub(t, "", opts)
	px := startProxy(t, s.addr)
	aOpts.Reconnect = fastReconnect
	a := dial(t, px.url(), &aOpts)
	b := dial(t, s.url, &client.Options{Reconnect: fastReconnect})
	ctx := ctxT(t)
	joined, err := a.Join(ctx, session, protocol.UserInfo{UserID: "ann", Name: "Ann"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Join(ctx, session, protocol.UserInfo{UserID: "bob", Name: "Bob"}); err != nil {
		t.Fatal(err)
	}
	skipTo[*client.UserJoined](t, a, nil)
	return &proxiedPair{s: s, px: px, a: a, b: b, joined: joined}
}

// sendLive broadcasts n events from `from` (sendN from 0) and checks that
// to receives each of them live, at its acked offset.
func sendLive(t *testing.T, from, to *client.Client, n int) {
	t.Helper()
	for _, off := range sendN(t, from, 0, n) {
		if e := skipTo[*client.BroadcastEvent](t, to, nil); e.Offset != off {
			t.Fatalf("live broadcast at offset %d, want %d", e.Offset, off)
		}
	}
}

// waitReconnecting waits for c's state change to Reconnecting after an
// abnormal end (1006, no close frame).
func waitReconnecting(t *testing.T, c *client.Client) {
	t.Helper()
	sc := skipTo[*client.StateChange](t, c, func(sc *client.StateChange) bool { return sc.To == client.Reconnecting })
	var ce *client.CloseError
	if sc.From != client.Connected || !errors.As(sc.Err, &ce) || ce.Code != protocol.CloseAbnormal {
		t.Fatalf("state change %v, want connected -> reconnecting with 1006", sc)
	}
}

// sendN broadcasts n events "n" with payloads first..first+n-1 from c, and
// checks their acked offsets follow each other.
func sendN(t *testing.T, c *client.Client, first, n int) (offsets []int64) {
	t.Helper()
	ctx := ctxT(t)
	for i := first; i < first+n; i++ {
		off, err := c.Broadcast(ctx, "n", i, protocol.ToAll)
		if err != nil {
			t.Fatalf("broadcast %d: %v", i, err)
		}
		if len(offsets) > 0 && off != offsets[len(offsets)-1]+1 {
			t.Fatalf("broadcast %d acked with offset %d after %d", i, off, offsets[len(offsets)-1])
		}
		offsets = append(offsets, off)
	}
	return offsets
}

// broadcastsUntil collects c's broadcasts until one with event "marker"
// (included), failing on any other event but state changes.
func broadcastsUntil(t *testing.T, c *client.Client) []*client.BroadcastEvent {
	t.Helper()
	var got []*client.BroadcastEvent
	for {
		switch e := next(t, c).(type) {
		case *client.BroadcastEvent:
			got = append(got, e)
			if e.Event == "marker" {
				return got
			}
		case *client.StateChange:
			t.Fatalf("state change %v while waiting for broadcasts", e)
		default:
			t.Fatalf("unexpected %T %+v while waiting for broadcasts", e, e)
		}
	}
}

func payloadInt(t *testing.T, e *client.BroadcastEvent) int {
	t.Helper()
	var v int
	if err := json.Unmarshal(e.Payload, &v); err != nil {
		t.Fatalf("payload %s: %v", e.Payload, err)
	}
	return v
}

// checkSequence checks that got is exactly the events with payloads
// 0..len(want)-1 at offsets want, then the marker at marker.
func checkSequence(t *testing.T, got []*client.BroadcastEvent, from string, want []int64, marker int64) {
	t.Helper()
	if len(got) != len(want)+1 {
		t.Fatalf("got %d broadcasts, want %d and the marker", len(got), len(want))
	}
	for i, off := range want {
		e := got[i]
		if e.Event != "n" || e.From != from || e.Offset != off || payloadInt(t, e) != i {
			t.Fatalf("broadcast #%d = %s from %s offset %d payload %s; want n from %s offset %d payload %d",
				i, e.Event, e.From, e.Offset, e.Payload, from, off, i)
		}
	}
	if m := got[len(got)-1]; m.Offset != marker || m.From != from {
		t.Fatalf("marker %+v, want offset %d from %s", m.BroadcastEvent, marker, from)
	}
}

// TestRecoverAfterDrop: a client whose connection is cut (no close frame)
// while another sends 50 broadcasts gets exactly those 50 after it
// reconnects, in order, once, with Rejoined.Recovered true; its own
// broadcast, acked just before the drop, is not delivered to itself.
func TestRecoverAfterDrop(t *testing.T) {
	p := startProxiedPair(t, hub.Options{LeaveGrace: time.Minute}, "rec", client.Options{})
	px, a, b, sja := p.px, p.a, p.b, p.joined
	ctx := ctxT(t)

	// Live traffic before the drop: three from Bob, then Ann's own.
	sendLive(t, b, a, 3)
	own, err := a.Broadcast(ctx, "mine", "from ann", protocol.ToAll)
	if err != nil {
		t.Fatal(err)
	}
	if e := skipTo[*client.BroadcastEvent](t, b, nil); e.Offset != own || e.From != "ann" {
		t.Fatalf("bob got %+v, want ann's broadcast at %d", e.BroadcastEvent, own)
	}

	px.cut(true)
	waitReconnecting(t, a)
	want := sendN(t, b, 0, 50)
	if want[0] != own+1 {
		t.Fatalf("first offset during the drop %d, want %d", want[0], own+1)
	}
	px.resume()

	if sc := skipTo[*client.StateChange](t, a, nil); sc.To != client.Connected {
		t.Fatalf("state change %v", sc)
	}
	rj := expect[*client.Rejoined](t, a)
	if !rj.Recovered || rj.Epoch != sja.Epoch || rj.SelfID != "ann" || rj.Offset != want[len(want)-1] {
		t.Fatalf("rejoined %+v, want recovered in epoch %s at offset %d", rj.SessionJoined, sja.Epoch, want[len(want)-1])
	}
	marker, err := b.Broadcast(ctx, "marker", nil, protocol.ToAll)
	if err != nil {
		t.Fatal(err)
	}
	checkSequence(t, broadcastsUntil(t, a), "bob", want, marker)
	if a.State() != client.Connected {
		t.Fatalf("state %v", a.State())
	}
}

// TestRecoverHubRestart: a hub restart gives the session a new epoch: the
// rejoin is not recovered, nothing is replayed, and the new epoch's
// broadcasts are delivered although their offsets start again from 1.
func TestRecoverHubRestart(t *testing.T) {
	s1 := startHub(t, "", hub.Options{})
	a := dial(t, s1.url, &client.Options{Reconnect: fastReconnect})
	b := dial(t, s1.url, &client.Options{Reconnect: fastReconnect})
	ctx := ctxT(t)
	sja, err := a.Join(ctx, "restart", protocol.UserInfo{UserID: "ann", Name: "Ann"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Join(ctx, "restart", protocol.UserInfo{UserID: "bob", Name: "Bob"}); err != nil {
		t.Fatal(err)
	}
	for _, off := range sendN(t, b, 0, 5) {
		if e := skipTo[*client.BroadcastEvent](t, a, nil); e.Offset != off {
			t.Fatalf("broadcast at offset %d, want %d", e.Offset, off)
		}
	}

	s1.stop(t)
	startHub(t, s1.addr, hub.Options{})
	rj := skipTo[*client.Rejoined](t, a, nil)
	if rj.Recovered || rj.Epoch == sja.Epoch || rj.Offset != 0 {
		t.Fatalf("rejoined %+v, want not recovered, a new epoch, offset 0", rj.SessionJoined)
	}
	skipTo[*client.Rejoined](t, b, nil)
	want := sendN(t, b, 0, 2)
	if want[0] != 1 {
		t.Fatalf("first offset of the new epoch %d, want 1", want[0])
	}
	marker, err := b.Broadcast(ctx, "marker", nil, protocol.ToAll)
	if err != nil {
		t.Fatal(err)
	}
	// Ann may see Bob rejoin (user-joined) before the broadcasts, if she
	// was first; anything else is a failure.
	var got []*client.BroadcastEvent
	for len(got) == 0 || got[len(got)-1].Event != "marker" {
		switch e := next(t, a).(type) {
		case *client.BroadcastEvent:
			got = append(got, e)
		case *client.UserJoined:
		default:
			t.Fatalf("unexpected %T %+v", e, e)
		}
	}
	checkSequence(t, got, "bob", want, marker)
}

// TestRecoverHistoryExceeded: a drop longer than the history (5 events, 20
// sent meanwhile) gives a rejoin that is not recovered, with no replay;
// what comes next is delivered.
func TestRecoverHistoryExceeded(t *testing.T) {
	p := startProxiedPair(t, hub.Options{HistorySize: 5, LeaveGrace: time.Minute}, "small", client.Options{})
	px, a, b, sja := p.px, p.a, p.b, p.joined
	ctx := ctxT(t)
	first := sendN(t, b, 100, 1)
	if e := skipTo[*client.BroadcastEvent](t, a, nil); e.Offset != first[0] {
		t.Fatalf("broadcast at %d, want %d", e.Offset, first[0])
	}

	px.cut(true)
	waitReconnecting(t, a)
	missed := sendN(t, b, 0, 20)
	px.resume()

	if sc := skipTo[*client.StateChange](t, a, nil); sc.To != client.Connected {
		t.Fatalf("state change %v", sc)
	}
	rj := expect[*client.Rejoined](t, a)
	if rj.Recovered || rj.Epoch != sja.Epoch || rj.Offset != missed[len(missed)-1] {
		t.Fatalf("rejoined %+v, want not recovered, same epoch, offset %d", rj.SessionJoined, missed[len(missed)-1])
	}
	want := sendN(t, b, 0, 3)
	marker, err := b.Broadcast(ctx, "marker", nil, protocol.ToAll)
	if err != nil {
		t.Fatal(err)
	}
	checkSequence(t, broadcastsUntil(t, a), "bob", want, marker)
}

// TestBroadcastDeliveredOnce drives the client with a scripted server: a
// replay that overlaps what the client already delivered (and its own
// acked broadcast) delivers only the new offsets; a replay cut short is
// resumed from the last offset delivered, not from the session's offset of
// the session-joined; a fresh start (recovered false, another epoch)
// delivers the new epoch's offsets though they are lower.
func TestBroadcastDeliveredOnce(t *testing.T) {
	type joinMsg struct {
		Type string `json:"type"`
		Ref  string `json:"ref"`
		Data struct {
			Recover *protocol.Recover `json:"recover"`
		} `json:"data"`
	}
	recovers := make(chan *protocol.Recover, 4)
	var (
		mu sync.Mutex
		n  int
	)
	bc := func(off int64, from string) string {
		return fmt.Sprintf(`{"type":"broadcast","data":{"event":"e","from":%q,"payload":%d,"offset":%d,"ts":1}}`, from, off, off)
	}
	joined := func(ref, epoch string, off int64, recovered bool) string {
		return fmt.Sprintf(`{"type":"session-joined","ref":%q,"data":{"sessionId":"s","selfId":"me","participants":[],"epoch":%q,"offset":%d,"recovered":%t}}`,
			ref, epoch, off, recovered)
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		mu.Lock()
		n++
		conn := n
		mu.Unlock()
		read := func() joinMsg {
			var m joinMsg
			_, b, err := ws.Read(ctx)
			if err == nil {
				err = json.Unmarshal(b, &m)
			}
			if err != nil {
				return joinMsg{}
			}
			return m
		}
		send := func(msgs ...string) {
			for _, m := range msgs {
				ws.Write(ctx, websocket.MessageText, []byte(m))
			}
		}
		j := read()
		if j.Type != "join-session" {
			return
		}
		recovers <- j.Data.Recover
		switch conn {
		case 1: // first join; 1..3 live; our own broadcast acked at 4; drop
			send(joined(j.Ref, "e1", 0, false), bc(1, "x"), bc(2, "x"), bc(3, "x"))
			if b := read(); b.Type == "broadcast" {
				send(fmt.Sprintf(`{"type":"ack","ref":%q,"data":{"offset":4}}`, b.Ref))
			}
			send(bc(5, "x"))
			time.Sleep(50 * time.Millisecond)
		case 2: // recovered, with a replay that overlaps (2..5; 4 is our own), cut after 6
			send(joined(j.Ref, "e1", 8, true), bc(2, "x"), bc(3, "x"), bc(4, "me"), bc(5, "x"), bc(6, "x"))
			time.Sleep(50 * time.Millisecond)
		case 3: // recovered from 6: the rest of the replay (7, 8), then 9 live
			send(joined(j.Ref, "e1", 8, true), bc(7, "x"), bc(8, "x"), bc(9, "x"))
			time.Sleep(50 * time.Millisecond)
		case 4: // a fresh start: another epoch, offsets from 1 again
			send(joined(j.Ref, "e2", 0, false), bc(1, "x"), bc(2, "x"))
			read() // until the client closes
		}
	}))
	t.Cleanup(ts.Close)
	c := dial(t, wsURL(ts), &client.Options{Reconnect: fastReconnect})
	ctx := ctxT(t)
	if _, err := c.Join(ctx, "s", protocol.UserInfo{Name: "Me"}); err != nil {
		t.Fatal(err)
	}
	if off, err := c.Broadcast(ctx, "mine", 0, ""); err != nil || off != 4 {
		t.Fatalf("broadcast: %d, %v", off, err)
	}
	var got []int64
	var rejoins []bool
	collect := func(e client.Event) {
		switch e := e.(type) {
		case *client.BroadcastEvent:
			got = append(got, e.Offset)
		case *client.Rejoined:
			rejoins = append(rejoins, e.Recovered)
		}
	}
	want := []int64{1, 2, 3, 5, 6, 7, 8, 9, 1, 2}
	for len(got) < len(want) {
		collect(next(t, c))
	}
	time.Sleep(50 * time.Millisecond) // would anything more come?
	c.Close()
	for _, e := range drainClosed(t, c) {
		collect(e)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprint(rejoins) != "[true true false]" {
		t.Fatalf("delivered offsets %v (want %v), rejoins recovered %v (want [true true false])", got, want, rejoins)
	}
	for i, want := range []*protocol.Recover{nil, {Epoch: "e1", Offset: 5}, {Epoch: "e1", Offset: 6}, {Epoch: "e1", Offset: 9}} {
		got := <-recovers
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("join #%d recover %+v, want %+v", i+1, got, want)
		}
	}
}
