package wsfast

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// blockedIn reports whether a goroutine is blocked (on a mutex or on the
// network) inside fn.
func blockedIn(fn string) bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		head, _, _ := strings.Cut(g, "\n")
		if strings.Contains(g, fn) && (strings.Contains(head, "[sync.Mutex.Lock") || strings.Contains(head, "[IO wait")) {
			return true
		}
	}
	return false
}

// tcpConn is the TCP connection under c, which may be wrapped
// (rawsock.Wrap).
func tcpConn(c net.Conn) *net.TCPConn {
	if u, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = u.NetConn()
	}
	return c.(*net.TCPConn)
}

// TestTryWriteKeepsFramesWhole: a frame larger than the socket takes is
// begun by TryWrite and left for Finish; a frame another goroutine writes
// meanwhile (as the library writes a pong) waits for it, and the client
// reads both whole, in order. A frame TryWrite cannot begin because a
// Write holds Out is left whole.
func TestTryWriteKeepsFramesWhole(t *testing.T) {
	big := bytes.Repeat([]byte{'b'}, 2<<20) // more than loopback buffers take unread
	after := []byte("after")
	ts, served := serveOne(t, false, func(p *peer) error {
		tcpConn(p.hw.Conn()).SetWriteBuffer(64 << 10)
		out, tw := p.hw.Out(), NewTryWriter()

		// Held by a Write: nothing is written, the whole frame is kept.
		out.mu.Lock()
		done, err := out.TryWrite(tw, AppendFrame(nil, []byte("first")))
		out.mu.Unlock()
		if err != nil || done || !out.Unfinished() || out.held || string(out.rest[2:]) != "first" {
			t.Errorf("TryWrite while a Write holds Out: done %v, %v, rest %q held %v; want it all left", done, err, out.rest, out.held)
		}
		if err := out.Finish(); err != nil {
			return err
		}

		// Too large for the socket: begun, the rest left.
		done, err = out.TryWrite(tw, AppendFrame(nil, big))
		if err != nil || done || !out.held {
			t.Errorf("TryWrite of %d bytes: done %v, %v, held %v; want it begun and left", len(big), done, err, out.held)
		}
		wrote := make(chan error, 1)
		go func() {
			_, err := out.Write(AppendFrame(nil, after))
			wrote <- err
		}()
		for !blockedIn("wsfast.(*Out).Write(") {
			time.Sleep(time.Millisecond) // polling a state with no event
		}
		if err := out.Finish(); err != nil {
			return err
		}
		if err := <-wrote; err != nil {
			return err
		}
		// Until the client has read everything: serveOne then drops the
		// connection.
		_, _, err = p.ws.Read(context.Background())
		if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
			return fmt.Errorf("after the frames: %v, want the client's close", err)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ws := dialOne(ctx, t, ts)
	ws.SetReadLimit(16 << 20)
	for i, want := range [][]byte{[]byte("first"), big, after} {
		_, got, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("message %d: %d bytes, want %d (%.10q…)", i, len(got), len(want), want)
		}
	}
	ws.Close(websocket.StatusNormalClosure, "")
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}
