package hub_test

// End-to-end tests of the wire contract (/work/shared/contract/protocol.md)
// over real WebSockets: every client and server message, the presence modes,
// the two-tabs rule, the error codes, the close codes, origins, batching,
// graceful shutdown and the HTTP routes. Every wait is on an event with a
// deadline; "nothing arrived" is checked with a ping round trip (collect).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/protocol"
)

// ---------------------------------------------------------------------------
// Helpers (prefixed e2e so as not to clash with other test files).

// e2eJoin sends a join-session with any data and the given ref and returns
// the session-joined reply.
func e2eJoin(p *peer, data any, ref string) (protocol.SessionJoined, protocol.Envelope) {
	p.t.Helper()
	p.send(protocol.TypeJoinSession, data, ref)
	var sj protocol.SessionJoined
	env := p.expect(protocol.TypeSessionJoined, &sj)
	return sj, env
}

// e2eJoinMode joins sessionID as userID in the given presence mode.
func e2eJoinMode(p *peer, sessionID, userID string, role protocol.Role, mode protocol.Presence) protocol.SessionJoined {
	p.t.Helper()
	sj, _ := e2eJoin(p, protocol.JoinSession{SessionID: sessionID, Presence: mode,
		UserInfo: protocol.UserInfo{UserID: userID, Name: "N " + userID, Role: role}}, "j")
	return sj
}

// hasKey reports whether the JSON object raw has key at its top level.
func hasKey(t testing.TB, raw json.RawMessage, key string) bool {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("not an object: %s", raw)
	}
	_, ok := m[key]
	return ok
}

// ---------------------------------------------------------------------------
// Client to server / server to client.

func TestE2EJoinSession(t *testing.T) {
	s := startServer(t, nil)
	zed, amy, amy2, anon := dial(t, s, nil), dial(t, s, nil), dial(t, s, nil), dial(t, s, nil)

	before := time.Now().Add(-time.Second)
	sj, env := e2eJoin(zed, protocol.JoinSession{SessionID: "room.A:1-x_y",
		UserInfo: protocol.UserInfo{UserID: "zed", Name: "Zed", Role: protocol.RoleInstructor, Color: "#f00"}}, "join-1")
	if env.Ref != "join-1" {
		t.Errorf("session-joined ref = %q, want join-1", env.Ref)
	}
	if sj.SessionID != "room.A:1-x_y" || sj.SelfID != "zed" || sj.Epoch == "" || sj.Offset != 0 || sj.Recovered {
		t.Fatalf("session-joined = %+v", sj)
	}
	if !sameIDs(sj.Participants, "zed") {
		t.Fatalf("participants = %v", ids(sj.Participants))
	}
	p := sj.Participants[0]
	if p.Name != "Zed" || p.Role != protocol.RoleInstructor || p.Color != "#f00" || !p.IsActive || p.Cursor != nil ||
		p.JoinedAt.Before(before) || p.JoinedAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("participant = %+v", p)
	}
	// The wire form: cursor is null, isActive true, joinedAt RFC 3339.
	var raw struct {
		Participants []map[string]json.RawMessage `json:"participants"`
	}
	json.Unmarshal(env.Data, &raw)
	if c := string(raw.Participants[0]["cursor"]); c != "null" {
		t.Errorf("cursor on the wire = %q, want null", c)
	}
	var ja string
	json.Unmarshal(raw.Participants[0]["joinedAt"], &ja)
	if _, err := time.Parse(time.RFC3339, ja); err != nil {
		t.Errorf("joinedAt %q is not RFC 3339: %v", ja, err)
	}
	epoch := sj.Epoch

	// amy (userId sorts before zed) joins later: the list is by joinedAt.
	sj = amy.join("room.A:1-x_y", "amy", "Amy", "")
	if !sameIDs(sj.Participants, "zed", "amy") || sj.SelfID != "amy" || sj.Epoch != epoch {
		t.Fatalf("session-joined = %+v", sj)
	}
	if sj.Participants[1].Role != protocol.RoleLearner {
		t.Errorf("default role = %q", sj.Participants[1].Role)
	}
	var uj protocol.UserJoined
	zed.expect(protocol.TypeUserJoined, &uj)
	if uj.User.UserID != "amy" || uj.User.Name != "Amy" || !uj.User.IsActive || !sameIDs(uj.Participants, "zed", "amy") {
		t.Fatalf("user-joined = %+v", uj)
	}
	amy.quiet("the joiner", protocol.TypeUserJoined)

	// amy's second tab: already present, so nobody sees user-joined.
	sj = amy2.join("room.A:1-x_y", "amy", "Amy", "")
	if !sameIDs(sj.Participants, "zed", "amy") {
		t.Fatalf("second tab: participants = %v", ids(sj.Participants))
	}
	amy2.sync()
	zed.quiet("second tab", protocol.TypeUserJoined)
	amy.quiet("second tab", protocol.TypeUserJoined)

	// No userId: the server gives a UUID.
	sj, _ = e2eJoin(anon, map[string]any{"sessionId": "room.A:1-x_y", "userInfo": map[string]any{"name": "Anon"}}, "")
	if _, err := uuid.Parse(sj.SelfID); err != nil {
		t.Fatalf("selfId %q is not a UUID: %v", sj.SelfID, err)
	}
	if !sameIDs(sj.Participants, "zed", "amy", sj.SelfID) {
		t.Fatalf("participants = %v", ids(sj.Participants))
	}
	zed.expect(protocol.TypeUserJoined, &uj)
	if uj.User.UserID != sj.SelfID {
		t.Fatalf("user-joined for %q, want %q", uj.User.UserID, sj.SelfID)
	}
}

func TestE2ELeaveSession(t *testing.T) {
	s := startServer(t, &hub.Options{LeaveGrace: time.Minute})
	a, b, c := dial(t, s, nil), dial(t, s, nil), dial(t, s, nil)
	a.join("lv", "a", "A", "")
	b.join("lv", "b", "B", "")
	c.join("lv", "c", "C", "")
	a.skipUntil(protocol.TypeUserJoined, nil)
	a.skipUntil(protocol.TypeUserJoined, nil)
	b.skipUntil(protocol.TypeUserJoined, nil)

	a.send(protocol.TypeLeaveSession, nil, "bye")
	var sl protocol.SessionLeft
	env := a.expect(protocol.TypeSessionLeft, &sl)
	if sl.SessionID != "lv" || env.Ref != "bye" {
		t.Fatalf("session-left = %+v ref %q", sl, env.Ref)
	}
	for _, o := range []*peer{b, c} {
		var ul protocol.UserLeft
		o.expect(protocol.TypeUserLeft, &ul)
		if ul.UserID != "a" || ul.User.UserID != "a" || ul.User.Name != "A" ||
			ul.Participants == nil || !sameIDs(*ul.Participants, "b", "c") {
			t.Fatalf("user-left = %+v", ul)
		}
	}
	// a is out: it gets nothing of the session, and session messages fail.
	b.send(protocol.TypeBroadcast, map[string]any{"event": "e"}, "ack")
	b.expect(protocol.TypeAck, nil)
	b.send(protocol.TypeCursorUpdate, protocol.Cursor{Line: 1}, "")
	c.skipUntil(protocol.TypeCursorMoved, nil)
	a.quiet("after leaving", protocol.TypeBroadcast, protocol.TypeCursorMoved)
	a.send(protocol.TypeBroadcast, map[string]any{"event": "e"}, "nis")
	a.expectError(protocol.CodeNotInSession, "nis")
	// A later joiner does not see a.
	d := dial(t, s, nil)
	if sj := d.join("lv", "d", "D", ""); !sameIDs(sj.Participants, "b", "c", "d") {
		t.Fatalf("participants = %v", ids(sj.Participants))
	}
}

func TestE2ECursorUpdate(t *testing.T) {
	s := startServer(t, nil)
	a, a2, b, c := dial(t, s, nil), dial(t, s, nil), dial(t, s, nil), dial(t, s, nil)
	a.join("cur", "alice", "Alice", "")
	a2.join("cur", "alice", "Alice", "")
	b.join("cur", "bob", "Bob", "")
	c.join("cur", "carol", "Carol", "")
	a.sync()
	b.sync()

	sel := &protocol.Selection{Start: protocol.Position{Line: 3, Column: 1}, End: protocol.Position{Line: 10_000_000, Column: 0}}
	sent := protocol.Cursor{Line: 10_000_000, Column: 7, File: "src/main.go", Selection: sel}
	a.send(protocol.TypeCursorUpdate, sent, "")
	for _, o := range []*peer{b, c} {
		var cm protocol.CursorMoved
		o.skipUntil(protocol.TypeCursorMoved, &cm)
		if cm.UserID != "alice" || cm.Cursor.Line != sent.Line || cm.Cursor.Column != sent.Column ||
			cm.Cursor.File != sent.File || cm.Cursor.Selection == nil || *cm.Cursor.Selection != *sel {
			t.Fatalf("cursor-moved = %+v", cm)
		}
	}
	a.sync() // a's cursor has been handled
	a.quiet("the sender", protocol.TypeCursorMoved)
	a2.quiet("the sender's other tab", protocol.TypeCursorMoved)

	// A later joiner sees alice's cursor, and bob's still null.
	d := dial(t, s, nil)
	sj := d.join("cur", "dan", "Dan", "")
	if !sameIDs(sj.Participants, "alice", "bob", "carol", "dan") {
		t.Fatalf("participants = %v", ids(sj.Participants))
	}
	got := sj.Participants[0].Cursor
	if got == nil || got.Line != sent.Line || got.Column != sent.Column || got.File != sent.File ||
		got.Selection == nil || *got.Selection != *sel {
		t.Fatalf("alice's cursor in participants = %+v", got)
	}
	if sj.Participants[1].Cursor != nil {
		t.Fatalf("bob's cursor = %+v, want null", sj.Participants[1].Cursor)
	}

	// The other tab's cursor is the participant's cursor too.
	a2.send(protocol.TypeCursorUpdate, protocol.Cursor{Line: 1, Column: 2}, "")
	var cm protocol.CursorMoved
	b.skipUntil(protocol.TypeCursorMoved, &cm)
	if cm.UserID != "alice" || cm.Cursor.Line != 1 || cm.Cursor.File != "" || cm.Cursor.Selection != nil {
		t.Fatalf("cursor-moved from the second tab = %+v", cm)
	}
	a2.sync()
	a.quiet("the sender's other tab", protocol.TypeCursorMoved)
}

func TestE2EActivityStatus(t *testing.T) {
	s := startServer(t, nil)
	a, a2, b := dial(t, s, nil), dial(t, s, nil), dial(t, s, nil)
	a.join("act", "a", "A", "")
	a2.join("act", "a", "A", "")
	b.join("act", "b", "B", "")
	a.sync()

	// Already active: no event. Then false twice and true twice: one event each.
	for _, v := range []bool{true, false, false, true, true} {
		a.send(protocol.TypeActivityStatus, protocol.ActivityStatus{IsActive: v}, "")
	}
	a.sync() // every status has been handled
	var changes []protocol.UserActivityChanged
	for _, m := range b.collect() {
		if m.Type == protocol.TypeUserActivityChanged {
			var u protocol.UserActivityChanged
			json.Unmarshal(m.Data, &u)
			changes = append(changes, u)
		}
	}
	if len(changes) != 2 || changes[0] != (protocol.UserActivityChanged{UserID: "a", IsActive: false}) ||
		changes[1] != (protocol.UserActivityChanged{UserID: "a", IsActive: true}) {
		t.Fatalf("user-activity-changed events = %+v, want a:false then a:true", changes)
	}
	a.quiet("the sender", protocol.TypeUserActivityChanged)
	a2.quiet("the sender's other tab", protocol.TypeUserActivityChanged)

	// The state shows in a later joiner's list.
	a.send(protocol.TypeActivityStatus, protocol.ActivityStatus{IsActive: false}, "")
	var u protocol.UserActivityChanged
	b.skipUntil(protocol.TypeUserActivityChanged, &u)
	c := dial(t, s, nil)
	sj := c.join("act", "c", "C", "")
	if !sameIDs(sj.Participants, "a", "b", "c") || sj.Participants[0].IsActive || !sj.Participants[1].IsActive {
		t.Fatalf("participants = %+v", sj.Participants)
	}
}

func TestE2EBroadcast(t *testing.T) {
	s := startServer(t, nil)
	ins, l1, l2 := dial(t, s, nil), dial(t, s, nil), dial(t, s, nil)
	ins.join("bc", "teacher", "T", protocol.RoleInstructor)
	l1.join("bc", "l1", "L1", protocol.RoleLearner)
	l2.join("bc", "l2", "L2", "")
	for _, p := range []*peer{ins, l1, l2} {
		p.sync()
	}
	all := map[string]*peer{"teacher": ins, "l1": l1, "l2": l2}

	tests := []struct {
		from    string
		to      string // "" leaves it out
		ref     string
		payload any
		want    []string // who gets it
	}{
		{from: "l1", ref: "r1", payload: map[string]any{"q": 1.0, "s": "x"}, want: []string{"teacher", "l2"}},
		{from: "teacher", to: "all", payload: []any{1.0, "two"}, want: []string{"l1", "l2"}},
		{from: "l1", to: "instructors", ref: "r3", payload: "hand up", want: []string{"teacher"}},
		{from: "teacher", to: "learners", ref: "r4", payload: nil, want: []string{"l1", "l2"}},
		{from: "l2", to: "learners", ref: "r5", payload: 5.0, want: []string{"l1"}},
		{from: "teacher", to: "l2", ref: "r6", payload: true, want: []string{"l2"}},
		{from: "l1", to: "nobody-here", ref: "r7", payload: 1.0, want: nil},
	}
	for i, tc := range tests {
		offset := int64(i + 1)
		data := map[string]any{"event": "ev-" + strconv.Itoa(i), "payload": tc.payload}
		if tc.to != "" {
			data["to"] = tc.to
		}
		from := all[tc.from]
		start := time.Now().UnixMilli()
		from.send(protocol.TypeBroadcast, data, tc.ref)
		if tc.ref != "" {
			var ack protocol.Ack
			env := from.expect(protocol.TypeAck, &ack)
			if ack.Offset != offset || env.Ref != tc.ref {
				t.Fatalf("%d: ack = %+v ref %q, want offset %d ref %q", i, ack, env.Ref, offset, tc.ref)
			}
		} else {
			// No ref: no ack (and the sender does not get its own broadcast).
			for _, m := range from.collect() {
				if m.Type == protocol.TypeAck || m.Type == protocol.TypeBroadcast {
					t.Fatalf("%d: sender got %s %s", i, m.Type, m.Data)
				}
			}
		}
		from.sync()
		wantPayload, _ := json.Marshal(tc.payload)
		for name, p := range all {
			got := false
			for _, m := range p.collect() {
				if m.Type != protocol.TypeBroadcast {
					continue
				}
				var ev protocol.BroadcastEvent
				if err := json.Unmarshal(m.Data, &ev); err != nil {
					t.Fatal(err)
				}
				if got {
					t.Fatalf("%d: %s got the broadcast twice", i, name)
				}
				got = true
				if ev.Event != data["event"] || ev.From != tc.from || ev.Offset != offset ||
					ev.Ts < start-1000 || ev.Ts > time.Now().UnixMilli()+1000 {
					t.Fatalf("%d: %s got %+v", i, name, ev)
				}
				if !jsonEqual(ev.Payload, wantPayload) {
					t.Fatalf("%d: payload %s, want %s", i, ev.Payload, wantPayload)
				}
				if !hasKey(t, m.Data, "payload") || !hasKey(t, m.Data, "ts") {
					t.Fatalf("%d: broadcast lacks payload or ts: %s", i, m.Data)
				}
			}
			want := false
			for _, w := range tc.want {
				want = want || w == name
			}
			if got != want {
				t.Errorf("%d (%s to %q): %s got it = %v, want %v", i, tc.from, tc.to, name, got, want)
			}
		}
	}
	// A later joiner sees the latest offset.
	late := dial(t, s, nil)
	if sj := late.join("bc", "late", "Late", ""); sj.Offset != int64(len(tests)) {
		t.Fatalf("session-joined offset = %d, want %d", sj.Offset, len(tests))
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}

func TestE2EPing(t *testing.T) {
	s := startServer(t, nil)
	tests := []struct {
		name string
		raw  string
		ref  string
		want string
	}{
		{"object", `{"type":"ping","data":{"n":1,"s":"x","a":[1,{"b":null}]},"ref":"p1"}`, "p1", `{"n":1,"s":"x","a":[1,{"b":null}]}`},
		{"empty object", `{"type":"ping","data":{}}`, "", `{}`},
		{"no data", `{"type":"ping","ref":"p3"}`, "p3", `{}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := dial(t, s, nil)
			p.sendRaw([]byte(tc.raw))
			env := p.expect(protocol.TypePong, nil)
			if env.Ref != tc.ref {
				t.Errorf("pong ref = %q, want %q", env.Ref, tc.ref)
			}
			data := env.Data
			if data == nil {
				data = json.RawMessage("{}")
			}
			if !jsonEqual(data, []byte(tc.want)) {
				t.Errorf("pong data = %s, want %s", env.Data, tc.want)
			}
		})
	}
	// In a session, ping still answers and others get nothing.
	p, b := dial(t, s, nil), dial(t, s, nil)
	p.join("png", "p", "P", "")
	b.join("png", "b", "B", "")
	p.skipUntil(protocol.TypeUserJoined, nil)
	p.send(protocol.TypePing, map[string]any{"k": "v"}, "in")
	if env := p.expect(protocol.TypePong, nil); env.Ref != "in" || !jsonEqual(env.Data, []byte(`{"k":"v"}`)) {
		t.Fatalf("pong = %+v", env)
	}
	p.sync()
	if got := b.collect(); len(got) != 0 {
		t.Fatalf("others got %v on a ping", got)
	}
}

// ---------------------------------------------------------------------------
// Presence modes.

func TestE2EPresenceModes(t *testing.T) {
	s := startServer(t, nil)
	full, diff, x, y := dial(t, s, nil), dial(t, s, nil), dial(t, s, nil), dial(t, s, nil)
	e2eJoinMode(full, "pm", "full", "", "") // the default
	sj := e2eJoinMode(diff, "pm", "diff", "", protocol.PresenceDiff)
	if !sameIDs(sj.Participants, "full", "diff") {
		t.Fatalf("session-joined in diff mode carries the full list: got %v", ids(sj.Participants))
	}
	full.skipUntil(protocol.TypeUserJoined, nil)
	e2eJoinMode(x, "pm", "x", "", protocol.PresenceFull)

	// user-joined of x.
	var uj protocol.UserJoined
	env := full.expect(protocol.TypeUserJoined, &uj)
	if uj.User.UserID != "x" || !sameIDs(uj.Participants, "full", "diff", "x") {
		t.Fatalf("full user-joined = %s", env.Data)
	}
	env = diff.expect(protocol.TypeUserJoined, &uj)
	if uj.User.UserID != "x" || hasKey(t, env.Data, "participants") {
		t.Fatalf("diff user-joined = %s", env.Data)
	}
	e2eJoinMode(y, "pm", "y", "", protocol.PresenceDiff)
	full.skipUntil(protocol.TypeUserJoined, nil)
	diff.skipUntil(protocol.TypeUserJoined, nil)
	x.skipUntil(protocol.TypeUserJoined, nil)

	// user-left of y: full-mode peers get the list, diff-mode ones do not.
	y.send(protocol.TypeLeaveSession, nil, "")
	y.expect(protocol.TypeSessionLeft, nil)
	for _, p := range []*peer{full, x} {
		var ul protocol.UserLeft
		env := p.expect(protocol.TypeUserLeft, &ul)
		if ul.UserID != "y" || ul.User.UserID != "y" || ul.Participants == nil || !sameIDs(*ul.Participants, "full", "diff", "x") {
			t.Fatalf("full user-left = %s", env.Data)
		}
	}
	var ul protocol.UserLeft
	env = diff.expect(protocol.TypeUserLeft, &ul)
	if ul.UserID != "y" || ul.User.UserID != "y" || hasKey(t, env.Data, "participants") {
		t.Fatalf("diff user-left = %s", env.Data)
	}

	// Switching mode by joining again with another presence.
	e2eJoinMode(diff, "pm", "diff", "", protocol.PresenceFull)
	x.send(protocol.TypeLeaveSession, nil, "")
	env = diff.skipUntil(protocol.TypeUserLeft, &ul)
	if ul.Participants == nil || !sameIDs(*ul.Participants, "full", "diff") {
		t.Fatalf("user-left after switching to full = %s", env.Data)
	}
}

// ---------------------------------------------------------------------------
// Joining while in a session.

func TestE2EJoinWhileInSession(t *testing.T) {
	// A minute of grace: a leave that shows at once is not the grace ending.
	s := startServer(t, &hub.Options{LeaveGrace: time.Minute})
	a, b, c := dial(t, s, nil), dial(t, s, nil), dial(t, s, nil)
	a.join("s1", "a", "A", "")
	b.join("s1", "b", "B", "")
	c.join("s2", "c", "C", "")
	a.skipUntil(protocol.TypeUserJoined, nil)

	sj := a.join("s2", "a", "A", "")
	if sj.SessionID != "s2" || !sameIDs(sj.Participants, "c", "a") {
		t.Fatalf("session-joined = %+v", sj)
	}
	var ul protocol.UserLeft
	b.expect(protocol.TypeUserLeft, &ul)
	if ul.UserID != "a" || ul.Participants == nil || !sameIDs(*ul.Participants, "b") {
		t.Fatalf("user-left in s1 = %+v", ul)
	}
	var uj protocol.UserJoined
	c.expect(protocol.TypeUserJoined, &uj)
	if uj.User.UserID != "a" {
		t.Fatalf("user-joined in s2 = %+v", uj)
	}
	// a no longer gets s1's events.
	b.send(protocol.TypeBroadcast, map[string]any{"event": "s1"}, "k")
	b.expect(protocol.TypeAck, nil)
	a.quiet("after moving to s2", protocol.TypeBroadcast)

	// Rejoining the same session as the same user: nobody sees a leave or a join.
	sj = a.join("s2", "a", "A", "")
	if sj.SessionID != "s2" || !sameIDs(sj.Participants, "c", "a") {
		t.Fatalf("rejoin: session-joined = %+v", sj)
	}
	a.sync()
	c.quiet("rejoin", protocol.TypeUserLeft, protocol.TypeUserJoined)
	// a is still in s2 and its place kept.
	c.send(protocol.TypeBroadcast, map[string]any{"event": "still"}, "")
	a.skipUntil(protocol.TypeBroadcast, nil)

	// Joining the same session as another user is a leave and a join.
	a.join("s2", "a-bis", "A bis", "")
	c.expect(protocol.TypeUserLeft, &ul)
	c.expect(protocol.TypeUserJoined, &uj)
	if ul.UserID != "a" || uj.User.UserID != "a-bis" {
		t.Fatalf("user-left %+v, user-joined %+v", ul, uj)
	}
}

// ---------------------------------------------------------------------------
// Two tabs.

func TestE2ETwoTabs(t *testing.T) {
	s := startServer(t, &hub.Options{LeaveGrace: time.Minute})
	tab1, tab2, b := dial(t, s, nil), dial(t, s, nil), dial(t, s, nil)
	b.join("tabs", "b", "B", "")
	tab1.join("tabs", "alice", "Alice", "")
	var uj protocol.UserJoined
	b.expect(protocol.TypeUserJoined, &uj)
	sj := tab2.join("tabs", "alice", "Alice", "")
	if !sameIDs(sj.Participants, "b", "alice") {
		t.Fatalf("two tabs: participants = %v", ids(sj.Participants))
	}
	tab2.sync()
	b.quiet("second tab", protocol.TypeUserJoined)

	// One tab leaving the session is not the user leaving; coming back is
	// not a join.
	tab1.send(protocol.TypeLeaveSession, nil, "l")
	if env := tab1.expect(protocol.TypeSessionLeft, nil); env.Ref != "l" {
		t.Fatalf("session-left ref = %q", env.Ref)
	}
	tab1.sync()
	b.quiet("one of two tabs left", protocol.TypeUserLeft)
	tab1.join("tabs", "alice", "Alice", "")
	tab1.sync()
	b.quiet("a tab came back", protocol.TypeUserJoined)

	// Close the first tab cleanly; wait until the hub has handled it.
	if err := tab1.ws.Close(websocket.StatusNormalClosure, "tab closed"); err != nil {
		t.Fatalf("close: %v", err)
	}
	others := waitRecipients(t, s, b, 1) // only tab2 is left to reach
	others = append(others, b.collect()...)
	for _, m := range others {
		if m.Type == protocol.TypeUserLeft {
			t.Fatalf("one of two tabs closed: got user-left %s", m.Data)
		}
	}
	c := dial(t, s, nil)
	if sj := c.join("tabs", "c", "C", ""); !sameIDs(sj.Participants, "b", "alice", "c") {
		t.Fatalf("after closing one tab: participants = %v", ids(sj.Participants))
	}
	b.skipUntil(protocol.TypeUserJoined, nil)

	// Close the second: alice leaves at once (a minute of grace notwithstanding).
	if err := tab2.ws.Close(websocket.StatusNormalClosure, "tab closed"); err != nil {
		t.Fatalf("close: %v", err)
	}
	var ul protocol.UserLeft
	b.expect(protocol.TypeUserLeft, &ul)
	if ul.UserID != "alice" || ul.Participants == nil || !sameIDs(*ul.Participants, "b", "c") {
		t.Fatalf("user-left = %+v", ul)
	}
}

// ---------------------------------------------------------------------------
// Errors.

func TestE2EErrors(t *testing.T) {
	s := startServer(t, nil)
	long := strings.Repeat("n", 65)
	tests := []struct {
		name string
		raw  string
		code protocol.Code
		ref  string
	}{
		{"not JSON", `hello`, protocol.CodeBadRequest, ""},
		{"truncated JSON", `{"type":"ping","ref":"t"`, protocol.CodeBadRequest, ""},
		{"JSON array", `[{"type":"ping"}]`, protocol.CodeBadRequest, ""},
		{"JSON string", `"ping"`, protocol.CodeBadRequest, ""},
		{"no type", `{"data":{},"ref":"nt"}`, protocol.CodeBadRequest, "nt"},
		{"type not a string", `{"type":5,"ref":"ts"}`, protocol.CodeBadRequest, "ts"},
		{"data not an object", `{"type":"ping","data":[1],"ref":"dn"}`, protocol.CodeBadRequest, "dn"},
		{"ref too long", `{"type":"ping","ref":"` + strings.Repeat("r", 65) + `"}`, protocol.CodeBadRequest, ""},
		{"line wrong type", `{"type":"cursor-update","data":{"line":"1","column":0},"ref":"c1"}`, protocol.CodeBadRequest, "c1"},
		{"line out of range", `{"type":"cursor-update","data":{"line":10000001,"column":0},"ref":"c2"}`, protocol.CodeBadRequest, "c2"},
		{"column negative", `{"type":"cursor-update","data":{"line":1,"column":-1},"ref":"c3"}`, protocol.CodeBadRequest, "c3"},
		{"line not an integer", `{"type":"cursor-update","data":{"line":1.5,"column":0},"ref":"c4"}`, protocol.CodeBadRequest, "c4"},
		{"line missing", `{"type":"cursor-update","data":{"column":0},"ref":"c5"}`, protocol.CodeBadRequest, "c5"},
		{"file too long", `{"type":"cursor-update","data":{"line":1,"column":0,"file":"` + strings.Repeat("f", 257) + `"},"ref":"c6"}`, protocol.CodeBadRequest, "c6"},
		{"selection out of range", `{"type":"cursor-update","data":{"line":1,"column":0,"selection":{"start":{"line":0,"column":0},"end":{"line":-1,"column":0}}},"ref":"c7"}`, protocol.CodeBadRequest, "c7"},
		{"isActive wrong type", `{"type":"activity-status","data":{"isActive":"yes"},"ref":"a1"}`, protocol.CodeBadRequest, "a1"},
		{"isActive missing", `{"type":"activity-status","data":{},"ref":"a2"}`, protocol.CodeBadRequest, "a2"},
		{"broadcast without event", `{"type":"broadcast","data":{"payload":1},"ref":"b1"}`, protocol.CodeBadRequest, "b1"},
		{"broadcast event too long", `{"type":"broadcast","data":{"event":"` + long + `"},"ref":"b2"}`, protocol.CodeBadRequest, "b2"},
		{"name too long", `{"type":"join-session","data":{"sessionId":"s","userInfo":{"name":"` + long + `"}},"ref":"j1"}`, protocol.CodeBadRequest, "j1"},
		{"name missing", `{"type":"join-session","data":{"sessionId":"s","userInfo":{"userId":"u"}},"ref":"j2"}`, protocol.CodeBadRequest, "j2"},
		{"userInfo missing", `{"type":"join-session","data":{"sessionId":"s"},"ref":"j3"}`, protocol.CodeBadRequest, "j3"},
		{"name empty", `{"type":"join-session","data":{"sessionId":"s","userInfo":{"name":""}},"ref":"j4"}`, protocol.CodeBadRequest, "j4"},
		{"name wrong type", `{"type":"join-session","data":{"sessionId":"s","userInfo":{"name":7}},"ref":"j5"}`, protocol.CodeBadRequest, "j5"},
		{"bad role", `{"type":"join-session","data":{"sessionId":"s","userInfo":{"name":"n","role":"admin"}},"ref":"j6"}`, protocol.CodeBadRequest, "j6"},
		{"bad presence", `{"type":"join-session","data":{"sessionId":"s","presence":"some","userInfo":{"name":"n"}},"ref":"j7"}`, protocol.CodeBadRequest, "j7"},
		{"join without data", `{"type":"join-session","ref":"j8"}`, protocol.CodeBadRequest, "j8"},
		{"sessionId missing", `{"type":"join-session","data":{"userInfo":{"name":"n"}},"ref":"j9"}`, protocol.CodeBadRequest, "j9"},
		{"unknown type", `{"type":"dance","data":{},"ref":"u1"}`, protocol.CodeUnknownType, "u1"},
		{"empty type", `{"type":"","ref":"u2"}`, protocol.CodeUnknownType, "u2"},
		{"sessionId with a space", `{"type":"join-session","data":{"sessionId":"a b","userInfo":{"name":"n"}},"ref":"i1"}`, protocol.CodeInvalidSessionID, "i1"},
		{"sessionId empty", `{"type":"join-session","data":{"sessionId":"","userInfo":{"name":"n"}},"ref":"i2"}`, protocol.CodeInvalidSessionID, "i2"},
		{"sessionId too long", `{"type":"join-session","data":{"sessionId":"` + strings.Repeat("s", 65) + `","userInfo":{"name":"n"}},"ref":"i3"}`, protocol.CodeInvalidSessionID, "i3"},
		{"sessionId slash", `{"type":"join-session","data":{"sessionId":"a/b","userInfo":{"name":"n"}},"ref":"i4"}`, protocol.CodeInvalidSessionID, "i4"},
		{"cursor-update before join", `{"type":"cursor-update","data":{"line":1,"column":2},"ref":"n1"}`, protocol.CodeNotInSession, "n1"},
		{"activity-status before join", `{"type":"activity-status","data":{"isActive":false},"ref":"n2"}`, protocol.CodeNotInSession, "n2"},
		{"broadcast before join", `{"type":"broadcast","data":{"event":"e","payload":{}},"ref":"n3"}`, protocol.CodeNotInSession, "n3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := dial(t, s, nil)
			p.sendRaw([]byte(tc.raw))
			// Other messages may not come first; the error is the direct reply.
			p.expectError(tc.code, tc.ref)
			// The connection stays usable.
			p.send(protocol.TypePing, map[string]any{"after": tc.name}, "alive")
			if env := p.expect(protocol.TypePong, nil); env.Ref != "alive" {
				t.Fatalf("pong ref = %q", env.Ref)
			}
			// It can still join.
			if sj := p.join("after-error", "u", "U", ""); sj.SelfID != "u" {
				t.Fatalf("session-joined = %+v", sj)
			}
		})
	}
	p := dial(t, s, nil)
	p.join("in-session", "u", "U", "")
	for _, raw := range []string{
		`{"type":"cursor-update","data":{"line":-5,"column":0},"ref":"in1"}`,
		`{"type":"activity-status","data":{"isActive":1},"ref":"in1"}`,
		`{"type":"broadcast","data":{"event":""},"ref":"in1"}`,
		`{"type":"broadcast","data":{"event":"e","to":""},"ref":"in1"}`,
		`{"type":"join-session","data":{"sessionId":"x y","userInfo":{"name":"n"}},"ref":"in1"}`,
	} {
		p.sendRaw([]byte(raw))
		m := p.next()
		if m.Type != protocol.TypeError || m.Ref != "in1" {
			t.Fatalf("%s: got %s %s ref %q, want an error with ref in1", raw, m.Type, m.Data, m.Ref)
		}
		p.sync()
	}
	// A refused join does not take the connection out of its session.
	p.send(protocol.TypeBroadcast, map[string]any{"event": "still-in"}, "si")
	p.expect(protocol.TypeAck, nil)
	// Boundaries that are valid: 64-character names (runes, not bytes) and
	// sessionIds, line and column 10,000,000.
	sid := strings.Repeat("S", 64)
	sj, _ := e2eJoin(p, protocol.JoinSession{SessionID: sid, UserInfo: protocol.UserInfo{UserID: "u", Name: strings.Repeat("é", 64)}}, "")
	if sj.SessionID != sid || sj.Participants[0].Name != strings.Repeat("é", 64) {
		t.Fatalf("session-joined = %+v", sj)
	}
	p.send(protocol.TypeCursorUpdate, protocol.Cursor{Line: 10_000_000, Column: 10_000_000}, "")
	for _, m := range p.collect() {
		if m.Type == protocol.TypeError {
			t.Fatalf("a cursor at the bounds got %s", m.Data)
		}
	}
}

func TestE2ESessionFull(t *testing.T) {
	s := startServer(t, &hub.Options{MaxParticipants: 2})
	a, b, c, a2 := dial(t, s, nil), dial(t, s, nil), dial(t, s, nil), dial(t, s, nil)
	a.join("full", "a", "A", "")
	b.join("full", "b", "B", "")
	a.skipUntil(protocol.TypeUserJoined, nil)

	c.send(protocol.TypeJoinSession, protocol.JoinSession{SessionID: "full", UserInfo: protocol.UserInfo{UserID: "c", Name: "C"}}, "third")
	c.expectError(protocol.CodeSessionFull, "third")
	c.send(protocol.TypePing, nil, "alive")
	if env := c.expect(protocol.TypePong, nil); env.Ref != "alive" {
		t.Fatalf("pong ref = %q", env.Ref)
	}
	// c is in no session.
	c.send(protocol.TypeBroadcast, map[string]any{"event": "e"}, "x")
	c.expectError(protocol.CodeNotInSession, "x")
	a.quiet("refused join", protocol.TypeUserJoined)
	b.quiet("refused join", protocol.TypeUserJoined)

	// A refused join does not take a connection out of the session it is in.
	d, e := dial(t, s, nil), dial(t, s, nil)
	d.join("elsewhere", "d", "D", "")
	e.join("elsewhere", "e", "E", "")
	d.skipUntil(protocol.TypeUserJoined, nil)
	d.send(protocol.TypeJoinSession, protocol.JoinSession{SessionID: "full", UserInfo: protocol.UserInfo{UserID: "d", Name: "D"}}, "d-full")
	d.expectError(protocol.CodeSessionFull, "d-full")
	d.sync()
	e.quiet("a refused join elsewhere", protocol.TypeUserLeft)
	e.send(protocol.TypeBroadcast, map[string]any{"event": "still-here"}, "")
	d.skipUntil(protocol.TypeBroadcast, nil)

	// A second tab of a present user is not a new participant.
	sj := a2.join("full", "a", "A", "")
	if !sameIDs(sj.Participants, "a", "b") {
		t.Fatalf("second tab: participants = %v", ids(sj.Participants))
	}
	// c can join another session.
	if sj := c.join("other", "c", "C", ""); sj.SessionID != "other" {
		t.Fatalf("session-joined = %+v", sj)
	}
	// Once someone leaves, there is room again.
	b.send(protocol.TypeLeaveSession, nil, "")
	b.expect(protocol.TypeSessionLeft, nil)
	a.skipUntil(protocol.TypeUserLeft, nil)
	if sj := c.join("full", "c", "C", ""); !sameIDs(sj.Participants, "a", "c") {
		t.Fatalf("after a leave: participants = %v", ids(sj.Participants))
	}
}

// ---------------------------------------------------------------------------
// Close codes.

func TestE2ECloseCodes(t *testing.T) {
	tests := []struct {
		name  string
		grace time.Duration
		do    func(t *testing.T, p *peer)
		code  websocket.StatusCode // what the server closes with; 0: the client closes
	}{
		{"oversize frame", 300 * time.Millisecond, func(t *testing.T, p *peer) {
			big := `{"type":"ping","data":{"pad":"` + strings.Repeat("x", 2048) + `"}}`
			p.ws.Write(context.Background(), websocket.MessageText, []byte(big))
		}, websocket.StatusMessageTooBig},
		{"binary frame", 300 * time.Millisecond, func(t *testing.T, p *peer) {
			p.ws.Write(context.Background(), websocket.MessageBinary, []byte(`{"type":"ping"}`))
		}, websocket.StatusUnsupportedData},
		// A minute of grace: the clean closes must leave at once.
		{"client close 1000", time.Minute, func(t *testing.T, p *peer) {
			if err := p.ws.Close(websocket.StatusNormalClosure, "bye"); err != nil {
				t.Errorf("close: %v", err)
			}
		}, 0},
		{"client close 1001", time.Minute, func(t *testing.T, p *peer) {
			if err := p.ws.Close(websocket.StatusGoingAway, "tab closed"); err != nil {
				t.Errorf("close: %v", err)
			}
		}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, &hub.Options{MaxMessageBytes: 1024, LeaveGrace: tc.grace})
			a, b := dial(t, s, nil), dial(t, s, nil)
			a.join("cc", "a", "A", "")
			b.join("cc", "b", "B", "")
			a.skipUntil(protocol.TypeUserJoined, nil)
			// A frame just under the limit is fine.
			a.sendRaw([]byte(`{"type":"ping","data":{"pad":"` + strings.Repeat("x", 900) + `"},"ref":"under"}`))
			a.skipUntil(protocol.TypePong, nil)

			tc.do(t, a)
			if tc.code != 0 {
				if got := a.closed(); got != tc.code {
					t.Fatalf("close code = %d, want %d", got, tc.code)
				}
			}
			var ul protocol.UserLeft
			b.skipUntil(protocol.TypeUserLeft, &ul)
			if ul.UserID != "a" || ul.Participants == nil || !sameIDs(*ul.Participants, "b") {
				t.Fatalf("user-left = %+v", ul)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Origins.

func TestE2EOrigin(t *testing.T) {
	allowed := []string{"app.example.com", "*.example.org"}
	tests := []struct {
		name    string
		allowed []string
		origin  string // "" sends no Origin; "same" the server's own host
		ok      bool
	}{
		{"default refuses a foreign origin", nil, "http://evil.example", false},
		{"default allows the same host", nil, "same", true},
		{"default allows no origin", nil, "", true},
		{"listed host", allowed, "http://app.example.com", true},
		{"listed host, other case", allowed, "https://APP.Example.com", true},
		{"wildcard host", allowed, "http://x.example.org", true},
		{"unlisted host", allowed, "http://other.example.com", false},
		{"unlisted host with port", allowed, "http://app.example.com:8443", false},
		{"wildcard does not match the bare domain", allowed, "http://example.org", false},
		{"foreign origin with a list", allowed, "http://evil.example", false},
		{"no origin with a list", allowed, "", true},
		{"same host with a list", allowed, "same", true},
	}
	servers := map[bool]*server{}
	for _, withList := range []bool{false, true} {
		opts := &hub.Options{}
		if withList {
			opts.AllowedOrigins = allowed
		}
		servers[withList] = startServer(t, opts)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := servers[tc.allowed != nil]
			h := http.Header{}
			switch tc.origin {
			case "":
			case "same":
				h.Set("Origin", s.ts.URL)
			default:
				h.Set("Origin", tc.origin)
			}
			ws, resp, err := dialHTTP(t, s, &websocket.DialOptions{HTTPHeader: h})
			if !tc.ok {
				if err == nil {
					t.Fatal("upgrade accepted, want 403")
				}
				if resp == nil || resp.StatusCode != http.StatusForbidden {
					t.Fatalf("dial error %v, response %v, want 403", err, resp)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			// It works: a ping gets a pong.
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"ping","ref":"o"}`)); err != nil {
				t.Fatal(err)
			}
			_, b, err := ws.Read(ctx)
			if err != nil || !strings.Contains(string(b), `"pong"`) {
				t.Fatalf("read %s, %v", b, err)
			}
			ws.Close(websocket.StatusNormalClosure, "")
		})
	}
	if v := mustMetric(t, servers[true], "sessionhub_upgrades_refused_total"); v != 4 {
		t.Errorf("sessionhub_upgrades_refused_total = %v, want 4", v)
	}
}

// ---------------------------------------------------------------------------
// Batching.

// frames dials s and returns the connection and a channel of its text
// frames as they arrive.
func frames(t *testing.T, s *server, opts *websocket.DialOptions) (*websocket.Conn, <-chan []byte) {
	t.Helper()
	ws, _, err := dialHTTP(t, s, opts)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	ws.SetReadLimit(1 << 22)
	ch := make(chan []byte, 100000)
	go func() {
		defer close(ch)
		for {
			typ, b, err := ws.Read(context.Background())
			if err != nil {
				return
			}
			if typ != websocket.MessageText {
				t.Errorf("binary frame from the server")
				return
			}
			ch <- b
		}
	}()
	return ws, ch
}

func TestE2EBatching(t *testing.T) {
	const n = 300
	// No cursor coalescing and a big queue: every update is fanned out.
	s := startServer(t, &hub.Options{CursorRate: 1e9, SendQueue: 4 * n})
	batchWS, batchFrames := frames(t, s, &websocket.DialOptions{Subprotocols: []string{protocol.BatchSubprotocol}})
	plainWS, plainFrames := frames(t, s, nil)
	if got := batchWS.Subprotocol(); got != protocol.BatchSubprotocol {
		t.Fatalf("batch client: subprotocol %q, want %q", got, protocol.BatchSubprotocol)
	}
	if got := plainWS.Subprotocol(); got != "" {
		t.Fatalf("plain client: subprotocol %q, want none", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for i, ws := range []*websocket.Conn{batchWS, plainWS} {
		join, _ := protocol.Encode(protocol.TypeJoinSession, "", protocol.JoinSession{SessionID: "batch",
			UserInfo: protocol.UserInfo{UserID: "r" + strconv.Itoa(i), Name: "R"}})
		if err := ws.Write(ctx, websocket.MessageText, join); err != nil {
			t.Fatal(err)
		}
	}
	firstMulti := 0 // multi-message frames before the burst
	for i, ch := range []<-chan []byte{batchFrames, plainFrames} {
		select {
		case f := <-ch:
			if !bytes.HasPrefix(f, []byte(`{"type":"session-joined"`)) {
				t.Fatalf("first frame %s, want session-joined", f)
			}
			if bytes.Contains(f, []byte("\n")) {
				if i == 1 {
					t.Fatalf("plain client: a frame holds several messages: %.200q", f)
				}
				firstMulti++
			}
		case <-ctx.Done():
			t.Fatal("no session-joined")
		}
	}
	sender := dial(t, s, nil)
	sender.join("batch", "sender", "S", "")
	for i := range n {
		sender.send(protocol.TypeCursorUpdate, protocol.Cursor{Line: i, Column: i}, "")
	}

	// read reads frames until the cursor of line n-1 arrives; it checks every
	// frame (and every line of a batch) is one whole JSON object.
	read := func(name string, ch <-chan []byte, batch bool) (cursors, multi int) {
		t.Helper()
		deadline := time.After(wait)
		for {
			select {
			case f, ok := <-ch:
				if !ok {
					t.Fatalf("%s: connection ended", name)
				}
				lines := bytes.Split(f, []byte("\n"))
				if len(lines) > 1 {
					if !batch {
						t.Fatalf("%s: a frame without batching holds %d lines: %.200q", name, len(lines), f)
					}
					multi++
				}
				last := false
				for _, l := range lines {
					var env protocol.Envelope
					d := json.NewDecoder(bytes.NewReader(l))
					if err := d.Decode(&env); err != nil || d.More() || env.Type == "" {
						t.Fatalf("%s: frame line %.200q is not one JSON object: %v", name, l, err)
					}
					var rest any
					if d.Decode(&rest) == nil {
						t.Fatalf("%s: frame line %.200q holds more than one JSON value", name, l)
					}
					if env.Type == protocol.TypeCursorMoved {
						cursors++
						var cm protocol.CursorMoved
						json.Unmarshal(env.Data, &cm)
						last = last || cm.Cursor.Line == n-1
					}
				}
				if last {
					return cursors, multi
				}
			case <-deadline:
				t.Fatalf("%s: the last cursor did not arrive", name)
			}
		}
	}
	bm, bmulti := read("batch", batchFrames, true)
	pm, _ := read("plain", plainFrames, false)
	t.Logf("batch client: %d cursors, %d multi-message frames; plain client: %d cursors", bm, bmulti, pm)
	if pm != n || bm != n {
		t.Errorf("cursor-moved: plain client got %d, batch client %d, want %d each", pm, bm, n)
	}
	if got := mustMetric(t, s, "sessionhub_batched_frames_total"); int(got) != bmulti+firstMulti {
		t.Errorf("sessionhub_batched_frames_total = %v, the batch client saw %d", got, bmulti+firstMulti)
	}
}

// ---------------------------------------------------------------------------
// Graceful shutdown.

func TestE2EShutdown(t *testing.T) {
	s := startServer(t, &hub.Options{LeaveGrace: time.Minute})
	if code, _ := s.get(t, "/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz before = %d", code)
	}
	a, b, idle := dial(t, s, nil), dial(t, s, nil), dial(t, s, nil) // idle never joins
	a.join("sd", "a", "A", "")
	b.join("sd", "b", "B", "")
	a.skipUntil(protocol.TypeUserJoined, nil)
	idle.sync()

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- s.Shutdown(ctx) }()
	for _, p := range []*peer{a, b, idle} {
		if got := p.closed(); got != websocket.StatusGoingAway {
			t.Errorf("close code = %d, want 1001", got)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown = %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Shutdown did not return within its context")
	}
	t.Logf("Shutdown took %v", time.Since(start))
	if code, _ := s.get(t, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz after = %d, want 503", code)
	}
	if code, _ := s.get(t, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz after = %d, want 200", code)
	}
	ws, resp, err := dialHTTP(t, s, nil)
	if err == nil {
		ws.CloseNow()
		t.Fatal("a new WebSocket was accepted after Shutdown")
	}
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("dial after Shutdown: %v, response %v, want 503", err, resp)
	}
	if err := s.Shutdown(context.Background()); !errors.Is(err, hub.ErrShuttingDown) {
		t.Errorf("second Shutdown = %v, want ErrShuttingDown", err)
	}
}

// TestE2EShutdownDeadline: a client that never answers the close handshake
// does not hold Shutdown past its context, and /readyz is 503 while it waits.
func TestE2EShutdownDeadline(t *testing.T) {
	s := startServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, s.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	// The client never reads, so it never answers the server's close frame.
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	// Wait until the server serves it (the gauge counts it).
	for deadline := time.Now().Add(wait); mustMetric(t, s, "sessionhub_connections") != 1; {
		if time.Now().After(deadline) {
			t.Fatal("the connection was never counted")
		}
		pause()
	}

	sctx, scancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer scancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- s.Shutdown(sctx) }()
	// While Shutdown waits for the client, /readyz is 503.
	for deadline := time.Now().Add(wait); ; {
		code, _ := s.get(t, "/readyz")
		if code == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %d during Shutdown", code)
		}
		pause()
	}
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown = %v, want context.DeadlineExceeded", err)
		}
		// It dropped the client at the deadline rather than waiting out
		// the close handshake: how long that took on this machine is
		// logged, not asserted.
		t.Logf("Shutdown took %v with a 500ms context", time.Since(start).Round(time.Millisecond))
	case <-time.After(3 * wait):
		t.Fatal("Shutdown did not return")
	}
}

// ---------------------------------------------------------------------------
// HTTP.

func TestE2EHTTP(t *testing.T) {
	s := startServer(t, nil)
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, _ := s.get(t, path); code != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", path, code)
		}
	}
	series := []string{
		"sessionhub_connections",
		`sessionhub_messages_in_total{type="join-session"}`,
		`sessionhub_messages_in_total{type="cursor-update"}`,
		`sessionhub_messages_in_total{type="broadcast"}`,
		`sessionhub_messages_in_total{type="ping"}`,
		`sessionhub_messages_in_total{type="invalid"}`,
		`sessionhub_messages_out_total{type="session-joined"}`,
		`sessionhub_messages_out_total{type="user-joined"}`,
		`sessionhub_messages_out_total{type="cursor-moved"}`,
		`sessionhub_messages_out_total{type="broadcast"}`,
		`sessionhub_messages_out_total{type="ack"}`,
	}
	before := map[string]float64{}
	for _, m := range series {
		before[m] = mustMetric(t, s, m)
	}
	a, b := dial(t, s, nil), dial(t, s, nil)
	a.join("m", "a", "A", "")
	b.join("m", "b", "B", "")
	a.skipUntil(protocol.TypeUserJoined, nil)
	a.send(protocol.TypeCursorUpdate, protocol.Cursor{Line: 1}, "")
	b.skipUntil(protocol.TypeCursorMoved, nil)
	a.send(protocol.TypeBroadcast, map[string]any{"event": "e"}, "r")
	a.expect(protocol.TypeAck, nil)
	b.skipUntil(protocol.TypeBroadcast, nil)
	a.sendRaw([]byte("nope"))
	a.expectError(protocol.CodeBadRequest, "")
	a.send(protocol.TypeJoinSession, map[string]any{"sessionId": "m", "userInfo": map[string]any{"userId": "a"}}, "")
	a.expectError(protocol.CodeBadRequest, "")
	a.sync()
	b.sync()

	want := map[string]float64{
		"sessionhub_connections":                               2,
		`sessionhub_messages_in_total{type="join-session"}`:    3,
		`sessionhub_messages_in_total{type="cursor-update"}`:   1,
		`sessionhub_messages_in_total{type="broadcast"}`:       1,
		`sessionhub_messages_in_total{type="ping"}`:            2,
		`sessionhub_messages_in_total{type="invalid"}`:         1,
		`sessionhub_messages_out_total{type="session-joined"}`: 2,
		`sessionhub_messages_out_total{type="user-joined"}`:    1,
		`sessionhub_messages_out_total{type="cursor-moved"}`:   1,
		`sessionhub_messages_out_total{type="broadcast"}`:      1,
		`sessionhub_messages_out_total{type="ack"}`:            1,
	}
	for _, m := range series {
		if got := mustMetric(t, s, m) - before[m]; got != want[m] {
			t.Errorf("%s moved by %v, want %v", m, got, want[m])
		}
	}
	if got := mustMetric(t, s, "sessionhub_connections"); got != 2 {
		t.Errorf("sessionhub_connections = %v, want 2", got)
	}
	a.ws.Close(websocket.StatusNormalClosure, "")
	for deadline := time.Now().Add(wait); mustMetric(t, s, "sessionhub_connections") != 1; pause() {
		if time.Now().After(deadline) {
			t.Fatal("sessionhub_connections did not drop to 1 after a close")
		}
	}
	_, body := s.get(t, "/metrics")
	for _, name := range []string{"sessionhub_sessions", "sessionhub_participants", "sessionhub_send_queue_messages",
		"sessionhub_hub_loop_latency_seconds_bucket", "go_goroutines"} {
		if !strings.Contains(body, "\n"+name) {
			t.Errorf("/metrics has no %s", name)
		}
	}
}

// TestE2EMetricsOutCountsEveryReply: sessionhub_messages_out_total counts
// "server messages queued for delivery, by type, one per recipient", so the
// pong of a ping and the error of an invalid frame count too.
func TestE2EMetricsOutCountsEveryReply(t *testing.T) {
	s := startServer(t, nil)
	p := dial(t, s, nil)
	pong0 := mustMetric(t, s, `sessionhub_messages_out_total{type="pong"}`)
	err0 := mustMetric(t, s, `sessionhub_messages_out_total{type="error"}`)
	p.send(protocol.TypePing, nil, "")
	p.expect(protocol.TypePong, nil)
	p.sendRaw([]byte("not json"))
	p.expectError(protocol.CodeBadRequest, "")
	p.sendRaw([]byte(`{"type":"nope"}`))
	p.expectError(protocol.CodeUnknownType, "")
	if got := mustMetric(t, s, `sessionhub_messages_out_total{type="pong"}`) - pong0; got != 1 {
		t.Errorf(`sessionhub_messages_out_total{type="pong"} moved by %v after one pong, want 1`, got)
	}
	if got := mustMetric(t, s, `sessionhub_messages_out_total{type="error"}`) - err0; got != 2 {
		t.Errorf(`sessionhub_messages_out_total{type="error"} moved by %v after two errors, want 2`, got)
	}
}
