package hub_test

import (
	"testing"

	"github.com/sessionhub/sessionhub/protocol"
)

func TestSmokeJoinCursorLeave(t *testing.T) {
	s := startServer(t, nil)
	a, b := dial(t, s, nil), dial(t, s, nil)
	sj := a.join("room-1", "alice", "Alice", protocol.RoleInstructor)
	if sj.SelfID != "alice" || len(sj.Participants) != 1 {
		t.Fatalf("session-joined = %+v", sj)
	}
	sj = b.join("room-1", "bob", "Bob", "")
	if len(sj.Participants) != 2 || sj.Participants[1].Role != protocol.RoleLearner {
		t.Fatalf("session-joined = %+v", sj)
	}
	var uj protocol.UserJoined
	a.expect(protocol.TypeUserJoined, &uj)
	if uj.User.UserID != "bob" || len(uj.Participants) != 2 {
		t.Fatalf("user-joined = %+v", uj)
	}
	b.send(protocol.TypeCursorUpdate, protocol.Cursor{Line: 3, Column: 4}, "")
	var cm protocol.CursorMoved
	a.expect(protocol.TypeCursorMoved, &cm)
	if cm.UserID != "bob" || cm.Cursor.Line != 3 {
		t.Fatalf("cursor-moved = %+v", cm)
	}
	b.send(protocol.TypeLeaveSession, nil, "l")
	b.expect(protocol.TypeSessionLeft, nil)
	var ul protocol.UserLeft
	a.expect(protocol.TypeUserLeft, &ul)
	if ul.UserID != "bob" || ul.Participants == nil || len(*ul.Participants) != 1 {
		t.Fatalf("user-left = %+v", ul)
	}
}
