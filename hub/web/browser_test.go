package web_test

// End-to-end tests of the demo page (GET /) and of the browser module
// (/hub.js) in a real headless Chromium, driven with chromedp. The hub runs
// in-process on a real listener, so that a test can restart it on the same
// address.
//
// Without /usr/bin/chromium the tests are skipped, except under CI=true,
// where they fail: CI must not pass by skipping them.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/sessionhub/sessionhub/hub"
)

const chromiumPath = "/usr/bin/chromium"

// wait bounds every step that waits for the page to reach a state.
const wait = 10 * time.Second

var screenshotPath = flag.String("screenshot", "", "write a screenshot of the demo page with two participants to this file (TestScreenshot)")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// ---------- the hub under test ----------

// testServer is a hub behind a real http.Server, with two test-only routes
// next to the hub's own: /test/bare.html (a page that uses /hub.js directly)
// and /test/badws (a WebSocket server that sends garbage).
type testServer struct {
	addr string
	opts hub.Options

	h    *hub.Hub
	srv  *http.Server
	done chan struct{}
	once *sync.Once
}

func startServer(t *testing.T, opts hub.Options) *testServer {
	t.Helper()
	s := &testServer{addr: "127.0.0.1:0", opts: opts}
	s.start(t)
	t.Cleanup(s.stop)
	return s
}

func (s *testServer) url() string { return "http://" + s.addr }

// start serves a fresh hub on s.addr (a new port the first time, then the
// same one).
func (s *testServer) start(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		if ln, err = net.Listen("tcp", s.addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // the old listener's port may take a moment to free
	}
	if err != nil {
		t.Fatalf("listen on %s: %v", s.addr, err)
	}
	s.addr = ln.Addr().String()
	opts := s.opts
	opts.Logger = discardLogger()
	s.h = hub.New(&opts)
	mux := http.NewServeMux()
	mux.Handle("/", s.h.Handler())
	mux.HandleFunc("GET /test/bare.html", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, barePage)
	})
	mux.HandleFunc("GET /test/badws", serveBadWS)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	s.done = make(chan struct{})
	s.once = new(sync.Once)
	go func() {
		defer close(s.done)
		s.srv.Serve(ln)
	}()
}

// stop shuts the hub down (its clients get 1001), then closes the HTTP server.
func (s *testServer) stop() {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.h.Shutdown(ctx)
		// Close, not Shutdown: Chromium keeps preconnected sockets with no
		// request on them, which Shutdown waits 5 s for.
		s.srv.Close()
		<-s.done
	})
}

// serveBadWS answers a WebSocket with input no client should choke on, then
// closes with 4003 (removed by the server API), a final code.
func serveBadWS(w http.ResponseWriter, r *http.Request) {
	// The module offers the batch subprotocol; a browser fails a handshake
	// whose answer leaves it out.
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"sessionhub.batch"}})
	if err != nil {
		return
	}
	defer ws.CloseNow()
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	for _, msg := range []string{`not json`, `[1,2,3]`, `{"type":"no-such-type","data":{}}`, `{"type":"cursor-moved","data":null}`, `{"type":"pong","data":{"ok":true}}`} {
		if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			return
		}
	}
	ws.Write(ctx, websocket.MessageBinary, []byte{0xff, 0x00})
	ws.Close(4003, "removed")
}

// ---------- the browser ----------

func requireChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing (CI=true: the browser tests must run; .ci/run installs it): %v", chromiumPath, err)
		}
		t.Skipf("%s is missing; install Debian's chromium package to run the browser tests", chromiumPath)
	}
}

// newBrowser starts a headless Chromium with a fresh profile; it is closed,
// and waited for, when the test ends.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	requireChromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		defer ccancel()
		chromedp.Cancel(cctx) // closes the browser and waits for the process
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // no timeout here: it would end the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// page is one tab of the browser.
type page struct {
	t    *testing.T
	name string
	ctx  context.Context
	stop context.CancelFunc
}

func newPage(t *testing.T, browser context.Context, name string) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	p := &page{t: t, name: name, ctx: ctx, stop: cancel}
	t.Cleanup(p.close)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("%s: open a tab: %v", name, err)
	}
	return p
}

// close closes the tab (as a user closing it would) and waits until it is gone.
func (p *page) close() {
	if p.stop == nil {
		return
	}
	chromedp.Cancel(p.ctx)
	p.stop()
	p.stop = nil
}

func (p *page) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, wait)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.t.Fatalf("%s: %s: %v%s", p.name, what, err, p.logTail())
	}
}

// waitFor polls the JavaScript expression until it is truthy.
func (p *page) waitFor(what, expr string) {
	p.t.Helper()
	p.do(what, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(wait), chromedp.WithPollingInterval(50*time.Millisecond)))
}

// waitForWithin is waitFor for something that takes up to d by design
// (plus wait, for a busy machine).
func (p *page) waitForWithin(what, expr string, d time.Duration) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, d+wait)
	defer cancel()
	poll := chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(d+wait), chromedp.WithPollingInterval(50*time.Millisecond))
	if err := chromedp.Do(ctx, poll); err != nil {
		p.t.Fatalf("%s: %s: %v%s", p.name, what, err, p.logTail())
	}
}

func eval[T any](p *page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, wait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("%s: evaluate %s: %v", p.name, expr, err)
	}
	return v
}

// logTail is the demo page's event log, for failure messages.
func (p *page) logTail() string {
	ctx, cancel := context.WithTimeout(p.ctx, 2*time.Second)
	defer cancel()
	lines, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`[...document.querySelectorAll('#log li')].slice(0, 15).map(li => li.innerText.replace(/\s+/g, ' '))`))
	if err != nil || len(lines) == 0 {
		return ""
	}
	return "\n  event log (newest first):\n    " + strings.Join(lines, "\n    ")
}

// ---------- the demo page ----------

// join opens the demo page and joins the session through its form.
func (p *page) join(base, session, name, role string) (selfID string) {
	p.t.Helper()
	p.do("open the demo page",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible("#join"),
		chromedp.WaitVisible(`#status[data-state="idle"]`),
		chromedp.SetValue("#session", session),
		chromedp.SetValue("#name", name),
		chromedp.SetValue("#role", role),
		chromedp.Click("#join"),
		chromedp.WaitVisible(`#status[data-state="connected"]`),
		chromedp.WaitVisible("#leave"),
	)
	p.waitFor("see itself in the list", `document.querySelector('#participants li[data-self="true"]')`)
	return eval[string](p, `document.querySelector('#participants li[data-self="true"]').dataset.userId`)
}

func (p *page) participantNames() []string {
	p.t.Helper()
	return eval[[]string](p, `[...document.querySelectorAll('#participants li[data-user-id] .name')].map(e => e.textContent)`)
}

// waitSees waits until the participants list shows the user, with the role
// badge, the activity state and, if cursor is not empty, that line:col.
func (p *page) waitSees(userID, name, role, cursor string) {
	p.t.Helper()
	sel := fmt.Sprintf(`#participants li[data-user-id=%q]`, userID)
	cond := fmt.Sprintf(`(() => {
		const li = document.querySelector(%q);
		if (!li) return false;
		if (li.querySelector('.name').textContent !== %q) return false;
		if (li.dataset.role !== %q || !li.querySelector('.badge.' + %q)) return false;
		if (!['true', 'false'].includes(li.dataset.active)) return false;
		return %q === '' || li.querySelector('.cursor').textContent === %q;
	})()`, sel, name, role, role, cursor, cursor)
	p.waitFor(fmt.Sprintf("see %s (%s) cursor %q; list: %v", name, role, cursor, p.participantNames()), cond)
}

func (p *page) waitGone(userID string) {
	p.t.Helper()
	p.waitFor("see "+userID+" leave", fmt.Sprintf(`!document.querySelector('#participants li[data-user-id=%q]')`, userID))
}

func (p *page) state() string {
	return eval[string](p, `document.querySelector('#status').dataset.state`)
}

// TestDemoPage: two tabs join one session through the form and see each
// other; a caret move in one shows on the other, as line:col next to the
// name and as a marker in the gutter; a tab that closes leaves at once.
func TestDemoPage(t *testing.T) {
	// A long leave grace: a closing tab must leave at once because it closes
	// cleanly, not because a grace ran out.
	srv := startServer(t, hub.Options{LeaveGrace: time.Minute})
	browser := newBrowser(t)
	ada := newPage(t, browser, "ada")
	linus := newPage(t, browser, "linus")

	adaID := ada.join(srv.url(), "algo-101", "Ada", "instructor")
	linusID := linus.join(srv.url(), "algo-101", "Linus", "learner")
	if adaID == linusID {
		t.Fatalf("both pages got userId %s", adaID)
	}
	linus.waitSees(adaID, "Ada", "instructor", "")
	ada.waitSees(linusID, "Linus", "learner", "")
	ada.waitSees(adaID, "Ada", "instructor", "")
	if n := eval[string](ada, `document.querySelector('#count').textContent`); n != "2" {
		t.Errorf("ada's participant count = %q, want 2", n)
	}

	// Linus puts his caret on line 7, column 5, then presses → (a real key
	// event): line 7, column 6, shown 1-based as in an editor.
	linus.do("move the caret",
		chromedp.Evaluate[chromedp.Void](`(() => {
			const t = document.querySelector('#code');
			const lines = t.value.split('\n');
			const pos = lines.slice(0, 6).join('\n').length + 1 + 4;
			t.focus();
			t.setSelectionRange(pos, pos);
		})()`),
		chromedp.KeyEvent(kb.ArrowRight), // to the focused textarea
	)
	linus.waitFor("show its own caret", `document.querySelector('#caret').textContent === 'Ln 7, Col 6'`)
	ada.waitSees(linusID, "Linus", "learner", "7:6")
	ada.waitFor("show linus's marker on line 7 of the gutter",
		fmt.Sprintf(`document.querySelector('#gutter .ln[data-line="7"] .marker[data-user-id=%q]')`, linusID))
	ada.waitFor("show linus's caret in the text", fmt.Sprintf(`document.querySelector('#overlay .rcaret[data-user-id=%q]')`, linusID))

	// A second move, the other way round.
	ada.do("move ada's caret",
		chromedp.Evaluate[chromedp.Void](`(() => {
			const t = document.querySelector('#code');
			t.focus();
			t.setSelectionRange(2, 2);
		})()`),
		chromedp.KeyEvent(kb.End), // to the focused textarea
	)
	linus.waitSees(adaID, "Ada", "instructor", "1:13") // "package main" has 12 characters

	// Linus closes his tab: Ada sees him leave at once, that is within
	// waitGone's wait, far inside the one-minute grace that a leave that
	// was not clean would take (however busy the machine).
	start := time.Now()
	linus.close()
	ada.waitGone(linusID)
	t.Logf("the leave took %v", time.Since(start))
	ada.waitFor("count one", `document.querySelector('#count').textContent === '1'`)
	if got := ada.state(); got != "connected" {
		t.Errorf("ada's status = %q, want connected", got)
	}
}

// TestDemoPageReconnect: the hub restarts on the same address; both tabs
// show "reconnecting", then "connected", and rejoin by themselves.
func TestDemoPageReconnect(t *testing.T) {
	srv := startServer(t, hub.Options{})
	browser := newBrowser(t)
	ada := newPage(t, browser, "ada")
	linus := newPage(t, browser, "linus")
	adaID := ada.join(srv.url(), "restart", "Ada", "instructor")
	linusID := linus.join(srv.url(), "restart", "Linus", "learner")
	ada.waitSees(linusID, "Linus", "learner", "")
	linus.waitSees(adaID, "Ada", "instructor", "")

	t0 := time.Now()
	srv.stop() // clients get 1001 (server going away) and try again
	t.Logf("stopped in %v", time.Since(t0))
	for _, p := range []*page{ada, linus} {
		p.waitFor("show reconnecting", `document.querySelector('#status').dataset.state === 'reconnecting'`)
		t.Logf("%s reconnecting at %v", p.name, time.Since(t0))
		p.waitFor("pulse while reconnecting", `getComputedStyle(document.querySelector('#status .dot')).animationName === 'pulse'`)
	}
	srv.start(t)
	t.Logf("restarted at %v", time.Since(t0))

	for _, p := range []*page{ada, linus} {
		p.waitFor("reconnect", `document.querySelector('#status').dataset.state === 'connected'`)
		p.waitFor("log reconnecting → connected", `[...document.querySelectorAll('#log li[data-kind="state"] .text')].some(e => e.textContent.startsWith('reconnecting → connected'))`)
		p.waitFor("log the rejoin", `document.querySelector('#log li[data-kind="rejoined"]')`)
	}
	// Same users (the selfId the first hub gave), each again in the other's list.
	ada.waitSees(linusID, "Linus", "learner", "")
	linus.waitSees(adaID, "Ada", "instructor", "")
	ada.waitSees(adaID, "Ada", "instructor", "")
	for _, p := range []*page{ada, linus} {
		if names := p.participantNames(); len(names) != 2 {
			t.Errorf("%s sees %v after the restart, want two participants", p.name, names)
		}
	}

	// The new hub carries cursors again.
	linus.do("move the caret after the restart",
		chromedp.Evaluate[chromedp.Void](`(() => { const t = document.querySelector('#code'); t.focus(); t.setSelectionRange(0, 0); })()`),
		chromedp.KeyEvent(kb.ArrowDown), // to the focused textarea
	)
	ada.waitSees(linusID, "Linus", "learner", "2:1")
}

// ---------- /hub.js used directly ----------

// barePage uses the module's HubClient API directly, with no demo page, and
// puts what it saw in window.result.
const barePage = `<!doctype html>
<meta charset="utf-8">
<title>hub.js bare</title>
<pre id="out">running</pre>
<script type="module">
import { HubClient, States, FINAL_CLOSE_CODES } from '/hub.js';

const uncaught = [];
window.addEventListener('error', (e) => uncaught.push(String(e.message)));
window.addEventListener('unhandledrejection', (e) => uncaught.push(String(e.reason)));
const timeout = (p, ms, what) => Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error('timeout: ' + what)), ms))]);
const once = (target, type, pred = () => true) => new Promise((res) => {
  const f = (e) => { if (pred(e.detail)) { target.removeEventListener(type, f); res(e.detail); } };
  target.addEventListener(type, f);
});

async function main() {
  const r = { exports: { States: typeof States, FINAL_CLOSE_CODES: Array.from(FINAL_CLOSE_CODES || []) } };
  const a = new HubClient();
  const b = new HubClient(undefined, { cursorThrottle: 20 });
  r.isEventTarget = a instanceof EventTarget;
  r.initialState = a.state;
  const states = [];
  a.addEventListener('statechange', (e) => states.push(e.detail.to));

  await timeout(a.connect(), 5000, 'a.connect');
  await timeout(b.connect(), 5000, 'b.connect');
  r.connectedState = a.state;
  const ja = await timeout(a.join('bare-1', { name: 'Ada', role: 'instructor' }), 5000, 'a.join');
  const bSeesA = once(b, 'participants', (list) => list.length === 2);
  const aSeesB = once(a, 'user-joined');
  const jb = await timeout(b.join('bare-1', { name: 'Linus' }), 5000, 'b.join');
  r.joinA = { sessionId: ja.sessionId, selfId: ja.selfId, n: ja.participants.length, epoch: typeof ja.epoch };
  r.joinB = { selfId: jb.selfId, n: jb.participants.length };
  r.selfIdA = a.selfId;
  r.sessionIdA = a.sessionId;
  r.userJoined = (await timeout(aSeesB, 5000, 'user-joined')).user;
  await timeout(bSeesA, 5000, 'participants');
  r.participantsA = a.participants.map((p) => p.name);

  r.pingMs = await timeout(a.ping(), 5000, 'ping');

  // Several quick moves: the throttle must deliver the last one.
  const moved = once(b, 'cursor-moved', (d) => d.cursor.line === 12);
  a.updateCursor({ line: 10, column: 1 });
  a.updateCursor({ line: 11, column: 2 });
  a.updateCursor({ line: 12, column: 4, file: 'src/main.go', selection: { start: { line: 12, column: 1 }, end: { line: 12, column: 4 } } });
  r.cursorMoved = await timeout(moved, 5000, 'cursor-moved');
  r.cursorInList = b.participants.find((p) => p.userId === a.selfId)?.cursor ?? null;

  const got = once(b, 'broadcast');
  r.ackOffset = await timeout(a.broadcast('hello', { text: 'hi' }), 5000, 'broadcast');
  r.broadcast = await timeout(got, 5000, 'broadcast event');

  try {
    await timeout(b.join('not a valid id!', { name: 'Linus' }), 5000, 'bad join');
    r.badJoin = 'resolved';
  } catch (err) {
    r.badJoin = err.code || String(err);
  }

  const left = once(a, 'user-left');
  b.close();
  r.bStateAfterClose = b.state;
  r.userLeft = (await timeout(left, 5000, 'user-left')).userId;
  r.participantsAfterLeave = a.participants.map((p) => p.name);
  a.close();
  r.states = states;

  // A server that sends garbage, then closes with a final code.
  const c = new HubClient('ws://' + location.host + '/test/badws', { reconnect: { initial: 50, maxAttempts: 2 } });
  const errors = [];
  c.addEventListener('error', (e) => errors.push(e.detail));
  const final = once(c, 'statechange', (d) => d.to === 'disconnected');
  await timeout(c.connect(), 5000, 'c.connect').catch((err) => { r.badConnectError = String(err); });
  r.badFinal = await timeout(final, 5000, 'final close');
  await new Promise((res) => setTimeout(res, 300)); // would a reconnect start?
  r.badState = c.state;
  r.badErrors = errors;
  r.uncaught = uncaught;
  return r;
}

main().then((r) => { window.result = r; }, (err) => { window.result = { failed: String(err && err.stack || err), uncaught }; })
  .finally(() => { document.getElementById('out').textContent = 'done'; });
</script>
`

type cursor struct {
	Line      int    `json:"line"`
	Column    int    `json:"column"`
	File      string `json:"file"`
	Selection *struct {
		Start struct{ Line, Column int } `json:"start"`
		End   struct{ Line, Column int } `json:"end"`
	} `json:"selection"`
}

type bareResult struct {
	Failed  string `json:"failed"`
	Exports struct {
		States          string `json:"States"`
		FinalCloseCodes []int  `json:"FINAL_CLOSE_CODES"`
	} `json:"exports"`
	IsEventTarget  bool   `json:"isEventTarget"`
	InitialState   string `json:"initialState"`
	ConnectedState string `json:"connectedState"`
	JoinA          struct {
		SessionID string `json:"sessionId"`
		SelfID    string `json:"selfId"`
		N         int    `json:"n"`
		Epoch     string `json:"epoch"`
	} `json:"joinA"`
	JoinB struct {
		SelfID string `json:"selfId"`
		N      int    `json:"n"`
	} `json:"joinB"`
	SelfIDA    string `json:"selfIdA"`
	SessionIDA string `json:"sessionIdA"`
	UserJoined struct {
		UserID string `json:"userId"`
		Name   string `json:"name"`
		Role   string `json:"role"`
	} `json:"userJoined"`
	ParticipantsA []string `json:"participantsA"`
	PingMs        *float64 `json:"pingMs"`
	CursorMoved   struct {
		UserID string `json:"userId"`
		Cursor cursor `json:"cursor"`
	} `json:"cursorMoved"`
	CursorInList *cursor `json:"cursorInList"`
	AckOffset    int     `json:"ackOffset"`
	Broadcast    struct {
		Event   string          `json:"event"`
		From    string          `json:"from"`
		Payload json.RawMessage `json:"payload"`
		Offset  int             `json:"offset"`
		TS      int64           `json:"ts"`
	} `json:"broadcast"`
	BadJoin                string   `json:"badJoin"`
	BStateAfterClose       string   `json:"bStateAfterClose"`
	UserLeft               string   `json:"userLeft"`
	ParticipantsAfterLeave []string `json:"participantsAfterLeave"`
	States                 []string `json:"states"`

	BadConnectError string `json:"badConnectError"`
	BadFinal        struct {
		From  string `json:"from"`
		To    string `json:"to"`
		Error *struct {
			Code   json.RawMessage `json:"code"`
			Reason string          `json:"reason"`
		} `json:"error"`
	} `json:"badFinal"`
	BadState  string `json:"badState"`
	BadErrors []struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"badErrors"`
	Uncaught []string `json:"uncaught"`
}

// TestHubJSDirect: a page imports /hub.js and uses HubClient by itself: connect,
// join, ping, a second client in the same page gets cursor-moved with the exact
// cursor, broadcast and ack, an error reply with its code, a clean close seen as
// user-left; and a server sending garbage then a final close code throws nothing
// into the page and is not retried.
func TestHubJSDirect(t *testing.T) {
	srv := startServer(t, hub.Options{})
	browser := newBrowser(t)
	p := newPage(t, browser, "bare")
	p.do("open the bare page", chromedp.Navigate(srv.url()+"/test/bare.html"))
	p.waitFor("finish", `window.result !== undefined`)
	raw := eval[[]byte](p, `window.result`)
	var r bareResult
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	if r.Failed != "" {
		t.Fatalf("the page failed: %s (uncaught: %v)", r.Failed, r.Uncaught)
	}
	t.Logf("result: %s", raw)

	check := func(what string, ok bool) {
		t.Helper()
		if !ok {
			t.Errorf("%s; result: %s", what, raw)
		}
	}
	check("HubClient is an EventTarget", r.IsEventTarget)
	check("States is exported", r.Exports.States == "object")
	for _, code := range []int{1003, 1008, 4001, 4003} {
		found := false
		for _, c := range r.Exports.FinalCloseCodes {
			found = found || c == code
		}
		check(fmt.Sprintf("FINAL_CLOSE_CODES holds %d", code), found)
	}
	check("state starts idle", r.InitialState == "idle")
	check("state is connected after connect()", r.ConnectedState == "connected")
	check("join resolves with session-joined", r.JoinA.SessionID == "bare-1" && r.JoinA.SelfID != "" && r.JoinA.N == 1 && r.JoinA.Epoch == "string")
	check("hub.selfId and hub.sessionId", r.SelfIDA == r.JoinA.SelfID && r.SessionIDA == "bare-1")
	check("the second join sees both", r.JoinB.N == 2 && r.JoinB.SelfID != r.JoinA.SelfID)
	check("user-joined names the newcomer as a learner", r.UserJoined.UserID == r.JoinB.SelfID && r.UserJoined.Name == "Linus" && r.UserJoined.Role == "learner")
	check("hub.participants is kept up to date", strings.Join(r.ParticipantsA, ",") == "Ada,Linus")
	check("ping resolves with a duration", r.PingMs != nil && *r.PingMs >= 0 && *r.PingMs < 5000)
	c := r.CursorMoved.Cursor
	check("cursor-moved carries the exact cursor", r.CursorMoved.UserID == r.JoinA.SelfID && c.Line == 12 && c.Column == 4 && c.File == "src/main.go" &&
		c.Selection != nil && c.Selection.Start.Line == 12 && c.Selection.Start.Column == 1 && c.Selection.End.Line == 12 && c.Selection.End.Column == 4)
	check("the participant's cursor follows", r.CursorInList != nil && r.CursorInList.Line == 12 && r.CursorInList.Column == 4)
	check("broadcast resolves with the ack offset", r.AckOffset == 1)
	check("broadcast event", r.Broadcast.Event == "hello" && r.Broadcast.From == r.JoinA.SelfID && string(r.Broadcast.Payload) == `{"text":"hi"}` &&
		r.Broadcast.Offset == 1 && r.Broadcast.TS > 0)
	check("an error reply rejects with its code", r.BadJoin == "invalid_session_id")
	check("close() makes the state closed", r.BStateAfterClose == "closed")
	check("a clean close is seen as user-left", r.UserLeft == r.JoinB.SelfID && strings.Join(r.ParticipantsAfterLeave, ",") == "Ada")
	check("statechange went connecting, connected, closed", strings.Join(r.States, ",") == "connecting,connected,closed")

	check("a final close code ends in disconnected", r.BadFinal.To == "disconnected" && r.BadState == "disconnected")
	check("the final close is reported with its code", r.BadFinal.Error != nil && string(r.BadFinal.Error.Code) == "4003")
	bad := 0
	for _, e := range r.BadErrors {
		if e.Code == "bad_server_message" {
			bad++
		}
	}
	check("bad server input is reported as error events", bad >= 3)
	check("nothing was thrown into the page", len(r.Uncaught) == 0)
}

// ---------- the screenshot ----------

// TestScreenshot writes docs/demo.png when run with
//
//	go test ./hub/web -run TestScreenshot -screenshot ../../docs/demo.png
func TestScreenshot(t *testing.T) {
	if *screenshotPath == "" {
		t.Skip("no -screenshot path")
	}
	srv := startServer(t, hub.Options{})
	browser := newBrowser(t)
	ada := newPage(t, browser, "ada")
	linus := newPage(t, browser, "linus")
	for _, p := range []*page{ada, linus} {
		p.do("set the viewport", chromedp.EmulateViewport(1280, 800))
	}
	adaID := ada.join(srv.url(), "algo-101", "Ada Lovelace", "instructor")
	linusID := linus.join(srv.url(), "algo-101", "Linus", "learner")
	ada.waitSees(linusID, "Linus", "learner", "")
	linus.do("move the caret",
		chromedp.Evaluate[chromedp.Void](`(() => {
			const t = document.querySelector('#code');
			const lines = t.value.split('\n');
			const pos = lines.slice(0, 8).join('\n').length + 1 + 19;
			t.focus();
			t.setSelectionRange(pos, pos);
		})()`),
		chromedp.KeyEvent(kb.ArrowRight), // to the focused textarea
	)
	ada.waitSees(linusID, "Linus", "learner", "9:21")
	ada.do("place ada's caret",
		chromedp.Evaluate[chromedp.Void](`(() => {
			const t = document.querySelector('#code');
			const lines = t.value.split('\n');
			const pos = lines.slice(0, 5).join('\n').length + 1 + 12;
			t.focus();
			t.setSelectionRange(pos, pos);
		})()`),
		chromedp.KeyEvent(kb.ArrowRight), // to the focused textarea
	)
	linus.waitSees(adaID, "Ada Lovelace", "instructor", "6:14")
	ctx, cancel := context.WithTimeout(ada.ctx, wait)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(*screenshotPath, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", *screenshotPath, len(png))
}
