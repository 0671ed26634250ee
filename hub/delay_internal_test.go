package hub

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"

	"github.com/sessionhub/sessionhub/hub/internal/wsfast"
	"github.com/sessionhub/sessionhub/protocol"
)

// frameRecorder is the TCP connection of a delay connection in a synctest
// bubble: it keeps every frame the writer writes with the (fake) time of
// the write. Only Write is used.
type frameRecorder struct {
	net.Conn
	mu     sync.Mutex
	frames []recordedFrame
}

type recordedFrame struct {
	at   time.Time
	msgs []string
}

func (r *frameRecorder) Write(b []byte) (int, error) {
	payload := b[2:] // the test's frames are under 126 bytes... or not:
	switch b[1] {
	case 126:
		payload = b[4:]
	case 127:
		payload = b[10:]
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames = append(r.frames, recordedFrame{at: time.Now(), msgs: strings.Split(string(payload), "\n")})
	return len(b), nil
}

// TryWrite makes the recorder a connection the flusher writes to without
// waiting (wsfast.Out.TryWrite): it takes every frame whole.
func (r *frameRecorder) TryWrite(b []byte) (int, error) { return r.Write(b) }

func (r *frameRecorder) take() []recordedFrame {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.frames
	r.frames = nil
	return f
}

// delayConn is a sessionhub.batch connection of h whose frames go to a
// frameRecorder.
func delayConn(h *Hub) (*conn, *frameRecorder) {
	rec := &frameRecorder{}
	return &conn{id: h.nextID.Add(1), hub: h, tr: wsTransport{}, batch: true, delay: true, out: wsfast.NewOut(rec),
		send: make(chan []byte, delayedChanSize), closing: make(chan struct{}), writersDone: make(chan struct{})}, rec
}

// writePumps counts the goroutines running a writer.
func writePumps() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte("hub.(*conn).writePump("))
}

// TestWriteDelay plays deliveries to a delay connection on fake time
// (testing/synctest, so that the delay is exact however busy the machine):
// what is queued within the delay leaves in one frame, no message is
// written later than the delay after it was queued, a full send channel is
// written at once, the flusher writes what is due at the delay's end, and
// once everything is written the connection holds no writer, no queue
// entry and no armed timer.
func TestWriteDelay(t *testing.T) {
	const delay = 20 * time.Millisecond
	type step struct {
		after time.Duration // since the previous step
		n     int           // messages queued at once
	}
	tests := []struct {
		name      string
		steps     []step
		maxFrames int
		minFrame  int // messages in the fullest frame
		// flushed is how many frames the flusher writes (at a delay's
		// end): -1 all, -2 any number (the writer goroutine races it).
		flushed int
	}{
		{"a burst within the delay is one frame",
			[]step{{0, 1}, {5 * time.Millisecond, 2}, {7 * time.Millisecond, 1}, {6 * time.Millisecond, 3}}, 1, 7, -1},
		{"a steady stream: a frame per delay",
			[]step{{0, 1}, {4 * time.Millisecond, 1}, {4 * time.Millisecond, 1}, {4 * time.Millisecond, 1}, {4 * time.Millisecond, 1},
				{4 * time.Millisecond, 1}, {4 * time.Millisecond, 1}, {4 * time.Millisecond, 1}, {4 * time.Millisecond, 1}, {4 * time.Millisecond, 1}}, 3, 4, -1},
		{"apart by more than the delay: a frame each",
			[]step{{0, 1}, {50 * time.Millisecond, 1}, {50 * time.Millisecond, 1}}, 3, 1, -1},
		{"a full channel leaves at once",
			[]step{{0, delayedChanSize}, {0, 5}}, 2, delayedChanSize, -2},
		{"more than the channel: channel, then backlog, at once",
			[]step{{0, 3*delayedChanSize + 4}}, 5, delayedChanSize, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := New(&Options{WriteDelay: delay, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
				defer h.Shutdown(context.Background())
				c, rec := delayConn(h)
				queuedAt := map[string]time.Time{}
				var order []string
				for _, s := range tt.steps {
					time.Sleep(s.after)
					h.call(func() {
						for range s.n {
							m := fmt.Sprintf("m%d", len(order))
							order = append(order, m)
							queuedAt[m] = time.Now()
							h.deliver(c, []byte(m))
						}
					})
				}
				time.Sleep(2 * delay)
				synctest.Wait()

				frames := rec.take()
				var got []string
				fullest := 0
				for _, f := range frames {
					fullest = max(fullest, len(f.msgs))
					for _, m := range f.msgs {
						got = append(got, m)
						if wait := f.at.Sub(queuedAt[m]); wait > delay {
							t.Errorf("%s waited %v, more than the delay %v", m, wait, delay)
						}
					}
				}
				if strings.Join(got, " ") != strings.Join(order, " ") {
					t.Errorf("written %v, want %v in order", got, order)
				}
				if len(frames) > tt.maxFrames || fullest < tt.minFrame {
					t.Errorf("%d frames, the fullest with %d messages; want at most %d, one with at least %d",
						len(frames), fullest, tt.maxFrames, tt.minFrame)
				}

				// Idle again: nothing of the delay remains.
				var waiting int
				var armed bool
				h.call(func() { waiting, armed = len(h.delayQ)-h.delayHead, h.delayArmed })
				if waiting != 0 || armed || c.delayed {
					t.Errorf("idle: %d connections in the delay queue, timer armed %v, conn delayed %v; want none", waiting, armed, c.delayed)
				}
				if st, n := c.writer.Load(), writePumps(); st != writerIdle || n != 0 {
					t.Errorf("idle: writer state %d, %d writePump goroutines; want idle and none", st, n)
				}
				// The frames due at a delay's end were the flusher's to
				// write, none left to a writer goroutine.
				want := tt.flushed
				if want == -1 {
					want = len(frames)
				}
				if n, left := h.flusher.written.Load(), h.flusher.handedOn.Load(); (want >= 0 && n != uint64(want)) || left != 0 {
					t.Errorf("the flusher wrote %d frames and left %d to a writer goroutine; want %d and none", n, left, want)
				}
			})
		})
	}
}

// TestWriteDelayMembershipStorm: 200 joins within 100 ms reach a member
// in diff presence under a 20 ms delay in a handful of frames, each
// user-joined whole and none with the list.
func TestWriteDelayMembershipStorm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const joins = 200
		h := New(&Options{WriteDelay: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		defer h.Shutdown(context.Background())
		c, rec := delayConn(h)
		h.submit(inbound{c: c, at: time.Now(), msg: protocol.Message{Type: protocol.TypeJoinSession,
			Payload: &protocol.JoinSession{SessionID: "s", Presence: protocol.PresenceDiff, UserInfo: protocol.UserInfo{UserID: "watcher", Name: "W"}}}})
		for i := range joins {
			time.Sleep(500 * time.Microsecond)
			o := socketless(h)
			h.submit(inbound{c: o, at: time.Now(), msg: protocol.Message{Type: protocol.TypeJoinSession,
				Payload: &protocol.JoinSession{SessionID: "s", Presence: protocol.PresenceDiff, UserInfo: protocol.UserInfo{UserID: fmt.Sprint("u", i), Name: "U"}}}})
		}
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		frames := rec.take()
		joined := 0
		for _, f := range frames {
			for _, m := range f.msgs {
				if strings.Contains(m, `"type":"user-joined"`) {
					joined++
					if strings.Contains(m, `"participants"`) {
						t.Fatalf("diff presence got a list: %s", m)
					}
				}
			}
		}
		// 100 ms of joins: about 6 delays, 7 frames of 32.
		if joined != joins || len(frames) > 12 {
			t.Errorf("%d user-joined in %d frames; want %d in at most 12", joined, len(frames), joins)
		}
		t.Logf("%d user-joined in %d frames", joined, len(frames))
	})
}

// TestWriteDelaySlowConsumer: under the delay a connection whose queue
// fills is still closed with 1013.
func TestWriteDelaySlowConsumer(t *testing.T) {
	const queue = 100
	h := New(&Options{WriteDelay: time.Hour, SendQueue: queue, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() { h.Shutdown(context.Background()) })
	c := testReadsSend(&conn{id: h.nextID.Add(1), hub: h, batch: true, delay: true,
		send: make(chan []byte, delayedChanSize), closing: make(chan struct{}), writersDone: make(chan struct{})})
	h.call(func() {
		for i := range queue + 1 {
			h.deliver(c, fmt.Appendf(nil, "%d", i))
		}
	})
	if code, _, killed := c.killed(); !killed || code != protocol.CloseSlowConsumer {
		t.Fatalf("killed = %v with %d, want 1013 once %d messages wait", killed, code, queue)
	}
	c.closeTimer.Stop()
}

// TestWriteDelayOverWebSockets runs the delay on real connections, with a
// delay (an hour) that no test outlives: a client without batching gets
// its pong at once; a batch client's pong waits, and a shutdown writes it
// before the close frame.
func TestWriteDelayOverWebSockets(t *testing.T) {
	h, _, url := serveInternal(t, &Options{WriteDelay: time.Hour}, false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ping, _ := protocol.Encode(protocol.TypePing, "p", nil)

	plain := dialJoined(ctx, t, url, nil, "s") // session-joined came at once too
	if err := plain.Write(ctx, websocket.MessageText, ping); err != nil {
		t.Fatal(err)
	}
	if _, b, err := plain.Read(ctx); err != nil || !bytes.Contains(b, []byte(`"pong"`)) {
		t.Fatalf("client without batching: %s, %v; want its pong at once", b, err)
	}

	batch, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{protocol.BatchSubprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	defer batch.CloseNow()
	if err := batch.Write(ctx, websocket.MessageText, ping); err != nil {
		t.Fatal(err)
	}
	// The pong is queued, held by the delay: wait for it on the server.
	for deadline := time.Now().Add(5 * time.Second); ; {
		var conns []*conn
		h.mu.Lock()
		for c := range h.conns {
			conns = append(conns, c)
		}
		h.mu.Unlock()
		held := false
		h.call(func() {
			for _, c := range conns {
				held = held || (c.delay && c.delayed && len(c.send) == 1)
			}
		})
		if held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the batch client's pong was never held")
		}
		time.Sleep(time.Millisecond) // polling a state with no event
	}
	go h.Shutdown(context.Background())
	if _, b, err := batch.Read(ctx); err != nil || !bytes.Contains(b, []byte(`"pong"`)) {
		t.Fatalf("batch client at shutdown: %s, %v; want its held pong", b, err)
	}
	if _, _, err := batch.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("after the pong: %v, want close 1001", err)
	}
}

// TestWriteDelayCursorsEndOnTheLastPosition: a sender's burst of cursor
// updates, coalesced to the cursor rate and held by the delay, reaches a
// batch client in order and ends on the sender's true last position; at a
// rate that lets most through, they come in frames of several.
func TestWriteDelayCursorsEndOnTheLastPosition(t *testing.T) {
	tests := []struct {
		name        string
		rate        float64
		wantSeveral bool
	}{
		{"coalesced to the default rate", DefaultCursorRate, false},
		{"at a rate that lets most through", 1000, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, url := serveInternal(t, &Options{WriteDelay: 30 * time.Millisecond, CursorRate: tt.rate}, false)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			batchOpts := &websocket.DialOptions{Subprotocols: []string{protocol.BatchSubprotocol}}
			recv := dialJoined(ctx, t, url, batchOpts, "s")
			send := dialJoined(ctx, t, url, nil, "s")
			if _, _, err := recv.Read(ctx); err != nil { // the sender's user-joined
				t.Fatal(err)
			}
			const last = 300
			go func() {
				for i := 1; i <= last; i++ {
					b, _ := protocol.Encode(protocol.TypeCursorUpdate, "", protocol.Cursor{Line: 1, Column: i})
					if send.Write(ctx, websocket.MessageText, b) != nil {
						return
					}
				}
			}()
			prev, frames, msgs := 0, 0, 0
			for prev != last {
				_, b, err := recv.Read(ctx)
				if err != nil {
					t.Fatalf("after column %d: %v", prev, err)
				}
				frames++
				for _, m := range bytes.Split(b, []byte("\n")) {
					var ev struct {
						Type string
						Data protocol.CursorMoved
					}
					if err := json.Unmarshal(m, &ev); err != nil || ev.Type != protocol.TypeCursorMoved {
						t.Fatalf("got %s (%v), want cursor-moved", m, err)
					}
					msgs++
					if col := ev.Data.Cursor.Column; col <= prev || col > last {
						t.Fatalf("column %d after %d", col, prev)
					} else {
						prev = col
					}
				}
			}
			if tt.wantSeveral && msgs <= frames {
				t.Errorf("%d cursor-moved in %d frames; want frames of several", msgs, frames)
			}
		})
	}
}

// tcpPair returns the server's and the client's end of a loopback TCP
// connection, both closed at the test's end.
func tcpPair(t *testing.T) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// readMessages reads the server's unmasked text frames from r until it
// has n messages (a frame may carry several, separated by '\n').
func readMessages(t *testing.T, r *bufio.Reader, n int) []string {
	t.Helper()
	var msgs []string
	for len(msgs) < n {
		var head [2]byte
		if _, err := io.ReadFull(r, head[:]); err != nil {
			t.Fatalf("after %d messages: %v", len(msgs), err)
		}
		if head[0] != 0x81 {
			t.Fatalf("after %d messages: frame header %#x, want a final text frame", len(msgs), head[0])
		}
		size := uint64(head[1] & 0x7f)
		switch size {
		case 126:
			var ext [2]byte
			io.ReadFull(r, ext[:])
			size = uint64(binary.BigEndian.Uint16(ext[:]))
		case 127:
			var ext [8]byte
			io.ReadFull(r, ext[:])
			size = binary.BigEndian.Uint64(ext[:])
		}
		payload := make([]byte, size)
		if _, err := io.ReadFull(r, payload); err != nil {
			t.Fatalf("after %d messages: %v", len(msgs), err)
		}
		msgs = append(msgs, strings.Split(string(payload), "\n")...)
	}
	return msgs
}

// TestFlusherLeavesAStuckFrameToItsWriter runs the flusher on real
// sockets: a frame larger than a client that does not read can take is
// begun by the flusher and left to the connection's writer goroutine; the
// flusher goes on, and another client's frames keep coming meanwhile; once
// the first client reads, it gets every message whole and in order.
func TestFlusherLeavesAStuckFrameToItsWriter(t *testing.T) {
	h := New(&Options{WriteDelay: 5 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() { h.Shutdown(context.Background()) })
	sockConn := func(nc net.Conn) *conn {
		return &conn{id: h.nextID.Add(1), hub: h, tr: wsTransport{}, batch: true, delay: true, out: wsfast.NewOut(nc),
			send: make(chan []byte, delayedChanSize), closing: make(chan struct{}), writersDone: make(chan struct{})}
	}
	stuckServer, stuckClient := tcpPair(t)
	liveServer, liveClient := tcpPair(t)
	stuckServer.SetWriteBuffer(4096)
	stuck, live := sockConn(stuckServer), sockConn(liveServer)

	// 20 messages of 16 KiB, one frame: far more than the socket takes.
	var want []string
	h.call(func() {
		for i := range 20 {
			m := fmt.Sprintf("%02d%s", i, strings.Repeat("x", 16<<10))
			want = append(want, m)
			h.deliver(stuck, []byte(m))
		}
	})
	for deadline := time.Now().Add(10 * time.Second); h.flusher.handedOn.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the flusher never left the frame to the connection's writer")
		}
		time.Sleep(time.Millisecond) // polling a counter with no event
	}

	liveClient.SetReadDeadline(time.Now().Add(10 * time.Second))
	liveReader := bufio.NewReader(liveClient)
	for i := range 3 {
		m := fmt.Sprintf("live %d", i)
		h.call(func() { h.deliver(live, []byte(m)) })
		if got := readMessages(t, liveReader, 1); got[0] != m {
			t.Fatalf("the other client got %q, want %q", got, m)
		}
	}

	stuckClient.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := readMessages(t, bufio.NewReader(stuckClient), len(want))
	if !slices.Equal(got, want) {
		t.Fatalf("the client that did not read got %d messages, not the %d sent whole and in order", len(got), len(want))
	}
}
