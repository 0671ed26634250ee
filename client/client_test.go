package client_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/sessionhub/sessionhub/client"
	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/protocol"
)

func TestRoundTrips(t *testing.T) {
	s := startHub(t, "", hub.Options{})
	a := dial(t, s.url, nil)
	b := dial(t, s.url, nil)
	ctx := ctxT(t)
	for _, c := range []*client.Client{a, b} {
		if sc := expect[*client.StateChange](t, c); sc.From != client.Connecting || sc.To != client.Connected {
			t.Fatalf("first event %v", sc)
		}
		if c.State() != client.Connected {
			t.Fatalf("state %v", c.State())
		}
	}

	// join / session-joined
	sj, err := a.Join(ctx, "room-1", protocol.UserInfo{UserID: "ann", Name: "Ann", Role: protocol.RoleInstructor, Color: "#e06c75"})
	if err != nil {
		t.Fatal(err)
	}
	if sj.SessionID != "room-1" || sj.SelfID != "ann" || len(sj.Participants) != 1 || sj.Participants[0].Color != "#e06c75" {
		t.Fatalf("session-joined %+v", sj)
	}
	if ev := expect[*client.SessionJoined](t, a); ev.SelfID != "ann" {
		t.Fatalf("SessionJoined event %+v", ev)
	}

	// user-joined, with a server-chosen userId for bob
	sjb, err := b.Join(ctx, "room-1", protocol.UserInfo{Name: "Bob"})
	if err != nil {
		t.Fatal(err)
	}
	bob := sjb.SelfID
	if bob == "" || len(sjb.Participants) != 2 {
		t.Fatalf("bob's session-joined %+v", sjb)
	}
	expect[*client.SessionJoined](t, b)
	if uj := expect[*client.UserJoined](t, a); uj.User.UserID != bob || uj.User.Name != "Bob" || len(uj.Participants) != 2 {
		t.Fatalf("user-joined %+v", uj)
	}

	// cursor-moved with file and selection
	cur := protocol.Cursor{Line: 12, Column: 4, File: "main.go",
		Selection: &protocol.Selection{Start: protocol.Position{Line: 12, Column: 0}, End: protocol.Position{Line: 12, Column: 4}}}
	if err := b.UpdateCursor(ctx, cur); err != nil {
		t.Fatal(err)
	}
	cm := expect[*client.CursorMoved](t, a)
	if cm.UserID != bob || cm.Cursor.Line != 12 || cm.Cursor.Column != 4 || cm.Cursor.File != "main.go" ||
		cm.Cursor.Selection == nil || *cm.Cursor.Selection != *cur.Selection {
		t.Fatalf("cursor-moved %+v", cm)
	}

	// activity
	if err := b.SetActive(ctx, false); err != nil {
		t.Fatal(err)
	}
	if ac := expect[*client.UserActivityChanged](t, a); ac.UserID != bob || ac.IsActive {
		t.Fatalf("user-activity-changed %+v", ac)
	}

	// broadcast, ack and addressing
	off, err := a.Broadcast(ctx, "quiz", map[string]int{"q": 1}, "")
	if err != nil || off != 1 {
		t.Fatalf("broadcast: offset %d, %v", off, err)
	}
	be := expect[*client.BroadcastEvent](t, b)
	if be.Event != "quiz" || be.From != "ann" || be.Offset != 1 || string(be.Payload) != `{"q":1}` || be.Ts == 0 {
		t.Fatalf("broadcast event %+v", be)
	}
	if off, err := a.Broadcast(ctx, "to-instructors", nil, protocol.ToInstructors); err != nil || off != 2 {
		t.Fatalf("broadcast to instructors: %d, %v", off, err)
	}
	if off, err := a.Broadcast(ctx, "to-bob", "hi", bob); err != nil || off != 3 {
		t.Fatalf("broadcast to bob: %d, %v", off, err)
	}
	// bob (a learner) is not addressed by offset 2: the next thing he gets is 3.
	if be := expect[*client.BroadcastEvent](t, b); be.Offset != 3 || be.Event != "to-bob" {
		t.Fatalf("bob got %+v, want offset 3", be)
	}
	if off, err := b.Broadcast(ctx, "from-bob", []int{1, 2}, protocol.ToInstructors); err != nil || off != 4 {
		t.Fatalf("bob's broadcast: %d, %v", off, err)
	}
	if be := expect[*client.BroadcastEvent](t, a); be.From != bob || be.Offset != 4 {
		t.Fatalf("ann got %+v", be)
	}
	if _, err := b.Broadcast(ctx, "bad", func() {}, ""); err == nil {
		t.Fatal("an unmarshalable payload was accepted")
	}

	// ping
	rtt, err := a.Ping(ctx)
	if err != nil || rtt <= 0 {
		t.Fatalf("ping: %v, %v", rtt, err)
	}

	// error reply
	_, err = a.Join(ctx, "not a valid id!", protocol.UserInfo{Name: "Ann"})
	var se *client.ServerError
	if !errors.As(err, &se) || se.Code != protocol.CodeInvalidSessionID {
		t.Fatalf("join with a bad id: %v", err)
	}
	_, err = a.Join(ctx, "room-2", protocol.UserInfo{})
	if !errors.As(err, &se) || se.Code != protocol.CodeBadRequest {
		t.Fatalf("join without a name: %v", err)
	}

	// leave / user-left
	if err := b.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if sl := expect[*client.SessionLeft](t, b); sl.SessionID != "room-1" {
		t.Fatalf("session-left %+v", sl)
	}
	if ul := expect[*client.UserLeft](t, a); ul.UserID != bob || ul.Participants == nil || len(*ul.Participants) != 1 {
		t.Fatalf("user-left %+v", ul)
	}

	// an unsolicited error: a cursor update outside a session
	if err := b.UpdateCursor(ctx, protocol.Cursor{Line: 1}); err != nil {
		t.Fatal(err)
	}
	if ee := expect[*client.ErrorEvent](t, b); ee.Code != protocol.CodeNotInSession {
		t.Fatalf("error event %+v", ee)
	}
	if err := b.SetActive(ctx, true); err != nil {
		t.Fatal(err)
	}
	if ee := expect[*client.ErrorEvent](t, b); ee.Code != protocol.CodeNotInSession {
		t.Fatalf("error event %+v", ee)
	}
	// leaving outside a session is fine
	if err := b.Leave(ctx); err != nil {
		t.Fatal(err)
	}

	// Close: idempotent, state Closed, Events closed, methods fail.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if b.State() != client.Closed {
		t.Fatalf("state after Close %v", b.State())
	}
	evs := drainClosed(t, b)
	if sc, ok := evs[len(evs)-1].(*client.StateChange); !ok || sc.To != client.Closed || sc.Err != nil {
		t.Fatalf("last event %#v", evs[len(evs)-1])
	}
	if _, err := b.Ping(ctx); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("ping after close: %v", err)
	}
	if err := b.UpdateCursor(ctx, protocol.Cursor{}); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("cursor after close: %v", err)
	}
}

func TestPresenceDiff(t *testing.T) {
	s := startHub(t, "", hub.Options{})
	a := dial(t, s.url, nil)
	b := dial(t, s.url, &client.Options{DisableBatch: true})
	ctx := ctxT(t)
	if _, err := a.Join(ctx, "s", protocol.UserInfo{Name: "A"}, client.WithPresence(protocol.PresenceDiff)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Join(ctx, "s", protocol.UserInfo{UserID: "b", Name: "B"}); err != nil {
		t.Fatal(err)
	}
	uj := skipTo[*client.UserJoined](t, a, nil)
	if uj.User.UserID != "b" || uj.Participants != nil {
		t.Fatalf("diff user-joined %+v", uj)
	}
}

// TestEventOrder sends many broadcasts at once, so that the hub batches
// them (sessionhub.batch), and checks that every one arrives, in order,
// with batching and without.
func TestEventOrder(t *testing.T) {
	s := startHub(t, "", hub.Options{MessageRate: 1e6, MessageBurst: 1e6})
	for _, disable := range []bool{false, true} {
		a := dial(t, s.url, nil)
		b := dial(t, s.url, &client.Options{DisableBatch: disable, EventBuffer: 8})
		ctx := ctxT(t)
		sid := "order"
		if disable {
			sid = "order-nobatch"
		}
		if _, err := b.Join(ctx, sid, protocol.UserInfo{UserID: "b", Name: "B"}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Join(ctx, sid, protocol.UserInfo{UserID: "a", Name: "A"}); err != nil {
			t.Fatal(err)
		}
		const n = 200
		done := make(chan error, 1)
		go func() {
			for i := 0; i < n; i++ {
				if _, err := a.Broadcast(ctx, "n", i, ""); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		var last int64
		for i := 0; i < n; i++ {
			be := skipTo[*client.BroadcastEvent](t, b, nil)
			if be.Offset != last+1 || string(be.Payload) != jsonInt(i) {
				t.Fatalf("batch disabled %v: got offset %d payload %s after %d", disable, be.Offset, be.Payload, last)
			}
			last = be.Offset
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func jsonInt(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}
