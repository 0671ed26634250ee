package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionhub/sessionhub/client"
	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/protocol"
)

// TestSilentConnectionReplaced: a connection that goes silent (the proxy
// stops forwarding without closing anything, so no close frame and no TCP
// end reach the client) is dropped by the heartbeat and replaced, and the
// rejoin recovers the broadcasts sent while it was silent. Nothing but the
// heartbeat can notice it: the hub's own pings are far off (25 s) and
// their failure could not reach the client anyway.
func TestSilentConnectionReplaced(t *testing.T) {
	// Ann's heartbeat: short enough for a quick test, long enough that a
	// busy machine's stall does not pass for silence before the test
	// silences the link.
	p := startProxiedPair(t, hub.Options{LeaveGrace: time.Minute}, "silent",
		client.Options{HeartbeatInterval: 500 * time.Millisecond, HeartbeatTimeout: 2 * time.Second})
	s, px, a, b, sja := p.s, p.px, p.a, p.b, p.joined
	ctx := ctxT(t)
	sendLive(t, b, a, 2)

	// Silent, and new connections refused until Bob has sent everything:
	// then all of it must come through the recovery.
	px.silence(true)
	want := sendN(t, b, 0, 20)
	var sc *client.StateChange
	for sc == nil {
		select {
		case e, ok := <-a.Events():
			if !ok {
				t.Fatal("events closed")
			}
			if s, is := e.(*client.StateChange); is && s.To == client.Reconnecting {
				sc = s
			}
		case <-time.After(3 * wait): // far beyond interval + timeout
			t.Fatal("the silent connection was not dropped")
		}
	}
	var ce *client.CloseError
	if sc.From != client.Connected || !errors.As(sc.Err, &ce) || ce.Code != protocol.CloseAbnormal || !errors.Is(sc.Err, client.ErrHeartbeatTimeout) {
		t.Fatalf("state change %v, want connected -> reconnecting with the heartbeat's 1006", sc)
	}
	px.resume()

	if sc := skipTo[*client.StateChange](t, a, nil); sc.To != client.Connected {
		t.Fatalf("state change %v", sc)
	}
	rj := expect[*client.Rejoined](t, a)
	if !rj.Recovered || rj.Epoch != sja.Epoch || rj.Offset != want[len(want)-1] {
		t.Fatalf("rejoined %+v, want recovered in epoch %s at offset %d", rj.SessionJoined, sja.Epoch, want[len(want)-1])
	}
	marker, err := b.Broadcast(ctx, "marker", nil, protocol.ToAll)
	if err != nil {
		t.Fatal(err)
	}
	checkSequence(t, broadcastsUntil(t, a), "bob", want, marker)

	// After the rejoin the client still fills the events' lists itself.
	c := dial(t, s.url, nil)
	if _, err := c.Join(ctx, "silent", protocol.UserInfo{UserID: "cy", Name: "Cy"}); err != nil {
		t.Fatal(err)
	}
	if uj := expect[*client.UserJoined](t, a); uj.User.UserID != "cy" || len(uj.Participants) != 3 || !equalLists(uj.Participants, a.Participants()) {
		t.Fatalf("user-joined after the rejoin %s; participants %s", js(uj.UserJoined), js(a.Participants()))
	}
}

// TestFirstConnectHubLate: Dial to an address where no hub listens yet
// keeps trying under the reconnect policy; once the hub starts, Dial
// returns a connected client. The hub starts only after the first attempt
// has failed (the token function tells when attempts are made).
func TestFirstConnectHubLate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now

	attempts := make(chan int, 100)
	var calls atomic.Int32
	opts := &client.Options{Reconnect: fastReconnect, Logger: discardLogger(),
		TokenFunc: func(context.Context) (string, error) {
			attempts <- int(calls.Add(1))
			return "", nil
		}}
	type result struct {
		c   *client.Client
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := client.Dial(ctxT(t), "ws://"+addr+"/ws", opts)
		done <- result{c, err}
	}()
	for n := 0; n < 2; { // until the first attempt has failed
		select {
		case n = <-attempts:
		case <-time.After(wait):
			t.Fatal("no second attempt")
		}
	}
	startHub(t, addr, hub.Options{})
	r := <-done
	if r.err != nil {
		t.Fatalf("dial: %v", r.err)
	}
	defer r.c.Close()
	if n := calls.Load(); n < 2 {
		t.Fatalf("%d attempts, want at least 2", n)
	}
	if sc := expect[*client.StateChange](t, r.c); sc.From != client.Connecting || sc.To != client.Connected {
		t.Fatalf("first event %v", sc)
	}
	if _, err := r.c.Join(ctxT(t), "late", protocol.UserInfo{Name: "Late"}); err != nil {
		t.Fatal(err)
	}
}

// TestDialGivesUp: without a hub, Dial makes the first attempt and
// MaxAttempts retries, then returns a *GaveUpError; a negative MaxAttempts
// makes one attempt only.
func TestDialGivesUp(t *testing.T) {
	for _, tc := range []struct {
		maxAttempts int
		want        int // token function calls
	}{{-1, 1}, {2, 3}} {
		t.Run(fmt.Sprint(tc.maxAttempts), func(t *testing.T) {
			var calls atomic.Int32
			_, err := client.Dial(ctxT(t), "ws://127.0.0.1:1/ws", &client.Options{
				Reconnect: &client.ReconnectPolicy{Initial: time.Millisecond, MaxAttempts: tc.maxAttempts},
				TokenFunc: func(context.Context) (string, error) { calls.Add(1); return "", nil }})
			if err == nil {
				t.Fatal("dial to a closed port succeeded")
			}
			var gu *client.GaveUpError
			if tc.maxAttempts >= 0 && (!errors.As(err, &gu) || gu.Attempts != tc.want) {
				t.Fatalf("dial: %v, want a GaveUpError after %d attempts", err, tc.want)
			}
			if n := calls.Load(); int(n) != tc.want {
				t.Fatalf("%d attempts, want %d", n, tc.want)
			}
		})
	}
	// A token function that fails fails the attempt, which is retried.
	errNoToken := errors.New("the identity provider is down")
	var calls atomic.Int32
	_, err := client.Dial(ctxT(t), startHub(t, "", hub.Options{}).url, &client.Options{
		Reconnect: &client.ReconnectPolicy{Initial: time.Millisecond, MaxAttempts: 1},
		TokenFunc: func(context.Context) (string, error) { calls.Add(1); return "", errNoToken }})
	var gu *client.GaveUpError
	if !errors.As(err, &gu) || !errors.Is(err, errNoToken) || gu.Attempts != 2 || calls.Load() != 2 {
		t.Fatalf("dial with a failing token function: %v after %d calls", err, calls.Load())
	}
}

var testSecret = []byte("a-test-secret-of-enough-bytes-for-hs256")

func testToken(t testing.TB, sub, name string, ttl time.Duration) string {
	t.Helper()
	tok, err := hub.NewToken(testSecret, hub.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: sub, ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl))},
		Name:             name})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestTokenFuncEveryConnect: in token mode, the token function is called
// for every connection attempt and its token is the one the hub sees: the
// first (invalid) token is refused with 401, which a token function makes
// worth retrying; after a hub restart the reconnect carries the token of
// the next call (its name shows in the fresh participant list).
func TestTokenFuncEveryConnect(t *testing.T) {
	s1 := startHub(t, "", hub.Options{JWTSecret: testSecret})
	var calls atomic.Int32
	c := dial(t, s1.url, &client.Options{Reconnect: fastReconnect,
		TokenFunc: func(context.Context) (string, error) {
			n := calls.Add(1)
			if n == 1 {
				return "not-a-token", nil
			}
			return testToken(t, "ann", fmt.Sprintf("Ann %d", n), time.Hour), nil
		}})
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d token calls for the first connect, want 2 (401, then success)", n)
	}
	ctx := ctxT(t)
	sj, err := c.Join(ctx, "tok", protocol.UserInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sj.Participants) != 1 || sj.Participants[0].Name != "Ann 2" || sj.SelfID != "ann" {
		t.Fatalf("joined %+v", sj)
	}
	s1.stop(t)
	startHub(t, s1.addr, hub.Options{JWTSecret: testSecret})
	rj := skipTo[*client.Rejoined](t, c, nil)
	n := calls.Load()
	if n < 3 || len(rj.Participants) != 1 || rj.Participants[0].Name != fmt.Sprintf("Ann %d", n) {
		t.Fatalf("rejoined %+v after %d token calls", rj.SessionJoined, n)
	}
}

// TestUpgradeRefusedAtOnce: a refusal that no retry can change ends Dial at
// once, even under a policy that retries forever: 401 with a fixed token,
// 403 for a refused origin.
func TestUpgradeRefusedAtOnce(t *testing.T) {
	s := startHub(t, "", hub.Options{JWTSecret: testSecret})
	for _, tc := range []struct {
		name   string
		opts   client.Options
		status int
	}{
		{"bad token", client.Options{Token: "not-a-token"}, http.StatusUnauthorized},
		{"refused origin", client.Options{Token: testToken(t, "u", "U", time.Hour), Origin: "https://elsewhere.example"}, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			o.Reconnect = &client.ReconnectPolicy{Initial: time.Millisecond, Max: time.Millisecond}
			_, err := client.Dial(ctxT(t), s.url, &o)
			var ue *client.UpgradeError
			if !errors.As(err, &ue) || ue.StatusCode != tc.status || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("dial: %v, want HTTP %d at once", err, tc.status)
			}
		})
	}
}

// TestParticipantsKept: a client that leaves the presence mode to the
// client (diff on the wire) shows, in its events and in Participants, the
// same lists as a client in full presence gets from the server, through
// joins, cursor moves, activity changes and leaves.
func TestParticipantsKept(t *testing.T) {
	s := startHub(t, "", hub.Options{LeaveGrace: -1})
	ctx := ctxT(t)
	kept := dial(t, s.url, nil)
	full := dial(t, s.url, nil)
	if _, err := kept.Join(ctx, "kept", protocol.UserInfo{UserID: "k", Name: "Kept"}); err != nil {
		t.Fatal(err)
	}
	if _, err := full.Join(ctx, "kept", protocol.UserInfo{UserID: "f", Name: "Full"}, client.WithPresence(protocol.PresenceFull)); err != nil {
		t.Fatal(err)
	}
	// what the full-presence client's latest list says, and the kept one's
	same := func(step string, fromFull []protocol.Participant, fromKept []protocol.Participant) {
		t.Helper()
		if !equalLists(fromFull, fromKept) {
			t.Fatalf("%s: full presence %s, kept %s", step, js(fromFull), js(fromKept))
		}
		if l := kept.Participants(); !equalLists(l, fromKept) {
			t.Fatalf("%s: Participants() %s, event %s", step, js(l), js(fromKept))
		}
	}
	skipTo[*client.SessionJoined](t, full, nil)
	uj := skipTo[*client.UserJoined](t, kept, nil) // f
	if uj.User.UserID != "f" {
		t.Fatalf("user-joined %+v", uj)
	}
	if l := kept.Participants(); len(l) != 2 || l[0].UserID != "k" || l[1].UserID != "f" {
		t.Fatalf("participants %s", js(l))
	}

	others := make([]*client.Client, 3)
	for i := range others {
		others[i] = dial(t, s.url, nil)
		id := fmt.Sprintf("o%d", i)
		if _, err := others[i].Join(ctx, "kept", protocol.UserInfo{UserID: id, Name: id}); err != nil {
			t.Fatal(err)
		}
		f := skipTo[*client.UserJoined](t, full, nil)
		k := skipTo[*client.UserJoined](t, kept, nil)
		same("join "+id, f.Participants, k.Participants)
	}
	// Cursors and activity reach both lists; the next membership change
	// shows them.
	if err := others[0].UpdateCursor(ctx, protocol.Cursor{Line: 4, Column: 2, File: "a.go",
		Selection: &protocol.Selection{Start: protocol.Position{Line: 4}, End: protocol.Position{Line: 4, Column: 2}}}); err != nil {
		t.Fatal(err)
	}
	if err := others[1].SetActive(ctx, false); err != nil {
		t.Fatal(err)
	}
	if err := kept.UpdateCursor(ctx, protocol.Cursor{Line: 9, Column: 1}); err != nil {
		t.Fatal(err)
	}
	moved := func(id string) func(client.Event) bool {
		return func(e client.Event) bool { m, ok := e.(*client.CursorMoved); return ok && m.UserID == id }
	}
	idle := func(e client.Event) bool {
		a, ok := e.(*client.UserActivityChanged)
		return ok && a.UserID == "o1" && !a.IsActive
	}
	waitAll(t, full, moved("o0"), idle, moved("k"))
	waitAll(t, kept, moved("o0"), idle)
	others[2].Close()
	f := skipTo[*client.UserLeft](t, full, nil)
	k := skipTo[*client.UserLeft](t, kept, nil)
	if f.Participants == nil || k.Participants == nil {
		t.Fatalf("user-left without a list: full %v, kept %v", f.Participants, k.Participants)
	}
	same("leave o2", *f.Participants, *k.Participants)
	if l := *k.Participants; len(l) != 4 || l[2].Cursor == nil || l[2].Cursor.File != "a.go" || l[3].IsActive || l[0].Cursor == nil || l[0].Cursor.Line != 9 {
		t.Fatalf("list after the moves %s", js(l))
	}
	// The copies are the caller's: changing one changes nothing else.
	(*k.Participants)[2].Cursor.Line = 1000
	if l := kept.Participants(); l[2].Cursor.Line != 4 {
		t.Fatalf("a returned list shares its cursors: %s", js(l))
	}
	if err := kept.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if l := kept.Participants(); l != nil {
		t.Fatalf("participants outside a session %s", js(l))
	}
}

// waitAll reads c's events until each of preds has held for one of them,
// in any order.
func waitAll(t *testing.T, c *client.Client, preds ...func(client.Event) bool) {
	t.Helper()
	left := slices.Clone(preds)
	for len(left) > 0 {
		e := next(t, c)
		for i, p := range left {
			if p(e) {
				left = slices.Delete(left, i, i+1)
				break
			}
		}
	}
}

func equalLists(a, b []protocol.Participant) bool {
	return slices.EqualFunc(a, b, func(x, y protocol.Participant) bool { return js(x) == js(y) })
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestDefaultPresenceOnTheWire: Join without WithPresence asks for diff
// presence; WithPresence is sent as given. A server that only records the
// join-session it gets checks what goes on the wire.
func TestDefaultPresenceOnTheWire(t *testing.T) {
	joins := make(chan protocol.JoinSession, 4)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		for {
			_, b, err := ws.Read(context.Background())
			if err != nil {
				return
			}
			var env struct {
				Type string          `json:"type"`
				Ref  string          `json:"ref"`
				Data json.RawMessage `json:"data"`
			}
			if json.Unmarshal(b, &env) != nil || env.Type != protocol.TypeJoinSession {
				continue
			}
			var j protocol.JoinSession
			json.Unmarshal(env.Data, &j)
			joins <- j
			reply, _ := protocol.Encode(protocol.TypeSessionJoined, env.Ref, protocol.SessionJoined{SessionID: j.SessionID, SelfID: "u", Epoch: "e"})
			ws.Write(context.Background(), websocket.MessageText, reply)
		}
	}))
	defer ts.Close()
	c := dial(t, wsURL(ts), nil)
	ctx := ctxT(t)
	for _, tc := range []struct {
		opts []client.JoinOption
		want protocol.Presence
	}{
		{nil, protocol.PresenceDiff},
		{[]client.JoinOption{client.WithPresence(protocol.PresenceFull)}, protocol.PresenceFull},
		{[]client.JoinOption{client.WithPresence(protocol.PresenceDiff)}, protocol.PresenceDiff},
	} {
		if _, err := c.Join(ctx, "s", protocol.UserInfo{Name: "N"}, tc.opts...); err != nil {
			t.Fatal(err)
		}
		if j := <-joins; j.Presence != tc.want {
			t.Fatalf("join sent presence %q, want %q", j.Presence, tc.want)
		}
	}
}
