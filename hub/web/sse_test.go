package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"github.com/sessionhub/sessionhub/hub"
)

// blockingProxy stands for a school's proxy in front of the hub: it refuses
// every WebSocket upgrade (403) and passes every other request, streams
// included. The test can cut the page's stream and refuse new ones for a
// while, as a network that drops.
type blockingProxy struct {
	url      string
	refused  atomic.Int64 // upgrades refused
	allowWS  atomic.Bool  // pass upgrades after all (the network got better)
	mu       sync.Mutex
	cancel   context.CancelFunc // of the latest /sse request
	paused   bool
	srv      *http.Server
	finished chan struct{}
}

func startBlockingProxy(t *testing.T, target string) *blockingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u) // flushes text/event-stream at once
	rp.ErrorLog = log.New(io.Discard, "", 0)    // a cut stream is no error here
	p := &blockingProxy{url: "http://" + ln.Addr().String(), finished: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /test/sse.html", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, ssePage)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") && !p.allowWS.Load() {
			p.refused.Add(1)
			http.Error(w, "WebSockets are not allowed on this network", http.StatusForbidden)
			return
		}
		if r.URL.Path == "/sse" {
			ctx, cancel := context.WithCancel(r.Context())
			defer cancel()
			p.mu.Lock()
			if p.paused {
				p.mu.Unlock()
				http.Error(w, "paused by the test", http.StatusBadGateway)
				return
			}
			p.cancel = cancel
			p.mu.Unlock()
			r = r.WithContext(ctx)
		}
		rp.ServeHTTP(w, r)
	})
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(p.finished)
		p.srv.Serve(ln)
	}()
	t.Cleanup(func() {
		p.srv.Close()
		<-p.finished
	})
	return p
}

// cut ends the page's stream and refuses new ones until resume.
func (p *blockingProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = true
	if p.cancel != nil {
		p.cancel()
	}
}

func (p *blockingProxy) resume() {
	p.mu.Lock()
	p.paused = false
	p.mu.Unlock()
}

// ssePage has one HubClient, with the hub's default URL (the page's /ws),
// and records in window.rec what it is dispatched.
const ssePage = `<!doctype html>
<meta charset="utf-8">
<title>hub.js fallback</title>
<script type="module">
import { HubClient } from '/hub.js';

const retry = Number(new URLSearchParams(location.search).get('retry') || 60000);
const c = new HubClient({ reconnect: { initial: 50, max: 200, maxAttempts: 0 }, heartbeatInterval: 0, fallback: { retryWebSocketAfter: retry } });
const rec = { broadcasts: [], rejoined: [], states: [], transports: [], participants: [], cursors: [], uncaught: [] };
window.rec = rec;
window.addEventListener('error', (e) => rec.uncaught.push(String(e.message)));
window.addEventListener('unhandledrejection', (e) => rec.uncaught.push(String(e.reason)));
c.addEventListener('broadcast', (e) => {
  const { event, from, offset, payload } = e.detail;
  rec.broadcasts.push({ event, from, offset, payload });
});
c.addEventListener('rejoined', (e) => rec.rejoined.push({ recovered: e.detail.recovered, epoch: e.detail.epoch }));
c.addEventListener('statechange', (e) => { rec.states.push(e.detail.to); rec.transports.push(c.transport); });
c.addEventListener('participants', (e) => { rec.participants = e.detail.map((p) => p.userId); });
c.addEventListener('cursor-moved', (e) => rec.cursors.push({ userId: e.detail.userId, line: e.detail.cursor.line, column: e.detail.cursor.column }));

window.setup = async () => {
  await c.connect();
  const j = await c.join('class', { userId: 'learner', name: 'Learner' });
  return { epoch: j.epoch, transport: c.transport };
};
window.cursor = (line, column) => c.updateCursor({ line, column });
window.send = async (event, n) => {
  const offsets = [];
  for (let i = 0; i < n; i++) offsets.push(await c.broadcast(event, i));
  return offsets;
};
window.ready = true;
</script>
`

// wsPeer is a plain WebSocket client of the hub, reading into msgs.
type wsPeer struct {
	t    *testing.T
	ws   *websocket.Conn
	msgs chan map[string]json.RawMessage
}

func dialPeer(t *testing.T, base string) *wsPeer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &wsPeer{t: t, ws: ws, msgs: make(chan map[string]json.RawMessage, 1000)}
	go func() {
		defer close(p.msgs)
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				return
			}
			var m map[string]json.RawMessage
			json.Unmarshal(b, &m)
			p.msgs <- m
		}
	}()
	t.Cleanup(func() { ws.CloseNow() })
	return p
}

func (p *wsPeer) send(msg string) {
	p.t.Helper()
	if err := p.ws.Write(context.Background(), websocket.MessageText, []byte(msg)); err != nil {
		p.t.Fatal(err)
	}
}

// until returns the data of the next message of type typ, skipping others.
func (p *wsPeer) until(typ string) json.RawMessage {
	p.t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case m, ok := <-p.msgs:
			if !ok {
				p.t.Fatalf("connection ended while waiting for %s", typ)
			}
			if string(m["type"]) == `"`+typ+`"` {
				return m["data"]
			}
		case <-deadline:
			p.t.Fatalf("no %s within the deadline", typ)
		}
	}
}

// TestHubJSFallsBackToSSE: behind a proxy that refuses WebSocket upgrades,
// the browser client falls back to SSE by itself and takes part in a class
// with a WebSocket client: presence and cursors both ways, broadcasts in
// order both ways; when its stream drops, it rejoins with recover and is
// dispatched exactly the broadcasts it missed.
func TestHubJSFallsBackToSSE(t *testing.T) {
	hubURL := startServer(t, hub.Options{LeaveGrace: time.Minute}).url()
	proxy := startBlockingProxy(t, hubURL)

	teacher := dialPeer(t, hubURL)
	teacher.send(`{"type":"join-session","data":{"sessionId":"class","userInfo":{"userId":"teacher","name":"Teacher","role":"instructor"}}}`)
	teacher.until("session-joined")

	browser := newBrowser(t)
	p := newPage(t, browser, "learner")
	p.do("open the page through the proxy", chromedp.Navigate(proxy.url+"/test/sse.html"))
	p.waitFor("load the module", `window.ready === true`)
	setup := evalAwait[struct {
		Epoch     string `json:"epoch"`
		Transport string `json:"transport"`
	}](p, `window.setup()`)
	if setup.Transport != "sse" || proxy.refused.Load() < 2 {
		t.Fatalf("transport %q after %d refused upgrades, want sse after 2", setup.Transport, proxy.refused.Load())
	}
	var uj struct {
		User struct{ UserID string } `json:"user"`
	}
	json.Unmarshal(teacher.until("user-joined"), &uj)
	if uj.User.UserID != "learner" {
		t.Fatalf("the teacher saw %+v join", uj)
	}
	p.waitFor("see the teacher", `window.rec.participants.includes('teacher') && window.rec.participants.includes('learner')`)

	// Cursors both ways.
	eval[any](p, `window.cursor(3, 4)`)
	var cm struct {
		UserID string `json:"userId"`
		Cursor struct{ Line, Column int }
	}
	json.Unmarshal(teacher.until("cursor-moved"), &cm)
	if cm.UserID != "learner" || cm.Cursor.Line != 3 || cm.Cursor.Column != 4 {
		t.Fatalf("the teacher got cursor-moved %+v", cm)
	}
	teacher.send(`{"type":"cursor-update","data":{"line":7,"column":1}}`)
	p.waitFor("see the teacher's cursor", `window.rec.cursors.some((c) => c.userId === 'teacher' && c.line === 7 && c.column === 1)`)

	// Broadcasts both ways, in order.
	for i := range 20 {
		teacher.send(fmt.Sprintf(`{"type":"broadcast","data":{"event":"live","payload":%d}}`, i))
	}
	p.waitFor("get the live broadcasts", `window.rec.broadcasts.length === 20`)
	offsets := evalAwait[[]int64](p, `window.send('answer', 5)`)
	for i := range 5 {
		var bc struct {
			Event   string
			From    string
			Payload json.RawMessage
			Offset  int64
		}
		json.Unmarshal(teacher.until("broadcast"), &bc)
		if bc.From != "learner" || string(bc.Payload) != fmt.Sprint(i) || bc.Offset != offsets[i] {
			t.Fatalf("the teacher got %+v, want the learner's %d at %d", bc, i, offsets[i])
		}
	}

	// The stream drops; the teacher goes on; the page rejoins with recover.
	proxy.cut()
	p.waitFor("see the drop", `window.rec.states.includes('reconnecting')`)
	for i := range 10 {
		teacher.send(fmt.Sprintf(`{"type":"broadcast","ref":"m%d","data":{"event":"missed","payload":%d}}`, i, i))
		teacher.until("ack")
	}
	proxy.resume()
	p.waitFor("rejoin", `window.rec.rejoined.length === 1`)
	teacher.send(`{"type":"broadcast","ref":"k","data":{"event":"marker","payload":0}}`)
	p.waitFor("get the marker", `window.rec.broadcasts.some((b) => b.event === 'marker')`)

	var rec struct {
		Broadcasts []struct {
			Event   string
			From    string
			Offset  int64
			Payload json.RawMessage
		}
		Rejoined []struct {
			Recovered bool
			Epoch     string
		}
		Transports []any
		Uncaught   []string
	}
	if err := json.Unmarshal(eval[[]byte](p, `window.rec`), &rec); err != nil {
		t.Fatal(err)
	}
	if len(rec.Uncaught) > 0 {
		t.Fatalf("thrown into the page: %v", rec.Uncaught)
	}
	if !rec.Rejoined[0].Recovered || rec.Rejoined[0].Epoch != setup.Epoch {
		t.Fatalf("rejoined %+v, want recovered in epoch %s", rec.Rejoined, setup.Epoch)
	}
	var want []string
	for i := range 20 {
		want = append(want, fmt.Sprint("live/", i))
	}
	for i := range 10 {
		want = append(want, fmt.Sprint("missed/", i))
	}
	want = append(want, "marker/0")
	var got []string
	var last int64
	for _, b := range rec.Broadcasts {
		if b.Offset <= last {
			t.Fatalf("offsets go back: %d after %d", b.Offset, last)
		}
		last = b.Offset
		got = append(got, b.Event+"/"+string(b.Payload))
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("broadcasts dispatched:\n %v\nwant\n %v", got, want)
	}
	if tr := eval[string](p, `String(window.rec.transports.at(-1))`); tr != "sse" {
		t.Errorf("transport after the rejoin: %s", tr)
	}
}

// TestHubJSBackToWebSocket: a client on the SSE fallback tries a WebSocket
// again once fallback.retryWebSocketAfter has passed, and moves over (a
// rejoin with recovery) when the network lets it through.
func TestHubJSBackToWebSocket(t *testing.T) {
	hubURL := startServer(t, hub.Options{LeaveGrace: time.Minute}).url()
	proxy := startBlockingProxy(t, hubURL)

	browser := newBrowser(t)
	p := newPage(t, browser, "learner")
	p.do("open the page through the proxy", chromedp.Navigate(proxy.url+"/test/sse.html?retry=200"))
	p.waitFor("load the module", `window.ready === true`)
	setup := evalAwait[struct {
		Transport string `json:"transport"`
	}](p, `window.setup()`)
	if setup.Transport != "sse" {
		t.Fatalf("transport %q, want sse", setup.Transport)
	}
	// While on SSE the client tries a WebSocket beside the stream every
	// 200 ms; once the network lets one through, it moves over and rejoins.
	proxy.allowWS.Store(true)
	p.waitFor("move to WebSocket", `window.rec.rejoined.length >= 1 && window.rec.transports.at(-1) === 'websocket'`)
	if !eval[bool](p, `window.rec.rejoined.every((r) => r.recovered)`) {
		t.Error("a rejoin did not recover")
	}
}
