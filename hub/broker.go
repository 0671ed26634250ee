package hub

// This file is the broker of a cluster (Options.Redis set): the goroutine
// between the run loop and Redis. The loop hands it closures (enqueue,
// never blocking); serve runs them in order, does the Redis I/O, and hands
// the results back to the loop (toLoop). Besides, serve republishes the
// node's presence every heartbeat (repair), ends leave graces (expire) and
// drops the connections of dead nodes (dropNode). The loop's side of the
// cluster is in cluster.go.

import (
	"context"
	"encoding/json"
	"errors"
	"iter"
	"log/slog"
	"maps"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/redis/go-redis/v9"

	"github.com/sessionhub/sessionhub/cluster"
	"github.com/sessionhub/sessionhub/protocol"
)

// errRedisDown is the result of an operation the broker did not try
// because Redis is known to be unreachable.
var errRedisDown = errors.New("hub: redis is unreachable")

// broker is the goroutine between the run loop and Redis.
type broker struct {
	h      *Hub
	node   string
	beat   time.Duration
	keyTTL time.Duration // of a session's log: its TTL plus the history's
	grace  time.Duration
	log    *slog.Logger

	clog  *cluster.Log
	bus   *cluster.Bus
	nodes *cluster.Nodes
	pres  *cluster.Presence

	ops  chan func() // from run, in order
	quit chan struct{}
	done chan struct{}

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
	// missed is set (by run, when the queue was full) when operations
	// were dropped: the next repair republishes.
	missed atomic.Bool
}

func newBroker(h *Hub) *broker {
	o := h.opts
	b := &broker{
		h:          h,
		node:       o.NodeID,
		beat:       o.NodeHeartbeat,
		keyTTL:     o.SessionTTL + o.HistoryTTL,
		grace:      o.LeaveGrace, // options clamp it at 0
		log:        h.log.With("node", o.NodeID),
		ops:        make(chan func(), brokerQueue),
		quit:       make(chan struct{}),
		done:       make(chan struct{}),
		sessions:   make(map[string]bool),
		expireSoon: make(map[string]time.Time),
	}
	b.clog = cluster.NewLog(o.Redis, &cluster.LogOptions{Size: o.HistorySize, TTL: o.HistoryTTL, MaxBytes: o.HistoryBytes})
	b.bus = cluster.NewBus(o.Redis, &cluster.BusOptions{NodeID: o.NodeID, Logger: h.log, Linger: busLinger(o.WriteDelay)})
	b.pres = cluster.NewPresence(o.Redis, nil)
	b.nodes = cluster.NewNodes(o.Redis, &cluster.NodesOptions{
		NodeID: o.NodeID, Heartbeat: o.NodeHeartbeat, Misses: clusterMisses, Logger: h.log})
	return b
}

// busLinger is the share of the write delay d that the bus may hold a
// node's events so that several share a write to Redis and Redis's write
// to each node (cluster.BusOptions.Linger): a quarter, the run loop's
// flush granularity. The run loop holds a delay connection's messages for
// the rest (Hub.delay): a message from another node waits at most d in
// all, one from this node at most d - busLinger(d).
func busLinger(d time.Duration) time.Duration { return d / 4 }

// timeout bounds one Redis operation.
func (b *broker) timeout() time.Duration {
	return min(max(b.beat, 250*time.Millisecond), 2*time.Second)
}

// enqueue hands f to the broker without blocking; run calls it. It
// reports false, counting the drop, when the queue is full.
func (b *broker) enqueue(f func()) bool {
	select {
	case b.ops <- f:
		return true
	default:
		b.h.metrics.clusterDropped.WithLabelValues("broker_queue_full").Inc()
		b.missed.Store(true)
		return false
	}
}

// toLoop runs f on the run loop; serve waits for the loop, never the other
// way round. It gives up when the broker is stopping.
func (b *broker) toLoop(f func()) {
	select {
	case b.h.fromBroker <- f:
	case <-b.quit:
	}
}

// serve is the broker's goroutine.
func (b *broker) serve() {
	defer close(b.done)
	beat := time.NewTicker(b.beat)
	defer beat.Stop()
	sweep := time.NewTicker(b.h.sweepEvery())
	defer sweep.Stop()
	for {
		select {
		case f := <-b.ops:
			f()
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
			b.repairRequest()
		case <-beat.C:
			if b.beats++; b.beats%republishEvery == 0 {
				b.republish = true
			}
			b.repairRequest() // its loads end the graces of every session
		case now := <-sweep.C:
			b.expire(b.expiringSoon(now))
		case <-b.quit:
			return
		}
	}
}

func (b *broker) health(up bool) {
	if up == b.up {
		return
	}
	b.up = up
	b.pauseUntil = time.Time{}
	b.republish = b.republish || up
	if up {
		b.log.Info("redis reachable: republishing presence")
	} else {
		b.log.Warn("redis unreachable: serving local members only")
	}
	b.toLoop(func() { b.h.clUp = up })
	if up {
		b.settle()
		b.repairRequest()
	}
}

// settle tells the loop that Redis may have lost the presence of every
// node: for the next 3 heartbeats (at least a second), in which the others
// republish theirs, a snapshot adds the users it has but removes none.
func (b *broker) settle() {
	until := time.Now().Add(max((clusterMisses+1)*b.beat, time.Second))
	b.toLoop(func() { b.h.snapshotsAddOnlyUntil = until })
}

// ctx returns a context for one Redis operation.
func (b *broker) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), b.timeout())
}

// failed counts and logs a failed Redis operation and, when Redis did not
// answer, pauses the broker until the next heartbeat. Only serve calls it.
//
// An input error (an ID Redis cannot hold: cluster.ErrInvalidID) says
// nothing about Redis: it never pauses the broker nor makes it republish,
// so that one bad ID cannot make a node act as if Redis were down.
func (b *broker) failed(op string, err error) {
	if errors.Is(err, errRedisDown) {
		return
	}
	b.h.metrics.clusterErrors.WithLabelValues(op).Inc()
	if isInputError(err) {
		b.log.Warn("redis operation refused its input", "op", op, "err", err)
		return
	}
	b.log.Debug("redis operation failed", "op", op, "err", err)
	if !errors.Is(err, cluster.ErrEpochChanged) && !isScriptError(err) {
		// Redis did not answer: rather than have every queued operation
		// wait for its own timeout before the heartbeat notices, fail
		// fast until the next heartbeat; what it did not write, the
		// next repair does.
		b.pauseUntil = time.Now().Add(b.beat)
		b.republish = true
	}
}

// isInputError reports whether err is the caller's input error, not
// Redis's.
func isInputError(err error) bool { return errors.Is(err, cluster.ErrInvalidID) }

// isScriptError reports whether err is an answer from Redis (which is
// up), not a failure to reach it.
func isScriptError(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

// reachable reports whether the broker should try Redis: its last
// heartbeat reached it, and no operation since the last heartbeat found it
// unreachable.
func (b *broker) reachable() bool {
	return b.up && !time.Now().Before(b.pauseUntil)
}

// publish queues a bus message of kind about userID in session; run
// calls it, for cursors and activity, and for joins and leaves it decided
// alone (Redis unreachable).
func (b *broker) publish(session string, kind byte, userID string, body []byte) {
	if !b.bus.Publish(session, busFrame(kind, userID, body)) {
		b.h.metrics.clusterDropped.WithLabelValues("bus_queue_full").Inc()
	}
}

// publishNow sends a bus message at once, for a join or leave Redis
// decided: it reaches Redis before anything the broker sends next (a
// broadcast of the user who joined, say), so every node sees the two in
// that order. Only serve calls it.
func (b *broker) publishNow(ctx context.Context, session string, kind byte, userID string, body []byte) {
	if err := b.bus.PublishNow(ctx, session, busFrame(kind, userID, body)); err != nil {
		b.failed("publish", err)
	}
}

// busFrame is a bus message: its kind, the userId it is about (one byte
// of length, then the bytes; a userId is at most protocol.MaxUserIDBytes),
// then body.
func busFrame(kind byte, userID string, body []byte) []byte {
	f := make([]byte, 0, 2+len(userID)+len(body))
	f = append(f, kind, byte(len(userID)))
	f = append(f, userID...)
	return append(f, body...)
}

// parseFrame splits a bus message; ok is false when it is malformed.
func parseFrame(data []byte) (kind byte, userID string, body []byte, ok bool) {
	if len(data) < 2 || len(data) < 2+int(data[1]) {
		return 0, "", nil, false
	}
	n := int(data[1])
	return data[0], string(data[2 : 2+n]), data[2+n:], true
}

// snapshot is a session as Redis holds it.
type snapshot struct {
	epoch   string
	offset  int64
	members []cluster.MemberState
	state   map[string][]byte
}

// load reads a session's epoch and offset (raising it to floor), its
// participants and their live state. It first ends the leave graces that
// are over, which no node may have ended if none served the session.
func (b *broker) load(ctx context.Context, id string, floor int64) (*snapshot, error) {
	var s snapshot
	var err error
	gone, err := b.pres.Expire(ctx, id, time.Now())
	if err != nil {
		return nil, err
	}
	for _, m := range gone {
		b.left(ctx, id, m.UserID, m.Member)
	}
	if s.epoch, s.offset, err = b.clog.Sync(ctx, id, floor, b.keyTTL); err != nil {
		return nil, err
	}
	if s.members, err = b.pres.Members(ctx, id); err != nil {
		return nil, err
	}
	if s.state, err = b.pres.State(ctx, id); err != nil {
		return nil, err
	}
	return &s, nil
}

// joinResult is what Redis said about a join.
type joinResult struct {
	stored   []byte // the member Redis holds
	first    bool   // the user's first connection anywhere
	snap     *snapshot
	replay   []cluster.Event
	complete bool // replay holds every event after the recover offset
	err      error
}

// left announces, from the broker, that Redis took userID out of session
// id: on the bus for the other nodes, and to the loop for this one.
// A member given is counted in sessionhub_participant_duration_seconds:
// Redis hands each leave to one node.
func (b *broker) left(ctx context.Context, id, userID string, member []byte) {
	if member != nil {
		if p, err := decodeMember(member); err == nil {
			b.h.metrics.participantLeft(p.JoinedAt, time.Now())
		}
	}
	b.publishNow(ctx, id, kindLeft, userID, member)
	b.toLoop(func() { b.h.remoteLeft(id, userID) })
}

// published is what AppendPublish needs for a broadcast to of session id
// whose bytes are head, offset, tail: the bus message 'b', the offset, ':',
// then to and skip (each after a byte of length), then the event.
func (b *broker) published(id, to, skip string, head, tail []byte) cluster.Published {
	mid := make([]byte, 0, 3+len(to)+len(skip))
	mid = append(mid, ':', byte(len(to)))
	mid = append(mid, to...)
	mid = append(mid, byte(len(skip)))
	mid = append(mid, skip...)
	return cluster.Published{
		Head: head, Tail: tail, Channel: b.bus.Channel(id),
		PubHead: append(append([]byte(nil), cluster.NoOrigin...), kindBroadcast), PubMid: mid,
	}
}

// Server API (called on the API's goroutines, never on run or serve; the
// cluster types are safe for concurrent use).

// participants lists session id cluster-wide, from Redis.
func (b *broker) participants(ctx context.Context, id string) ([]protocol.Participant, error) {
	members, err := b.pres.Members(ctx, id)
	if err != nil {
		return nil, err
	}
	state, err := b.pres.State(ctx, id)
	if err != nil {
		return nil, err
	}
	list := make([]protocol.Participant, 0, len(members))
	for _, m := range members {
		p, err := decodeMember(m.Member)
		if err != nil {
			continue
		}
		p.JoinedAt = m.JoinedAt
		var st memberState
		if json.Unmarshal(state[m.UserID], &st) == nil {
			p.Active, p.Cursor = st.IsActive, st.Cursor
		}
		list = append(list, p.Wire())
	}
	return list, nil
}

// broadcast publishes a server broadcast to session id through Redis and
// returns its offset; found is false when the session has no participant
// anywhere.
func (b *broker) broadcast(ctx context.Context, id string, bc *protocol.Broadcast, now time.Time) (off int64, found bool, err error) {
	members, err := b.pres.Members(ctx, id)
	if err != nil || len(members) == 0 {
		return 0, false, err
	}
	head, tail, err := broadcastParts(protocol.BroadcastEvent{
		Event: bc.Event, From: protocol.FromServer, Payload: bc.Payload, Ts: now.UnixMilli()})
	if err != nil {
		return 0, true, err
	}
	pub := b.published(id, bc.To, "", head, tail)
	for range 2 { // a second time when the epoch changed under us
		var epoch string
		if epoch, _, err = b.clog.Sync(ctx, id, 0, b.keyTTL); err != nil {
			return 0, true, err
		}
		if off, _, err = b.clog.AppendPublish(ctx, id, epoch, bc.To, pub, b.keyTTL); !errors.Is(err, cluster.ErrEpochChanged) {
			break
		}
	}
	return off, true, err
}

// remove takes userID out of session id cluster-wide and tells every node
// to close its connections with 4003.
func (b *broker) remove(ctx context.Context, id, userID string) (bool, error) {
	found, err := b.pres.Remove(ctx, id, userID)
	if err != nil {
		return false, err
	}
	// Not publishNow: that keeps serve's state, and this runs on the API's
	// goroutine.
	if err := b.bus.PublishNow(ctx, id, busFrame(kindRemoved, userID, nil)); err != nil {
		return found, err
	}
	return found, nil
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

// repairRequest asks the loop for what the node holds; the loop answers
// by queuing repair behind every operation it queued before, so that the
// counts it gives are the latest Redis will see.
func (b *broker) repairRequest() {
	if !b.reachable() {
		return
	}
	b.toLoop(func() {
		hold := b.h.sessionsForRepair()
		b.enqueue(func() { b.repair(hold) })
	})
}

// repairSession is a session as the node holds it, for repair.
type repairSession struct {
	id     string
	offset int64
	conns  map[string]cluster.NodeConns
	state  map[string][]byte // changed cursors and activity
	asked  time.Time
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
		firsts, removed, err := b.pres.Republish(ctx, b.node, conns, b.grace, now)
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
			if err := b.pres.SetState(ctx, hd.id, uid, st); err != nil {
				b.failed("state", err)
			}
		}
		s, err := b.load(ctx, hd.id, hd.offset)
		if err != nil {
			b.failed("load", err)
			continue
		}
		id, asked := hd.id, hd.asked
		b.toLoop(func() {
			if r := b.h.rooms[id]; r != nil && r.cl != nil {
				b.h.applySnapshot(r, s, asked)
			}
		})
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
		gone, err := b.pres.Expire(ctx, id, now)
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
	_, removed, err := b.pres.DropNode(ctx, id, b.grace, now)
	if err != nil {
		b.failed("drop_node", err)
		return
	}
	for _, m := range removed {
		b.left(ctx, m.Session, m.UserID, m.Member)
	}
}

// close stops the broker. A clean stop (ctx not done) first hands this
// node's users to the leave grace and says goodbye, so the other nodes
// need not wait for its heartbeat to expire.
func (b *broker) close(ctx context.Context) {
	close(b.quit)
	<-b.done
	if ctx.Err() == nil && b.nodes.Healthy() {
		if _, removed, err := b.pres.DropNode(ctx, b.node, b.grace, time.Now()); err != nil {
			b.log.Warn("could not hand this node's users to the leave grace", "err", err)
		} else {
			for _, m := range removed {
				b.bus.Publish(m.Session, busFrame(kindLeft, m.UserID, m.Member))
			}
		}
		if err := b.nodes.Leave(ctx); err != nil {
			b.log.Warn("could not say goodbye to the cluster", "err", err)
		}
	}
	b.nodes.Close()
	b.bus.Close()
}

// defaultNodeID names a node when Options.NodeID is empty: its host name
// and 8 random hex digits.
func defaultNodeID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "node"
	}
	if len(host) > 64 {
		host = host[:64]
	}
	return host + "-" + strings.ReplaceAll(uuid.NewString(), "-", "")[:8]
}
