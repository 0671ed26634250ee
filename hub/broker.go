package hub

// This file is the broker of a cluster (Options.Redis set): every function
// here runs on the broker's goroutine (serve), between the run loop and
// Redis. The loop hands it typed requests (cluster_requests.go) on a
// bounded channel, never blocking (redisPeers.send, cluster_loop.go);
// serve takes them in order, does the Redis I/O, and hands typed results
// back to the loop (reply). Besides, serve republishes the node's presence
// every heartbeat (repair), ends leave graces (expire) and drops the
// connections of dead nodes (dropNode). The broker never touches the
// loop's state: what it needs of it comes in a request. newCluster and
// close are in cluster_api.go (New's and Shutdown's goroutines).

import (
	"context"
	"errors"
	"iter"
	"log/slog"
	"maps"
	"sync/atomic"
	"time"

	"github.com/sessionhub/sessionhub/cluster"
)

// broker is the goroutine between the run loop and Redis.
type broker struct {
	node       string
	beat       time.Duration
	keyTTL     time.Duration // of a session's log: its TTL plus the history's
	grace      time.Duration
	sweepEvery time.Duration // Hub.sweepEvery: how often graces may end
	log        *slog.Logger
	metrics    *metrics

	eventLog *cluster.Log      // the sessions' broadcast logs
	bus      *cluster.Bus      // the sessions' pub/sub channels
	nodes    *cluster.Nodes    // this node's heartbeat and the others'
	presence *cluster.Presence // who is in each session, on which node

	requests chan brokerRequest // from the loop, in order
	results  chan brokerResult  // to the loop
	quit     chan struct{}
	done     chan struct{}

	// Owned by serve.
	up         bool            // the last heartbeat reached Redis
	pauseUntil time.Time       // an operation found Redis unreachable: fail fast until then
	sessions   map[string]bool // the sessions the node serves, for Expire
	// expireSoon holds the sessions where a leave grace may end soon
	// (this node started one, or a node died), with until when: they are
	// expired every sweep, the others every heartbeat.
	expireSoon map[string]time.Time
	beats      int  // heartbeats so far
	republish  bool // the next repair republishes the node's connections
	// missed is set (by the loop, when the queue was full) when requests
	// were dropped: the next repair republishes.
	missed atomic.Bool
}

// timeout bounds one Redis operation.
func (b *broker) timeout() time.Duration {
	return min(max(b.beat, 250*time.Millisecond), 2*time.Second)
}

// reply hands res to the loop; serve waits for the loop, never the other
// way round. It gives up when the broker is stopping.
func (b *broker) reply(res brokerResult) {
	select {
	case b.results <- res:
	case <-b.quit:
	}
}

// serve is the broker's goroutine.
func (b *broker) serve() {
	defer close(b.done)
	beat := time.NewTicker(b.beat)
	defer beat.Stop()
	sweep := time.NewTicker(b.sweepEvery)
	defer sweep.Stop()
	for {
		select {
		case req := <-b.requests:
			b.handle(req)
		case up := <-b.nodes.Health():
			b.health(up)
		case id := <-b.nodes.Dead():
			b.dropNode(id)
		case <-b.nodes.Lost():
			// Redis may have lost what every node wrote: write it again,
			// and give the others time to.
			b.settle()
			b.republish = true
			b.pauseUntil = time.Time{} // the heartbeat just reached it
			b.askRepair()
		case <-beat.C:
			if b.beats++; b.beats%republishEvery == 0 {
				b.republish = true
			}
			b.askRepair() // its loads end the graces of every session
		case now := <-sweep.C:
			b.expire(b.expiringSoon(now))
		case <-b.quit:
			return
		}
	}
}

// handle does one request of the loop's.
func (b *broker) handle(req brokerRequest) {
	switch req := req.(type) {
	case serveRequest:
		if req.serving {
			b.sessions[req.session] = true
		} else {
			delete(b.sessions, req.session)
		}
	case joinRequest:
		b.reply(b.join(req))
	case loadRequest:
		b.reply(b.reload(req))
	case detachRequest:
		b.detach(req)
	case publishRequest:
		b.reply(b.appendBroadcast(req))
	case fillRequest:
		b.reply(b.fill(req))
	case repairRequest:
		b.repair(req.sessions)
	}
}

// health follows the heartbeat's news that Redis became reachable (up)
// or unreachable: the loop is told, and once Redis is back the node
// republishes what it holds.
func (b *broker) health(up bool) {
	if up == b.up {
		return
	}
	b.up = up
	b.pauseUntil = time.Time{}
	if !up {
		b.log.Warn("redis unreachable: serving local members only")
		b.reply(healthResult{up: false})
		return
	}
	b.republish = true
	b.log.Info("redis reachable: republishing presence")
	b.reply(healthResult{up: true})
	b.settle()
	b.askRepair()
}

// settle tells the loop that Redis may have lost the presence of every
// node: for the next 3 heartbeats (at least a second), in which the others
// republish theirs, a snapshot adds the users it has but removes none.
func (b *broker) settle() {
	b.reply(settleResult{until: time.Now().Add(max((clusterMisses+1)*b.beat, time.Second))})
}

// ctx returns a context for one Redis operation.
func (b *broker) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), b.timeout())
}

// failed counts and logs a failed Redis operation and, when Redis did not
// answer, pauses the broker until the next heartbeat.
//
// An input error (an ID Redis cannot hold: cluster.ErrInvalidID) says
// nothing about Redis: it never pauses the broker nor makes it republish,
// so that one bad ID cannot make a node act as if Redis were down.
func (b *broker) failed(op string, err error) {
	if errors.Is(err, errRedisDown) {
		return
	}
	b.metrics.clusterErrors.WithLabelValues(op).Inc()
	if isInputError(err) {
		b.log.Warn("redis operation refused its input", "op", op, "err", err)
		return
	}
	b.log.Debug("redis operation failed", "op", op, "err", err)
	if !errors.Is(err, cluster.ErrEpochChanged) && !isScriptError(err) {
		// Redis did not answer: rather than have every queued request
		// wait for its own timeout before the heartbeat notices, fail
		// fast until the next heartbeat; what it did not write, the
		// next repair does.
		b.pauseUntil = time.Now().Add(b.beat)
		b.republish = true
	}
}

// reachable reports whether the broker should try Redis: its last
// heartbeat reached it, and no operation since the last heartbeat found it
// unreachable.
func (b *broker) reachable() bool {
	return b.up && !time.Now().Before(b.pauseUntil)
}

// publishNow sends a bus message at once, for a join or leave Redis
// decided: it reaches Redis before anything the broker sends next (a
// broadcast of the user who joined, say), so every node sees the two in
// that order.
func (b *broker) publishNow(ctx context.Context, session string, kind byte, userID string, body []byte) {
	if err := b.bus.PublishNow(ctx, session, busFrame(kind, userID, body)); err != nil {
		b.failed("publish", err)
	}
}

// join records a connection in Redis (the two-tabs rule decides whether
// it is the user's first anywhere), loads the session and reads the
// recovery when asked, and publishes a first connection's user-joined.
func (b *broker) join(req joinRequest) *joinResult {
	res := &joinResult{pending: req.pending, err: errRedisDown}
	if !b.reachable() {
		return res
	}
	ctx, cancel := b.ctx()
	defer cancel()
	res.stored, res.first, res.err = b.presence.Attach(ctx, req.session, req.user, b.node, req.member, req.at)
	if res.err == nil && req.load {
		res.snap, res.err = b.load(ctx, req.session, req.floor)
	}
	if res.err == nil && req.recover != nil {
		res.replay, res.complete, res.err = b.eventLog.Since(ctx, req.session, req.recover.Epoch, req.recover.Offset)
	}
	if res.err == nil && res.first {
		b.publishNow(ctx, req.session, kindJoined, req.user, res.stored)
	}
	if res.err != nil {
		b.failed("join", res.err)
	}
	return res
}

// reload loads a session for a join whose own load did not happen.
func (b *broker) reload(req loadRequest) *joinResult {
	res := req.result
	if !b.reachable() {
		res.err = errRedisDown
		return res
	}
	ctx, cancel := b.ctx()
	defer cancel()
	if res.snap, res.err = b.load(ctx, req.session, req.floor); res.err != nil {
		b.failed("load", res.err)
	}
	return res
}

// load reads a session's epoch and offset (raising it to floor), its
// participants and their live state. It first ends the leave graces that
// are over, which no node may have ended if none served the session.
func (b *broker) load(ctx context.Context, id string, floor int64) (*snapshot, error) {
	var s snapshot
	gone, err := b.presence.Expire(ctx, id, time.Now())
	if err != nil {
		return nil, err
	}
	for _, m := range gone {
		b.left(ctx, id, m.UserID, m.Member)
	}
	if s.epoch, s.offset, err = b.eventLog.Sync(ctx, id, floor, b.keyTTL); err != nil {
		return nil, err
	}
	if s.members, err = b.presence.Members(ctx, id); err != nil {
		return nil, err
	}
	if s.state, err = b.presence.State(ctx, id); err != nil {
		return nil, err
	}
	return &s, nil
}

// detach tells Redis that a connection of a user left a session; when it
// was the user's last anywhere, the user leaves (at once, or when its
// grace ends: expire).
func (b *broker) detach(req detachRequest) {
	if !b.reachable() {
		return // the repair after the outage sets the node's counts
	}
	ctx, cancel := b.ctx()
	defer cancel()
	left, err := b.presence.Detach(ctx, req.session, req.user, b.node, req.grace, req.at)
	if err != nil {
		b.failed("detach", err)
		return
	}
	if left {
		b.metrics.participantLeft(req.joinedAt, time.Now())
		b.left(ctx, req.session, req.user, nil)
	} else if req.grace > 0 {
		b.expireSoon[req.session] = req.at.Add(req.grace + b.beat)
	}
}

// appendBroadcast appends a client's broadcast to its session's log,
// which publishes it to every node with its offset. When Redis lost the
// session's history it starts a new epoch, whose offsets go on from the
// node's, and appends there.
func (b *broker) appendBroadcast(req publishRequest) publishResult {
	res := publishResult{origin: req.origin, err: errRedisDown}
	if !b.reachable() {
		return res
	}
	ctx, cancel := b.ctx()
	defer cancel()
	res.offset, _, res.err = b.eventLog.AppendPublish(ctx, req.session, req.epoch, req.to, req.pub, b.keyTTL)
	if errors.Is(res.err, cluster.ErrEpochChanged) {
		if res.epoch, res.epochOffset, res.err = b.eventLog.Sync(ctx, req.session, req.floor, b.keyTTL); res.err == nil {
			res.offset, _, res.err = b.eventLog.AppendPublish(ctx, req.session, res.epoch, req.to, req.pub, b.keyTTL)
		}
	}
	if res.err != nil {
		b.failed("broadcast", res.err)
	}
	return res
}

// fill reads the broadcasts after a gap in a session's offsets from its
// log.
func (b *broker) fill(req fillRequest) fillResult {
	res := fillResult{room: req.room}
	if !b.reachable() {
		return res
	}
	ctx, cancel := b.ctx()
	defer cancel()
	var err error
	if res.events, res.latest, _, err = b.eventLog.Tail(ctx, req.session, req.epoch, req.from, req.most); err != nil {
		b.failed("fill", err)
	}
	return res
}

// left announces, from the broker, that Redis took userID out of session
// id: on the bus for the other nodes, and to the loop for this one.
// A member given is counted in sessionhub_participant_duration_seconds:
// Redis hands each leave to one node.
func (b *broker) left(ctx context.Context, id, userID string, member []byte) {
	if member != nil {
		if p, err := decodeMember(member); err == nil {
			b.metrics.participantLeft(p.JoinedAt, time.Now())
		}
	}
	b.publishNow(ctx, id, kindLeft, userID, member)
	b.reply(leftResult{session: id, user: userID})
}

// expiringSoon returns the sessions whose graces may end soon, forgetting
// those whose time has passed.
func (b *broker) expiringSoon(now time.Time) iter.Seq[string] {
	for id, until := range b.expireSoon {
		if now.After(until) {
			delete(b.expireSoon, id)
		}
	}
	return maps.Keys(b.expireSoon)
}

// askRepair asks the loop for what the node holds; the loop answers with
// a repairRequest queued behind every request it queued before, so that
// the counts it gives are the latest Redis will see.
func (b *broker) askRepair() {
	if !b.reachable() {
		return
	}
	b.reply(repairAsk{})
}

// repair makes Redis hold exactly the node's connections, announces the
// users Redis had lost or removes, stores changed live state, and hands
// each session's snapshot to the loop.
func (b *broker) repair(hold []repairSession) {
	if !b.reachable() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(b.beat, 2*time.Second))
	defer cancel()
	if b.missed.Swap(false) {
		b.republish = true
	}
	if b.republish {
		// Make Redis hold exactly the node's connections (and keep their
		// keys alive): after Redis may have lost them, after an operation
		// failed or was dropped, and every republishEvery heartbeats.
		conns := make(map[string]map[string]cluster.NodeConns, len(hold))
		for _, hd := range hold {
			conns[hd.id] = hd.conns
		}
		now := time.Now()
		firsts, removed, err := b.presence.Republish(ctx, b.node, conns, b.grace, now)
		if err != nil {
			b.failed("republish", err)
			return
		}
		b.republish = false
		if len(firsts) > 0 {
			// Redis lost what this node held (it restarted, perhaps too
			// quickly for the heartbeat to notice): so did the other
			// nodes, which may not have republished yet.
			b.settle()
		}
		for _, m := range firsts {
			b.publishNow(ctx, m.Session, kindJoined, m.UserID, m.Member)
		}
		for _, m := range removed {
			b.left(ctx, m.Session, m.UserID, m.Member)
		}
		for _, hd := range hold {
			b.expireSoon[hd.id] = now.Add(b.grace + b.beat) // graces it may have started
		}
	}
	for _, hd := range hold {
		for uid, st := range hd.state {
			if err := b.presence.SetState(ctx, hd.id, uid, st); err != nil {
				b.failed("state", err)
			}
		}
		s, err := b.load(ctx, hd.id, hd.offset)
		if err != nil {
			b.failed("load", err)
			continue
		}
		b.reply(snapshotResult{session: hd.id, snap: s, asked: hd.asked})
	}
}

// expire ends the leave graces that are over in the sessions the node
// serves; Redis hands each user to one node, which announces it.
func (b *broker) expire(ids iter.Seq[string]) {
	if !b.reachable() {
		return
	}
	ctx, cancel := b.ctx()
	defer cancel()
	now := time.Now()
	for id := range ids {
		if !b.sessions[id] {
			continue
		}
		gone, err := b.presence.Expire(ctx, id, now)
		if err != nil {
			b.failed("expire", err)
			return
		}
		for _, m := range gone {
			b.left(ctx, id, m.UserID, m.Member)
		}
	}
}

// dropNode takes a dead node's connections away; its users get the leave
// grace (Expire ends it).
func (b *broker) dropNode(id string) {
	b.log.Info("node left or stopped beating: its users get the leave grace", "gone", id)
	if !b.reachable() {
		return // the dead node's users go when their keys expire or a repair finds them
	}
	ctx, cancel := b.ctx()
	defer cancel()
	now := time.Now()
	for s := range b.sessions {
		b.expireSoon[s] = now.Add(b.grace + b.beat) // its users' graces, whoever drops it
	}
	_, removed, err := b.presence.DropNode(ctx, id, b.grace, now)
	if err != nil {
		b.failed("drop_node", err)
		return
	}
	for _, m := range removed {
		b.left(ctx, m.Session, m.UserID, m.Member)
	}
}
