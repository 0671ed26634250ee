package hub

// This file is how the run loop hands an event to a room's connections:
// one encoding (encode), one event encoded at most once (event), one
// selection of recipients (recipients) and one loop (fanout), for the
// loop's own events, the other nodes' (already encoded) and a joiner's
// replay alike. Everything here runs on the run loop and never blocks:
// Hub.deliver (hub.go) queues without waiting.

import (
	"github.com/sessionhub/sessionhub/protocol"
	"github.com/sessionhub/sessionhub/session"
)

// encode is protocol.Encode, the error logged: an event the hub made
// that does not encode is the hub's bug, not the client's.
func (h *Hub) encode(typ, ref string, data any) ([]byte, error) {
	b, err := protocol.Encode(typ, ref, data)
	if err != nil {
		h.log.Error("encode", "type", typ, "err", err)
	}
	return b, err
}

// event is one event for a room's connections, encoded at most once:
// when the first recipient (or the other nodes) needs its bytes, so that
// an event nobody gets costs no encoding. One encoded elsewhere (another
// node's, a broadcast from the history) comes with its bytes.
type event struct {
	typ  string
	data any        // what to encode
	lazy func() any // or what makes it, when making it costs (a participant list)
	// diff, when set, is the event for the connections in diff presence
	// (protocol.PresenceDiff); the others get this one.
	diff   *event
	b      []byte // the encoding, once made
	failed bool   // the encoding failed (logged once)
}

// bytes returns e's encoding, making it the first time; nil if it cannot
// be encoded.
func (e *event) bytes(h *Hub) []byte {
	if e.b == nil && !e.failed {
		d := e.data
		if e.lazy != nil {
			d = e.lazy()
		}
		var err error
		if e.b, err = h.encode(e.typ, "", d); err != nil {
			e.b, e.failed = nil, true
		}
	}
	return e.b
}

// recipients selects among a room's connections: all but those of
// skipUser and the connection skipConn, and, for a broadcast, only those
// its to reaches (addressed). The zero value selects every connection.
type recipients struct {
	skipUser string
	skipConn uint64 // a connection's id (ids start at 1: 0 skips none)
	to       string // a broadcast's protocol.Broadcast.To; "" for all
}

// fanout hands ev to each connection of conns (a room's, of session s)
// that rs selects and that has not ended: the same bytes to every one,
// without blocking (Hub.deliver). It stops at an event that cannot be
// encoded (logged). It returns how many connections it selected and for
// how many it queued ev; toRoom counts the latter.
func (h *Hub) fanout(conns []*conn, s *session.Session, ev *event, rs recipients) (selected, queued int) {
	for _, c := range conns {
		if c.ended || c.userID == rs.skipUser || c.id == rs.skipConn {
			continue
		}
		if rs.to != "" && !addressed(s.Get(c.userID), rs.to) {
			continue
		}
		e := ev
		if ev.diff != nil && c.presence == protocol.PresenceDiff {
			e = ev.diff
		}
		b := e.bytes(h)
		if b == nil {
			return selected, queued
		}
		selected++
		if h.deliver(c, b) {
			queued++
		}
	}
	return selected, queued
}

// toRoom hands ev to r's connections that rs selects (fanout) and counts
// what was queued in sessionhub_messages_out_total.
func (h *Hub) toRoom(r *room, ev *event, rs recipients) {
	_, n := h.fanout(r.conns, r.s, ev, rs)
	h.metrics.out(ev.typ, n)
}
