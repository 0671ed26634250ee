package hub

// This file is the run loop's side of a cluster (Options.Redis set):
// redisPeers, the peers (peers.go) of a node that shares its sessions with
// the others through Redis. Every function here runs on the run loop.
//
// The run loop stays the only owner of the node's state. It never talks to
// Redis: it hands the broker (broker.go, its own goroutine) typed requests
// over a bounded channel (send, never blocking); the broker takes them in
// order, talks to Redis, and hands typed results back (fromBroker).
// Messages other nodes published on a session's bus channel reach the loop
// directly from the cluster.Bus (fromBus), which never blocks either. What
// Redis decides, in Lua, for every node at once: whether a join is a
// user's first connection anywhere (the two-tabs rule), when a user's
// leave grace ends, a session's epoch and broadcast offsets. What crosses
// the bus is in cluster_wire.go.
//
// Every heartbeat the broker repairs what pub/sub may have lost: it
// republishes the connections the node holds, re-reads the participants,
// epoch and offset of each session the node serves, and the loop announces
// the differences; a gap in a session's offsets is filled from its log.

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/sessionhub/sessionhub/cluster"
	"github.com/sessionhub/sessionhub/protocol"
	"github.com/sessionhub/sessionhub/session"
)

// redisPeers is a cluster node's peers. Owned by the run loop.
type redisPeers struct {
	h *Hub
	// b is the broker: the loop only sends it requests and publishes on
	// its bus (both never block), and reads its results.
	b  *broker
	up bool // the broker reaches Redis
	// snapshotsAddOnlyUntil: until then (3 heartbeats, at least a second,
	// after Redis came back) a snapshot adds the participants Redis has but
	// removes none.
	snapshotsAddOnlyUntil time.Time
}

var _ peers = (*redisPeers)(nil)

// pendingJoin is a join waiting for Redis.
type pendingJoin struct {
	c        *conn
	room     *room
	ref      string
	info     protocol.UserInfo
	presence protocol.Presence
	rec      *protocol.Recover
	at       time.Time
	loads    bool // this join loads the session for the node
	// held is what the connection sent meanwhile, handled after the join
	// (Hub.apply); departGrace the grace of a connection that ended
	// meanwhile (Hub.depart).
	held        []inbound
	departGrace time.Duration
}

// roomCluster is a room's cluster state.
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
	// decoded until a participant list needs it (decodeCursors).
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

// send hands req to the broker without blocking. It reports false,
// counting the drop, when the broker's queue is full.
func (p *redisPeers) send(req brokerRequest) bool {
	select {
	case p.b.requests <- req:
		return true
	default:
		p.h.metrics.clusterDropped.WithLabelValues("broker_queue_full").Inc()
		p.b.missed.Store(true)
		return false
	}
}

// publish queues a bus message of kind about userID in session, for
// cursors and activity, and for joins and leaves the node decided alone
// (Redis unreachable).
func (p *redisPeers) publish(session string, kind byte, userID string, body []byte) {
	if !p.b.bus.Publish(session, busFrame(kind, userID, body)) {
		p.h.metrics.clusterDropped.WithLabelValues("bus_queue_full").Inc()
	}
}

func (p *redisPeers) inbound() (<-chan cluster.Message, <-chan brokerResult) {
	return p.b.bus.Messages(), p.b.results
}

// fromBroker finishes what waited for the broker.
func (p *redisPeers) fromBroker(res brokerResult) {
	switch res := res.(type) {
	case *joinResult:
		p.joined(res)
	case publishResult:
		p.broadcastDone(res)
	case fillResult:
		p.filled(res)
	case repairAsk:
		p.send(repairRequest{sessions: p.sessionsForRepair()})
	case snapshotResult:
		if r := p.h.rooms[res.session]; r != nil && r.cluster != nil {
			p.applySnapshot(r, res.snap, res.asked)
		}
	case healthResult:
		p.up = res.up
	case settleResult:
		p.snapshotsAddOnlyUntil = res.until
	case leftResult:
		p.remoteLeft(res.session, res.user)
	}
}

func (p *redisPeers) newRoom(r *room) {
	r.cluster = &roomCluster{pending: map[string]int{}, pendingMember: map[string][]byte{},
		seen: map[string]time.Time{}, dirty: map[string]bool{}, cursors: map[string][]byte{}}
}

// join records the connection in Redis and finishes the join when Redis
// answered (joined); while Redis is unreachable the node decides alone.
func (p *redisPeers) join(c *conn, ref string, j *protocol.JoinSession, info protocol.UserInfo, r *room, now time.Time) {
	rc, uid := r.cluster, info.UserID
	p.subscribe(r)
	if !p.up {
		p.joinAlone(c, ref, j, info, r, now)
		return
	}
	pj := &pendingJoin{c: c, room: r, ref: ref, info: info, presence: j.Presence, rec: j.Recover, at: now}
	c.joining = pj
	rc.pending[uid]++
	member := encodeMember(&session.Participant{
		UserID: uid, Name: info.Name, Role: info.Role, Color: info.Color,
		JoinedAt: now.Truncate(time.Millisecond), Active: true,
	})
	rc.pendingMember[uid] = member
	// One join loads the session; those queued behind it find it loaded.
	load := !rc.synced && !rc.loading
	rc.loading = rc.loading || load
	pj.loads = load
	if !p.send(joinRequest{pending: pj, session: r.s.ID, user: uid, member: member, at: now,
		load: load, floor: r.s.Offset, recover: j.Recover}) {
		c.joining = nil
		if rc.pending[uid]--; rc.pending[uid] <= 0 {
			delete(rc.pending, uid)
			delete(rc.pendingMember, uid)
		}
		p.joinAlone(c, ref, j, info, r, now)
	}
}

// joinAlone finishes a join without Redis (unreachable, or failed): the
// node decides whether the user is new, and tells the other nodes should
// the bus get through. A session Redis has not given its epoch yet gets
// one of the node's own, an island's, until Redis gives the real one.
func (p *redisPeers) joinAlone(c *conn, ref string, j *protocol.JoinSession, info protocol.UserInfo, r *room, now time.Time) {
	if r.s.Epoch == "" {
		r.s.Epoch = uuid.NewString()
	}
	p.h.joinLocal(c, ref, j, info, r, now, true)
}

// joined finishes a cluster join with what Redis said.
func (p *redisPeers) joined(res *joinResult) {
	h, pj := p.h, res.pending
	c, r, uid, now := pj.c, pj.room, pj.info.UserID, time.Now()
	if pj.loads {
		r.cluster.loading = false
	}
	if res.snap != nil {
		p.applySnapshot(r, res.snap, pj.at)
	}
	if res.err == nil && !r.cluster.synced && !c.ended {
		// The join that was to load the session failed: this one loads
		// it before it completes.
		p.reload(res)
		return
	}
	if r.cluster.pending[uid]--; r.cluster.pending[uid] <= 0 {
		delete(r.cluster.pending, uid)
		delete(r.cluster.pendingMember, uid)
	}
	c.joining = nil
	if c.ended {
		// It ended while Redis answered: take back what Redis recorded.
		if res.err == nil {
			p.sendDetach(r.s.ID, uid, pj.departGrace)
		}
		p.release(r)
		return
	}
	j := &protocol.JoinSession{SessionID: r.s.ID, UserInfo: pj.info, Presence: pj.presence, Recover: pj.rec}
	switch {
	case isInputError(res.err):
		// Redis cannot hold this join's IDs (decode refuses them, so
		// this is a safety net): refused, not joined alone.
		h.replyError(c, pj.ref, protocol.Errorf(protocol.CodeBadRequest, "the session or user id cannot be stored"))
		p.release(r)
	case res.err != nil:
		p.joinAlone(c, pj.ref, j, pj.info, r, now)
	default:
		isNew := res.first
		if r.s.Get(uid) == nil {
			isNew = true // new to this node's list, whatever Redis said
			if m, err := decodeMember(res.stored); err == nil {
				r.s.Put(m, false)
			}
		}
		r.cluster.seen[uid] = now
		r.s.Join(pj.info, now) // one more connection of the participant Redis holds
		h.attachConn(c, attachment{ref: pj.ref, join: j, info: pj.info, room: r, now: now, isNew: isNew,
			replay: &clusterReplay{res.replay, res.complete}})
	}
	// What the client sent meanwhile, in order.
	held := pj.held
	pj.held = nil
	for _, in := range held {
		h.apply(in)
	}
}

// reload loads the room of a join Redis accepted, then finishes it.
func (p *redisPeers) reload(res *joinResult) {
	pj, r := res.pending, res.pending.room
	pj.loads, r.cluster.loading = true, true
	if !p.send(loadRequest{result: res, session: r.s.ID, floor: r.s.Offset}) {
		res.err = errRedisDown
		p.joined(res)
	}
}

// subscribe makes the node receive r's bus messages.
func (p *redisPeers) subscribe(r *room) {
	if r.cluster.subscribed {
		return
	}
	r.cluster.subscribed = true
	p.b.bus.Subscribe(r.s.ID)
	p.send(serveRequest{session: r.s.ID, serving: true})
}

// release drops r from the node once it has no connection, no join in
// flight and no participant whose leave grace the node runs itself: the
// session lives on in Redis.
func (p *redisPeers) release(r *room) {
	if len(r.conns) > 0 || len(r.cluster.pending) > 0 {
		return
	}
	for _, q := range r.s.Participants() {
		if q.Conns > 0 || !q.LeaveAt.IsZero() {
			return
		}
	}
	h, id := p.h, r.s.ID
	delete(h.rooms, id)
	r.s.History.Clear() // Redis keeps it
	h.metrics.sessionDuration.Observe(time.Since(r.created).Seconds())
	p.b.bus.Unsubscribe(id)
	p.send(serveRequest{session: id})
}

// detach lets Redis decide, while it is reachable, whether it was the
// user's last connection anywhere; the leave reaches this node like any
// other.
func (p *redisPeers) detach(r *room, userID string, grace time.Duration) bool {
	if !p.up {
		return false
	}
	r.s.Release(userID)
	p.sendDetach(r.s.ID, userID, grace)
	p.release(r)
	return true
}

// sendDetach tells Redis that a connection of userID left session id;
// when it was the user's last anywhere, the user leaves after grace.
func (p *redisPeers) sendDetach(id, userID string, grace time.Duration) {
	var joined time.Time // for the duration, when this node ends the user
	if r := p.h.rooms[id]; r != nil {
		if q := r.s.Get(userID); q != nil {
			joined = q.JoinedAt
		}
	}
	p.send(detachRequest{session: id, user: userID, grace: grace, at: time.Now(), joinedAt: joined})
}

// expire lets go of r if the node no longer serves it: Redis keeps a
// cluster's sessions. r is counted still.
func (p *redisPeers) expire(r *room, _ time.Time) bool {
	p.release(r)
	return false
}

// remoteLeft takes userID out of this node's list of session id, unless it
// holds a connection of the user here (then Redis will get it back with
// the next repair).
func (p *redisPeers) remoteLeft(id, userID string) {
	r := p.h.rooms[id]
	if r == nil {
		return
	}
	now := time.Now()
	r.cluster.seen[userID] = now
	q := r.s.Get(userID)
	if q == nil || q.Conns > 0 || r.cluster.pending[userID] > 0 {
		return
	}
	r.s.Remove(userID, now)
	p.h.announceLeft(r, q, false)
	p.release(r)
}

// remoteJoined adds q to this node's list of r and tells its members.
func (p *redisPeers) remoteJoined(r *room, q session.Participant, now time.Time) {
	r.cluster.seen[q.UserID] = now
	if joined, ok := r.s.Put(q, false); ok {
		p.h.announceJoined(r, joined, false)
	}
}

// syncEpoch takes the session's epoch and offset from Redis.
func (p *redisPeers) syncEpoch(r *room, epoch string, offset int64) {
	if epoch != r.s.Epoch {
		// A new life of the session's history (or the first sync): the
		// node's own history cannot serve recoveries in it. Offsets do
		// not go back for live clients: Redis raised the offset to ours.
		r.s.Epoch = epoch
		r.s.Offset = max(r.s.Offset, offset)
		r.s.History.Forget(r.s.Offset)
	} else if offset > r.s.Offset {
		p.fillGap(r)
	}
	r.cluster.synced = true
}

// applySnapshot brings r in line with what Redis held when the loop asked
// at asked: epoch, offset and participants. A join or leave that reached
// the node after asked is newer than the snapshot and stands.
func (p *redisPeers) applySnapshot(r *room, s *snapshot, asked time.Time) {
	h, rc, now := p.h, r.cluster, time.Now()
	p.syncEpoch(r, s.epoch, s.offset)
	in := make(map[string]bool, len(s.members))
	for _, m := range s.members {
		in[m.UserID] = true
		if rc.seen[m.UserID].After(asked) || rc.pending[m.UserID] > 0 {
			continue // newer news, or a join of this node that says it itself
		}
		q, err := decodeMember(m.Member)
		if err != nil {
			continue
		}
		q.JoinedAt = m.JoinedAt
		var st memberState
		hasState := json.Unmarshal(s.state[m.UserID], &st) == nil
		if hasState {
			q.Active, q.Cursor = st.IsActive, st.Cursor
		}
		if here := r.s.Get(m.UserID); here != nil && here.Conns > 0 {
			continue // its state here is the latest
		}
		if joined, ok := r.s.Put(q, hasState); ok {
			h.announceJoined(r, joined, false)
		}
	}
	if now.Before(p.snapshotsAddOnlyUntil) {
		// Redis is back (or the node new) and the other nodes may not
		// have republished yet: what Redis lacks proves nothing.
		return
	}
	for _, q := range append([]*session.Participant(nil), r.s.Participants()...) {
		if in[q.UserID] || q.Conns > 0 || !q.LeaveAt.IsZero() || rc.pending[q.UserID] > 0 || rc.seen[q.UserID].After(asked) {
			continue
		}
		r.s.Remove(q.UserID, now)
		h.announceLeft(r, q, false)
	}
}

// cursorMoved sends a local user's cursor-moved to the other nodes; it is
// newer than any other node's cursor of the user.
func (p *redisPeers) cursorMoved(r *room, userID string, ev event) {
	delete(r.cluster.cursors, userID)
	p.publishEvent(r, kindCursor, userID, ev)
}

// activityChanged sends a local user's user-activity-changed to the other
// nodes.
func (p *redisPeers) activityChanged(r *room, userID string, ev event) {
	p.publishEvent(r, kindActivity, userID, ev)
}

// publishEvent sends an event of userID in r, encoded once (the bytes this
// node's connections got), to the other nodes; Redis gets a local user's
// state with the next repair (dirty).
func (p *redisPeers) publishEvent(r *room, kind byte, userID string, ev event) {
	b := ev.bytes(p.h)
	if b == nil {
		return
	}
	p.publish(r.s.ID, kind, userID, b)
	if q := r.s.Get(userID); q != nil && q.Conns > 0 {
		r.cluster.dirty[userID] = true
	}
}

func (p *redisPeers) userJoined(r *room, q *session.Participant) {
	p.publish(r.s.ID, kindJoined, q.UserID, encodeMember(q))
}

func (p *redisPeers) userLeft(r *room, q *session.Participant) {
	p.publish(r.s.ID, kindLeft, q.UserID, encodeMember(q))
}

// fromBus handles a message another node (or, for broadcasts, Redis)
// published on a session this node serves.
func (p *redisPeers) fromBus(m cluster.Message) {
	h := p.h
	r := h.rooms[m.Session]
	if r == nil || r.cluster == nil {
		return
	}
	if len(m.Data) > 0 && m.Data[0] == kindBroadcast {
		p.remoteBroadcast(r, m.Data)
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
		r.cluster.cursors[uid] = body // decoded when a list needs it
		h.toRoom(r, &event{typ: protocol.TypeCursorMoved, b: body}, recipients{skipUser: uid})
	case kindActivity:
		var ev struct{ Data protocol.UserActivityChanged }
		if json.Unmarshal(body, &ev) != nil {
			return
		}
		q := r.s.Get(uid)
		if q == nil {
			return
		}
		changed := q.Active != ev.Data.IsActive
		r.s.SetRemote(uid, nil, &ev.Data.IsActive, now)
		if changed {
			h.toRoom(r, &event{typ: protocol.TypeUserActivityChanged, b: body}, recipients{skipUser: uid})
		}
	case kindJoined:
		if q, err := decodeMember(body); err == nil && q.UserID == uid {
			p.remoteJoined(r, q, now)
		}
	case kindLeft:
		p.remoteLeft(r.s.ID, uid)
	case kindRemoved:
		p.removeLocal(r, uid, now)
	}
}

// decodeCursors decodes the cursors other nodes sent since the last time
// a participant list of r was needed.
func (p *redisPeers) decodeCursors(r *room) {
	if len(r.cluster.cursors) == 0 {
		return
	}
	for uid, b := range r.cluster.cursors {
		var ev struct{ Data protocol.CursorMoved }
		if json.Unmarshal(b, &ev) == nil {
			if q := r.s.Get(uid); q != nil {
				q.Cursor = &ev.Data.Cursor
			}
		}
	}
	clear(r.cluster.cursors)
}

// Broadcasts.

// skipID names a connection across the cluster: its node and its id.
func (p *redisPeers) skipID(c *conn) string {
	return p.h.opts.NodeID + "/" + strconv.FormatUint(c.id, 10)
}

// broadcast appends a client's broadcast to the session's log in Redis,
// which publishes it to every node (this one included) with its offset;
// the client gets the offset, or the error, when Redis answered
// (broadcastDone). While Redis is unreachable, or when it fails, the node
// publishes on its own (publishLocal), with offsets of its own that it
// makes Redis skip when it is back.
func (p *redisPeers) broadcast(cb *clientBroadcast) {
	h, r, b := p.h, cb.room, cb.b
	if !p.up || !r.cluster.synced {
		p.publishLocal(cb)
		return
	}
	ev := protocol.BroadcastEvent{Event: b.Event, From: cb.c.userID, Payload: b.Payload, Ts: cb.now.UnixMilli()}
	head, tail, err := broadcastParts(ev)
	if err != nil {
		h.answerBroadcast(cb, 0, err)
		return
	}
	pub := published(p.b.bus, r.s.ID, b.To, p.skipID(cb.c), head, tail)
	if !p.send(publishRequest{origin: cb, session: r.s.ID, epoch: r.s.Epoch, to: b.To, floor: r.s.Offset, pub: pub}) {
		p.publishLocal(cb)
	}
}

// publishLocal publishes a client's broadcast on this node alone, and
// answers the client.
func (p *redisPeers) publishLocal(cb *clientBroadcast) {
	off, err := p.h.publishLocal(cb.room, cb.c.userID, cb.c, cb.b, cb.now)
	p.h.answerBroadcast(cb, off, err)
}

// broadcastDone answers a client's broadcast with what Redis said.
func (p *redisPeers) broadcastDone(res publishResult) {
	cb := res.origin
	r := cb.room
	if res.epoch != "" && p.h.rooms[r.s.ID] == r {
		p.syncEpoch(r, res.epoch, res.epochOffset)
	}
	if res.err != nil {
		p.publishLocal(cb)
		return
	}
	p.h.answerBroadcast(cb, res.offset, nil)
}

// remoteBroadcast delivers a broadcast that Redis published: in offset
// order, each once, filling a gap from the log first.
func (p *redisPeers) remoteBroadcast(r *room, data []byte) {
	h := p.h
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
	rc := r.cluster
	if !rc.synced {
		// The join that loads the session's offset is on its way; until
		// then there is nobody here to miss anything.
		p.deliverBroadcast(r, ev, time.Now())
		return
	}
	if rc.filling {
		if len(rc.heldDuringFill) < fillHold {
			rc.heldDuringFill = append(rc.heldDuringFill, ev)
		}
		return
	}
	if off > r.s.Offset+1 {
		rc.heldDuringFill = append(rc.heldDuringFill, ev)
		p.fillGap(r)
		return
	}
	p.deliverBroadcast(r, ev, time.Now())
}

// deliverBroadcast keeps a broadcast in r's history and delivers it to the
// local connections it is addressed to, but the one that sent it. One at
// or below r's offset was delivered already.
func (p *redisPeers) deliverBroadcast(r *room, ev heldBroadcast, now time.Time) {
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
	if id, ok := strings.CutPrefix(ev.skip, p.h.opts.NodeID+"/"); ok {
		skip, _ = strconv.ParseUint(id, 10, 64)
	}
	p.h.toRoom(r, &event{typ: protocol.TypeBroadcast, b: ev.data}, recipients{skipConn: skip, to: ev.to})
}

// fillGap reads the broadcasts after r's offset from the log, delivers
// them, then those held meanwhile (filled).
func (p *redisPeers) fillGap(r *room) {
	if r.cluster.filling {
		return
	}
	r.cluster.filling = true
	if !p.send(fillRequest{room: r, session: r.s.ID, epoch: r.s.Epoch, from: r.s.Offset, most: p.h.opts.HistorySize}) {
		p.filled(fillResult{room: r})
	}
}

// filled delivers what fillGap read (the log's events after the offset,
// and its latest offset), then the broadcasts held meanwhile. Offsets the
// log no longer has (trimmed, or skipped when a node raised the offset
// after an outage) are skipped: the node's history then starts after them.
func (p *redisPeers) filled(res fillResult) {
	r := res.room
	r.cluster.filling = false
	now := time.Now()
	held := r.cluster.heldDuringFill
	r.cluster.heldDuringFill = nil
	for _, e := range res.events {
		// The log does not name the sending connection: a local sender
		// whose event the bus lost gets its own event back, once.
		p.deliverBroadcast(r, heldBroadcast{off: e.Offset, to: e.To, data: e.Data}, now)
	}
	if res.latest > r.s.Offset {
		r.s.Offset = res.latest
		r.s.History.Forget(res.latest)
	}
	for _, ev := range held {
		p.deliverBroadcast(r, ev, now)
	}
	p.h.metrics.clusterFilled.Add(float64(len(res.events)))
}

// removeLocal closes the connections of userID in r with 4003 and takes
// the user out of this node's list (the server API's removal).
func (p *redisPeers) removeLocal(r *room, userID string, now time.Time) bool {
	found := closeUser(r, userID)
	r.cluster.seen[userID] = now
	if q, ok := r.s.Remove(userID, now); ok {
		p.h.announceLeft(r, q, false)
		found = true
	}
	p.release(r)
	return found
}

// sessionsForRepair lists the sessions the node serves with its
// connections (joins in flight included) and changed live state.
func (p *redisPeers) sessionsForRepair() []repairSession {
	now := time.Now()
	var out []repairSession
	for id, r := range p.h.rooms {
		rc := r.cluster
		if rc == nil || !rc.subscribed {
			continue
		}
		hd := repairSession{id: id, offset: r.s.Offset, conns: map[string]cluster.NodeConns{}, asked: now}
		for _, q := range r.s.Participants() {
			n := q.Conns + rc.pending[q.UserID]
			if n == 0 {
				continue
			}
			hd.conns[q.UserID] = cluster.NodeConns{Count: n, Member: encodeMember(q), JoinedAt: q.JoinedAt}
		}
		for uid, n := range rc.pending {
			if _, ok := hd.conns[uid]; !ok && n > 0 {
				hd.conns[uid] = cluster.NodeConns{Count: n, Member: rc.pendingMember[uid]}
			}
		}
		for uid := range rc.dirty {
			if q := r.s.Get(uid); q != nil {
				st, _ := json.Marshal(memberState{IsActive: q.Active, Cursor: q.Cursor})
				if hd.state == nil {
					hd.state = map[string][]byte{}
				}
				hd.state[uid] = st
			}
		}
		clear(rc.dirty)
		for uid, at := range rc.seen {
			if now.Sub(at) > 10*p.h.opts.NodeHeartbeat {
				delete(rc.seen, uid) // no snapshot in flight is that old
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
