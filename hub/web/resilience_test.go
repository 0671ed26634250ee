package web_test

// The browser client's resilience (contract v1.1 "Client libraries" and the
// attempt counter of "v1.1 hardening") in real Chromium: a first connect
// while the hub starts late; a connection that goes silent behind a TCP proxy
// (it stops forwarding without closing) replaced through the heartbeat, with
// the rejoin recovering what was sent meanwhile; offline then online; an
// async token function; a poisoned replay that gives up after maxAttempts.
//
// The page is served by its own server (pageServer) so that it can load
// before a hub exists; the hubs allow its origin.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/hub/web"
)

// resiliencePage makes HubClients on demand (window.make) and records what
// each one sees in window.rec[name].
const resiliencePage = `<!doctype html>
<meta charset="utf-8">
<title>hub.js resilience</title>
<script type="module">
import { HubClient } from '/hub.js';

const clients = {};
window.rec = {};
window.uncaught = [];
window.addEventListener('error', (e) => window.uncaught.push(String(e.message)));
window.addEventListener('unhandledrejection', (e) => window.uncaught.push(String(e.reason)));
window.make = (name, url, opts) => {
  const r = { states: [], errors: [], broadcasts: [], rejoined: [], connected: false, tokenCalls: 0 };
  window.rec[name] = r;
  if (opts.tokenURL) {
    const u = opts.tokenURL;
    delete opts.tokenURL;
    opts.token = async () => {
      // r.breakRefresh: a refresh (asked while connected) gets a token the hub refuses.
      if (r.breakRefresh && clients[name].state === 'connected') return 'not-a-token';
      const res = await fetch(u);
      const tok = await res.text();
      r.tokenCalls++;
      return tok;
    };
  }
  const c = new HubClient(url, opts);
  clients[name] = c;
  c.addEventListener('statechange', (e) => {
    r.states.push(e.detail.to);
    if (e.detail.error) r.final = e.detail.error;
  });
  c.addEventListener('error', (e) => r.errors.push(e.detail.code));
  c.addEventListener('broadcast', (e) => r.broadcasts.push(e.detail.payload));
  c.addEventListener('rejoined', (e) => r.rejoined.push(e.detail.recovered));
  r.refreshed = 0;
  c.addEventListener('token-refreshed', () => r.refreshed++);
  c.connect().then(() => { r.connected = true; }, (err) => { r.connectError = err.code + ': ' + err.message; });
};
window.join = async (name, sid, userId) => (await clients[name].join(sid, { userId, name: userId })).selfId;
window.send = async (name, event, n) => {
  const offsets = [];
  for (let i = 0; i < n; i++) offsets.push(await clients[name].broadcast(event, i));
  return offsets;
};
window.lastClose = (name) => clients[name].lastClose;
window.state = (name) => clients[name].state;
window.ready = true;
</script>
`

// pageServer serves the page, /hub.js (the embedded build), /test/token
// (tokens minted with tokenSecret) and /test/poison (a scripted hub whose
// every session-joined is followed by a frame that is not UTF-8).
type pageServer struct {
	url         string
	srv         *http.Server
	tokenSecret []byte
	tokens      atomic.Int32
	poisoned    atomic.Int32
	done        chan struct{}
}

// startPageServer serves the page; tokenSecret (may be nil) signs /test/token's tokens.
func startPageServer(t *testing.T, tokenSecret []byte) *pageServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pageServer{url: "http://" + ln.Addr().String(), tokenSecret: tokenSecret, done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.Handle("GET /hub.js", http.FileServerFS(web.FS))
	mux.HandleFunc("GET /test/resilience.html", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, resiliencePage)
	})
	mux.HandleFunc("GET /test/token", func(w http.ResponseWriter, r *http.Request) {
		ttl := time.Hour
		if d, err := time.ParseDuration(r.URL.Query().Get("ttl")); err == nil {
			ttl = d
		}
		tok, err := hub.NewToken(p.tokenSecret, hub.Claims{
			RegisteredClaims: jwt.RegisteredClaims{Subject: "tok-user", ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl))},
			Name:             "Token User",
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		p.tokens.Add(1)
		w.Header().Set("Access-Control-Allow-Origin", "*")
		io.WriteString(w, tok)
	})
	mux.HandleFunc("GET /test/poison", p.servePoison)
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(p.done)
		p.srv.Serve(ln)
	}()
	t.Cleanup(func() {
		p.srv.Close() // not Shutdown: Chromium keeps idle preconnected sockets
		<-p.done
	})
	return p
}

// servePoison answers each join with a recovered session-joined, then a
// text frame that is not UTF-8 (as a poisoned history replay would be): the
// browser fails the connection, and the client rejoins into the same replay.
func (p *pageServer) servePoison(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"sessionhub.batch"}})
	if err != nil {
		return
	}
	defer ws.CloseNow()
	n := p.poisoned.Add(1)
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			return
		}
		var m struct {
			Type string `json:"type"`
			Ref  string `json:"ref"`
		}
		if json.Unmarshal(b, &m) != nil || m.Type != "join-session" {
			continue
		}
		joined := fmt.Sprintf(`{"type":"session-joined","ref":%q,"data":{"sessionId":"s","selfId":"me","participants":[{"userId":"me","name":"Me","role":"learner","isActive":true,"cursor":null,"joinedAt":"2026-01-01T00:00:00Z"}],"epoch":"e1","offset":1,"recovered":%t}}`, m.Ref, n > 1)
		if ws.Write(ctx, websocket.MessageText, []byte(joined)) != nil {
			return
		}
		ws.Write(ctx, websocket.MessageText, []byte("{\"type\":\"broadcast\",\"data\":{\"event\":\"x\",\"payload\":\"\xff\xfe\",\"offset\":2}}"))
	}
}

// hubAt serves a hub (allowing any 127.0.0.1 origin) on addr, which may be
// a port reserved earlier.
func hubAt(t *testing.T, addr string, opts hub.Options) *testServer {
	t.Helper()
	opts.AllowedOrigins = append(opts.AllowedOrigins, "127.0.0.1:*")
	s := &testServer{addr: addr, opts: opts}
	s.start(t)
	t.Cleanup(s.stop)
	return s
}

// reservePort returns a loopback address nothing listens on (free a moment ago).
func reservePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func openResiliencePage(t *testing.T, ps *pageServer) *page {
	t.Helper()
	browser := newBrowser(t)
	p := newPage(t, browser, "resilience")
	p.do("open the page", chromedp.Navigate(ps.url+"/test/resilience.html"))
	p.waitFor("load the module", `window.ready === true`)
	return p
}

func (p *page) make(name, url, opts string) {
	p.t.Helper()
	p.do("make client "+name, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`window.make(%q, %q, %s)`, name, url, opts)))
}

func (p *page) noUncaught() {
	p.t.Helper()
	if u := eval[[]string](p, `window.uncaught`); len(u) > 0 {
		p.t.Fatalf("thrown into the page: %v", u)
	}
}

func wsURL(addr string) string { return "ws://" + addr + "/ws" }

// TestHubJSFirstConnectLateHub: connect() while nothing listens keeps trying
// under the reconnect policy (the failed attempts show as error events) and
// resolves once the hub starts.
func TestHubJSFirstConnectLateHub(t *testing.T) {
	ps := startPageServer(t, nil)
	p := openResiliencePage(t, ps)
	addr := reservePort(t)
	p.make("a", wsURL(addr), `{ reconnect: { initial: 50, max: 200, maxAttempts: 0 } }`)
	p.waitFor("see a failed attempt", `window.rec.a.errors.includes('connect_failed')`)
	if s := eval[string](p, `window.state('a')`); s != "connecting" {
		t.Fatalf("state while the hub is down = %q, want connecting", s)
	}
	hubAt(t, addr, hub.Options{})
	p.waitFor("connect", `window.rec.a.connected === true`)
	if id := evalAwait[string](p, `window.join('a', 'late', 'ada')`); id != "ada" {
		t.Fatalf("joined as %q", id)
	}
	p.noUncaught()
}

// silentProxy forwards TCP connections to target until silence(), after
// which the connections it holds stop forwarding (what arrives is read and
// dropped) without being closed, as a dead NAT entry or a frozen proxy does.
// New connections forward normally.
type silentProxy struct {
	ln       net.Listener
	target   string
	accepted chan time.Time
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
	silent   []*atomic.Bool
}

func startSilentProxy(t *testing.T, target string) *silentProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sp := &silentProxy{ln: ln, target: target, accepted: make(chan time.Time, 16)}
	sp.wg.Add(1)
	go sp.serve()
	t.Cleanup(func() {
		ln.Close()
		sp.mu.Lock()
		for _, c := range sp.conns {
			c.Close()
		}
		sp.mu.Unlock()
		sp.wg.Wait()
	})
	return sp
}

func (sp *silentProxy) addr() string { return sp.ln.Addr().String() }

func (sp *silentProxy) serve() {
	defer sp.wg.Done()
	for {
		c, err := sp.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", sp.target)
		if err != nil {
			c.Close()
			continue
		}
		silent := new(atomic.Bool)
		sp.mu.Lock()
		sp.conns = append(sp.conns, c, up)
		sp.silent = append(sp.silent, silent)
		sp.mu.Unlock()
		select {
		case sp.accepted <- time.Now():
		default:
		}
		pipe := func(dst, src net.Conn) {
			defer sp.wg.Done()
			buf := make([]byte, 32<<10)
			for {
				n, err := src.Read(buf)
				if n > 0 && !silent.Load() {
					dst.Write(buf[:n])
				}
				if err != nil {
					dst.Close()
					return
				}
			}
		}
		sp.wg.Add(2)
		go pipe(up, c)
		go pipe(c, up)
	}
}

// silence stops forwarding on every connection held so far.
func (sp *silentProxy) silence() {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	for _, s := range sp.silent {
		s.Store(true)
	}
}

// TestHubJSSilentConnection: a connection that goes silent is found by the
// heartbeat (a ping with no answer) and replaced, measured on the proxy's
// side within heartbeatInterval + heartbeatTimeout (plus slack for a busy
// machine, far below the hub's own 25 s + 20 s ping timeout); the rejoin
// recovers the broadcasts sent while it was silent.
func TestHubJSSilentConnection(t *testing.T) {
	const interval, timeout = 1000, 1000 // ms
	ps := startPageServer(t, nil)
	h := hubAt(t, "127.0.0.1:0", hub.Options{LeaveGrace: time.Minute})
	proxy := startSilentProxy(t, h.addr)
	p := openResiliencePage(t, ps)
	p.make("a", wsURL(proxy.addr()), fmt.Sprintf(`{ heartbeatInterval: %d, heartbeatTimeout: %d, reconnect: { initial: 20, max: 100, maxAttempts: 0 } }`, interval, timeout))
	p.make("b", wsURL(h.addr), `{}`)
	p.waitFor("connect", `window.rec.a.connected && window.rec.b.connected`)
	<-proxy.accepted
	evalAwait[string](p, `window.join('a', 'silent', 'ann')`)
	evalAwait[string](p, `window.join('b', 'silent', 'bob')`)

	proxy.silence()
	silenced := time.Now()
	sent := evalAwait[[]int64](p, `window.send('b', 'meanwhile', 3)`)
	var replaced time.Time
	select {
	case replaced = <-proxy.accepted:
	case <-time.After(30 * time.Second):
		t.Fatalf("no new connection 30 s after the silence; states %v", eval[[]string](p, `window.rec.a.states`))
	}
	if d, limit := replaced.Sub(silenced), time.Duration(interval+timeout)*time.Millisecond+5*time.Second; d > limit {
		t.Errorf("replaced %v after the silence, want within heartbeatInterval + heartbeatTimeout (+ slack): %v", d, limit)
	}
	p.waitFor("rejoin", `window.rec.a.rejoined.length === 1`)
	if reason := eval[string](p, `window.lastClose('a').reason`); !strings.Contains(reason, "no answer to a ping") {
		t.Errorf("last close reason %q, want the heartbeat's", reason)
	}
	p.waitFor("get what was sent meanwhile", `window.rec.a.broadcasts.length === 3`)
	if got := eval[[]bool](p, `window.rec.a.rejoined`); !got[0] {
		t.Errorf("rejoined recovered = %v, want true", got)
	}
	if got := eval[[]int](p, `window.rec.a.broadcasts`); fmt.Sprint(got) != "[0 1 2]" {
		t.Errorf("broadcasts %v (offsets %v), want payloads [0 1 2]", got, sent)
	}
	p.noUncaught()
}

// TestHubJSOfflineOnline: going offline marks the client reconnecting at
// once; coming back online reconnects at once, although the backoff (10
// minutes) would have it wait.
func TestHubJSOfflineOnline(t *testing.T) {
	ps := startPageServer(t, nil)
	h := hubAt(t, "127.0.0.1:0", hub.Options{LeaveGrace: time.Minute})
	p := openResiliencePage(t, ps)
	p.make("a", wsURL(h.addr), `{ reconnect: { initial: 600000, max: 600000, maxAttempts: 0 } }`)
	p.waitFor("connect", `window.rec.a.connected`)
	evalAwait[string](p, `window.join('a', 'net', 'ann')`)

	// Network.overrideNetworkState sets navigator.onLine and fires the
	// window's offline and online events, as a lost network does.
	emulate := func(offline bool) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
				return err
			}
			_, err := chromedp.Call(ctx, network.OverrideNetworkState, network.OverrideNetworkStateParams{Offline: offline, DownloadThroughput: -1, UploadThroughput: -1})
			return err
		})
	}
	p.do("go offline", emulate(true))
	p.waitFor("show reconnecting", `window.state('a') === 'reconnecting'`)
	p.do("go online", emulate(false))
	p.waitFor("reconnect at once", `window.state('a') === 'connected' && window.rec.a.rejoined.length === 1`)
	if got := eval[[]string](p, `window.rec.a.states`); fmt.Sprint(got) != "[connecting connected reconnecting connected]" {
		t.Errorf("states %v", got)
	}
	p.noUncaught()
}

// TestHubJSAsyncToken: in token mode the client awaits its async token
// function (a fetch) for every connect, the first and the reconnect after a
// cut.
func TestHubJSAsyncToken(t *testing.T) {
	ps := startPageServer(t, []byte("resilience-test-secret-0123456789"))
	h := hubAt(t, "127.0.0.1:0", hub.Options{JWTSecret: ps.tokenSecret, LeaveGrace: time.Minute})
	p := openResiliencePage(t, ps)
	p.make("a", wsURL(h.addr), fmt.Sprintf(`{ tokenURL: %q, reconnect: { initial: 20, max: 100, maxAttempts: 0 } }`, ps.url+"/test/token"))
	p.waitFor("connect", `window.rec.a.connected`)
	if id := evalAwait[string](p, `window.join('a', 'tok', 'ignored')`); id != "tok-user" {
		t.Fatalf("joined as %q, want the token's sub", id)
	}
	if n := ps.tokens.Load(); n != 1 {
		t.Fatalf("%d tokens fetched for one connect", n)
	}
	h.stop() // clients get 1001 and reconnect
	h.start(t)
	p.waitFor("rejoin", `window.rec.a.rejoined.length === 1`)
	if n := ps.tokens.Load(); n < 2 {
		t.Fatalf("%d tokens fetched after a reconnect, want a new one", n)
	}
	if calls := eval[int](p, `window.rec.a.tokenCalls`); int32(calls) != ps.tokens.Load() {
		t.Errorf("token function resolved %d times, %d tokens served", calls, ps.tokens.Load())
	}
	p.noUncaught()
}

// TestHubJSPoisonedReplay (issue 13): a rejoin whose replay fails the
// connection every time (a frame that is not UTF-8) does not loop: the
// attempt counter restarts only after a connection stayed up, so the client
// gives up after maxAttempts.
func TestHubJSPoisonedReplay(t *testing.T) {
	ps := startPageServer(t, nil)
	p := openResiliencePage(t, ps)
	p.make("a", "ws://"+strings.TrimPrefix(ps.url, "http://")+"/test/poison", `{ reconnect: { initial: 20, max: 50, maxAttempts: 3 } }`)
	p.waitFor("connect", `window.rec.a.connected`)
	p.do("join", chromedp.Evaluate[chromedp.Void](`window.join('a', 's', 'me').catch(() => {})`))
	p.waitFor("give up", `window.state('a') === 'disconnected'`)
	if got := eval[int](p, `window.rec.a.final.attempts`); got != 3 {
		t.Errorf("gave up after %d attempts, want 3", got)
	}
	if n := ps.poisoned.Load(); n != 4 {
		t.Errorf("%d connections, want 4 (the first and 3 attempts)", n)
	}
	p.noUncaught()
}

// TestHubJSTokenRefresh (issue 17, the client's part): a token of 2 s,
// refreshed by the client ahead of its expiresAt, keeps one connection up
// through 3 refreshes (several lifetimes) with no reconnect; when refreshing
// fails, the hub's 4001 is not final for a client with a token function: it
// reconnects with a new token and recovers; with a plain token 4001 is final.
func TestHubJSTokenRefresh(t *testing.T) {
	ps := startPageServer(t, []byte("refresh-test-secret-0123456789"))
	h := hubAt(t, "127.0.0.1:0", hub.Options{JWTSecret: ps.tokenSecret, LeaveGrace: time.Minute})
	p := openResiliencePage(t, ps)
	// The client refreshes at 90 % of a short token's life: the last 10 %
	// (exp is in whole seconds, so 0.5 to 0.6 s of a 6 s token) is what a
	// refresh round trip has on a busy machine.
	short := ps.url + "/test/token?ttl=6s"
	fast := `reconnect: { initial: 20, max: 100, maxAttempts: 0 }`

	p.make("a", wsURL(h.addr), fmt.Sprintf(`{ tokenURL: %q, %s }`, short, fast))
	p.waitFor("connect", `window.rec.a.connected`)
	evalAwait[string](p, `window.join('a', 'refresh', 'x')`)
	// Each refresh comes within a token's life (at most 6 s).
	p.waitForWithin("refresh 3 times", `window.rec.a.refreshed >= 3`, 3*6*time.Second)
	if got := eval[[]string](p, `window.rec.a.states`); fmt.Sprint(got) != "[connecting connected]" {
		t.Fatalf("states %v: the connection did not stay up", got)
	}
	if n := ps.tokens.Load(); n < 4 {
		t.Errorf("%d tokens served for 3 refreshes and a connect", n)
	}

	// Refreshes refused: the hub closes with 4001 at the expiry; the client
	// gets a new token, reconnects and rejoins with recover.
	p.do("break refreshes", chromedp.Evaluate[chromedp.Void](`window.rec.a.breakRefresh = true`))
	p.waitForWithin("rejoin after the expiry", `window.rec.a.rejoined.length === 1`, 6*time.Second)
	if code := eval[int](p, `window.lastClose('a').code`); code != 4001 {
		t.Errorf("last close %d, want 4001", code)
	}
	if got := eval[[]bool](p, `window.rec.a.rejoined`); !got[0] {
		t.Errorf("rejoined recovered %v, want true", got)
	}
	if errs := eval[[]string](p, `window.rec.a.errors`); !slices.Contains(errs, "invalid_token") {
		t.Errorf("errors %v, want the refused refresh's invalid_token", errs)
	}

	// A plain token: 4001 is final.
	tok, err := hub.NewToken(ps.tokenSecret, hub.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "plain", ExpiresAt: jwt.NewNumericDate(time.Now().Add(2 * time.Second))}, Name: "Plain"})
	if err != nil {
		t.Fatal(err)
	}
	p.make("b", wsURL(h.addr), fmt.Sprintf(`{ token: %q, %s }`, tok, fast))
	p.waitFor("connect b", `window.rec.b.connected`)
	evalAwait[string](p, `window.join('b', 'refresh', 'x')`)
	p.waitFor("end b", `window.state('b') === 'disconnected'`)
	if code := eval[int](p, `window.rec.b.final.code`); code != 4001 {
		t.Errorf("b ended with %d, want 4001", code)
	}
	p.noUncaught()
}
