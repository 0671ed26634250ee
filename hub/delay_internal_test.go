package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/coder/websocket"

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
	return &conn{id: h.nextID.Add(1), hub: h, tr: wsTransport{}, batch: true, delay: true, netConn: rec,
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
// written at once, and once everything is written the connection holds no
// writer, no queue entry and no armed timer.
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
	}{
		{"a burst within the delay is one frame",
			[]step{{0, 1}, {5 * time.Millisecond, 2}, {7 * time.Millisecond, 1}, {6 * time.Millisecond, 3}}, 1, 7},
		{"a steady stream: a frame per delay",
			[]step{{0, 1}, {4 * time.Millisecond, 1}, {4 * time.Millisecond, 1}, {4 * time.Millisecond, 1}, {4 * time.Millisecond, 1},
				{4 * time.Millisecond, 1}, {4 * time.Millisecond, 1}, {4 * time.Millisecond, 1}, {4 * time.Millisecond, 1}, {4 * time.Millisecond, 1}}, 3, 4},
		{"apart by more than the delay: a frame each",
			[]step{{0, 1}, {50 * time.Millisecond, 1}, {50 * time.Millisecond, 1}}, 3, 1},
		{"a full channel leaves at once",
			[]step{{0, delayedChanSize}, {0, 5}}, 2, delayedChanSize},
		{"more than the channel: channel, then backlog, at once",
			[]step{{0, 3*delayedChanSize + 4}}, 5, delayedChanSize},
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
