package client

import (
	"sort"

	"github.com/sessionhub/sessionhub/protocol"
)

// roster is the client's own list of its session's participants, in the
// contract's order (joinedAt, then userId). It starts from session-joined's
// list and follows user-joined, user-left, cursor-moved and
// user-activity-changed, so that diff presence, in which the server sends
// only the user who came or went, loses nothing. Its users hold Client.mu.
// A Cursor it holds is never modified: a move replaces it.
type roster []protocol.Participant

func (r roster) index(userID string) int {
	for i := range r {
		if r[i].UserID == userID {
			return i
		}
	}
	return -1
}

// upsert puts p in its place, replacing the entry of the same user.
func (r *roster) upsert(p protocol.Participant) {
	p.Cursor = cloneCursor(p.Cursor)
	if i := r.index(p.UserID); i >= 0 {
		(*r)[i] = p
		return
	}
	l := *r
	i := sort.Search(len(l), func(i int) bool {
		if !l[i].JoinedAt.Equal(p.JoinedAt) {
			return l[i].JoinedAt.After(p.JoinedAt)
		}
		return l[i].UserID > p.UserID
	})
	l = append(l, protocol.Participant{})
	copy(l[i+1:], l[i:])
	l[i] = p
	*r = l
}

func (r *roster) remove(userID string) {
	if i := r.index(userID); i >= 0 {
		*r = append((*r)[:i], (*r)[i+1:]...)
	}
}

func (r roster) setCursor(userID string, c protocol.Cursor) {
	if i := r.index(userID); i >= 0 {
		r[i].Cursor = cloneCursor(&c)
	}
}

func (r roster) setActive(userID string, active bool) {
	if i := r.index(userID); i >= 0 {
		r[i].IsActive = active
	}
}

// clone returns a copy the application may keep and modify (never nil).
func (r roster) clone() []protocol.Participant {
	out := make([]protocol.Participant, len(r))
	copy(out, r)
	for i := range out {
		out[i].Cursor = cloneCursor(out[i].Cursor)
	}
	return out
}

func newRoster(ps []protocol.Participant) roster {
	return roster(ps).clone()
}

func cloneCursor(c *protocol.Cursor) *protocol.Cursor {
	if c == nil {
		return nil
	}
	d := *c
	if c.Selection != nil {
		s := *c.Selection
		d.Selection = &s
	}
	return &d
}
