package wsfast

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sessionhub/sessionhub/internal/rawsock"
	"github.com/sessionhub/sessionhub/internal/wstest"
)

// peer is the server's side of one test connection, on the upgrade's
// goroutine.
type peer struct {
	hw *Hijacker
	ws *websocket.Conn
	rd Reader
	// libPongs counts the pongs the library read itself (OnPongReceived,
	// called on the goroutine that reads: the handler's).
	libPongs int
}

// serveOne serves WebSockets with fn, run on the upgrade's goroutine after
// Accept and Reader.Init; each fn's error comes on the channel once its
// connection is dropped. The server is plain TCP, or TLS.
func serveOne(t *testing.T, tls bool, fn func(p *peer) error) (*httptest.Server, <-chan error) {
	t.Helper()
	done := make(chan error, 4)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := &peer{hw: &Hijacker{ResponseWriter: w}}
		ws, err := websocket.Accept(p.hw, r, &websocket.AcceptOptions{
			OnPongReceived: func(context.Context, []byte) { p.libPongs++ },
		})
		if err != nil {
			done <- err
			return
		}
		p.ws = ws
		p.rd.Init(p.hw)
		// A safety net: a wait that does not end fails the test by this
		// deadline rather than hanging it (the library sets none).
		p.hw.Conn().SetReadDeadline(time.Now().Add(10 * time.Second))
		err = fn(p)
		ws.CloseNow()
		done <- err
	})
	var ts *httptest.Server
	if tls {
		ts = httptest.NewTLSServer(h)
	} else {
		ts = httptest.NewServer(h)
	}
	t.Cleanup(ts.Close)
	return ts, done
}

// dialOne dials ts's WebSocket as a client (over TLS when ts is a TLS
// server); the connection is dropped at the test's end.
func dialOne(ctx context.Context, t *testing.T, ts *httptest.Server) *websocket.Conn {
	t.Helper()
	url, opts := "ws"+strings.TrimPrefix(ts.URL, "http"), (*websocket.DialOptions)(nil)
	if ts.TLS != nil {
		opts = &websocket.DialOptions{HTTPClient: ts.Client()}
	}
	ws, _, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	return ws
}

// readUntilDropped dials ts as a client that reads (and so answers pings)
// until the server drops the connection, expecting no message, then fails
// the test with the server's error, if any.
func readUntilDropped(t *testing.T, ts *httptest.Server, served <-chan error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws := dialOne(ctx, t, ts)
	if _, _, err := ws.Read(ctx); err == nil {
		t.Fatal("a message from the server, want none")
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

// readAfterPongs is the hub's reader in short: between messages it waits
// shallowly and takes the pongs that came, then has the library read one
// message, which it returns with the pongs TakePong took.
func readAfterPongs(p *peer) (taken int, msg []byte, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		p.rd.Await()
		if p.rd.TakePong() {
			taken++
			continue
		}
		_, msg, err = p.ws.Read(ctx)
		return taken, msg, err
	}
}

// rawUpgrade opens a WebSocket to ts by hand, sending extra right behind
// the upgrade request, and returns the connection, past the 101.
func rawUpgrade(t *testing.T, ts *httptest.Server, extra []byte) net.Conn {
	t.Helper()
	tcp, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tcp.Close() })
	tcp.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET / HTTP/1.1\r\nHost: " + ts.Listener.Addr().String() + "\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	if _, err := tcp.Write(append([]byte(req), extra...)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(tcp), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %s", resp.Status)
	}
	return tcp
}

const pongOp = finBit | opPong

// Pongs in any shape a client may send them leave the library's stream
// intact: the message behind them is read whole, and every pong is
// counted once, by TakePong or by the library. Pongs that arrive whole
// are all TakePong's. A pong that breaks the protocol (unmasked, or longer
// than a control frame may be) is left to the library, which fails the
// connection: the message behind it is not read.
func TestTakePong(t *testing.T) {
	text := wstest.MaskedFrame(finBit|opText, []byte("after"))
	big := wstest.MaskedFrame(pongOp, bytes.Repeat([]byte{'x'}, maxControlPayload))
	tests := []struct {
		name   string
		writes [][]byte
		pongs  int
		// whole: every pong arrives in one write of its own, so TakePong
		// takes them all.
		whole bool
		// broken: the library fails the connection.
		broken bool
	}{
		{name: "whole", writes: [][]byte{wstest.MaskedFrame(pongOp, nil), text}, pongs: 1, whole: true},
		{name: "split after one byte", writes: [][]byte{big[:1], big[1:], text}, pongs: 1},
		{name: "split in the mask", writes: [][]byte{big[:4], big[4:], text}, pongs: 1},
		{name: "split in the payload", writes: [][]byte{big[:60], big[60:], text}, pongs: 1},
		{name: "largest, with a message behind", writes: [][]byte{append(append([]byte{}, big...), text...)}, pongs: 1, whole: true},
		{name: "three in a row", writes: [][]byte{bytes.Repeat(wstest.MaskedFrame(pongOp, []byte("p")), 3), text}, pongs: 3, whole: true},
		{name: "unmasked", writes: [][]byte{append([]byte{pongOp, 1, 'p'}, text...)}, broken: true},
		{name: "too long for a control frame", writes: [][]byte{append(append([]byte{pongOp, 0x80 | 126, 0, 126, 1, 2, 3, 4}, make([]byte, 126)...), text...)}, broken: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			type result struct {
				taken, lib int
				msg        []byte
				err        error
			}
			got := make(chan result, 1)
			hijacked := make(chan struct{})
			ts, done := serveOne(t, false, func(p *peer) error {
				close(hijacked)
				if !p.rd.Shallow() {
					return errors.New("no shallow wait over plain TCP")
				}
				taken, msg, err := readAfterPongs(p)
				got <- result{taken, p.libPongs, msg, err}
				return nil
			})
			tcp := rawUpgrade(t, ts, nil)
			// Bytes sent before the server hijacked the connection may be
			// carried over from net/http's buffer (TestBytesAfterUpgrade),
			// a pong cut after its first byte.
			<-hijacked
			for _, w := range tt.writes {
				if _, err := tcp.Write(w); err != nil {
					t.Fatal(err)
				}
				time.Sleep(5 * time.Millisecond) // let each write arrive on its own
			}
			r := <-got
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if tt.broken {
				if r.err == nil {
					t.Fatalf("read %q behind a broken pong, want the connection failed", r.msg)
				}
				return
			}
			if r.err != nil || string(r.msg) != "after" {
				t.Fatalf("message behind the pongs: %q, %v", r.msg, r.err)
			}
			if r.taken+r.lib != tt.pongs {
				t.Fatalf("%d pongs taken and %d read by the library, want %d in all", r.taken, r.lib, tt.pongs)
			}
			if tt.whole && r.taken != tt.pongs {
				t.Fatalf("TakePong took %d of %d whole pongs", r.taken, tt.pongs)
			}
		})
	}
}

// Bytes a client sends right behind its upgrade request (here a pong and a
// message longer than the read buffer) are carried over, though the
// library hides them from Buffered: Await does not wait for them, TakePong
// takes the pong, and the library reads the message.
func TestBytesAfterUpgrade(t *testing.T) {
	long := fmt.Sprintf(`{"pad":%q}`, strings.Repeat("p", 700))
	type result struct {
		after bool
		taken int
		msg   []byte
		err   error
	}
	got := make(chan result, 1)
	ts, done := serveOne(t, false, func(p *peer) error {
		taken, msg, err := readAfterPongs(p)
		got <- result{p.hw.bytesAfterUpgrade, taken, msg, err}
		return nil
	})
	rawUpgrade(t, ts, append(wstest.MaskedFrame(pongOp, nil), wstest.MaskedFrame(finBit|opText, []byte(long))...))
	r := <-got
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !r.after {
		t.Fatal("the bytes behind the upgrade request were not seen")
	}
	if r.err != nil || string(r.msg) != long {
		t.Fatalf("message behind the upgrade: %d bytes, %v", len(r.msg), r.err)
	}
	if r.taken != 1 {
		t.Fatalf("TakePong took %d pongs, want 1", r.taken)
	}
}

// The hub's ping (WritePing, on the hijacked connection) is answered by
// the library's client, and its pong, whole, is TakePong's.
func TestPingIsAnsweredWithAPong(t *testing.T) {
	ts, done := serveOne(t, false, func(p *peer) error {
		if err := WritePing(p.hw.Conn()); err != nil {
			return err
		}
		p.rd.Await()
		if !p.rd.TakePong() {
			return errors.New("no pong to take after the ping")
		}
		return nil
	})
	readUntilDropped(t, ts, done)
}

// Await ends when the peer goes away, and the read that follows reports
// the end (not serveOne's deadline).
func TestAwaitEndsWhenThePeerGoes(t *testing.T) {
	ready := make(chan struct{})
	ts, done := serveOne(t, false, func(p *peer) error {
		close(ready)
		p.rd.Await()
		_, _, err := p.ws.Read(context.Background())
		if err == nil {
			return errors.New("read a message after the peer went")
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("the wait did not end when the peer went: %w", err)
		}
		return nil
	})
	tcp := rawUpgrade(t, ts, nil)
	<-ready
	tcp.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A TLS connection reads ahead of its socket: there is no shallow wait,
// and TakePong leaves everything to the library's read.
func TestNoShallowWaitOverTLS(t *testing.T) {
	ts, done := serveOne(t, true, func(p *peer) error {
		if p.rd.Shallow() {
			return errors.New("a shallow wait over TLS")
		}
		if p.rd.TakePong() {
			return errors.New("TakePong took a pong over TLS")
		}
		return nil
	})
	readUntilDropped(t, ts, done)
}

// The hijacked connection is wrapped (internal/rawsock), so that the
// library's reads and the hub's writes skip the runtime's system-call
// bookkeeping; a TLS one is left as it is, and Out writes to the same
// connection.
func TestHijackWrapsTheSocket(t *testing.T) {
	for _, overTLS := range []bool{false, true} {
		ts, done := serveOne(t, overTLS, func(p *peer) error {
			want := rawsock.Enabled && !overTLS
			if got := rawsock.Wrapped(p.hw.Conn()); got != want {
				return fmt.Errorf("TLS %v: the hijacked connection wrapped: %v, want %v", overTLS, got, want)
			}
			if p.hw.Out().Conn() != p.hw.Conn() {
				return errors.New("Out writes to another connection than the hijacked one")
			}
			return nil
		})
		readUntilDropped(t, ts, done)
	}
}
