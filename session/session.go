// Package session holds one session room's state as plain data: its
// participants with their roles, cursors and activity, and the two-tabs and
// leave-grace rules. It has no goroutines and no locks: its single owner (the
// hub's run loop) calls every method, passing the time in, so that every rule
// is a pure function of its inputs.
package session

import (
	"slices"
	"strings"
	"time"

	"github.com/sessionhub/sessionhub/protocol"
)

// Participant is one user in a session, however many connections it has.
type Participant struct {
	UserID   string           // unique in the session
	Name     string           // as given by its first join (a rejoin keeps it)
	Role     protocol.Role    // as given by its first join (a rejoin keeps it)
	Color    string           // as given by its first join (a rejoin keeps it)
	JoinedAt time.Time        // its first join: the list's order
	Active   bool             // its own activity status, or false once idled
	Cursor   *protocol.Cursor // nil until the first cursor-update
	LastSeen time.Time        // the last message of its own

	// Conns counts the user's connections in the session; two tabs are one
	// participant with Conns 2.
	Conns int
	// LeaveAt is when a participant with no connections left leaves for
	// good; zero while Conns > 0.
	LeaveAt time.Time
	// idled is set when the idle sweep, not the user, made it inactive; any
	// message of its own makes it active again.
	idled bool
}

// Wire returns the participant as the protocol shows it.
func (p *Participant) Wire() protocol.Participant {
	return protocol.Participant{
		UserID:   p.UserID,
		Name:     p.Name,
		Role:     p.Role,
		Color:    p.Color,
		IsActive: p.Active,
		Cursor:   p.Cursor,
		JoinedAt: p.JoinedAt,
	}
}

// Session is one room. The zero value is not usable; call New.
type Session struct {
	ID string // the sessionId clients join
	// Epoch names this life of the session's history: it changes when the
	// history is lost.
	Epoch string
	// Offset is the latest broadcast offset, 0 before the first.
	Offset int64
	// EmptySince is when the last participant left; zero while it has any.
	EmptySince time.Time
	// History keeps the latest broadcasts for recovery; its owner sets its
	// Size and TTL.
	History History

	byID  map[string]*Participant
	order []*Participant // by JoinedAt, then UserID
}

// New returns an empty session created at now.
func New(id, epoch string, now time.Time) *Session {
	return &Session{ID: id, Epoch: epoch, EmptySince: now, byID: make(map[string]*Participant)}
}

// Len is the number of participants, those in their leave grace included.
func (s *Session) Len() int { return len(s.order) }

// Get returns the participant with userID, or nil.
func (s *Session) Get(userID string) *Participant { return s.byID[userID] }

// Participants returns the participants ordered by JoinedAt, then UserID.
// The slice is the session's own: read it, do not keep or change it.
func (s *Session) Participants() []*Participant { return s.order }

// Wire returns the participant list as the protocol shows it.
func (s *Session) Wire() []protocol.Participant {
	out := make([]protocol.Participant, len(s.order))
	for i, p := range s.order {
		out[i] = p.Wire()
	}
	return out
}

// Join adds a connection of info.UserID at now. A user already present (a
// second tab, or a return within the leave grace) is the same participant:
// it keeps its place, name, role, colour, activity and cursor, and isNew is
// false. Join does not count as activity; the caller Touches for that.
func (s *Session) Join(info protocol.UserInfo, now time.Time) (p *Participant, isNew bool) {
	if p = s.byID[info.UserID]; p != nil {
		p.Conns++
		p.LeaveAt = time.Time{}
		return p, false
	}
	p = &Participant{
		UserID:   info.UserID,
		Name:     info.Name,
		Role:     info.Role,
		Color:    info.Color,
		JoinedAt: now,
		Active:   true,
		LastSeen: now,
		Conns:    1,
	}
	s.byID[p.UserID] = p
	i, _ := slices.BinarySearchFunc(s.order, p, compare)
	s.order = slices.Insert(s.order, i, p)
	s.EmptySince = time.Time{}
	return p, true
}

// Put adds p, a participant this session learnt of from elsewhere (another
// node of a cluster), with no connection here, and returns it with added
// true. When the user is already present it keeps its connections and
// place, takes p's activity and cursor when p has any state (hasState),
// and added is false.
func (s *Session) Put(p Participant, hasState bool) (_ *Participant, added bool) {
	if q := s.byID[p.UserID]; q != nil {
		if hasState {
			q.Active, q.Cursor, q.idled = p.Active, p.Cursor, false
		}
		return q, false
	}
	q := &p
	q.Conns, q.LeaveAt, q.idled = 0, time.Time{}, false
	if q.LastSeen.IsZero() {
		q.LastSeen = q.JoinedAt
	}
	s.byID[q.UserID] = q
	i, _ := slices.BinarySearchFunc(s.order, q, compare)
	s.order = slices.Insert(s.order, i, q)
	s.EmptySince = time.Time{}
	return q, true
}

// Release removes one connection of userID without deciding whether the
// user leaves: in a cluster, Redis decides that for every node.
func (s *Session) Release(userID string) {
	if p := s.byID[userID]; p != nil && p.Conns > 0 {
		p.Conns--
	}
}

// SetRemote records a participant's cursor or activity as its own node
// reported it at now: it counts as the user's own message for idleness.
func (s *Session) SetRemote(userID string, c *protocol.Cursor, active *bool, now time.Time) bool {
	p := s.byID[userID]
	if p == nil {
		return false
	}
	if c != nil {
		p.Cursor = c
	}
	if active != nil {
		p.Active = *active
	}
	p.LastSeen, p.idled = now, false
	return true
}

func compare(a, b *Participant) int {
	if c := a.JoinedAt.Compare(b.JoinedAt); c != 0 {
		return c
	}
	return strings.Compare(a.UserID, b.UserID)
}

// Detach removes one connection of userID at now. When it was the user's
// last, the user leaves at once if grace is 0 (left is true), or else stays
// until now+grace for Expire to remove. Detaching an unknown user does
// nothing.
func (s *Session) Detach(userID string, now time.Time, grace time.Duration) (p *Participant, left bool) {
	p = s.byID[userID]
	if p == nil || p.Conns == 0 {
		return p, false
	}
	p.Conns--
	if p.Conns > 0 {
		return p, false
	}
	if grace <= 0 {
		s.remove(p, now)
		return p, true
	}
	p.LeaveAt = now.Add(grace)
	return p, false
}

// Remove takes userID out at once, whatever its connections, and reports
// whether it was there.
func (s *Session) Remove(userID string, now time.Time) (*Participant, bool) {
	p := s.byID[userID]
	if p == nil {
		return nil, false
	}
	s.remove(p, now)
	return p, true
}

func (s *Session) remove(p *Participant, now time.Time) {
	delete(s.byID, p.UserID)
	if i, ok := slices.BinarySearchFunc(s.order, p, compare); ok {
		s.order = slices.Delete(s.order, i, i+1)
	}
	if len(s.order) == 0 {
		s.EmptySince = now
	}
}

// Expire removes the participants whose leave grace ended by now and
// returns them.
func (s *Session) Expire(now time.Time) []*Participant {
	var gone []*Participant
	for _, p := range s.order {
		if p.Conns == 0 && !p.LeaveAt.IsZero() && !now.Before(p.LeaveAt) {
			gone = append(gone, p)
		}
	}
	for _, p := range gone {
		s.remove(p, now)
	}
	return gone
}

// SetCursor records userID's cursor at now. It reports whether the user is
// in the session, and whether it came back from idle (see Touch).
func (s *Session) SetCursor(userID string, c *protocol.Cursor, now time.Time) (ok, woke bool) {
	p := s.byID[userID]
	if p == nil {
		return false, false
	}
	p.Cursor = c
	return true, s.touch(p, now)
}

// SetActive records the user's own activity status at now and reports
// whether it changed.
func (s *Session) SetActive(userID string, active bool, now time.Time) (changed bool) {
	p := s.byID[userID]
	if p == nil {
		return false
	}
	p.LastSeen = now
	p.idled = false
	changed = p.Active != active
	p.Active = active
	return changed
}

// Touch records a message of userID's own at now. A participant that the
// idle sweep had made inactive becomes active again, and woke is true.
func (s *Session) Touch(userID string, now time.Time) (woke bool) {
	p := s.byID[userID]
	if p == nil {
		return false
	}
	return s.touch(p, now)
}

func (s *Session) touch(p *Participant, now time.Time) bool {
	p.LastSeen = now
	if p.idled {
		p.idled = false
		p.Active = true
		return true
	}
	return false
}

// Idle marks inactive every active participant silent for idleAfter by now
// and returns them.
func (s *Session) Idle(now time.Time, idleAfter time.Duration) []*Participant {
	var idle []*Participant
	for _, p := range s.order {
		if p.Conns == 0 && p.LeaveAt.IsZero() {
			continue // another node's (Put): that node decides
		}
		if p.Active && now.Sub(p.LastSeen) >= idleAfter {
			p.Active = false
			p.idled = true
			idle = append(idle, p)
		}
	}
	return idle
}

// Expired reports whether the session has been empty for ttl by now.
func (s *Session) Expired(now time.Time, ttl time.Duration) bool {
	return len(s.order) == 0 && !s.EmptySince.IsZero() && now.Sub(s.EmptySince) >= ttl
}
