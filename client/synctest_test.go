package client_test

// Tests whose subject is a timer of the client (the heartbeat, the attempt
// counter's ResetAfter) run in a testing/synctest bubble with fake time: a
// real hub (hub.New, its http.Handler) served over in-memory connections
// (net.Pipe), so that every goroutine of the hub, the HTTP server and the
// client blocks durably and the clock jumps from timer to timer. Durations
// are then exact, and the tests take no real time.

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sessionhub/sessionhub/client"
	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/protocol"
)

// memNet is an in-memory network: a net.Listener for the hub's HTTP server
// and the dialer of the clients' HTTP transport. Each connection is a
// net.Pipe; the test can silence every open one (it stays open, nothing
// goes through) or cut them (closed, as a network failure would).
type memNet struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once

	mu    sync.Mutex
	links map[*memLink]struct{}
	dials int
}

func newMemNet() *memNet {
	return &memNet{conns: make(chan net.Conn), closed: make(chan struct{}), links: map[*memLink]struct{}{}}
}

func (n *memNet) Accept() (net.Conn, error) {
	select {
	case c := <-n.conns:
		return c, nil
	case <-n.closed:
		return nil, net.ErrClosed
	}
}

func (n *memNet) Close() error   { n.once.Do(func() { close(n.closed) }); return nil }
func (n *memNet) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }

// dialer returns the dial function of a client's transport; its
// connections carry tag.
func (n *memNet) dialer(tag string) func(ctx context.Context, _, _ string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) { return n.dial(ctx, tag) }
}

func (n *memNet) dial(ctx context.Context, tag string) (net.Conn, error) {
	a, b := net.Pipe()
	select {
	case n.conns <- b:
	case <-n.closed:
		return nil, errors.New("memnet: connection refused")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	l := &memLink{Conn: a, peer: b, tag: tag, closed: make(chan struct{})}
	n.mu.Lock()
	n.links[l] = struct{}{}
	n.dials++
	n.mu.Unlock()
	return l, nil
}

// silence makes every open connection of the clients tagged tag silent.
func (n *memNet) silence(tag string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for l := range n.links {
		if l.tag == tag {
			l.silent.Store(true)
			delete(n.links, l)
		}
	}
}

// cut closes every open connection, both ends.
func (n *memNet) cut() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for l := range n.links {
		l.peer.Close()
		l.Close()
		delete(n.links, l)
	}
}

// memLink is the client's end of a connection. Once silent, it swallows
// what either side sends, and it never reports the other end's close: only
// its own Close ends it.
type memLink struct {
	net.Conn
	peer      net.Conn
	tag       string
	silent    atomic.Bool
	closed    chan struct{}
	closeOnce sync.Once
}

func (l *memLink) Read(b []byte) (int, error) {
	for {
		n, err := l.Conn.Read(b)
		if !l.silent.Load() {
			return n, err
		}
		if err != nil {
			<-l.closed
			return 0, net.ErrClosed
		}
	}
}

func (l *memLink) Write(b []byte) (int, error) {
	if l.silent.Load() {
		return len(b), nil
	}
	return l.Conn.Write(b)
}

func (l *memLink) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Conn.Close()
}

// bubbleHub is a real hub served on a memNet, inside the bubble.
type bubbleHub struct {
	h   *hub.Hub
	srv *http.Server
	net *memNet
	trs []*http.Transport
}

const bubbleURL = "ws://hub.test/ws"

func startBubbleHub(opts hub.Options) *bubbleHub {
	if opts.Logger == nil {
		opts.Logger = discardLogger()
	}
	b := &bubbleHub{h: hub.New(&opts), net: newMemNet()}
	b.srv = &http.Server{Handler: b.h.Handler()}
	go b.srv.Serve(b.net)
	return b
}

// options returns o with the client's transport set to the memNet, its
// connections tagged tag.
func (b *bubbleHub) options(tag string, o client.Options) *client.Options {
	tr := &http.Transport{DialContext: b.net.dialer(tag)}
	b.trs = append(b.trs, tr)
	o.HTTPClient = &http.Client{Transport: tr}
	if o.Logger == nil {
		o.Logger = discardLogger()
	}
	return &o
}

// dial connects a client, its connections tagged tag, with o to the hub;
// the caller closes it.
func (b *bubbleHub) dial(t *testing.T, tag string, o client.Options) *client.Client {
	t.Helper()
	c, err := client.Dial(context.Background(), bubbleURL, b.options(tag, o))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (b *bubbleHub) stop(t *testing.T) {
	if err := b.h.Shutdown(context.Background()); err != nil {
		t.Errorf("hub shutdown: %v", err)
	}
	b.srv.Close()
	b.net.Close()
	for _, tr := range b.trs {
		tr.CloseIdleConnections()
	}
}

// bubbleWait is the deadline of a wait for an event, in the bubble's fake
// time: far longer than any timer under test, and no real time at all.
const bubbleWait = time.Hour

// nextNow returns c's next event, failing after bubbleWait of fake time.
func nextNow(t *testing.T, c *client.Client) client.Event {
	t.Helper()
	select {
	case e, ok := <-c.Events():
		if !ok {
			t.Fatal("events closed")
		}
		return e
	case <-time.After(bubbleWait):
		t.Fatalf("no event within %v (fake time)", bubbleWait)
	}
	return nil
}

func waitState(t *testing.T, c *client.Client, to client.State) *client.StateChange {
	t.Helper()
	for {
		if sc, ok := nextNow(t, c).(*client.StateChange); ok && sc.To == to {
			return sc
		}
	}
}

// TestHeartbeatDeadline: a connection that goes silent right after a frame
// is dropped exactly HeartbeatInterval+HeartbeatTimeout later (not a
// millisecond before), with ErrHeartbeatTimeout, and replaced; the rejoin
// recovers what was sent meanwhile.
func TestHeartbeatDeadline(t *testing.T) {
	for _, tc := range []struct {
		name              string
		interval, timeout time.Duration // set in Options; 0: the default
		wantAfter         time.Duration
	}{
		{"defaults", 0, 0, client.DefaultHeartbeatInterval + client.DefaultHeartbeatTimeout},
		{"custom", 2 * time.Second, 500 * time.Millisecond, 2500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				bh := startBubbleHub(hub.Options{LeaveGrace: time.Hour})
				defer bh.stop(t)
				ctx := context.Background()
				a := bh.dial(t, "a", client.Options{
					HeartbeatInterval: tc.interval, HeartbeatTimeout: tc.timeout,
					Reconnect: &client.ReconnectPolicy{Initial: 100 * time.Millisecond}})
				defer a.Close()
				b := bh.dial(t, "b", client.Options{})
				defer b.Close()
				if _, err := a.Join(ctx, "hb", protocol.UserInfo{UserID: "a", Name: "A"}); err != nil {
					t.Fatal(err)
				}
				if _, err := b.Join(ctx, "hb", protocol.UserInfo{UserID: "b", Name: "B"}); err != nil {
					t.Fatal(err)
				}
				if _, err := a.Ping(ctx); err != nil { // a's last frame: the pong
					t.Fatal(err)
				}
				synctest.Wait()
				silent := time.Now()
				bh.net.silence("a")
				off, err := b.Broadcast(ctx, "while-silent", 1, protocol.ToAll)
				if err != nil {
					t.Fatal(err)
				}

				time.Sleep(tc.wantAfter - time.Millisecond)
				synctest.Wait()
				if s := a.State(); s != client.Connected {
					t.Fatalf("state %v %v after the last frame, want still connected", s, time.Since(silent))
				}
				sc := waitState(t, a, client.Reconnecting)
				if got := time.Since(silent); got != tc.wantAfter {
					t.Fatalf("dropped %v after the last frame, want %v", got, tc.wantAfter)
				}
				var ce *client.CloseError
				if !errors.As(sc.Err, &ce) || ce.Code != protocol.CloseAbnormal || !errors.Is(sc.Err, client.ErrHeartbeatTimeout) {
					t.Fatalf("state change %v", sc)
				}
				waitState(t, a, client.Connected)
				rj, ok := nextNow(t, a).(*client.Rejoined)
				if !ok || !rj.Recovered {
					t.Fatalf("after reconnecting: %+v, want a recovered rejoin", rj)
				}
				for {
					if e, ok := nextNow(t, a).(*client.BroadcastEvent); ok {
						if e.Event != "while-silent" || e.Offset != off {
							t.Fatalf("replayed %+v, want while-silent at %d", e.BroadcastEvent, off)
						}
						break
					}
				}
			})
		})
	}
}

// TestHeartbeatWaitsForTheApplication: while the client cannot hand the
// events over (the application does not read them and the buffer is full),
// its reader does not read the connection; that is not silence, and the
// heartbeat does not drop the connection, however long it lasts within
// the hub's own ping timeout.
func TestHeartbeatWaitsForTheApplication(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bh := startBubbleHub(hub.Options{})
		defer bh.stop(t)
		ctx := context.Background()
		a := bh.dial(t, "a", client.Options{EventBuffer: 1,
			HeartbeatInterval: time.Second, HeartbeatTimeout: time.Second})
		defer a.Close()
		b := bh.dial(t, "b", client.Options{})
		defer b.Close()
		nextNow(t, a) // connecting -> connected
		if _, err := a.Join(ctx, "busy", protocol.UserInfo{UserID: "a", Name: "A"}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Join(ctx, "busy", protocol.UserInfo{UserID: "b", Name: "B"}); err != nil {
			t.Fatal(err)
		}
		const n = 5
		for i := range n {
			if _, err := b.Broadcast(ctx, "n", i, protocol.ToAll); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(15 * time.Second) // the application reads nothing
		synctest.Wait()
		if s := a.State(); s != client.Connected {
			t.Fatalf("state %v", s)
		}
		got := 0
		for got < n {
			switch e := nextNow(t, a).(type) {
			case *client.BroadcastEvent:
				got++
			case *client.StateChange:
				t.Fatalf("state change %v while the application was slow", e)
			}
		}
	})
}

// TestAttemptCounterRestarts: the reconnect attempt counter restarts only
// after a connection has stayed up for ResetAfter (10 s by default) after
// its rejoin. A connection dropped sooner every time ends in a GaveUpError
// after MaxAttempts reconnects instead of looping; one that stays up long
// enough reconnects at attempt 1 every time.
func TestAttemptCounterRestarts(t *testing.T) {
	const maxAttempts = 3
	for _, tc := range []struct {
		name       string
		stable     time.Duration // ReconnectPolicy.ResetAfter; 0: the default
		upFor      time.Duration // how long each connection stays up after its rejoin
		wantGiveUp bool
	}{
		{"dropped at once", 0, 0, true},
		{"dropped just before the default", 0, 10*time.Second - time.Millisecond, true},
		{"up for the default", 0, 10*time.Second + time.Millisecond, false},
		{"up for a custom ResetAfter", time.Second, time.Second + time.Millisecond, false},
		{"dropped just before a custom ResetAfter", time.Second, time.Second - time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				bh := startBubbleHub(hub.Options{})
				defer bh.stop(t)
				ctx := context.Background()
				c := bh.dial(t, "c", client.Options{Reconnect: &client.ReconnectPolicy{
					Initial: 100 * time.Millisecond, MaxAttempts: maxAttempts, ResetAfter: tc.stable}})
				defer c.Close()
				if _, err := c.Join(ctx, "loop", protocol.UserInfo{UserID: "u", Name: "U"}); err != nil {
					t.Fatal(err)
				}
				var attempts []int
				for cycle := 0; cycle < 2*maxAttempts; cycle++ {
					time.Sleep(tc.upFor)
					bh.net.cut()
					e := waitRejoinOrEnd(t, c)
					if rj, ok := e.(*client.Rejoined); ok {
						attempts = append(attempts, rj.Attempt)
						continue
					}
					sc := e.(*client.StateChange)
					var gu *client.GaveUpError
					if !tc.wantGiveUp || !errors.As(sc.Err, &gu) || gu.Attempts != maxAttempts {
						t.Fatalf("after rejoins at attempts %v: %v", attempts, sc)
					}
					if want := []int{1, 2, 3}; !slices.Equal(attempts, want) {
						t.Fatalf("rejoined at attempts %v, want %v", attempts, want)
					}
					return
				}
				if tc.wantGiveUp {
					t.Fatalf("never gave up; rejoined at attempts %v", attempts)
				}
				for _, a := range attempts {
					if a != 1 {
						t.Fatalf("rejoined at attempts %v, want 1 every time", attempts)
					}
				}
			})
		})
	}
}

// waitRejoinOrEnd returns c's next *Rejoined, or its StateChange to
// Disconnected.
func waitRejoinOrEnd(t *testing.T, c *client.Client) client.Event {
	t.Helper()
	for {
		switch e := nextNow(t, c).(type) {
		case *client.Rejoined:
			return e
		case *client.StateChange:
			if e.To == client.Disconnected {
				return e
			}
		}
	}
}
