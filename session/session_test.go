package session_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/sessionhub/sessionhub/protocol"
	"github.com/sessionhub/sessionhub/session"
)

var t0 = time.Date(2025, 5, 6, 9, 0, 0, 0, time.UTC)

// at is t0 plus d.
func at(d time.Duration) time.Time { return t0.Add(d) }

const (
	grace     = 5 * time.Second
	idleAfter = 5 * time.Minute
	ttl       = 30 * time.Minute
)

// user is the userInfo of a learner id named after it.
func user(id string) protocol.UserInfo {
	return protocol.UserInfo{UserID: id, Name: "name-" + id, Role: protocol.RoleLearner}
}

func newSession() *session.Session { return session.New("s1", "e1", t0) }

// ids lists the user ids of ps in order.
func ids(ps []*session.Participant) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.UserID)
	}
	return out
}

// view is the exported state of a participant, comparable with DeepEqual.
type view struct {
	UserID   string
	Name     string
	Role     protocol.Role
	Color    string
	JoinedAt time.Time
	Active   bool
	Cursor   *protocol.Cursor
	LastSeen time.Time
	Conns    int
	LeaveAt  time.Time
}

func viewOf(p *session.Participant) view {
	return view{p.UserID, p.Name, p.Role, p.Color, p.JoinedAt, p.Active, p.Cursor, p.LastSeen, p.Conns, p.LeaveAt}
}

// fresh is the view of id's participant just after its first join at t.
func fresh(id string, t time.Time) view {
	u := user(id)
	return view{UserID: id, Name: u.Name, Role: u.Role, JoinedAt: t, Active: true, LastSeen: t, Conns: 1}
}

// checkOrder fails unless the session lists want, in order, and Get and
// Len agree.
func checkOrder(t *testing.T, s *session.Session, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if got := ids(s.Participants()); !reflect.DeepEqual(got, want) {
		t.Errorf("Participants = %v, want %v", got, want)
	}
	if s.Len() != len(want) {
		t.Errorf("Len = %d, want %d", s.Len(), len(want))
	}
	for _, id := range want {
		if s.Get(id) == nil {
			t.Errorf("Get(%q) = nil for a listed participant", id)
		}
	}
}

func TestNew(t *testing.T) {
	s := session.New("room-1", "epoch-1", t0)
	if s.ID != "room-1" || s.Epoch != "epoch-1" || s.Offset != 0 {
		t.Errorf("New = ID %q Epoch %q Offset %d", s.ID, s.Epoch, s.Offset)
	}
	if !s.EmptySince.Equal(t0) {
		t.Errorf("EmptySince = %v, want %v", s.EmptySince, t0)
	}
	checkOrder(t, s)
	if s.Get("u1") != nil {
		t.Error("Get of an unknown user is not nil")
	}
	if w := s.Wire(); w == nil || len(w) != 0 {
		t.Errorf("Wire = %#v, want an empty non-nil list", w)
	}
	b, err := json.Marshal(s.Wire())
	if err != nil || string(b) != "[]" {
		t.Errorf("Wire encodes as %s (%v), want []", b, err)
	}
}

func TestJoin(t *testing.T) {
	cur := &protocol.Cursor{Line: 3, Column: 7, File: "main.go"}
	tests := []struct {
		name      string
		setup     func(s *session.Session)
		info      protocol.UserInfo
		now       time.Time
		wantNew   bool
		want      view
		wantOrder []string
	}{
		{
			name:      "new user",
			info:      user("u1"),
			now:       t0,
			wantNew:   true,
			want:      fresh("u1", t0),
			wantOrder: []string{"u1"},
		},
		{
			name: "new user with colour and role",
			info: protocol.UserInfo{UserID: "u1", Name: "Ada", Role: protocol.RoleInstructor, Color: "#f00"},
			now:  at(time.Second),
			want: view{UserID: "u1", Name: "Ada", Role: protocol.RoleInstructor, Color: "#f00",
				JoinedAt: at(time.Second), Active: true, LastSeen: at(time.Second), Conns: 1},
			wantNew:   true,
			wantOrder: []string{"u1"},
		},
		{
			name:      "second user",
			setup:     func(s *session.Session) { s.Join(user("u1"), t0) },
			info:      user("u2"),
			now:       at(time.Second),
			wantNew:   true,
			want:      fresh("u2", at(time.Second)),
			wantOrder: []string{"u1", "u2"},
		},
		{
			name:    "second tab",
			setup:   func(s *session.Session) { s.Join(user("u1"), t0) },
			info:    user("u1"),
			now:     at(time.Second),
			wantNew: false,
			want: view{UserID: "u1", Name: "name-u1", Role: protocol.RoleLearner,
				JoinedAt: t0, Active: true, LastSeen: t0, Conns: 2},
			wantOrder: []string{"u1"},
		},
		{
			name: "third tab",
			setup: func(s *session.Session) {
				s.Join(user("u1"), t0)
				s.Join(user("u1"), at(time.Second))
			},
			info:    user("u1"),
			now:     at(2 * time.Second),
			wantNew: false,
			want: view{UserID: "u1", Name: "name-u1", Role: protocol.RoleLearner,
				JoinedAt: t0, Active: true, LastSeen: t0, Conns: 3},
			wantOrder: []string{"u1"},
		},
		{
			name: "rejoin within grace keeps place, activity and cursor",
			setup: func(s *session.Session) {
				s.Join(user("u1"), t0)
				s.Join(user("u2"), at(time.Second))
				s.SetCursor("u1", cur, at(2*time.Second))
				s.SetActive("u1", false, at(3*time.Second))
				s.Detach("u1", at(4*time.Second), grace)
			},
			info:    user("u1"),
			now:     at(8 * time.Second),
			wantNew: false,
			want: view{UserID: "u1", Name: "name-u1", Role: protocol.RoleLearner,
				JoinedAt: t0, Active: false, Cursor: cur, LastSeen: at(3 * time.Second), Conns: 1},
			wantOrder: []string{"u1", "u2"},
		},
		{
			name: "rejoin keeps the name, role and colour",
			setup: func(s *session.Session) {
				s.Join(protocol.UserInfo{UserID: "u1", Name: "Old", Role: protocol.RoleLearner, Color: "red"}, t0)
				s.Detach("u1", at(time.Second), grace)
			},
			info:    protocol.UserInfo{UserID: "u1", Name: "New", Role: protocol.RoleInstructor, Color: "blue"},
			now:     at(2 * time.Second),
			wantNew: false,
			want: view{UserID: "u1", Name: "Old", Role: protocol.RoleLearner, Color: "red",
				JoinedAt: t0, Active: true, LastSeen: t0, Conns: 1},
			wantOrder: []string{"u1"},
		},
		{
			name: "rejoin of an idled participant is not activity",
			setup: func(s *session.Session) {
				s.Join(user("u1"), t0)
				s.Idle(at(idleAfter), idleAfter)
			},
			info:    user("u1"),
			now:     at(idleAfter + time.Second),
			wantNew: false,
			want: view{UserID: "u1", Name: "name-u1", Role: protocol.RoleLearner,
				JoinedAt: t0, Active: false, LastSeen: t0, Conns: 2},
			wantOrder: []string{"u1"},
		},
		{
			name: "join after the grace ended is new",
			setup: func(s *session.Session) {
				s.Join(user("u1"), t0)
				s.Join(user("u2"), at(time.Second))
				s.SetCursor("u1", cur, at(2*time.Second))
				s.Detach("u1", at(3*time.Second), grace)
				s.Expire(at(3*time.Second + grace))
			},
			info:      user("u1"),
			now:       at(10 * time.Second),
			wantNew:   true,
			want:      fresh("u1", at(10*time.Second)),
			wantOrder: []string{"u2", "u1"},
		},
		{
			name: "join after leaving at once is new",
			setup: func(s *session.Session) {
				s.Join(user("u1"), t0)
				s.Detach("u1", at(time.Second), 0)
			},
			info:      user("u1"),
			now:       at(2 * time.Second),
			wantNew:   true,
			want:      fresh("u1", at(2*time.Second)),
			wantOrder: []string{"u1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSession()
			if tt.setup != nil {
				tt.setup(s)
			}
			p, isNew := s.Join(tt.info, tt.now)
			if isNew != tt.wantNew {
				t.Errorf("isNew = %v, want %v", isNew, tt.wantNew)
			}
			if p == nil {
				t.Fatal("Join returned a nil participant")
			}
			if got := viewOf(p); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("participant =\n%+v\nwant\n%+v", got, tt.want)
			}
			if s.Get(tt.info.UserID) != p {
				t.Error("Get does not return the joined participant")
			}
			if !s.EmptySince.IsZero() {
				t.Errorf("EmptySince = %v, want zero with a participant", s.EmptySince)
			}
			checkOrder(t, s, tt.wantOrder...)
		})
	}
}

// TestJoinThenTouchWakes checks that an idled participant joining again
// stays idled until the caller touches it, and then wakes.
func TestJoinThenTouchWakes(t *testing.T) {
	s := newSession()
	s.Join(user("u1"), t0)
	s.Idle(at(idleAfter), idleAfter)
	s.Join(user("u1"), at(idleAfter+time.Second))
	if !s.Touch("u1", at(idleAfter+time.Second)) {
		t.Error("Touch after the join of an idled participant: woke = false, want true")
	}
	if p := s.Get("u1"); !p.Active || p.Conns != 2 {
		t.Errorf("Active, Conns = %v, %d; want true, 2", p.Active, p.Conns)
	}
}

// TestJoinRejoinNotExpired checks that a user who came back within its
// grace is not removed when the grace it no longer has would have ended.
func TestJoinRejoinNotExpired(t *testing.T) {
	s := newSession()
	s.Join(user("u1"), t0)
	s.Detach("u1", at(time.Second), grace)
	s.Join(user("u1"), at(2*time.Second))
	if gone := s.Expire(at(time.Hour)); len(gone) != 0 {
		t.Errorf("Expire = %v, want none", ids(gone))
	}
	checkOrder(t, s, "u1")
}

func TestParticipantsOrder(t *testing.T) {
	type join struct {
		id string
		at time.Duration
	}
	tests := []struct {
		name   string
		joins  []join
		remove []string
		want   []string
	}{
		{
			name:  "by join time",
			joins: []join{{"c", 0}, {"a", time.Second}, {"b", 2 * time.Second}},
			want:  []string{"c", "a", "b"},
		},
		{
			name:  "join times out of order",
			joins: []join{{"c", 2 * time.Second}, {"a", 0}, {"b", time.Second}},
			want:  []string{"a", "b", "c"},
		},
		{
			name:  "equal join times broken by userId",
			joins: []join{{"z", 0}, {"m", 0}, {"a", 0}, {"B", 0}},
			want:  []string{"B", "a", "m", "z"},
		},
		{
			name:  "mixed",
			joins: []join{{"b", time.Second}, {"c", 0}, {"a", time.Second}, {"d", 500 * time.Millisecond}},
			want:  []string{"c", "d", "a", "b"},
		},
		{
			name:  "a second tab keeps its place",
			joins: []join{{"a", 0}, {"b", time.Second}, {"a", 2 * time.Second}},
			want:  []string{"a", "b"},
		},
		{
			name:   "removal keeps the others in order",
			joins:  []join{{"b", 0}, {"a", 0}, {"c", 0}, {"d", time.Second}},
			remove: []string{"b"},
			want:   []string{"a", "c", "d"},
		},
		{
			name:   "remove first and last",
			joins:  []join{{"a", 0}, {"b", time.Second}, {"c", 2 * time.Second}},
			remove: []string{"c", "a"},
			want:   []string{"b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSession()
			for _, j := range tt.joins {
				s.Join(user(j.id), at(j.at))
			}
			for _, id := range tt.remove {
				if _, ok := s.Remove(id, at(time.Minute)); !ok {
					t.Fatalf("Remove(%q) = false", id)
				}
			}
			checkOrder(t, s, tt.want...)
			var wire []string
			for _, p := range s.Wire() {
				wire = append(wire, p.UserID)
			}
			if !reflect.DeepEqual(wire, tt.want) {
				t.Errorf("Wire order = %v, want %v", wire, tt.want)
			}
		})
	}
}

func TestDetach(t *testing.T) {
	now := at(10 * time.Second)
	tests := []struct {
		name           string
		setup          func(s *session.Session)
		userID         string
		grace          time.Duration
		wantP          bool // a participant is returned
		wantLeft       bool
		wantConns      int
		wantLeaveAt    time.Time
		wantOrder      []string
		wantEmptySince time.Time
	}{
		{
			name:           "unknown user",
			setup:          func(s *session.Session) { s.Join(user("u1"), t0) },
			userID:         "nobody",
			grace:          grace,
			wantOrder:      []string{"u1"},
			wantEmptySince: time.Time{},
		},
		{
			name: "second-to-last connection: not left",
			setup: func(s *session.Session) {
				s.Join(user("u1"), t0)
				s.Join(user("u1"), at(time.Second))
			},
			userID:    "u1",
			grace:     0,
			wantP:     true,
			wantConns: 1,
			wantOrder: []string{"u1"},
		},
		{
			name:           "last connection without grace: left",
			setup:          func(s *session.Session) { s.Join(user("u1"), t0) },
			userID:         "u1",
			grace:          0,
			wantP:          true,
			wantLeft:       true,
			wantOrder:      nil,
			wantEmptySince: now,
		},
		{
			name:           "last connection with negative grace: left",
			setup:          func(s *session.Session) { s.Join(user("u1"), t0) },
			userID:         "u1",
			grace:          -time.Second,
			wantP:          true,
			wantLeft:       true,
			wantEmptySince: now,
		},
		{
			name: "last connection without grace, others stay",
			setup: func(s *session.Session) {
				s.Join(user("u1"), t0)
				s.Join(user("u2"), at(time.Second))
			},
			userID:    "u1",
			grace:     0,
			wantP:     true,
			wantLeft:  true,
			wantOrder: []string{"u2"},
		},
		{
			name:        "last connection with grace: still listed",
			setup:       func(s *session.Session) { s.Join(user("u1"), t0) },
			userID:      "u1",
			grace:       grace,
			wantP:       true,
			wantLeaveAt: now.Add(grace),
			wantOrder:   []string{"u1"},
		},
		{
			name: "again during the grace: nothing changes",
			setup: func(s *session.Session) {
				s.Join(user("u1"), t0)
				s.Detach("u1", at(8*time.Second), grace)
			},
			userID:      "u1",
			grace:       grace,
			wantP:       true,
			wantLeaveAt: at(8*time.Second + grace),
			wantOrder:   []string{"u1"},
		},
		{
			name: "again during the grace without grace: nothing changes",
			setup: func(s *session.Session) {
				s.Join(user("u1"), t0)
				s.Detach("u1", at(8*time.Second), grace)
			},
			userID:      "u1",
			grace:       0,
			wantP:       true,
			wantLeaveAt: at(8*time.Second + grace),
			wantOrder:   []string{"u1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSession()
			tt.setup(s)
			p, left := s.Detach(tt.userID, now, tt.grace)
			if (p != nil) != tt.wantP {
				t.Fatalf("participant = %v, want one: %v", p, tt.wantP)
			}
			if left != tt.wantLeft {
				t.Errorf("left = %v, want %v", left, tt.wantLeft)
			}
			if p != nil {
				if p.UserID != tt.userID {
					t.Errorf("UserID = %q, want %q", p.UserID, tt.userID)
				}
				if p.Conns != tt.wantConns {
					t.Errorf("Conns = %d, want %d", p.Conns, tt.wantConns)
				}
				if !p.LeaveAt.Equal(tt.wantLeaveAt) {
					t.Errorf("LeaveAt = %v, want %v", p.LeaveAt, tt.wantLeaveAt)
				}
			}
			if left && s.Get(tt.userID) != nil {
				t.Error("Get finds a participant that left")
			}
			checkOrder(t, s, tt.wantOrder...)
			if !s.EmptySince.Equal(tt.wantEmptySince) {
				t.Errorf("EmptySince = %v, want %v", s.EmptySince, tt.wantEmptySince)
			}
		})
	}
}

func TestExpire(t *testing.T) {
	// u1 leaves at 6s, u2 at 8s, u3 stays connected, u4 came back.
	setup := func(s *session.Session) {
		s.Join(user("u1"), t0)
		s.Join(user("u2"), at(time.Second))
		s.Join(user("u3"), at(2*time.Second))
		s.Join(user("u4"), at(3*time.Second))
		s.Detach("u1", at(time.Second), grace)
		s.Detach("u2", at(3*time.Second), grace)
		s.Detach("u4", at(time.Second), grace)
		s.Join(user("u4"), at(2*time.Second))
	}
	tests := []struct {
		name           string
		setup          func(s *session.Session)
		now            time.Time
		wantGone       []string
		wantOrder      []string
		wantEmptySince time.Time
	}{
		{
			name:      "nobody in grace",
			setup:     func(s *session.Session) { s.Join(user("u1"), t0) },
			now:       at(time.Hour),
			wantGone:  []string{},
			wantOrder: []string{"u1"},
		},
		{
			name:      "before any grace ends",
			setup:     setup,
			now:       at(6*time.Second - time.Nanosecond),
			wantGone:  []string{},
			wantOrder: []string{"u1", "u2", "u3", "u4"},
		},
		{
			name:      "exactly when the first grace ends",
			setup:     setup,
			now:       at(6 * time.Second),
			wantGone:  []string{"u1"},
			wantOrder: []string{"u2", "u3", "u4"},
		},
		{
			name:      "between the two",
			setup:     setup,
			now:       at(7 * time.Second),
			wantGone:  []string{"u1"},
			wantOrder: []string{"u2", "u3", "u4"},
		},
		{
			name:      "after both",
			setup:     setup,
			now:       at(time.Minute),
			wantGone:  []string{"u1", "u2"},
			wantOrder: []string{"u3", "u4"},
		},
		{
			name: "the last one: the session is empty from now",
			setup: func(s *session.Session) {
				s.Join(user("u1"), t0)
				s.Join(user("u2"), t0)
				s.Detach("u1", at(time.Second), grace)
				s.Detach("u2", at(2*time.Second), grace)
			},
			now:            at(time.Minute),
			wantGone:       []string{"u1", "u2"},
			wantOrder:      nil,
			wantEmptySince: at(time.Minute),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSession()
			tt.setup(s)
			gone := s.Expire(tt.now)
			if got := ids(gone); !reflect.DeepEqual(got, tt.wantGone) {
				t.Errorf("Expire = %v, want %v", got, tt.wantGone)
			}
			for _, p := range gone {
				if s.Get(p.UserID) != nil {
					t.Errorf("Get(%q) finds an expired participant", p.UserID)
				}
			}
			checkOrder(t, s, tt.wantOrder...)
			if !s.EmptySince.Equal(tt.wantEmptySince) {
				t.Errorf("EmptySince = %v, want %v", s.EmptySince, tt.wantEmptySince)
			}
			if again := s.Expire(tt.now); len(again) != 0 {
				t.Errorf("second Expire = %v, want none", ids(again))
			}
		})
	}
}

func TestRemove(t *testing.T) {
	now := at(time.Minute)
	tests := []struct {
		name           string
		setup          func(s *session.Session)
		userID         string
		wantOK         bool
		wantOrder      []string
		wantEmptySince time.Time
	}{
		{
			name:      "unknown user",
			setup:     func(s *session.Session) { s.Join(user("u1"), t0) },
			userID:    "nobody",
			wantOrder: []string{"u1"},
		},
		{
			name: "user with two connections",
			setup: func(s *session.Session) {
				s.Join(user("u1"), t0)
				s.Join(user("u1"), t0)
				s.Join(user("u2"), at(time.Second))
			},
			userID:    "u1",
			wantOK:    true,
			wantOrder: []string{"u2"},
		},
		{
			name: "user in its grace",
			setup: func(s *session.Session) {
				s.Join(user("u1"), t0)
				s.Join(user("u2"), at(time.Second))
				s.Detach("u2", at(2*time.Second), grace)
			},
			userID:    "u2",
			wantOK:    true,
			wantOrder: []string{"u1"},
		},
		{
			name:           "the last user",
			setup:          func(s *session.Session) { s.Join(user("u1"), t0) },
			userID:         "u1",
			wantOK:         true,
			wantEmptySince: now,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSession()
			tt.setup(s)
			p, ok := s.Remove(tt.userID, now)
			if ok != tt.wantOK {
				t.Errorf("ok = %v, want %v", ok, tt.wantOK)
			}
			if ok && (p == nil || p.UserID != tt.userID) {
				t.Errorf("participant = %v, want %q", p, tt.userID)
			}
			if !ok && p != nil {
				t.Errorf("participant = %v for an unknown user", p)
			}
			if s.Get(tt.userID) != nil {
				t.Error("Get finds the removed user")
			}
			checkOrder(t, s, tt.wantOrder...)
			if !s.EmptySince.Equal(tt.wantEmptySince) {
				t.Errorf("EmptySince = %v, want %v", s.EmptySince, tt.wantEmptySince)
			}
		})
	}
}

func TestSetCursor(t *testing.T) {
	old := &protocol.Cursor{Line: 1, Column: 1}
	cur := &protocol.Cursor{Line: 12, Column: 4, File: "a.go",
		Selection: &protocol.Selection{End: protocol.Position{Line: 12, Column: 4}}}
	now := at(10 * time.Minute)
	tests := []struct {
		name       string
		setup      func(s *session.Session)
		userID     string
		cursor     *protocol.Cursor
		wantOK     bool
		wantWoke   bool
		wantActive bool
	}{
		{
			name:   "unknown user",
			userID: "nobody",
			cursor: cur,
		},
		{
			name:       "first cursor",
			userID:     "u1",
			cursor:     cur,
			wantOK:     true,
			wantActive: true,
		},
		{
			name:       "replaces the last cursor",
			setup:      func(s *session.Session) { s.SetCursor("u1", old, at(time.Second)) },
			userID:     "u1",
			cursor:     cur,
			wantOK:     true,
			wantActive: true,
		},
		{
			name:       "wakes an idled participant",
			setup:      func(s *session.Session) { s.Idle(at(idleAfter), idleAfter) },
			userID:     "u1",
			cursor:     cur,
			wantOK:     true,
			wantWoke:   true,
			wantActive: true,
		},
		{
			name:       "does not wake one inactive by its own choice",
			setup:      func(s *session.Session) { s.SetActive("u1", false, at(time.Second)) },
			userID:     "u1",
			cursor:     cur,
			wantOK:     true,
			wantActive: false,
		},
		{
			name:       "in the leave grace",
			setup:      func(s *session.Session) { s.Detach("u1", at(time.Second), grace) },
			userID:     "u1",
			cursor:     cur,
			wantOK:     true,
			wantActive: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSession()
			s.Join(user("u1"), t0)
			if tt.setup != nil {
				tt.setup(s)
			}
			ok, woke := s.SetCursor(tt.userID, tt.cursor, now)
			if ok != tt.wantOK || woke != tt.wantWoke {
				t.Errorf("SetCursor = %v, %v; want %v, %v", ok, woke, tt.wantOK, tt.wantWoke)
			}
			if !ok {
				return
			}
			p := s.Get(tt.userID)
			if p.Cursor != tt.cursor {
				t.Errorf("Cursor = %+v, want %+v", p.Cursor, tt.cursor)
			}
			if !p.LastSeen.Equal(now) {
				t.Errorf("LastSeen = %v, want %v", p.LastSeen, now)
			}
			if p.Active != tt.wantActive {
				t.Errorf("Active = %v, want %v", p.Active, tt.wantActive)
			}
			if _, woke := s.SetCursor(tt.userID, tt.cursor, now.Add(time.Second)); woke {
				t.Error("a second SetCursor woke it again")
			}
		})
	}
}

func TestSetActive(t *testing.T) {
	now := at(10 * time.Minute)
	tests := []struct {
		name        string
		setup       func(s *session.Session)
		userID      string
		active      bool
		wantChanged bool
		wantActive  bool
	}{
		{name: "unknown user", userID: "nobody", active: false},
		{name: "active to active", userID: "u1", active: true, wantActive: true},
		{name: "active to inactive", userID: "u1", active: false, wantChanged: true},
		{
			name:   "inactive to inactive",
			setup:  func(s *session.Session) { s.SetActive("u1", false, at(time.Second)) },
			userID: "u1", active: false,
		},
		{
			name:   "inactive to active",
			setup:  func(s *session.Session) { s.SetActive("u1", false, at(time.Second)) },
			userID: "u1", active: true, wantChanged: true, wantActive: true,
		},
		{
			name:   "idled to active",
			setup:  func(s *session.Session) { s.Idle(at(idleAfter), idleAfter) },
			userID: "u1", active: true, wantChanged: true, wantActive: true,
		},
		{
			name:   "idled to inactive",
			setup:  func(s *session.Session) { s.Idle(at(idleAfter), idleAfter) },
			userID: "u1", active: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSession()
			s.Join(user("u1"), t0)
			if tt.setup != nil {
				tt.setup(s)
			}
			if got := s.SetActive(tt.userID, tt.active, now); got != tt.wantChanged {
				t.Errorf("changed = %v, want %v", got, tt.wantChanged)
			}
			p := s.Get(tt.userID)
			if p == nil {
				return
			}
			if p.Active != tt.wantActive {
				t.Errorf("Active = %v, want %v", p.Active, tt.wantActive)
			}
			if !p.LastSeen.Equal(now) {
				t.Errorf("LastSeen = %v, want %v", p.LastSeen, now)
			}
			// What the user said itself stands: a later message does not
			// change it.
			if s.Touch(tt.userID, now.Add(time.Second)) {
				t.Error("Touch after SetActive reports woke")
			}
			if p.Active != tt.wantActive {
				t.Errorf("Active after Touch = %v, want %v", p.Active, tt.wantActive)
			}
		})
	}
}

func TestTouch(t *testing.T) {
	now := at(10 * time.Minute)
	tests := []struct {
		name       string
		setup      func(s *session.Session)
		userID     string
		wantWoke   bool
		wantActive bool
	}{
		{name: "unknown user", userID: "nobody"},
		{name: "active participant", userID: "u1", wantActive: true},
		{
			name:     "idled participant wakes",
			setup:    func(s *session.Session) { s.Idle(at(idleAfter), idleAfter) },
			userID:   "u1",
			wantWoke: true, wantActive: true,
		},
		{
			name:   "inactive by its own choice stays inactive",
			setup:  func(s *session.Session) { s.SetActive("u1", false, at(time.Second)) },
			userID: "u1",
		},
		{
			name: "idled after choosing inactive: not idled by the sweep, stays inactive",
			setup: func(s *session.Session) {
				s.SetActive("u1", false, at(time.Second))
				s.Idle(at(time.Hour), idleAfter)
			},
			userID: "u1",
		},
		{
			name: "woken once already",
			setup: func(s *session.Session) {
				s.Idle(at(idleAfter), idleAfter)
				s.Touch("u1", at(idleAfter+time.Second))
			},
			userID:     "u1",
			wantActive: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSession()
			s.Join(user("u1"), t0)
			if tt.setup != nil {
				tt.setup(s)
			}
			if got := s.Touch(tt.userID, now); got != tt.wantWoke {
				t.Errorf("woke = %v, want %v", got, tt.wantWoke)
			}
			p := s.Get(tt.userID)
			if p == nil {
				return
			}
			if p.Active != tt.wantActive {
				t.Errorf("Active = %v, want %v", p.Active, tt.wantActive)
			}
			if !p.LastSeen.Equal(now) {
				t.Errorf("LastSeen = %v, want %v", p.LastSeen, now)
			}
		})
	}
}

func TestIdle(t *testing.T) {
	// u1 last seen at 0, u2 at 1m, u3 at 2m (and inactive by its own
	// choice), u4 at 3m.
	setup := func(s *session.Session) {
		s.Join(user("u1"), t0)
		s.Join(user("u2"), at(time.Minute))
		s.Join(user("u3"), at(90*time.Second))
		s.SetActive("u3", false, at(2*time.Minute))
		s.Join(user("u4"), at(2*time.Minute))
		s.Touch("u4", at(3*time.Minute))
	}
	tests := []struct {
		name       string
		setup      func(s *session.Session)
		now        time.Time
		wantIdle   []string
		wantActive map[string]bool
	}{
		{
			name:       "nobody silent long enough",
			setup:      setup,
			now:        at(idleAfter - time.Nanosecond),
			wantIdle:   []string{},
			wantActive: map[string]bool{"u1": true, "u2": true, "u3": false, "u4": true},
		},
		{
			name:       "exactly the threshold",
			setup:      setup,
			now:        at(idleAfter),
			wantIdle:   []string{"u1"},
			wantActive: map[string]bool{"u1": false, "u2": true, "u3": false, "u4": true},
		},
		{
			name:       "two past it",
			setup:      setup,
			now:        at(idleAfter + time.Minute + time.Second),
			wantIdle:   []string{"u1", "u2"},
			wantActive: map[string]bool{"u1": false, "u2": false, "u3": false, "u4": true},
		},
		{
			name:       "all silent: the inactive one is not returned",
			setup:      setup,
			now:        at(time.Hour),
			wantIdle:   []string{"u1", "u2", "u4"},
			wantActive: map[string]bool{"u1": false, "u2": false, "u3": false, "u4": false},
		},
		{
			name: "already idled: not returned again",
			setup: func(s *session.Session) {
				setup(s)
				s.Idle(at(idleAfter), idleAfter)
			},
			now:        at(idleAfter + time.Minute),
			wantIdle:   []string{"u2"},
			wantActive: map[string]bool{"u1": false, "u2": false, "u3": false, "u4": true},
		},
		{
			name: "woken, then silent again",
			setup: func(s *session.Session) {
				setup(s)
				s.Idle(at(idleAfter), idleAfter)
				s.SetCursor("u1", &protocol.Cursor{}, at(6*time.Minute))
			},
			now:        at(6*time.Minute + idleAfter),
			wantIdle:   []string{"u1", "u2", "u4"},
			wantActive: map[string]bool{"u1": false, "u2": false, "u3": false, "u4": false},
		},
		{
			name:     "empty session",
			setup:    func(*session.Session) {},
			now:      at(time.Hour),
			wantIdle: []string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSession()
			tt.setup(s)
			if got := ids(s.Idle(tt.now, idleAfter)); !reflect.DeepEqual(got, tt.wantIdle) {
				t.Errorf("Idle = %v, want %v", got, tt.wantIdle)
			}
			for id, want := range tt.wantActive {
				if got := s.Get(id).Active; got != want {
					t.Errorf("%s Active = %v, want %v", id, got, want)
				}
			}
			// Those the sweep idled wake on their next message; the one
			// that chose to be inactive does not.
			for _, id := range tt.wantIdle {
				if !s.Touch(id, tt.now.Add(time.Second)) {
					t.Errorf("Touch(%s) after Idle: woke = false, want true", id)
				}
				if !s.Get(id).Active {
					t.Errorf("%s not active after waking", id)
				}
			}
			if p := s.Get("u3"); p != nil && (s.Touch("u3", tt.now.Add(time.Second)) || p.Active) {
				t.Error("u3, inactive by its own choice, was woken by Touch")
			}
		})
	}
}

func TestExpired(t *testing.T) {
	tests := []struct {
		name  string
		setup func(s *session.Session)
		now   time.Time
		want  bool
	}{
		{name: "new and empty, before the TTL", now: at(ttl - time.Nanosecond), want: false},
		{name: "new and empty, at the TTL", now: at(ttl), want: true},
		{name: "new and empty, past the TTL", now: at(2 * ttl), want: true},
		{
			name:  "with a participant",
			setup: func(s *session.Session) { s.Join(user("u1"), t0) },
			now:   at(2 * ttl),
		},
		{
			name: "with a participant in its grace",
			setup: func(s *session.Session) {
				s.Join(user("u1"), t0)
				s.Detach("u1", at(time.Minute), 2*ttl)
			},
			now: at(2 * ttl),
		},
		{
			name: "TTL counts from when the last one left",
			setup: func(s *session.Session) {
				s.Join(user("u1"), t0)
				s.Detach("u1", at(10*time.Minute), 0)
			},
			now: at(10*time.Minute + ttl - time.Nanosecond),
		},
		{
			name: "TTL reached after the last one left",
			setup: func(s *session.Session) {
				s.Join(user("u1"), t0)
				s.Detach("u1", at(10*time.Minute), 0)
			},
			now:  at(10*time.Minute + ttl),
			want: true,
		},
		{
			name: "TTL counts from the end of the last grace",
			setup: func(s *session.Session) {
				s.Join(user("u1"), t0)
				s.Detach("u1", at(10*time.Minute), grace)
				s.Expire(at(10*time.Minute + grace))
			},
			now: at(10*time.Minute + grace + ttl - time.Nanosecond),
		},
		{
			name: "emptied by Remove",
			setup: func(s *session.Session) {
				s.Join(user("u1"), t0)
				s.Remove("u1", at(time.Minute))
			},
			now:  at(time.Minute + ttl),
			want: true,
		},
		{
			name: "a join resets it",
			setup: func(s *session.Session) {
				s.Join(user("u1"), at(ttl))
				s.Detach("u1", at(ttl+time.Minute), 0)
			},
			now: at(ttl + time.Minute + ttl/2),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSession()
			if tt.setup != nil {
				tt.setup(s)
			}
			if got := s.Expired(tt.now, ttl); got != tt.want {
				t.Errorf("Expired(%v) = %v, want %v (EmptySince %v)", tt.now.Sub(t0), got, tt.want, s.EmptySince)
			}
		})
	}
}

func TestWire(t *testing.T) {
	cur := &protocol.Cursor{Line: 12, Column: 4, File: "a.go",
		Selection: &protocol.Selection{Start: protocol.Position{Line: 12, Column: 0}, End: protocol.Position{Line: 12, Column: 4}}}
	tests := []struct {
		name  string
		setup func(s *session.Session)
		want  string
	}{
		{
			name:  "empty",
			setup: func(*session.Session) {},
			want:  `[]`,
		},
		{
			name:  "without a cursor: null",
			setup: func(s *session.Session) { s.Join(user("u1"), t0) },
			want:  `[{"userId":"u1","name":"name-u1","role":"learner","isActive":true,"cursor":null,"joinedAt":"2025-05-06T09:00:00Z"}]`,
		},
		{
			name: "with a colour, a cursor and inactive",
			setup: func(s *session.Session) {
				s.Join(protocol.UserInfo{UserID: "i1", Name: "Ada", Role: protocol.RoleInstructor, Color: "#0af"}, at(1500*time.Millisecond))
				s.SetCursor("i1", cur, at(2*time.Second))
				s.SetActive("i1", false, at(3*time.Second))
			},
			want: `[{"userId":"i1","name":"Ada","role":"instructor","color":"#0af","isActive":false,` +
				`"cursor":{"line":12,"column":4,"file":"a.go","selection":{"start":{"line":12,"column":0},"end":{"line":12,"column":4}}},` +
				`"joinedAt":"2025-05-06T09:00:01.5Z"}]`,
		},
		{
			name: "in order, one in its grace",
			setup: func(s *session.Session) {
				s.Join(user("b"), t0)
				s.Join(user("a"), t0)
				s.Join(user("c"), at(time.Second))
				s.Detach("a", at(2*time.Second), grace)
			},
			want: `[{"userId":"a","name":"name-a","role":"learner","isActive":true,"cursor":null,"joinedAt":"2025-05-06T09:00:00Z"},` +
				`{"userId":"b","name":"name-b","role":"learner","isActive":true,"cursor":null,"joinedAt":"2025-05-06T09:00:00Z"},` +
				`{"userId":"c","name":"name-c","role":"learner","isActive":true,"cursor":null,"joinedAt":"2025-05-06T09:00:01Z"}]`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSession()
			tt.setup(s)
			w := s.Wire()
			b, err := json.Marshal(w)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("Wire encodes as\n%s\nwant\n%s", b, tt.want)
			}
			ps := s.Participants()
			if len(ps) != len(w) {
				t.Fatalf("Wire has %d, Participants %d", len(w), len(ps))
			}
			for i, p := range ps {
				want := protocol.Participant{UserID: p.UserID, Name: p.Name, Role: p.Role, Color: p.Color,
					IsActive: p.Active, Cursor: p.Cursor, JoinedAt: p.JoinedAt}
				if got := p.Wire(); !reflect.DeepEqual(got, want) {
					t.Errorf("Participant.Wire = %+v, want %+v", got, want)
				}
				if !reflect.DeepEqual(w[i], want) {
					t.Errorf("Wire[%d] = %+v, want %+v", i, w[i], want)
				}
			}
		})
	}
}
