package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/sessionhub/sessionhub/protocol"
)

// TestSendQueueBacklog drives deliver on the run loop against a connection
// whose writer the test plays: messages past the send channel wait in the
// backlog, come out in order when the writer drains and wakes run, and the
// queue holds exactly Options.SendQueue before the connection is dropped.
func TestSendQueueBacklog(t *testing.T) {
	const queue = 40
	h := New(&Options{SendQueue: queue, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() { h.Shutdown(context.Background()) })
	newConn := func() *conn {
		return testReadsSend(&conn{id: h.nextID.Add(1), hub: h, send: make(chan []byte, sendChanSize), closing: make(chan struct{}), writersDone: make(chan struct{})})
	}
	msg := func(i int) []byte { return fmt.Appendf(nil, "%d", i) }

	t.Run("order across channel and backlog", func(t *testing.T) {
		c := newConn()
		h.call(func() {
			for i := range queue {
				h.deliver(c, msg(i))
			}
		})
		var backlog int
		h.call(func() { backlog = len(c.backlog) })
		if want := queue - sendChanSize; backlog != want || !c.backlogged.Load() {
			t.Fatalf("backlog = %d (flag %v), want %d with the flag up", backlog, c.backlogged.Load(), want)
		}
		for i := range queue { // the writer's part: drain, wake run when empty
			if got := <-c.send; string(got) != string(msg(i)) {
				t.Fatalf("message %d = %s, want %s", i, got, msg(i))
			}
			if len(c.send) == 0 && c.backlogged.Load() {
				h.wake(c)
			}
		}
		h.call(func() { backlog = cap(c.backlog) })
		if backlog != 0 || c.backlogged.Load() || c.queued.Load() != 0 {
			t.Errorf("after draining: backlog cap %d, flag %v, queued %d; want all released", backlog, c.backlogged.Load(), c.queued.Load())
		}
		if _, _, killed := c.killed(); killed {
			t.Error("a connection that kept up was killed")
		}
	})

	t.Run("full queue is a slow consumer", func(t *testing.T) {
		c := newConn()
		h.call(func() {
			for i := range queue + 1 {
				h.deliver(c, msg(i))
			}
		})
		code, _, killed := c.killed()
		if !killed || code != protocol.CloseSlowConsumer {
			t.Fatalf("killed = %v with %d, want 1013 once %d messages wait", killed, code, queue)
		}
		var gone bool
		h.call(func() { gone = c.ended && c.backlog == nil })
		if !gone {
			t.Error("the slow consumer was not marked gone with its backlog released")
		}
		c.closeTimer.Stop()
	})
}

// TestReplayLongerThanSendQueue checks that a recovery replay longer than
// the send queue is queued whole, not taken for a slow consumer, and that
// the extra room goes once the backlog has drained.
func TestReplayLongerThanSendQueue(t *testing.T) {
	const queue, missed = 32, 100
	h := New(&Options{SendQueue: queue, HistorySize: 1000, LeaveGrace: time.Minute,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() { h.Shutdown(context.Background()) })
	newConn := func() *conn {
		return testReadsSend(&conn{id: h.nextID.Add(1), hub: h, send: make(chan []byte, sendChanSize), closing: make(chan struct{}), writersDone: make(chan struct{})})
	}
	drain := func(c *conn, n int) []string {
		var got []string
		for len(got) < n {
			got = append(got, string(<-c.send))
			if len(c.send) == 0 && c.backlogged.Load() {
				h.wake(c)
			}
		}
		return got
	}
	join := func(c *conn, user string, rec *protocol.Recover) {
		h.submit(inbound{c: c, at: time.Now(), msg: protocol.Message{Type: protocol.TypeJoinSession,
			Payload: &protocol.JoinSession{SessionID: "s", Recover: rec, UserInfo: protocol.UserInfo{UserID: user, Name: user}}}})
	}
	sender, late := newConn(), newConn()
	join(sender, "sender", nil)
	var sj protocol.SessionJoined
	json.Unmarshal(envData(t, drain(sender, 1)[0]), &sj)
	for i := range missed {
		h.submit(inbound{c: sender, at: time.Now(), msg: protocol.Message{Type: protocol.TypeBroadcast,
			Payload: &protocol.Broadcast{Event: "e", To: protocol.ToAll, Payload: []byte(fmt.Sprint(i))}}})
	}
	join(late, "late", &protocol.Recover{Epoch: sj.Epoch, Offset: 0})
	got := drain(late, 1+missed)
	if _, _, killed := late.killed(); killed {
		t.Fatalf("a replay of %d events with a send queue of %d closed the connection", missed, queue)
	}
	json.Unmarshal(envData(t, got[0]), &sj)
	if !sj.Recovered {
		t.Fatalf("session-joined %s, want recovered", got[0])
	}
	for i, m := range got[1:] {
		var ev protocol.BroadcastEvent
		json.Unmarshal(envData(t, m), &ev)
		if ev.Offset != int64(i+1) {
			t.Fatalf("replayed event %d has offset %d, want %d", i, ev.Offset, i+1)
		}
	}
	var room int
	h.call(func() { room = late.replayRoom })
	if room != 0 {
		t.Errorf("replay room %d after the backlog drained, want 0", room)
	}
}

func envData(t *testing.T, frame string) []byte {
	t.Helper()
	var env protocol.Envelope
	if err := json.Unmarshal([]byte(frame), &env); err != nil {
		t.Fatal(err)
	}
	return env.Data
}

// TestRunRefillsBeforeMoreWork: a writer that emptied its channel while
// run holds a backlog for it (Hub.wake) is refilled before run takes more
// work. The backlog is one short of the send queue and two more replies
// wait in the inbox: refilled first, the channel has room for them; taken
// after them, as a select that picks among ready cases at random would
// about one time in four, they overflow the queue and close the connection
// with 1013. That was a class-start storm's undoing: every join adds a
// message for every member, and refills lost the race to joins.
func TestRunRefillsBeforeMoreWork(t *testing.T) {
	h := New(&Options{SendQueue: 2 * sendChanSize, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() { h.Shutdown(context.Background()) })
	for i := range 20 {
		c := testReadsSend(h.newConn(nil, "192.0.2.1:1", false))
		h.call(func() {
			// The channel full, then the backlog one short of the queue.
			for range 2*sendChanSize - 1 {
				h.deliver(c, []byte("b"))
			}
			// The writer (the test) empties the channel and wakes run;
			// two replies come in meanwhile.
			for len(c.send) > 0 {
				<-c.send
			}
			h.drained <- c
			h.inbox <- inbound{c: c, at: time.Now(), reply: []byte("r1")}
			h.inbox <- inbound{c: c, at: time.Now(), reply: []byte("r2")}
		})
		// Wait for run to take both replies (a call may come before
		// them: run picks among its ready cases at random).
		var backlog [][]byte
		for waiting := true; waiting; {
			h.call(func() { backlog, waiting = c.backlog, len(h.inbox) > 0 })
		}
		if code, _, killed := c.killed(); killed {
			c.closeTimer.Stop()
			t.Fatalf("round %d: closed with %d; want the refill to make room first", i, code)
		}
		var got []string
		for len(c.send) > 0 {
			got = append(got, string(<-c.send))
		}
		for _, b := range backlog {
			got = append(got, string(b))
		}
		if want := append(slices.Repeat([]string{"b"}, sendChanSize-1), "r1", "r2"); !slices.Equal(got, want) {
			t.Fatalf("round %d: queued %v, want %v", i, got, want)
		}
	}
}
