package hub

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/sessionhub/sessionhub/protocol"
)

// socketless returns a connection the run loop can serve without a
// WebSocket: the test reads its send queue directly.
func socketless(h *Hub) *conn {
	return testReadsSend(&conn{id: h.nextID.Add(1), hub: h, send: make(chan []byte, 64), closing: make(chan struct{}), writersDone: make(chan struct{})})
}

func startSocketless(t *testing.T) *Hub {
	t.Helper()
	h := New(&Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() { h.Shutdown(context.Background()) })
	return h
}

func joinSocketless(t *testing.T, h *Hub, c *conn, user string, mode protocol.Presence) {
	t.Helper()
	h.submit(inbound{c: c, at: time.Now(), msg: protocol.Message{Type: protocol.TypeJoinSession,
		Payload: &protocol.JoinSession{SessionID: "s", Presence: mode, UserInfo: protocol.UserInfo{UserID: user, Name: user}}}})
	if got := recvType(t, c); got != protocol.TypeSessionJoined {
		t.Fatalf("%s got %s, want session-joined", user, got)
	}
}

func recv(t *testing.T, c *conn) []byte {
	t.Helper()
	select {
	case b := <-c.send:
		return b
	case <-time.After(5 * time.Second):
		t.Fatalf("conn %d: nothing queued", c.id)
		return nil
	}
}

func recvType(t *testing.T, c *conn) string {
	t.Helper()
	var env protocol.Envelope
	if err := json.Unmarshal(recv(t, c), &env); err != nil {
		t.Fatal(err)
	}
	return env.Type
}

// TestFanoutEncodesOncePerMode checks that a membership event is encoded
// once for the full-presence connections and once for the diff ones, and
// that a cursor-moved is encoded once for all: recipients get the very same
// bytes, not equal copies.
func TestFanoutEncodesOncePerMode(t *testing.T) {
	h := startSocketless(t)
	full1, full2, diff1, diff2 := socketless(h), socketless(h), socketless(h), socketless(h)
	joinSocketless(t, h, full1, "f1", protocol.PresenceFull)
	joinSocketless(t, h, full2, "f2", protocol.PresenceFull)
	recv(t, full1) // user-joined f2
	joinSocketless(t, h, diff1, "d1", protocol.PresenceDiff)
	recv(t, full1)
	recv(t, full2)
	joinSocketless(t, h, diff2, "d2", protocol.PresenceDiff)
	recv(t, full1)
	recv(t, full2)
	recv(t, diff1)

	newcomer := socketless(h)
	joinSocketless(t, h, newcomer, "n", protocol.PresenceFull)
	got := map[*conn][]byte{}
	for _, c := range []*conn{full1, full2, diff1, diff2} {
		got[c] = recv(t, c)
	}
	if &got[full1][0] != &got[full2][0] {
		t.Error("full-presence recipients got separately encoded user-joined")
	}
	if &got[diff1][0] != &got[diff2][0] {
		t.Error("diff-presence recipients got separately encoded user-joined")
	}
	if &got[full1][0] == &got[diff1][0] {
		t.Error("full and diff recipients got the same user-joined")
	}

	h.submit(inbound{c: newcomer, at: time.Now(), msg: protocol.Message{Type: protocol.TypeCursorUpdate,
		Payload: &protocol.Cursor{Line: 1, Column: 2}}})
	first := recv(t, full1)
	for _, c := range []*conn{full2, diff1, diff2} {
		if b := recv(t, c); &b[0] != &first[0] {
			t.Errorf("conn %d got a separately encoded cursor-moved", c.id)
		}
	}
}

// testReadsSend marks c's writer as the test's own: the test reads c.send,
// and no writePump starts (c has no WebSocket).
func testReadsSend(c *conn) *conn {
	c.writer.Store(writerDone)
	return c
}

// TestFanoutRecipients checks the one fan-out's selection: a user's
// connections skipped, one connection skipped (a broadcast's sender), and
// a broadcast's addressees (everyone, a role, one user), each selected
// connection given the very same bytes.
func TestFanoutRecipients(t *testing.T) {
	h := startSocketless(t)
	byUser := map[string]*conn{}
	for _, u := range []struct {
		id   string
		role protocol.Role
	}{{"i", protocol.RoleInstructor}, {"a", protocol.RoleLearner}, {"b", protocol.RoleLearner}} {
		c := socketless(h)
		h.submit(inbound{c: c, at: time.Now(), msg: protocol.Message{Type: protocol.TypeJoinSession,
			Payload: &protocol.JoinSession{SessionID: "s", Presence: protocol.PresenceDiff,
				UserInfo: protocol.UserInfo{UserID: u.id, Name: u.id, Role: u.role}}}})
		if got := recvType(t, c); got != protocol.TypeSessionJoined {
			t.Fatalf("%s got %s, want session-joined", u.id, got)
		}
		byUser[u.id] = c
	}
	for _, c := range byUser { // the announcements of the joins, queued with them
		for len(c.send) > 0 {
			<-c.send
		}
	}
	tests := []struct {
		name string
		rs   func() recipients
		want []string
	}{
		{"everyone", func() recipients { return recipients{} }, []string{"a", "b", "i"}},
		{"all but a user", func() recipients { return recipients{skipUser: "a"} }, []string{"b", "i"}},
		{"all but a connection", func() recipients { return recipients{skipConn: byUser["b"].id} }, []string{"a", "i"}},
		{"to all", func() recipients { return recipients{to: protocol.ToAll} }, []string{"a", "b", "i"}},
		{"to instructors", func() recipients { return recipients{to: protocol.ToInstructors} }, []string{"i"}},
		{"to learners but the sender", func() recipients {
			return recipients{to: protocol.ToLearners, skipConn: byUser["a"].id}
		}, []string{"b"}},
		{"to one user", func() recipients { return recipients{to: "b"} }, []string{"b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload := []byte(`{"type":"broadcast"}`)
			var selected, queued int
			h.call(func() {
				r := h.rooms["s"]
				selected, queued = h.fanout(r.conns, r.s, &event{typ: protocol.TypeBroadcast, b: payload}, tt.rs())
			})
			var got []string
			for _, u := range []string{"a", "b", "i"} {
				select {
				case b := <-byUser[u].send:
					if &b[0] != &payload[0] {
						t.Errorf("%s got a copy, not the same bytes", u)
					}
					got = append(got, u)
				default:
				}
			}
			if !slices.Equal(got, tt.want) || selected != len(tt.want) || queued != len(tt.want) {
				t.Errorf("got %v (selected %d, queued %d), want %v", got, selected, queued, tt.want)
			}
		})
	}
}
