package rawsock_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sessionhub/sessionhub/internal/rawsock"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair returns the two ends of a loopback TCP connection, the first
// wrapped; both are closed when the test ends.
func pair(t *testing.T) (wrapped net.Conn, peer *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	dialed, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server := <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	wrapped = rawsock.Wrap(server)
	t.Cleanup(func() { wrapped.Close(); dialed.Close() })
	if got := rawsock.Wrapped(wrapped); got != rawsock.Enabled {
		t.Fatalf("Wrapped(Wrap(a TCP connection)) = %v on %s/%s, want %v", got, runtime.GOOS, runtime.GOARCH, rawsock.Enabled)
	}
	return wrapped, dialed.(*net.TCPConn)
}

// pattern is n bytes that differ from one offset to the next.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

// A write larger than the socket buffers takes the wait in the middle
// (EAGAIN, then the poller) and still arrives whole; so does a read of a
// large stream through a small buffer.
func TestWrapRoundTrip(t *testing.T) {
	w, peer := pair(t)
	peer.SetReadBuffer(16 << 10)
	big := pattern(8<<20, 1)
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(peer, int64(len(big))))
		got <- b
	}()
	if n, err := w.Write(big); n != len(big) || err != nil {
		t.Fatalf("Write of %d bytes: %d, %v", len(big), n, err)
	}
	if b := <-got; !bytes.Equal(b, big) {
		t.Fatalf("the peer read %d bytes, not the %d written", len(b), len(big))
	}

	back := pattern(4<<20, 2)
	go peer.Write(back)
	var read bytes.Buffer
	buf := make([]byte, 1000)
	for read.Len() < len(back) {
		n, err := w.Read(buf)
		if err != nil {
			t.Fatalf("Read after %d bytes: %v", read.Len(), err)
		}
		read.Write(buf[:n])
	}
	if !bytes.Equal(read.Bytes(), back) {
		t.Fatal("the bytes read differ from those the peer wrote")
	}
	if n, err := w.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v; want 0, nil", n, err)
	}
}

// Writes from several goroutines at once each arrive in one piece.
func TestWrapWritesDoNotInterleave(t *testing.T) {
	w, peer := pair(t)
	const writers, size = 8, 256 << 10
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := w.Write(bytes.Repeat([]byte{byte('a' + i)}, size)); err != nil {
				t.Error(err)
			}
		}()
	}
	all, err := io.ReadAll(io.LimitReader(peer, writers*size))
	wg.Wait()
	if err != nil || len(all) != writers*size {
		t.Fatalf("read %d bytes, %v", len(all), err)
	}
	seen := map[byte]bool{}
	for off := 0; off < len(all); off += size {
		block := all[off : off+size]
		if seen[block[0]] || !bytes.Equal(block, bytes.Repeat(block[:1], size)) {
			t.Fatalf("the block at %d is not one writer's whole write", off)
		}
		seen[block[0]] = true
	}
}

// The end of the stream, a reset, a deadline and Close end a Read as they
// end a net.Conn's, with the same errors.
func TestWrapReadEnds(t *testing.T) {
	t.Run("EOF", func(t *testing.T) {
		w, peer := pair(t)
		peer.Write([]byte("last"))
		peer.Close()
		b, err := io.ReadAll(w)
		if string(b) != "last" || err != nil {
			t.Fatalf("ReadAll = %q, %v; want the last bytes, then io.EOF", b, err)
		}
		if n, err := w.Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Fatalf("Read at the end = %d, %v; want io.EOF", n, err)
		}
	})
	t.Run("reset", func(t *testing.T) {
		w, peer := pair(t)
		peer.SetLinger(0) // close sends a reset
		peer.Close()
		_, err := w.Read(make([]byte, 8))
		var oe *net.OpError
		if !errors.Is(err, syscall.ECONNRESET) || !errors.As(err, &oe) || oe.Op != "read" {
			t.Fatalf("Read after a reset: %v; want a read OpError with ECONNRESET", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		w, _ := pair(t)
		w.SetReadDeadline(time.Now().Add(-time.Second))
		_, err := w.Read(make([]byte, 8))
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Read past its deadline: %v; want a timeout", err)
		}
		w.SetReadDeadline(time.Time{})
	})
	t.Run("close", func(t *testing.T) {
		w, _ := pair(t)
		done := make(chan error, 1)
		go func() {
			_, err := w.Read(make([]byte, 8)) // waits: the peer sends nothing
			done <- err
		}()
		w.Close()
		if err := <-done; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read on a closed connection: %v; want net.ErrClosed", err)
		}
	})
}

// A write deadline ends a Write that waits on a peer that does not read,
// with how much it wrote; Close ends one too.
func TestWrapWriteEnds(t *testing.T) {
	t.Run("deadline", func(t *testing.T) {
		w, _ := pair(t)
		w.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		big := make([]byte, 64<<20) // more than the buffers take
		n, err := w.Write(big)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || n <= 0 || n >= len(big) {
			t.Fatalf("Write to a peer that does not read: %d, %v; want part of it and a timeout", n, err)
		}
	})
	t.Run("close", func(t *testing.T) {
		w, _ := pair(t)
		done := make(chan error, 1)
		go func() {
			_, err := w.Write(make([]byte, 64<<20))
			done <- err
		}()
		w.Close()
		if err := <-done; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Write on a closed connection: %v; want net.ErrClosed", err)
		}
	})
}

// Connections with no socket of their own are returned as they are.
func TestWrapLeavesOthers(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if rawsock.Wrap(a) != a || rawsock.Wrapped(a) {
		t.Fatal("Wrap changed a net.Pipe")
	}
}

// NetConn returns the wrapped connection, for its own methods.
func TestWrapNetConn(t *testing.T) {
	w, _ := pair(t)
	if !rawsock.Enabled {
		t.Skip("no raw path here")
	}
	u, ok := w.(interface{ NetConn() net.Conn })
	if !ok {
		t.Fatal("the wrapped connection has no NetConn")
	}
	if _, ok := u.NetConn().(*net.TCPConn); !ok {
		t.Fatalf("NetConn is a %T, want the *net.TCPConn", u.NetConn())
	}
}

// A Read and a Write allocate nothing: the functions RawConn calls are
// bound once per connection, not made per call.
func TestWrapAllocatesNothingPerCall(t *testing.T) {
	w, peer := pair(t)
	out, in, back := []byte("ping"), make([]byte, 4), make([]byte, 4)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := w.Write(out); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(peer, in); err != nil {
			t.Fatal(err)
		}
		if _, err := peer.Write(in); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(w, back); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("a Write and a Read round trip allocate %.1f times, want 0", allocs)
	}
}
