package client_test

import (
	"context"
	"errors"
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

// fastReconnect retries every few milliseconds, forever.
var fastReconnect = &client.ReconnectPolicy{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond}

func TestReconnectRejoinSameAddress(t *testing.T) {
	s1 := startHub(t, "", hub.Options{})
	a := dial(t, s1.url, &client.Options{Reconnect: fastReconnect})
	b := dial(t, s1.url, &client.Options{Reconnect: fastReconnect})
	ctx := ctxT(t)
	sja, err := a.Join(ctx, "class", protocol.UserInfo{Name: "Ann", Role: protocol.RoleInstructor, Color: "#abc"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Join(ctx, "class", protocol.UserInfo{UserID: "bob", Name: "Bob"}); err != nil {
		t.Fatal(err)
	}
	skipTo[*client.UserJoined](t, a, nil)
	skipTo[*client.SessionJoined](t, b, nil)

	s1.stop(t) // every client gets 1001
	for _, c := range []*client.Client{a, b} {
		sc := skipTo[*client.StateChange](t, c, nil)
		var ce *client.CloseError
		if sc.From != client.Connected || sc.To != client.Reconnecting || !errors.As(sc.Err, &ce) || ce.Code != protocol.CloseGoingAway {
			t.Fatalf("state change %v", sc)
		}
	}
	s2 := startHub(t, s1.addr, hub.Options{}) // same address, fresh hub: no sessions

	var last *client.Rejoined
	for _, c := range []*client.Client{a, b} {
		if sc := skipTo[*client.StateChange](t, c, nil); sc.To != client.Connected {
			t.Fatalf("state change %v", sc)
		}
		rj := expect[*client.Rejoined](t, c)
		if rj.Attempt < 1 || rj.SessionID != "class" || rj.Recovered {
			t.Fatalf("rejoined %+v", rj)
		}
		if c == a && rj.SelfID != sja.SelfID {
			t.Fatalf("ann rejoined as %q, was %q", rj.SelfID, sja.SelfID)
		}
		if last == nil || len(rj.Participants) > len(last.Participants) {
			last = rj
		}
	}
	// The fresh list of whoever rejoined last holds both, as they were.
	if len(last.Participants) != 2 {
		t.Fatalf("participants after the rejoin: %+v", last.Participants)
	}
	for _, p := range last.Participants {
		switch p.UserID {
		case sja.SelfID:
			if p.Name != "Ann" || p.Role != protocol.RoleInstructor || p.Color != "#abc" {
				t.Fatalf("ann is %+v", p)
			}
		case "bob":
		default:
			t.Fatalf("unexpected participant %+v", p)
		}
	}
	// The session works again.
	if err := b.UpdateCursor(ctx, protocol.Cursor{Line: 7, Column: 3}); err != nil {
		t.Fatal(err)
	}
	if cm := skipTo[*client.CursorMoved](t, a, nil); cm.UserID != "bob" || cm.Cursor.Line != 7 {
		t.Fatalf("cursor-moved %+v", cm)
	}
	if a.State() != client.Connected {
		t.Fatalf("state %v", a.State())
	}
	_ = s2
}

// TestBackoffSchedule checks the delays with the injected sleep and a
// jitter that returns the maximum, then the give-up after MaxAttempts.
func TestBackoffSchedule(t *testing.T) {
	for _, tc := range []struct {
		name   string
		policy *client.ReconnectPolicy
		want   []time.Duration
	}{
		{"custom", &client.ReconnectPolicy{Initial: 500 * time.Millisecond, Factor: 2, Max: 10 * time.Second, MaxAttempts: 7},
			[]time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}},
		{"default", nil,
			[]time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startHub(t, "", hub.Options{})
			var mu sync.Mutex
			var slept []time.Duration
			opts := &client.Options{Reconnect: tc.policy}
			client.SetTestHooks(opts,
				func(ctx context.Context, d time.Duration) error {
					mu.Lock()
					slept = append(slept, d)
					mu.Unlock()
					return ctx.Err()
				},
				func(max time.Duration) time.Duration { return max })
			c := dial(t, s.url, opts)
			ctx := ctxT(t)
			if _, err := c.Join(ctx, "s", protocol.UserInfo{Name: "N"}); err != nil {
				t.Fatal(err)
			}
			s.stop(t) // nothing listens on the address any more

			evs := drainClosed(t, c)
			sc, ok := evs[len(evs)-1].(*client.StateChange)
			var gu *client.GaveUpError
			if !ok || sc.To != client.Disconnected || !errors.As(sc.Err, &gu) {
				t.Fatalf("last event %#v", evs[len(evs)-1])
			}
			if gu.Attempts != len(tc.want) || gu.Err == nil {
				t.Fatalf("gave up: %+v", gu)
			}
			mu.Lock()
			got := slept
			mu.Unlock()
			if len(got) != len(tc.want) {
				t.Fatalf("delays %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("delays %v, want %v", got, tc.want)
				}
			}
			if c.State() != client.Disconnected {
				t.Fatalf("state %v", c.State())
			}
			if _, err := c.Ping(ctx); !errors.As(err, &gu) {
				t.Fatalf("ping after giving up: %v", err)
			}
		})
	}
}

func TestPolicyBound(t *testing.T) {
	p := client.ReconnectPolicy{}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for n, w := range want {
		if got := p.Bound(n); got != w {
			t.Errorf("Bound(%d) = %v, want %v", n, got, w)
		}
	}
	if got := p.Bound(5000); got != 10*time.Second {
		t.Errorf("Bound(5000) = %v", got)
	}
}

// TestGiveUpRealClock gives up after MaxAttempts with the real sleep.
func TestGiveUpRealClock(t *testing.T) {
	s := startHub(t, "", hub.Options{})
	c := dial(t, s.url, &client.Options{Reconnect: &client.ReconnectPolicy{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond, MaxAttempts: 3}})
	s.stop(t)
	evs := drainClosed(t, c)
	var states []client.State
	for _, e := range evs {
		if sc, ok := e.(*client.StateChange); ok {
			states = append(states, sc.To)
		}
	}
	sc := evs[len(evs)-1].(*client.StateChange)
	var gu *client.GaveUpError
	if !errors.As(sc.Err, &gu) || gu.Attempts != 3 {
		t.Fatalf("last state change %v", sc)
	}
	if want := []client.State{client.Connected, client.Reconnecting, client.Disconnected}; len(states) != 3 || states[0] != want[0] || states[1] != want[1] || states[2] != want[2] {
		t.Fatalf("states %v", states)
	}
}

// TestCloseWhileReconnecting stops a client that retries forever.
func TestCloseWhileReconnecting(t *testing.T) {
	s := startHub(t, "", hub.Options{})
	c := dial(t, s.url, &client.Options{Reconnect: &client.ReconnectPolicy{Initial: 50 * time.Millisecond}})
	s.stop(t)
	skipTo[*client.StateChange](t, c, func(sc *client.StateChange) bool { return sc.To == client.Reconnecting })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Ping(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ping while reconnecting: %v", err)
	}
	c.Close()
	if c.State() != client.Closed {
		t.Fatalf("state %v", c.State())
	}
	drainClosed(t, c)
}

// TestRateAbuseIsFinal floods pings until the hub closes with 1008, which
// must not be retried.
func TestRateAbuseIsFinal(t *testing.T) {
	s := startHub(t, "", hub.Options{MessageRate: 1, MessageBurst: 1, AbuseWindow: 200 * time.Millisecond})
	c := dial(t, s.url, &client.Options{Reconnect: fastReconnect})
	ctx := ctxT(t)
	limited := 0
	for {
		_, err := c.Ping(ctx)
		var se *client.ServerError
		if errors.As(err, &se) {
			if se.Code != protocol.CodeRateLimited {
				t.Fatal(err)
			}
			limited++
			continue
		}
		if err == nil {
			continue
		}
		var ce *client.CloseError
		if errors.Is(err, client.ErrConnectionLost) {
			continue
		}
		if !errors.As(err, &ce) || ce.Code != protocol.ClosePolicy {
			t.Fatalf("ping: %v", err)
		}
		break
	}
	if limited == 0 {
		t.Fatal("no rate_limited reply before the close")
	}
	evs := drainClosed(t, c)
	for _, e := range evs {
		if sc, ok := e.(*client.StateChange); ok && sc.To == client.Reconnecting {
			t.Fatalf("reconnected after 1008: %v", sc)
		}
	}
	sc := evs[len(evs)-1].(*client.StateChange)
	var ce *client.CloseError
	if sc.To != client.Disconnected || !errors.As(sc.Err, &ce) || ce.Code != protocol.ClosePolicy {
		t.Fatalf("last state change %v", sc)
	}
	if c.State() != client.Disconnected {
		t.Fatalf("state %v", c.State())
	}
}

// closingServer accepts WebSockets and closes the first `closeFirst` of them
// with code right away; later ones stay open until the peer closes.
// Each accept is also reported on the returned channel.
func closingServer(t *testing.T, code websocket.StatusCode, closeFirst int32) (*httptest.Server, *atomic.Int32, chan int32) {
	var accepts atomic.Int32
	accepted := make(chan int32, 100)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{protocol.BatchSubprotocol}})
		if err != nil {
			return
		}
		n := accepts.Add(1)
		accepted <- n
		if n <= closeFirst {
			ws.Close(code, "closing as the test asks")
			return
		}
		for {
			if _, _, err := ws.Read(context.Background()); err != nil {
				ws.CloseNow()
				return
			}
		}
	}))
	t.Cleanup(ts.Close)
	return ts, &accepts, accepted
}

func TestFinalCloseCodes(t *testing.T) {
	for _, code := range []protocol.StatusCode{protocol.CloseNormal, protocol.CloseUnsupported, protocol.ClosePolicy,
		protocol.CloseTokenExpired, protocol.CloseRemovedByAPI} {
		t.Run(websocket.StatusCode(code).String(), func(t *testing.T) {
			ts, accepts, _ := closingServer(t, websocket.StatusCode(code), 1<<30)
			c := dial(t, wsURL(ts), &client.Options{Reconnect: fastReconnect})
			evs := drainClosed(t, c)
			sc := evs[len(evs)-1].(*client.StateChange)
			var ce *client.CloseError
			if sc.From != client.Connected || sc.To != client.Disconnected || !errors.As(sc.Err, &ce) || ce.Code != code || ce.Reason != "closing as the test asks" {
				t.Fatalf("last state change %v", sc)
			}
			if n := accepts.Load(); n != 1 {
				t.Fatalf("%d connections, want 1 (no retry)", n)
			}
			_, err := c.Join(ctxT(t), "s", protocol.UserInfo{Name: "N"})
			if !errors.As(err, &ce) || ce.Code != code {
				t.Fatalf("join after a final close: %v", err)
			}
		})
	}
}

func TestRetriedCloseCodes(t *testing.T) {
	for _, code := range []protocol.StatusCode{protocol.CloseGoingAway, protocol.CloseTooBig, protocol.CloseInternal, protocol.CloseSlowConsumer, 4000} {
		t.Run(websocket.StatusCode(code).String(), func(t *testing.T) {
			ts, _, accepted := closingServer(t, websocket.StatusCode(code), 1)
			c := dial(t, wsURL(ts), &client.Options{Reconnect: fastReconnect})
			expect[*client.StateChange](t, c) // connecting -> connected
			sc := expect[*client.StateChange](t, c)
			var ce *client.CloseError
			if sc.To != client.Reconnecting || !errors.As(sc.Err, &ce) || ce.Code != code {
				t.Fatalf("state change %v", sc)
			}
			if sc := expect[*client.StateChange](t, c); sc.To != client.Connected {
				t.Fatalf("state change %v", sc)
			}
			for want := int32(1); want <= 2; want++ {
				select {
				case n := <-accepted:
					if n != want {
						t.Fatalf("accept %d, want %d", n, want)
					}
				case <-time.After(wait):
					t.Fatalf("no accept %d", want)
				}
			}
		})
	}
}

// TestAbnormalDropReconnects drops the TCP connection without a close
// frame (1006).
func TestAbnormalDropReconnects(t *testing.T) {
	var accepts atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		if accepts.Add(1) == 1 {
			ws.CloseNow()
			return
		}
		for {
			if _, _, err := ws.Read(context.Background()); err != nil {
				ws.CloseNow()
				return
			}
		}
	}))
	defer ts.Close()
	c := dial(t, wsURL(ts), &client.Options{Reconnect: fastReconnect})
	sc := skipTo[*client.StateChange](t, c, func(sc *client.StateChange) bool { return sc.To == client.Reconnecting })
	var ce *client.CloseError
	if !errors.As(sc.Err, &ce) || ce.Code != protocol.CloseAbnormal {
		t.Fatalf("state change %v", sc)
	}
	skipTo[*client.StateChange](t, c, func(sc *client.StateChange) bool { return sc.To == client.Connected })
	c.Close()
}

// TestDialOptions checks what the upgrade request carries.
func TestDialOptions(t *testing.T) {
	got := make(chan http.Header, 2)
	protos := make(chan string, 2)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{protocol.BatchSubprotocol}, InsecureSkipVerify: true})
		if err != nil {
			return
		}
		protos <- ws.Subprotocol()
		for {
			if _, _, err := ws.Read(context.Background()); err != nil {
				ws.CloseNow()
				return
			}
		}
	}))
	defer ts.Close()
	c := dial(t, wsURL(ts), &client.Options{Token: "tok", Origin: "https://app.example.com",
		Header: http.Header{"X-Extra": {"1"}}})
	h := <-got
	if h.Get("Authorization") != "Bearer tok" || h.Get("Origin") != "https://app.example.com" || h.Get("X-Extra") != "1" {
		t.Fatalf("headers %v", h)
	}
	if p := <-protos; p != protocol.BatchSubprotocol {
		t.Fatalf("subprotocol %q", p)
	}
	c.Close()
	c = dial(t, wsURL(ts), &client.Options{DisableBatch: true})
	<-got
	if p := <-protos; p != "" {
		t.Fatalf("subprotocol %q with DisableBatch", p)
	}
	c.Close()
}
