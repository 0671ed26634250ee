package hub

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sessionhub/sessionhub/protocol"
)

// An idle connection holds no writer goroutine: the writer starts when the
// hub queues something, ends when the queue is empty, and the next message
// starts one again.
func TestWriterRunsOnlyWhileThereIsSomethingToWrite(t *testing.T) {
	h, _, url := serveInternal(t, nil, false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()

	var c *conn
	writerState := func() int32 {
		h.mu.Lock()
		defer h.mu.Unlock()
		for cc := range h.conns {
			c = cc
		}
		if c == nil {
			return -1
		}
		return c.writer.Load()
	}
	roundTrip := func(typ string, data any) {
		t.Helper()
		b, _ := protocol.Encode(typ, "r", data)
		if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
		if _, _, err := ws.Read(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitIdle := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); writerState() != writerIdle; {
			if time.Now().After(deadline) {
				t.Fatalf("%s: writer state %d, want idle", what, writerState())
			}
			time.Sleep(time.Millisecond) // polling a state with no event
		}
	}
	roundTrip(protocol.TypeJoinSession, protocol.JoinSession{SessionID: "s", UserInfo: protocol.UserInfo{Name: "A"}})
	waitIdle("after session-joined")
	for i := range 3 {
		roundTrip(protocol.TypePing, map[string]int{"i": i}) // the pong needs a writer again
		waitIdle("after a pong")
	}
	// A close the server decides is written by a writer started for it.
	c.kill(closeRemoved)
	if _, _, err := ws.Read(ctx); websocket.CloseStatus(err) != 4003 {
		t.Fatalf("read after kill: %v, want close 4003", err)
	}
}
