package hub

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sessionhub/sessionhub/protocol"
)

// An idle connection that answers pings keeps one goroutine, waiting on a
// shallow stack: its pongs are taken between messages, and no goroutine is
// left reading deep in the WebSocket library. Messages still get through
// after the pongs, and the connection is never closed for a ping timeout.
func TestIdleReaderWaitsShallow(t *testing.T) {
	h, _, url := serveInternal(t, &Options{PingInterval: 20 * time.Millisecond, PingTimeout: 5 * time.Second}, false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const n = 3
	clients := make([]*websocket.Conn, n)
	for i := range clients {
		clients[i] = dialJoined(ctx, t, url, nil, "idle")
	}
	// The clients answer pings only while they read: read until the test
	// ends, keeping what comes.
	frames := make(chan []byte, 64)
	for _, ws := range clients[:1] {
		go func() {
			for {
				_, b, err := ws.Read(ctx)
				if err != nil {
					return
				}
				frames <- b
			}
		}()
	}
	for _, ws := range clients[1:] {
		go func() {
			for {
				if _, _, err := ws.Read(ctx); err != nil {
					return
				}
			}
		}()
	}

	conns := func() []*conn {
		h.mu.Lock()
		defer h.mu.Unlock()
		var cs []*conn
		for c := range h.conns {
			cs = append(cs, c)
		}
		return cs
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		enough := 0
		for _, c := range conns() {
			if c.pongs.Load() >= 3 {
				enough++
			}
		}
		if enough == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d connections had 3 pongs", enough, n)
		}
		time.Sleep(time.Millisecond) // polling a counter with no event
	}

	// Between pings every reader waits in readPump; none reads deep.
	deep := func() (readers, deep int) {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		return strings.Count(stacks, "hub.(*conn).readPump("), strings.Count(stacks, "hub.(*conn).readFrames(")
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		readers, inFrames := deep()
		if readers == n && inFrames == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d readers, %d of them reading deep in the library, want %d and 0", readers, inFrames, n)
		}
		time.Sleep(time.Millisecond) // a reader may be between a pong and its wait
	}

	// The idle connections still read: a ping gets its pong.
	b, _ := protocol.Encode(protocol.TypePing, "p", map[string]int{"x": 1})
	if err := clients[0].Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case f := <-frames:
			if strings.Contains(string(f), `"type":"pong"`) {
				return
			}
		case <-ctx.Done():
			t.Fatal("no pong to a ping after the idle pings")
		}
	}
}

// Over TLS the reader has no socket to wait on: it waits in the library's
// read, which takes the pongs (OnPongReceived), and they keep the
// connection alive as they do over plain TCP.
func TestPongsOverTLS(t *testing.T) {
	// A pong timeout far longer than a busy machine delays a pong: a
	// broken pong path still shows (no pongs counted, or the close).
	h, ts, url := serveInternal(t, &Options{PingInterval: 10 * time.Millisecond, PingTimeout: 10 * time.Second}, true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws := dialJoined(ctx, t, url, &websocket.DialOptions{HTTPClient: ts.Client()}, "tls")
	readErr := make(chan error, 1)
	go func() {
		for {
			if _, _, err := ws.Read(ctx); err != nil {
				readErr <- err
				return
			}
		}
	}()
	var c *conn
	for deadline := time.Now().Add(20 * time.Second); c == nil || c.pongs.Load() < 20; {
		h.mu.Lock()
		for cc := range h.conns {
			c = cc
		}
		h.mu.Unlock()
		if c != nil && c.wire.Shallow() {
			t.Fatal("a TLS connection has a socket to wait on")
		}
		select {
		case err := <-readErr:
			t.Fatalf("connection ended after %d pongs: %v", c.pongs.Load(), err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("fewer than 20 pongs in 20 s")
		}
		time.Sleep(time.Millisecond) // polling a counter with no event
	}
	if _, _, killed := c.killed(); killed {
		t.Fatalf("connection closed (%s) though it answered every ping", c.closeWhy.label)
	}
}
