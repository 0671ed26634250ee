package client_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sessionhub/sessionhub/client"
	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/protocol"
)

// Token refresh is timer work on both sides (the client's refresh ahead of
// expiresAt, the hub's 4001 at exp): these tests run a real hub in token
// mode inside a synctest bubble (see synctest_test.go), so that a token of
// 2 s lives exactly 2 s of fake time and 10 s take no real time.

// TestTokenRefreshKeepsConnection: a connection whose token lasts 2 s,
// with a token function, is refreshed ahead of every expiry and stays up
// for 10 s on its first connection: no state change, no second dial.
func TestTokenRefreshKeepsConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bh := startBubbleHub(hub.Options{JWTSecret: testSecret})
		defer bh.stop(t)
		ctx := context.Background()
		var calls atomic.Int32
		a := bh.dial(t, "a", client.Options{
			TokenFunc: func(context.Context) (string, error) {
				calls.Add(1)
				return testToken(t, "ann", "Ann", 2*time.Second), nil
			}})
		defer a.Close()
		sj, err := a.Join(ctx, "refresh", protocol.UserInfo{})
		if err != nil {
			t.Fatal(err)
		}
		if sj.ExpiresAt == nil || !sj.ExpiresAt.After(time.Now()) {
			t.Fatalf("session-joined's expiresAt %v, want a time after %v", sj.ExpiresAt, time.Now())
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		for len(a.Events()) > 0 {
			switch e := (<-a.Events()).(type) {
			case *client.StateChange:
				if e.To != client.Connected || e.From != client.Connecting {
					t.Fatalf("state change %v during the 10 s", e)
				}
			case *client.SessionJoined:
			default:
				t.Fatalf("unexpected %T %+v", e, e)
			}
		}
		if s := a.State(); s != client.Connected {
			t.Fatalf("state %v", s)
		}
		if _, err := a.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		bh.net.mu.Lock()
		dials := bh.net.dials
		bh.net.mu.Unlock()
		if dials != 1 {
			t.Fatalf("%d connections, want 1", dials)
		}
		// 2 s tokens (whole seconds in a JWT, so 1 to 2 s of life each)
		// refreshed at 90 %: at least 5 refreshes besides the connect.
		if n := calls.Load(); n < 6 {
			t.Fatalf("%d token calls in 10 s, want at least 6", n)
		}
	})
}

// TestTokenExpiryFinalWithoutFunc: the same connection with a fixed token
// is closed with 4001 when the token expires, and the client ends there.
func TestTokenExpiryFinalWithoutFunc(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bh := startBubbleHub(hub.Options{JWTSecret: testSecret})
		defer bh.stop(t)
		ctx := context.Background()
		a := bh.dial(t, "a", client.Options{
			Token: testToken(t, "ann", "Ann", 2*time.Second)})
		defer a.Close()
		if _, err := a.Join(ctx, "expire", protocol.UserInfo{}); err != nil {
			t.Fatal(err)
		}
		sc := waitState(t, a, client.Disconnected)
		var ce *client.CloseError
		if !errors.As(sc.Err, &ce) || ce.Code != protocol.CloseTokenExpired || sc.From != client.Connected {
			t.Fatalf("state change %v, want connected -> disconnected with 4001", sc)
		}
		if _, ok := <-a.Events(); ok {
			t.Fatal("events still open after 4001")
		}
		bh.net.mu.Lock()
		dials := bh.net.dials
		bh.net.mu.Unlock()
		if dials != 1 {
			t.Fatalf("%d connections, want 1 (no reconnect)", dials)
		}
	})
}

// TestTokenExpiryReconnectsWithFunc: with a token function, a 4001 is not
// final. The first refresh fails (the function returns a token the hub
// refuses with invalid_token), so the hub closes with 4001 at the old
// token's expiry; the client reconnects with a new token and recovers
// the broadcast sent while it was away.
func TestTokenExpiryReconnectsWithFunc(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bh := startBubbleHub(hub.Options{JWTSecret: testSecret, LeaveGrace: time.Minute})
		defer bh.stop(t)
		ctx := context.Background()
		var calls atomic.Int32
		opts := bh.options("a", client.Options{
			Reconnect: &client.ReconnectPolicy{Initial: time.Second},
			TokenFunc: func(context.Context) (string, error) {
				if calls.Add(1) == 2 {
					return "not-a-token", nil // the first refresh
				}
				return testToken(t, "ann", "Ann", 2*time.Second), nil
			}})
		client.SetTestHooks(opts, nil, func(max time.Duration) time.Duration { return max })
		a, err := client.Dial(ctx, bubbleURL, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		b := bh.dial(t, "b", client.Options{Token: testToken(t, "bob", "Bob", time.Hour)})
		defer b.Close()
		sja, err := a.Join(ctx, "expire", protocol.UserInfo{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Join(ctx, "expire", protocol.UserInfo{}); err != nil {
			t.Fatal(err)
		}
		var refused *client.ErrorEvent
		var sc *client.StateChange
		for sc == nil {
			switch e := nextNow(t, a).(type) {
			case *client.ErrorEvent:
				refused = e
			case *client.StateChange:
				if e.To == client.Reconnecting {
					sc = e
				}
			}
		}
		if refused == nil || refused.Code != protocol.CodeInvalidToken {
			t.Fatalf("refused refresh reported as %+v, want an invalid_token error event", refused)
		}
		var ce *client.CloseError
		if !errors.As(sc.Err, &ce) || ce.Code != protocol.CloseTokenExpired {
			t.Fatalf("state change %v, want reconnecting after 4001", sc)
		}
		off, err := b.Broadcast(ctx, "while-away", 1, protocol.ToAll)
		if err != nil {
			t.Fatal(err)
		}
		waitState(t, a, client.Connected)
		rj, ok := nextNow(t, a).(*client.Rejoined)
		if !ok || !rj.Recovered || rj.Epoch != sja.Epoch || rj.SelfID != "ann" {
			t.Fatalf("after reconnecting: %+v, want a recovered rejoin as ann", rj)
		}
		if e, ok := nextNow(t, a).(*client.BroadcastEvent); !ok || e.Event != "while-away" || e.Offset != off {
			t.Fatalf("after the rejoin: %+v, want while-away at %d", e, off)
		}
		if n := calls.Load(); n != 3 {
			t.Fatalf("%d token calls, want 3 (connect, failed refresh, reconnect)", n)
		}
	})
}

func TestRefreshAfter(t *testing.T) {
	for _, tc := range []struct{ lifetime, want time.Duration }{
		{2 * time.Second, 1800 * time.Millisecond}, // short: at 90 %
		{119 * time.Second, 107100 * time.Millisecond},
		{2 * time.Minute, time.Minute}, // from here: 60 s before
		{5 * time.Minute, 4 * time.Minute},
		{time.Hour, 59 * time.Minute},
		{3 * time.Hour, 3*time.Hour - time.Minute},
		{500 * time.Millisecond, time.Second}, // never sooner than a second
		{-time.Minute, time.Second},           // already expired (clock skew)
	} {
		if got := client.RefreshAfter(tc.lifetime); got != tc.want {
			t.Errorf("RefreshAfter(%v) = %v, want %v", tc.lifetime, got, tc.want)
		}
	}
}
