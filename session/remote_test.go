package session_test

import (
	"slices"
	"testing"
	"time"

	"github.com/sessionhub/sessionhub/protocol"
	"github.com/sessionhub/sessionhub/session"
)

// Participants of other nodes (Put) are listed in order, have no
// connection here, are not idled here, and a local join of the same user
// is the same participant.
func TestPutRemote(t *testing.T) {
	s := newSession()
	s.Join(user("b"), at(2*time.Second))
	remote := session.Participant{UserID: "a", Name: "A", Role: protocol.RoleInstructor, JoinedAt: at(time.Second), Active: true}
	p, added := s.Put(remote, false)
	if !added || p.Conns != 0 || !p.LastSeen.Equal(at(time.Second)) {
		t.Fatalf("Put = %+v, %v", p, added)
	}
	if got := ids(s.Participants()); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("order %v, want [a b] (by joinedAt)", got)
	}
	// Again, with state: same participant, new state.
	cur := &protocol.Cursor{Line: 4}
	remote.Active, remote.Cursor = false, cur
	if p2, added := s.Put(remote, true); added || p2 != p || p.Active || p.Cursor != cur {
		t.Fatalf("second Put = %+v, %v", p2, added)
	}
	// Again, without state: state kept.
	remote.Active, remote.Cursor = true, nil
	if s.Put(remote, false); p.Active || p.Cursor != cur {
		t.Fatalf("Put without state changed it: %+v", p)
	}
	// Not idled here: its own node decides.
	if idle := s.Idle(at(time.Hour), idleAfter); len(idle) != 1 || idle[0].UserID != "b" {
		t.Fatalf("Idle = %v, want only b", idle)
	}
	// SetRemote records what its node reported.
	active := true
	if !s.SetRemote("a", &protocol.Cursor{Line: 9}, &active, at(time.Hour)) || !p.Active || p.Cursor.Line != 9 || !p.LastSeen.Equal(at(time.Hour)) {
		t.Fatalf("SetRemote: %+v", p)
	}
	if s.SetRemote("nobody", nil, &active, at(time.Hour)) {
		t.Fatal("SetRemote of an unknown user reported true")
	}
	// A local tab of the same user joins the same participant; Release
	// takes it away without deciding a leave.
	q, isNew := s.Join(protocol.UserInfo{UserID: "a", Name: "other"}, at(time.Hour))
	if isNew || q != p || p.Conns != 1 || p.Name != "A" {
		t.Fatalf("Join of a remote user = %+v, %v", q, isNew)
	}
	s.Release("a")
	s.Release("a") // never below zero
	if p.Conns != 0 || !p.LeaveAt.IsZero() || s.Get("a") == nil {
		t.Fatalf("after Release: %+v", p)
	}
	if gone := s.Expire(at(2 * time.Hour)); len(gone) != 0 {
		t.Fatalf("Expire removed %v: a remote participant leaves when its node says so", gone)
	}
}

func TestHistoryForget(t *testing.T) {
	var h session.History
	h.Size, h.TTL = 10, time.Hour
	for off := int64(1); off <= 5; off++ {
		h.Append(session.Event{Offset: off, At: t0, Data: []byte("x")}, t0)
	}
	h.Forget(3)
	tests := []struct {
		from int64
		want []int64
		ok   bool
	}{
		{0, nil, false},
		{2, nil, false},
		{3, []int64{4, 5}, true},
		{5, []int64{}, true},
	}
	for _, tt := range tests {
		es, ok := h.Since(tt.from)
		got := []int64{}
		for _, e := range es {
			got = append(got, e.Offset)
		}
		if ok != tt.ok || (ok && !slices.Equal(got, tt.want)) {
			t.Errorf("Since(%d) = %v, %v; want %v, %v", tt.from, got, ok, tt.want, tt.ok)
		}
	}
	if h.Len() != 2 || h.Bytes() != 2 {
		t.Errorf("Len, Bytes = %d, %d; want 2, 2", h.Len(), h.Bytes())
	}
	// Forgetting past everything kept: empty, complete only from there.
	h.Forget(9)
	if es, ok := h.Since(9); !ok || len(es) != 0 || h.Len() != 0 {
		t.Errorf("after Forget(9): Since(9) = %v, %v; Len %d", es, ok, h.Len())
	}
	if _, ok := h.Since(8); ok {
		t.Error("Since(8) complete after Forget(9)")
	}
}
