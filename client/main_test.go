package client_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sessionhub/sessionhub/client"
	"github.com/sessionhub/sessionhub/hub"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait is the deadline of every wait for an event.
const wait = 5 * time.Second

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testHub is a hub served by an http.Server on a listener of its own, so
// that it can be stopped and another started on the same address.
type testHub struct {
	h       *hub.Hub
	srv     *http.Server
	url     string // ws://127.0.0.1:port/ws
	addr    string
	stopped bool
}

// startHub starts a hub with opts on addr ("" for a fresh port) and stops
// it at the end of the test.
func startHub(t testing.TB, addr string, opts hub.Options) *testHub {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Logger == nil {
		opts.Logger = discardLogger()
	}
	h := hub.New(&opts)
	s := &testHub{h: h, srv: &http.Server{Handler: h.Handler()}, addr: ln.Addr().String()}
	s.url = "ws://" + s.addr + "/ws"
	go s.srv.Serve(ln)
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop shuts the hub down (its clients get 1001) and closes its listener.
func (s *testHub) stop(t testing.TB) {
	t.Helper()
	if s.stopped {
		return
	}
	s.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.h.Shutdown(ctx); err != nil {
		t.Errorf("hub shutdown: %v", err)
	}
	if err := s.srv.Shutdown(ctx); err != nil {
		t.Errorf("server shutdown: %v", err)
	}
}

// dial connects a client to url and closes it at the end of the test.
func dial(t testing.TB, url string, opts *client.Options) *client.Client {
	t.Helper()
	if opts == nil {
		opts = &client.Options{}
	}
	if opts.Logger == nil {
		opts.Logger = discardLogger()
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := client.Dial(ctx, url, opts)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// next returns c's next event.
func next(t testing.TB, c *client.Client) client.Event {
	t.Helper()
	select {
	case e, ok := <-c.Events():
		if !ok {
			t.Fatal("events closed while waiting for an event")
		}
		return e
	case <-time.After(wait):
		t.Fatal("no event within the deadline")
	}
	return nil
}

// expect returns c's next event, which must be a T.
func expect[T client.Event](t testing.TB, c *client.Client) T {
	t.Helper()
	e := next(t, c)
	v, ok := e.(T)
	if !ok {
		var zero T
		t.Fatalf("got %T %+v, want %T", e, e, zero)
	}
	return v
}

// skipTo returns c's first event that is a T for which ok (nil: any)
// holds, dropping the others.
func skipTo[T client.Event](t testing.TB, c *client.Client, ok func(T) bool) T {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case e, open := <-c.Events():
			if !open {
				var zero T
				t.Fatalf("events closed while waiting for %T", zero)
			}
			if v, is := e.(T); is && (ok == nil || ok(v)) {
				return v
			}
		case <-deadline:
			var zero T
			t.Fatalf("no %T within the deadline", zero)
		}
	}
}

// drainClosed reads c's events until the channel is closed and returns
// them.
func drainClosed(t testing.TB, c *client.Client) []client.Event {
	t.Helper()
	var evs []client.Event
	deadline := time.After(wait)
	for {
		select {
		case e, ok := <-c.Events():
			if !ok {
				return evs
			}
			evs = append(evs, e)
		case <-deadline:
			t.Fatalf("events still open after the deadline; got %v", evs)
		}
	}
}

// wsURL turns an httptest URL into a WebSocket one.
func wsURL(ts *httptest.Server) string { return "ws" + strings.TrimPrefix(ts.URL, "http") }
