package hub

// This file is the run loop's side of a cluster (Options.Redis set): how
// the loop shares its sessions with the other nodes through the broker
// (broker.go). Every function here runs on the run loop; the closures
// they hand to b.enqueue do not: those run on the broker's goroutine, and
// what they send back through b.toLoop runs on the loop again.
//
// The run loop (hub.go) stays the only owner of the node's state. It never
// talks to Redis: it hands the broker closures over a bounded channel
// (broker.enqueue, never blocking), and the broker's goroutine (serve) runs
// them in order, talks to Redis, and hands the results back to the loop as
// closures on Hub.fromBroker. Messages other nodes published on a session's
// bus channel reach the loop directly from the cluster.Bus, which never
// blocks either. What Redis decides, in Lua, for every node at once: whether a
// join is a user's first connection anywhere (the two-tabs rule), when a
// user's leave grace ends, a session's epoch and broadcast offsets.
//
// What crosses the bus, encoded once by the node that made it (see
// busFrame):
//
//	'c' cursor-moved, 'a' user-activity-changed: the event's envelope, which
//	    every node hands to its members as it is;
//	'j' user-joined, 'l' user-left: the participant as Redis stores it;
//	'r' removed by the server API: the nodes holding the user close its
//	    connections with 4003;
//	'b' broadcast: published by Redis itself in the script that gives it
//	    its offset (cluster.Log.AppendPublish), so every node, the sender's
//	    included, gets a session's broadcasts in offset order.
//
// Every heartbeat the broker repairs what pub/sub may have lost: it
// republishes the connections the node holds, re-reads the participants,
// epoch and offset of each session the node serves, and the loop announces
// the differences; a gap in a session's offsets is filled from its log.

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/sessionhub/sessionhub/cluster"
	"github.com/sessionhub/sessionhub/protocol"
	"github.com/sessionhub/sessionhub/session"
)

const (
	// clusterMisses is the number of heartbeats a node's key outlives its
	// last beat: a node that stops is found dead within clusterMisses+1
	// heartbeats, the contract's 3.
	clusterMisses = 2
	// brokerQueue bounds the operations waiting for the broker. When Redis
	// is slow enough to fill it, operations are dropped (counted) and the
	// next heartbeat's repair makes up for them.
	brokerQueue = 8192
	// fillHold bounds the broadcasts a session holds back while a gap in
	// its offsets is being filled from the log.
	fillHold = 1024
	// republishEvery is how many heartbeats pass between two republishes
	// of a node's connections when nothing asked for one sooner: a repair
	// of drift and what keeps the presence keys alive.
	republishEvery = 12
)

// Kinds of bus messages.
const (
	kindCursor    = 'c'
	kindActivity  = 'a'
	kindJoined    = 'j'
	kindLeft      = 'l'
	kindRemoved   = 'r'
	kindBroadcast = 'b'
)

// memberState is a participant's live state as Redis keeps it, for the
// session-joined of a node that had not seen the user move.
type memberState struct {
	IsActive bool             `json:"isActive"`
	Cursor   *protocol.Cursor `json:"cursor"`
}

// encodeMember is a participant as Redis stores it and 'j'/'l' carry it.
func encodeMember(p *session.Participant) []byte {
	b, _ := json.Marshal(p.Wire()) // a Participant always encodes
	return b
}

// decodeMember is the inverse of encodeMember.
func decodeMember(b []byte) (session.Participant, error) {
	var w protocol.Participant
	if err := json.Unmarshal(b, &w); err != nil || w.UserID == "" {
		return session.Participant{}, errors.New("hub: malformed cluster member")
	}
	return session.Participant{
		UserID: w.UserID, Name: w.Name, Role: w.Role, Color: w.Color,
		JoinedAt: w.JoinedAt, Active: w.IsActive, Cursor: w.Cursor,
	}, nil
}

// pendingJoin is a join waiting for Redis.
type pendingJoin struct {
	room     *room
	ref      string
	info     protocol.UserInfo
	presence protocol.Presence
	rec      *protocol.Recover
	at       time.Time
	loads    bool // this join loads the session for the node
}

// roomCluster is a room's cluster state. Owned by run.
type roomCluster struct {
	subscribed bool
	synced     bool           // epoch, offset and list loaded since subscribing
	loading    bool           // a join is loading them
	pending    map[string]int // joins waiting for Redis, by user
	// pendingMember is the member a user's pending join stores, for a
	// repair that runs before it.
	pendingMember map[string][]byte
	// seen is when the latest join or leave of a user reached this node:
	// a snapshot read before it is older news.
	seen map[string]time.Time
	// dirty marks local users whose cursor or activity Redis has not got.
	dirty map[string]bool
	// cursors holds the latest cursor-moved of other nodes' users, not
	// decoded until a participant list needs it (decodeRemoteCursors).
	cursors map[string][]byte
	// filling is set while a gap in the offsets is being filled;
	// heldDuringFill keeps the broadcasts that arrived meanwhile.
	filling        bool
	heldDuringFill []heldBroadcast
}

type heldBroadcast struct {
	off  int64
	to   string
	skip string
	data []byte
}

func newRoomCluster() *roomCluster {
	return &roomCluster{pending: map[string]int{}, pendingMember: map[string][]byte{},
		seen: map[string]time.Time{}, dirty: map[string]bool{}, cursors: map[string][]byte{}}
}

// clusterJoin is join's second half in a cluster: the room exists (r),
// the connection left its former one. It records the connection in Redis
// and finishes the join when Redis answered (joined); while Redis is
// unreachable the node decides alone.
func (h *Hub) clusterJoin(c *conn, ref string, j *protocol.JoinSession, info protocol.UserInfo, r *room, now time.Time) {
	h.clSubscribe(r)
	if !h.clUp {
		h.joinLocal(c, ref, j, info, r, now, true)
		return
	}
	pj := &pendingJoin{room: r, ref: ref, info: info, presence: j.Presence, rec: j.Recover, at: now}
	c.joining = pj
	r.cl.pending[info.UserID]++
	member := encodeMember(&session.Participant{
		UserID: info.UserID, Name: info.Name, Role: info.Role, Color: info.Color,
		JoinedAt: now.Truncate(time.Millisecond), Active: true,
	})
	r.cl.pendingMember[info.UserID] = member
	// One join loads the session; those queued behind it find it loaded.
	needSnap, floor, b := !r.cl.synced && !r.cl.loading, r.s.Offset, h.cl
	r.cl.loading = r.cl.loading || needSnap
	pj.loads = needSnap
	id, uid, rec := r.s.ID, info.UserID, j.Recover
	ok := b.enqueue(func() {
		res := &joinResult{err: errRedisDown}
		if b.reachable() {
			ctx, cancel := b.ctx()
			defer cancel()
			res.err = nil
			res.stored, res.first, res.err = b.pres.Attach(ctx, id, uid, b.node, member, now)
			if res.err == nil && needSnap {
				res.snap, res.err = b.load(ctx, id, floor)
			}
			if res.err == nil && rec != nil {
				res.replay, res.complete, res.err = b.clog.Since(ctx, id, rec.Epoch, rec.Offset)
			}
			if res.err == nil && res.first {
				b.publishNow(ctx, id, kindJoined, uid, res.stored)
			}
			if res.err != nil {
				b.failed("join", res.err)
			}
		}
		b.toLoop(func() { h.joined(c, pj, res) })
	})
	if !ok {
		c.joining = nil
		if r.cl.pending[uid]--; r.cl.pending[uid] <= 0 {
			delete(r.cl.pending, uid)
			delete(r.cl.pendingMember, uid)
		}
		h.joinLocal(c, ref, j, info, r, now, true)
	}
}

// joined finishes a cluster join with what Redis said.
func (h *Hub) joined(c *conn, pj *pendingJoin, res *joinResult) {
	r, uid, now := pj.room, pj.info.UserID, time.Now()
	if pj.loads {
		r.cl.loading = false
	}
	if res.snap != nil {
		h.applySnapshot(r, res.snap, pj.at)
	}
	if res.err == nil && !r.cl.synced && !c.ended {
		// The join that was to load the session failed: this one loads
		// it before it completes.
		h.reload(c, pj, res)
		return
	}
	if r.cl.pending[uid]--; r.cl.pending[uid] <= 0 {
		delete(r.cl.pending, uid)
		delete(r.cl.pendingMember, uid)
	}
	c.joining = nil
	if c.ended {
		// It ended while Redis answered: take back what Redis recorded.
		if res.err == nil {
			h.clDetach(r.s.ID, uid, c.departGrace)
		}
		h.clRelease(r)
		return
	}
	j := &protocol.JoinSession{SessionID: r.s.ID, UserInfo: pj.info, Presence: pj.presence, Recover: pj.rec}
	switch {
	case isInputError(res.err):
		// Redis cannot hold this join's IDs (decode refuses them, so
		// this is a safety net): refused, not joined alone.
		h.replyError(c, pj.ref, protocol.Errorf(protocol.CodeBadRequest, "the session or user id cannot be stored"))
		h.clRelease(r)
	case res.err != nil:
		h.joinLocal(c, pj.ref, j, pj.info, r, now, true)
	default:
		isNew := res.first
		if r.s.Get(uid) == nil {
			isNew = true // new to this node's list, whatever Redis said
			if m, err := decodeMember(res.stored); err == nil {
				r.s.Put(m, false)
			}
		}
		r.cl.seen[uid] = now
		r.s.Join(pj.info, now) // one more connection of the participant Redis holds
		h.attachConn(c, attachment{ref: pj.ref, join: j, info: pj.info, room: r, now: now, isNew: isNew,
			replay: &clusterReplay{res.replay, res.complete}})
	}
	// What the client sent meanwhile, in order.
	held := c.heldDuringJoin
	c.heldDuringJoin = nil
	for _, in := range held {
		h.apply(in)
	}
}

// reload loads r for a join Redis accepted, then finishes it.
func (h *Hub) reload(c *conn, pj *pendingJoin, res *joinResult) {
	r, b := pj.room, h.cl
	pj.loads, r.cl.loading = true, true
	id, floor := r.s.ID, r.s.Offset
	ok := b.enqueue(func() {
		if b.reachable() {
			ctx, cancel := b.ctx()
			defer cancel()
			if res.snap, res.err = b.load(ctx, id, floor); res.err != nil {
				b.failed("load", res.err)
			}
		} else {
			res.err = errRedisDown
		}
		b.toLoop(func() { h.joined(c, pj, res) })
	})
	if !ok {
		res.err = errRedisDown
		h.joined(c, pj, res)
	}
}

// clSubscribe makes the node receive r's bus messages.
func (h *Hub) clSubscribe(r *room) {
	if r.cl.subscribed {
		return
	}
	r.cl.subscribed = true
	id, b := r.s.ID, h.cl
	b.bus.Subscribe(id)
	b.enqueue(func() { b.sessions[id] = true })
}

// clRelease drops r from the node once it has no connection, no join in
// flight and no participant whose leave grace the node runs itself: the
// session lives on in Redis.
func (h *Hub) clRelease(r *room) {
	if len(r.conns) > 0 || len(r.cl.pending) > 0 {
		return
	}
	for _, p := range r.s.Participants() {
		if p.Conns > 0 || !p.LeaveAt.IsZero() {
			return
		}
	}
	id, b := r.s.ID, h.cl
	delete(h.rooms, id)
	r.s.History.Clear() // Redis keeps it
	h.metrics.sessionDuration.Observe(time.Since(r.created).Seconds())
	b.bus.Unsubscribe(id)
	b.enqueue(func() { delete(b.sessions, id) })
}

// clDetach tells Redis that a connection of userID left session id; when it
// was the user's last anywhere, the user leaves after grace.
func (h *Hub) clDetach(id, userID string, grace time.Duration) {
	b, now := h.cl, time.Now()
	var joined time.Time // for the duration, when this node ends the user
	if r := h.rooms[id]; r != nil {
		if p := r.s.Get(userID); p != nil {
			joined = p.JoinedAt
		}
	}
	b.enqueue(func() {
		if !b.reachable() {
			return // the repair after the outage sets the node's counts
		}
		ctx, cancel := b.ctx()
		defer cancel()
		left, err := b.pres.Detach(ctx, id, userID, b.node, grace, now)
		if err != nil {
			b.failed("detach", err)
			return
		}
		if left {
			b.h.metrics.participantLeft(joined, time.Now())
			b.left(ctx, id, userID, nil)
		} else if grace > 0 {
			b.expireSoon[id] = now.Add(grace + b.beat)
		}
	})
}

// remoteLeft takes userID out of this node's list of session id, unless it
// holds a connection of the user here (then Redis will get it back with
// the next repair).
func (h *Hub) remoteLeft(id, userID string) {
	r := h.rooms[id]
	if r == nil {
		return
	}
	now := time.Now()
	r.cl.seen[userID] = now
	p := r.s.Get(userID)
	if p == nil || p.Conns > 0 || r.cl.pending[userID] > 0 {
		return
	}
	r.s.Remove(userID, now)
	h.announceLeft(r, p, false)
	h.clRelease(r)
}

// remoteJoined adds p to this node's list of r and tells its members.
func (h *Hub) remoteJoined(r *room, p session.Participant, now time.Time) {
	r.cl.seen[p.UserID] = now
	q, added := r.s.Put(p, false)
	if added {
		h.announceJoined(r, q, false)
	}
}

// syncEpoch takes the session's epoch and offset from Redis.
func (h *Hub) syncEpoch(r *room, epoch string, offset int64) {
	if epoch != r.s.Epoch {
		// A new life of the session's history (or the first sync): the
		// node's own history cannot serve recoveries in it. Offsets do
		// not go back for live clients: Redis raised the offset to ours.
		r.s.Epoch = epoch
		r.s.Offset = max(r.s.Offset, offset)
		r.s.History.Forget(r.s.Offset)
	} else if offset > r.s.Offset {
		h.fillGap(r)
	}
	r.cl.synced = true
}

// applySnapshot brings r in line with what Redis held when the loop asked
// at asked: epoch, offset and participants. A join or leave that reached
// the node after asked is newer than the snapshot and stands.
func (h *Hub) applySnapshot(r *room, s *snapshot, asked time.Time) {
	now := time.Now()
	h.syncEpoch(r, s.epoch, s.offset)
	in := make(map[string]bool, len(s.members))
	for _, m := range s.members {
		in[m.UserID] = true
		if r.cl.seen[m.UserID].After(asked) || r.cl.pending[m.UserID] > 0 {
			continue // newer news, or a join of this node that says it itself
		}
		p, err := decodeMember(m.Member)
		if err != nil {
			continue
		}
		p.JoinedAt = m.JoinedAt
		var st memberState
		hasState := json.Unmarshal(s.state[m.UserID], &st) == nil
		if hasState {
			p.Active, p.Cursor = st.IsActive, st.Cursor
		}
		if q := r.s.Get(m.UserID); q != nil && q.Conns > 0 {
			continue // its state here is the latest
		}
		q, added := r.s.Put(p, hasState)
		if added {
			h.announceJoined(r, q, false)
		}
	}
	if now.Before(h.snapshotsAddOnlyUntil) {
		// Redis is back (or the node new) and the other nodes may not
		// have republished yet: what Redis lacks proves nothing.
		return
	}
	for _, p := range append([]*session.Participant(nil), r.s.Participants()...) {
		if in[p.UserID] || p.Conns > 0 || !p.LeaveAt.IsZero() || r.cl.pending[p.UserID] > 0 || r.cl.seen[p.UserID].After(asked) {
			continue
		}
		r.s.Remove(p.UserID, now)
		h.announceLeft(r, p, false)
	}
}

// clPublishEvent sends an encoded cursor-moved or user-activity-changed of
// userID in r to the other nodes.
func (h *Hub) clPublishEvent(r *room, kind byte, userID string, data []byte) {
	if r.cl == nil {
		return
	}
	h.cl.publish(r.s.ID, kind, userID, data)
	if p := r.s.Get(userID); p != nil && p.Conns > 0 {
		r.cl.dirty[userID] = true
	}
}

// fromBus handles a message another node (or, for broadcasts, Redis)
// published on a session this node serves.
func (h *Hub) fromBus(m cluster.Message) {
	r := h.rooms[m.Session]
	if r == nil || r.cl == nil {
		return
	}
	if len(m.Data) > 0 && m.Data[0] == kindBroadcast {
		h.remoteBroadcast(r, m.Data)
		return
	}
	kind, uid, body, ok := parseFrame(m.Data)
	if !ok {
		h.metrics.clusterDropped.WithLabelValues("malformed").Inc()
		return
	}
	now := time.Now()
	switch kind {
	case kindCursor:
		if !r.s.SetRemote(uid, nil, nil, now) {
			return
		}
		r.cl.cursors[uid] = body // decoded when a list needs it
		h.fanoutBytes(r, protocol.TypeCursorMoved, body, uid)
	case kindActivity:
		var ev struct{ Data protocol.UserActivityChanged }
		if json.Unmarshal(body, &ev) != nil {
			return
		}
		p := r.s.Get(uid)
		if p == nil {
			return
		}
		changed := p.Active != ev.Data.IsActive
		r.s.SetRemote(uid, nil, &ev.Data.IsActive, now)
		if changed {
			h.fanoutBytes(r, protocol.TypeUserActivityChanged, body, uid)
		}
	case kindJoined:
		if p, err := decodeMember(body); err == nil && p.UserID == uid {
			h.remoteJoined(r, p, now)
		}
	case kindLeft:
		h.remoteLeft(r.s.ID, uid)
	case kindRemoved:
		h.removeLocal(r, uid, now)
	}
}

// decodeRemoteCursors decodes the cursors other nodes sent since the last
// time a participant list of r was needed.
func (h *Hub) decodeRemoteCursors(r *room) {
	if r.cl == nil || len(r.cl.cursors) == 0 {
		return
	}
	for uid, b := range r.cl.cursors {
		var ev struct{ Data protocol.CursorMoved }
		if json.Unmarshal(b, &ev) == nil {
			if p := r.s.Get(uid); p != nil {
				p.Cursor = &ev.Data.Cursor
			}
		}
	}
	clear(r.cl.cursors)
}

// fanoutBytes delivers an event encoded elsewhere to every connection of r
// but those of skipUser.
func (h *Hub) fanoutBytes(r *room, typ string, b []byte, skipUser string) {
	n := 0
	for _, c := range r.conns {
		if c.userID == skipUser || c.ended {
			continue
		}
		if h.deliver(c, b) {
			n++
		}
	}
	h.metrics.out(typ, n)
}

// Broadcasts.

// broadcastParts encodes a broadcast around its offset: its bytes are
// head, the offset, tail.
func broadcastParts(ev protocol.BroadcastEvent) (head, tail []byte, err error) {
	const mark = 9007199254740991 // no real offset; the largest exact float
	ev.Offset = mark
	b, err := protocol.Encode(protocol.TypeBroadcast, "", ev)
	if err != nil {
		return nil, nil, err
	}
	m := strconv.AppendInt([]byte(`"offset":`), mark, 10)
	i := bytes.LastIndex(b, m)
	if i < 0 {
		return nil, nil, errors.New("hub: broadcast encoding has no offset")
	}
	i += len(m) - len(strconv.FormatInt(mark, 10))
	return b[:i], b[i+len(strconv.FormatInt(mark, 10)):], nil
}

// skipID names a connection across the cluster: its node and its id.
func (h *Hub) skipID(c *conn) string {
	if c == nil {
		return ""
	}
	return h.opts.NodeID + "/" + strconv.FormatUint(c.id, 10)
}

// clPublish appends a broadcast to the session's log in Redis, which
// publishes it to every node (this one included) with its offset; done
// gets the offset, or the error. While Redis is unreachable, or when it
// fails, the node publishes on its own (publishLocal), with offsets of its
// own that it makes Redis skip when it is back.
func (h *Hub) clPublish(r *room, from string, skip *conn, b *protocol.Broadcast, now time.Time, done func(int64, error)) {
	if !h.clUp || !r.cl.synced {
		done(h.publishLocal(r, from, skip, b, now))
		return
	}
	ev := protocol.BroadcastEvent{Event: b.Event, From: from, Payload: b.Payload, Ts: now.UnixMilli()}
	head, tail, err := broadcastParts(ev)
	if err != nil {
		done(0, err)
		return
	}
	br, id, epoch, to, floor := h.cl, r.s.ID, r.s.Epoch, b.To, r.s.Offset
	pub := br.published(id, to, h.skipID(skip), head, tail)
	ok := br.enqueue(func() {
		var off int64
		err := errRedisDown
		var newEpoch string
		var newOff int64
		if br.reachable() {
			ctx, cancel := br.ctx()
			defer cancel()
			off, _, err = br.clog.AppendPublish(ctx, id, epoch, to, pub, br.keyTTL)
			if errors.Is(err, cluster.ErrEpochChanged) {
				// Redis lost the session's history: a new epoch, whose
				// offsets go on from the node's.
				if newEpoch, newOff, err = br.clog.Sync(ctx, id, floor, br.keyTTL); err == nil {
					off, _, err = br.clog.AppendPublish(ctx, id, newEpoch, to, pub, br.keyTTL)
				}
			}
			if err != nil {
				br.failed("broadcast", err)
			}
		}
		br.toLoop(func() {
			if newEpoch != "" && h.rooms[id] == r {
				h.syncEpoch(r, newEpoch, newOff)
			}
			if err != nil {
				done(h.publishLocal(r, from, skip, b, now))
				return
			}
			done(off, nil)
		})
	})
	if !ok {
		done(h.publishLocal(r, from, skip, b, now))
	}
}

// remoteBroadcast delivers a broadcast that Redis published: in offset
// order, each once, filling a gap from the log first.
func (h *Hub) remoteBroadcast(r *room, data []byte) {
	// 'b' offset ':' len(to) to len(skip) skip event
	i := 1
	for i < len(data) && data[i] >= '0' && data[i] <= '9' {
		i++
	}
	off, err := strconv.ParseInt(string(data[1:i]), 10, 64)
	if err != nil || i+2 > len(data) || data[i] != ':' {
		h.metrics.clusterDropped.WithLabelValues("malformed").Inc()
		return
	}
	i++
	n := int(data[i])
	if i+1+n+1 > len(data) {
		h.metrics.clusterDropped.WithLabelValues("malformed").Inc()
		return
	}
	to := string(data[i+1 : i+1+n])
	i += 1 + n
	n = int(data[i])
	if i+1+n > len(data) {
		h.metrics.clusterDropped.WithLabelValues("malformed").Inc()
		return
	}
	skip := string(data[i+1 : i+1+n])
	ev := heldBroadcast{off: off, to: to, skip: skip, data: data[i+1+n:]}
	if !r.cl.synced {
		// The join that loads the session's offset is on its way; until
		// then there is nobody here to miss anything.
		h.deliverBroadcast(r, ev, time.Now())
		return
	}
	if r.cl.filling {
		if len(r.cl.heldDuringFill) < fillHold {
			r.cl.heldDuringFill = append(r.cl.heldDuringFill, ev)
		}
		return
	}
	if off > r.s.Offset+1 {
		r.cl.heldDuringFill = append(r.cl.heldDuringFill, ev)
		h.fillGap(r)
		return
	}
	h.deliverBroadcast(r, ev, time.Now())
}

// deliverBroadcast keeps a broadcast in r's history and delivers it to the
// local connections it is addressed to, but the one that sent it. One at
// or below r's offset was delivered already.
func (h *Hub) deliverBroadcast(r *room, ev heldBroadcast, now time.Time) {
	if ev.off <= r.s.Offset {
		return
	}
	if ev.off > r.s.Offset+1 {
		// Offsets this node never got: its history cannot serve a
		// recovery from before them (the log in Redis may).
		r.s.History.Forget(ev.off - 1)
	}
	r.s.Offset = ev.off
	r.s.History.Append(session.Event{Offset: ev.off, At: now, To: ev.to, Data: ev.data}, now)
	skip := uint64(0) // conn ids start at 1
	if id, ok := strings.CutPrefix(ev.skip, h.opts.NodeID+"/"); ok {
		skip, _ = strconv.ParseUint(id, 10, 64)
	}
	n := 0
	for _, rc := range r.conns {
		if rc.ended || rc.id == skip || !addressed(r.s.Get(rc.userID), ev.to) {
			continue
		}
		if h.deliver(rc, ev.data) {
			n++
		}
	}
	h.metrics.out(protocol.TypeBroadcast, n)
}

// fillGap reads the broadcasts after r's offset from the log, delivers
// them, then those held meanwhile.
func (h *Hub) fillGap(r *room) {
	if r.cl.filling {
		return
	}
	r.cl.filling = true
	br, id, epoch, from, most := h.cl, r.s.ID, r.s.Epoch, r.s.Offset, h.opts.HistorySize
	ok := br.enqueue(func() {
		var events []cluster.Event
		var latest int64
		if br.reachable() {
			ctx, cancel := br.ctx()
			defer cancel()
			var err error
			events, latest, _, err = br.clog.Tail(ctx, id, epoch, from, most)
			if err != nil {
				br.failed("fill", err)
			}
		}
		br.toLoop(func() { h.filled(r, events, latest) })
	})
	if !ok {
		h.filled(r, nil, 0)
	}
}

// filled delivers what fillGap read (the log's events after the offset,
// and its latest offset), then the broadcasts held meanwhile. Offsets the
// log no longer has (trimmed, or skipped when a node raised the offset
// after an outage) are skipped: the node's history then starts after them.
func (h *Hub) filled(r *room, events []cluster.Event, latest int64) {
	r.cl.filling = false
	now := time.Now()
	held := r.cl.heldDuringFill
	r.cl.heldDuringFill = nil
	for _, e := range events {
		// The log does not name the sending connection: a local sender
		// whose event the bus lost gets its own event back, once.
		h.deliverBroadcast(r, heldBroadcast{off: e.Offset, to: e.To, data: e.Data}, now)
	}
	if latest > r.s.Offset {
		r.s.Offset = latest
		r.s.History.Forget(latest)
	}
	for _, ev := range held {
		h.deliverBroadcast(r, ev, now)
	}
	h.metrics.clusterFilled.Add(float64(len(events)))
}

// removeLocal closes the connections of userID in r with 4003 and takes
// the user out of this node's list (the server API's removal).
func (h *Hub) removeLocal(r *room, userID string, now time.Time) bool {
	found := closeUser(r, userID)
	r.cl.seen[userID] = now
	if p, ok := r.s.Remove(userID, now); ok {
		h.announceLeft(r, p, false)
		found = true
	}
	h.clRelease(r)
	return found
}

// sessionsForRepair lists, on the loop, the sessions the node serves with
// its connections (joins in flight included) and changed live state.
func (h *Hub) sessionsForRepair() []repairSession {
	now := time.Now()
	var out []repairSession
	for id, r := range h.rooms {
		if r.cl == nil || !r.cl.subscribed {
			continue
		}
		hd := repairSession{id: id, offset: r.s.Offset, conns: map[string]cluster.NodeConns{}, asked: now}
		for _, p := range r.s.Participants() {
			n := p.Conns + r.cl.pending[p.UserID]
			if n == 0 {
				continue
			}
			hd.conns[p.UserID] = cluster.NodeConns{Count: n, Member: encodeMember(p), JoinedAt: p.JoinedAt}
		}
		for uid, n := range r.cl.pending {
			if _, ok := hd.conns[uid]; !ok && n > 0 {
				hd.conns[uid] = cluster.NodeConns{Count: n, Member: r.cl.pendingMember[uid]}
			}
		}
		for uid := range r.cl.dirty {
			if p := r.s.Get(uid); p != nil {
				st, _ := json.Marshal(memberState{IsActive: p.Active, Cursor: p.Cursor})
				if hd.state == nil {
					hd.state = map[string][]byte{}
				}
				hd.state[uid] = st
			}
		}
		clear(r.cl.dirty)
		for uid, at := range r.cl.seen {
			if now.Sub(at) > 10*h.opts.NodeHeartbeat {
				delete(r.cl.seen, uid) // no snapshot in flight is that old
			}
		}
		out = append(out, hd)
	}
	return out
}

// clusterReplay is what a session's log in Redis held after a recover
// offset when the join asked.
type clusterReplay struct {
	events   []cluster.Event
	complete bool
}

// merge builds a recovery from after offset up to latest: the log's events
// up to its last, then the node's history for the rest (which arrived on
// the bus since). It reports false when neither reaches.
func (cr *clusterReplay) merge(offset int64, hist *session.History, latest int64) ([]session.Event, bool) {
	if !cr.complete {
		return nil, false
	}
	last := offset
	if n := len(cr.events); n > 0 {
		last = cr.events[n-1].Offset
	}
	rest, ok := hist.Since(last)
	if !ok && last < latest {
		return nil, false
	}
	out := make([]session.Event, 0, len(cr.events)+len(rest))
	for _, e := range cr.events {
		if e.Offset <= latest {
			out = append(out, session.Event{Offset: e.Offset, At: e.At, To: e.To, Data: e.Data})
		}
	}
	for _, e := range rest {
		if e.Offset > last {
			out = append(out, e)
		}
	}
	return out, true
}
