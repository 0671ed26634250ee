package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"github.com/sessionhub/sessionhub/hub"
)

// connTracker is a listener that keeps the server side of every accepted
// connection by remote address, so that a test can cut one (no close frame,
// as a network failure would).
type connTracker struct {
	net.Listener
	mu    sync.Mutex
	conns map[string]net.Conn
}

func (l *connTracker) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns[c.RemoteAddr().String()] = c
		l.mu.Unlock()
	}
	return c, err
}

// recoverServer is a hub whose WebSocket connections are tagged by the
// page (/ws?who=a): the test can cut the latest connection of a tag from the
// server side, and refuse new ones of that tag for a while.
type recoverServer struct {
	url string
	h   *hub.Hub
	srv *http.Server
	ln  *connTracker

	mu     sync.Mutex
	latest map[string]string // tag -> remote address of its latest /ws request
	paused map[string]bool

	scriptConns int                // connections to /test/scriptws so far
	recovers    []*json.RawMessage // the recover of each join there
}

func startRecoverServer(t *testing.T, opts hub.Options) *recoverServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts.Logger = discardLogger()
	s := &recoverServer{
		url:    "http://" + ln.Addr().String(),
		h:      hub.New(&opts),
		ln:     &connTracker{Listener: ln, conns: map[string]net.Conn{}},
		latest: map[string]string{},
		paused: map[string]bool{},
	}
	hubHandler := s.h.Handler()
	mux := http.NewServeMux()
	mux.Handle("/", hubHandler)
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		who := r.URL.Query().Get("who")
		s.mu.Lock()
		paused := s.paused[who]
		if !paused && who != "" {
			s.latest[who] = r.RemoteAddr
		}
		s.mu.Unlock()
		if paused {
			http.Error(w, "paused by the test", http.StatusServiceUnavailable)
			return
		}
		hubHandler.ServeHTTP(w, r)
	})
	mux.HandleFunc("GET /test/scriptws", s.serveScript)
	mux.HandleFunc("GET /test/recover.html", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, recoverPage)
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.srv.Serve(s.ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.h.Shutdown(ctx)
		s.srv.Close() // not Shutdown: Chromium keeps idle preconnected sockets
		<-done
	})
	return s
}

// cut closes the server side of who's latest connection and, with pause,
// refuses its new ones (503) until resume.
func (s *recoverServer) cut(t *testing.T, who string, pause bool) {
	t.Helper()
	s.mu.Lock()
	s.paused[who] = pause
	addr := s.latest[who]
	s.mu.Unlock()
	s.ln.mu.Lock()
	c := s.ln.conns[addr]
	s.ln.mu.Unlock()
	if c == nil {
		t.Fatalf("no connection of %q to cut", who)
	}
	c.Close()
}

func (s *recoverServer) resume(who string) {
	s.mu.Lock()
	s.paused[who] = false
	s.mu.Unlock()
}

// serveScript is a scripted hub for one client, connection after
// connection: the first join gets broadcasts 1..3, the ack 4 of the client's
// own broadcast and 5, then a cut; the second a recovered session-joined and
// a replay that overlaps what the client had (2..5, 4 its own), cut after 6;
// the third the rest (7, 8) and 9 live, then a cut; the fourth a fresh start
// (recovered false, another epoch) with offsets 1 and 2.
func (s *recoverServer) serveScript(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"sessionhub.batch"}})
	if err != nil {
		return
	}
	defer ws.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	type msg struct {
		Type string `json:"type"`
		Ref  string `json:"ref"`
		Data struct {
			Recover *json.RawMessage `json:"recover"`
		} `json:"data"`
	}
	read := func(typ string) (msg, bool) {
		for {
			var m msg
			_, b, err := ws.Read(ctx)
			if err != nil {
				return m, false
			}
			if json.Unmarshal(b, &m) == nil && m.Type == typ {
				return m, true
			}
		}
	}
	send := func(msgs ...string) {
		for _, m := range msgs {
			ws.Write(ctx, websocket.MessageText, []byte(m))
		}
	}
	bc := func(off int, from string) string {
		return fmt.Sprintf(`{"type":"broadcast","data":{"event":"e","from":%q,"payload":%d,"offset":%d,"ts":1}}`, from, off, off)
	}
	joined := func(ref, epoch string, off int, recovered bool) string {
		return fmt.Sprintf(`{"type":"session-joined","ref":%q,"data":{"sessionId":"s","selfId":"me","participants":[{"userId":"me","name":"Me","role":"learner"}],"epoch":%q,"offset":%d,"recovered":%t}}`,
			ref, epoch, off, recovered)
	}
	j, ok := read("join-session")
	if !ok {
		return
	}
	s.mu.Lock()
	s.scriptConns++
	n := s.scriptConns
	s.recovers = append(s.recovers, j.Data.Recover)
	s.mu.Unlock()
	pause := func() { time.Sleep(100 * time.Millisecond) }
	switch n {
	case 1:
		send(joined(j.Ref, "e1", 0, false), bc(1, "x"), bc(2, "x"), bc(3, "x"))
		if b, ok := read("broadcast"); ok {
			send(fmt.Sprintf(`{"type":"ack","ref":%q,"data":{"offset":4}}`, b.Ref), bc(5, "x"))
		}
		pause()
	case 2:
		send(joined(j.Ref, "e1", 8, true), bc(2, "x"), bc(3, "x"), bc(4, "me"), bc(5, "x"), bc(6, "x"))
		pause()
	case 3:
		send(joined(j.Ref, "e1", 8, true), bc(7, "x"), bc(8, "x"), bc(9, "x"))
		pause()
	default:
		send(joined(j.Ref, "e2", 0, false), bc(1, "x"), bc(2, "x"))
		read("") // until the client closes
	}
}

// recoverPage has two HubClients, a (tagged who=a) and b, and records in
// window.rec what a is dispatched.
const recoverPage = `<!doctype html>
<meta charset="utf-8">
<title>hub.js recovery</title>
<script type="module">
import { HubClient } from '/hub.js';

// No fallback to SSE: the test pauses a's WebSocket reconnects, and a
// client that fell back to a stream meanwhile would rejoin early.
const fast = { reconnect: { initial: 50, max: 200, maxAttempts: 0 }, fallback: false };
const a = new HubClient('/ws?who=a', fast);
const b = new HubClient('/ws?who=b', fast);
const rec = { broadcasts: [], rejoined: [], states: [], uncaught: [] };
window.rec = rec;
window.addEventListener('error', (e) => rec.uncaught.push(String(e.message)));
window.addEventListener('unhandledrejection', (e) => rec.uncaught.push(String(e.reason)));
a.addEventListener('broadcast', (e) => {
  const { event, from, offset, payload } = e.detail;
  rec.broadcasts.push({ event, from, offset, payload });
});
a.addEventListener('rejoined', (e) => {
  const { recovered, epoch, offset, attempt } = e.detail;
  rec.rejoined.push({ recovered, epoch, offset, attempt });
});
a.addEventListener('statechange', (e) => rec.states.push(e.detail.to));

window.setup = async () => {
  await a.connect();
  await b.connect();
  const ja = await a.join('rec', { userId: 'ann', name: 'Ann' });
  await b.join('rec', { userId: 'bob', name: 'Bob', role: 'instructor' });
  return ja.epoch;
};
// send broadcasts n events from a or b, one after the other, with payloads
// 0..n-1, and resolves with their offsets.
window.send = async (who, event, n) => {
  const c = who === 'a' ? a : b;
  const offsets = [];
  for (let i = 0; i < n; i++) offsets.push(await c.broadcast(event, i));
  return offsets;
};
// scripted runs a third client against /test/scriptws and resolves with the
// offsets and rejoins it was dispatched.
window.scripted = async () => {
  const c = new HubClient('/test/scriptws', fast);
  const r = { offsets: [], rejoined: [] };
  c.addEventListener('broadcast', (e) => r.offsets.push(e.detail.offset));
  c.addEventListener('rejoined', (e) => r.rejoined.push(e.detail.recovered));
  await c.connect();
  await c.join('s', { name: 'Me' });
  r.ack = await c.broadcast('mine', 0);
  const deadline = Date.now() + 5000;
  while (r.offsets.length < 10 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
  await new Promise((res) => setTimeout(res, 100)); // would anything more come?
  c.close();
  return r;
};
window.ready = true;
</script>
`

type recBroadcast struct {
	Event   string          `json:"event"`
	From    string          `json:"from"`
	Offset  int64           `json:"offset"`
	Payload json.RawMessage `json:"payload"`
}

type recState struct {
	Broadcasts []recBroadcast `json:"broadcasts"`
	Rejoined   []struct {
		Recovered bool   `json:"recovered"`
		Epoch     string `json:"epoch"`
		Offset    int64  `json:"offset"`
		Attempt   int    `json:"attempt"`
	} `json:"rejoined"`
	States   []string `json:"states"`
	Uncaught []string `json:"uncaught"`
}

func evalAwait[T any](p *page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, wait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("%s: evaluate %s: %v", p.name, expr, err)
	}
	return v
}

func (p *page) rec() recState {
	p.t.Helper()
	raw := eval[[]byte](p, `window.rec`)
	var r recState
	if err := json.Unmarshal(raw, &r); err != nil {
		p.t.Fatalf("decode %s: %v", raw, err)
	}
	return r
}

// TestHubJSRecover: the connection of one of two HubClients in a page is
// cut from the server side (no close frame) while the other sends 20
// broadcasts; the first reconnects, rejoins with recovered true and is
// dispatched exactly those 20, once, in order, and not its own broadcast
// acked before the drop.
func TestHubJSRecover(t *testing.T) {
	srv := startRecoverServer(t, hub.Options{LeaveGrace: time.Minute})
	browser := newBrowser(t)
	p := newPage(t, browser, "recover")
	p.do("open the page", chromedp.Navigate(srv.url+"/test/recover.html"))
	p.waitFor("load the module", `window.ready === true`)
	epoch := evalAwait[string](p, `window.setup()`)

	live := evalAwait[[]int64](p, `window.send('b', 'live', 3)`)
	p.waitFor("get the live broadcasts", `window.rec.broadcasts.length === 3`)
	own := evalAwait[[]int64](p, `window.send('a', 'mine', 1)`)
	if own[0] != live[2]+1 {
		t.Fatalf("own broadcast acked at %d after %v", own[0], live)
	}

	srv.cut(t, "a", true)
	p.waitFor("see the drop", `window.rec.states.includes('reconnecting')`)
	want := evalAwait[[]int64](p, `window.send('b', 'n', 20)`)
	srv.resume("a")
	p.waitFor("rejoin", `window.rec.rejoined.length === 1`)
	marker := evalAwait[[]int64](p, `window.send('b', 'marker', 1)`)
	p.waitFor("get the marker", `window.rec.broadcasts.some((b) => b.event === 'marker')`)
	time.Sleep(100 * time.Millisecond) // would anything more come?

	r := p.rec()
	raw, _ := json.Marshal(r)
	if len(r.Uncaught) > 0 {
		t.Fatalf("thrown into the page: %v", r.Uncaught)
	}
	if len(r.Rejoined) != 1 || !r.Rejoined[0].Recovered || r.Rejoined[0].Epoch != epoch || r.Rejoined[0].Offset != want[len(want)-1] {
		t.Fatalf("rejoined %+v, want once, recovered, epoch %s, offset %d", r.Rejoined, epoch, want[len(want)-1])
	}
	var wantSeq []recBroadcast
	for i, off := range live {
		wantSeq = append(wantSeq, recBroadcast{Event: "live", From: "bob", Offset: off, Payload: json.RawMessage(fmt.Sprint(i))})
	}
	for i, off := range want {
		wantSeq = append(wantSeq, recBroadcast{Event: "n", From: "bob", Offset: off, Payload: json.RawMessage(fmt.Sprint(i))})
	}
	wantSeq = append(wantSeq, recBroadcast{Event: "marker", From: "bob", Offset: marker[0], Payload: json.RawMessage("0")})
	if len(r.Broadcasts) != len(wantSeq) {
		t.Fatalf("got %d broadcasts, want %d; rec: %s", len(r.Broadcasts), len(wantSeq), raw)
	}
	for i, w := range wantSeq {
		g := r.Broadcasts[i]
		if g.Event != w.Event || g.From != w.From || g.Offset != w.Offset || string(g.Payload) != string(w.Payload) {
			t.Fatalf("broadcast #%d = %+v, want %+v; rec: %s", i, g, w, raw)
		}
	}
}

// TestHubJSDeliveredOnce: against a scripted server, a replay that overlaps
// what the client already dispatched (and its own acked broadcast)
// dispatches only the new offsets; a replay cut short is asked again from
// the last offset dispatched, not from the session-joined's offset; a fresh
// start (recovered false, another epoch) dispatches the new epoch's lower
// offsets.
func TestHubJSDeliveredOnce(t *testing.T) {
	srv := startRecoverServer(t, hub.Options{})
	browser := newBrowser(t)
	p := newPage(t, browser, "scripted")
	p.do("open the page", chromedp.Navigate(srv.url+"/test/recover.html"))
	p.waitFor("load the module", `window.ready === true`)
	var r struct {
		Offsets  []int64 `json:"offsets"`
		Rejoined []bool  `json:"rejoined"`
		Ack      int64   `json:"ack"`
	}
	raw := evalAwait[[]byte](p, `window.scripted()`)
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	if r.Ack != 4 || fmt.Sprint(r.Offsets) != "[1 2 3 5 6 7 8 9 1 2]" || fmt.Sprint(r.Rejoined) != "[true true false]" {
		t.Fatalf("got %s; want ack 4, offsets [1 2 3 5 6 7 8 9 1 2], rejoined recovered [true true false]", raw)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	var recovers []string
	for _, rc := range srv.recovers {
		if rc == nil {
			recovers = append(recovers, "none")
		} else {
			recovers = append(recovers, string(*rc))
		}
	}
	want := []string{"none", `{"epoch":"e1","offset":5}`, `{"epoch":"e1","offset":6}`, `{"epoch":"e1","offset":9}`}
	if fmt.Sprint(recovers) != fmt.Sprint(want) {
		t.Fatalf("recovers %v, want %v", recovers, want)
	}
}
