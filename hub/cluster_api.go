package hub

// This file is a cluster's side of the calls that come from outside the
// run loop and the broker, each on its caller's goroutine: New starts the
// cluster (newCluster), Shutdown stops the broker (broker.close), and the
// server API's handlers read and change sessions in Redis directly
// (redisDirectory; the cluster types are safe for concurrent use).

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/sessionhub/sessionhub/cluster"
	"github.com/sessionhub/sessionhub/protocol"
)

// newCluster makes h a cluster node (Options.Redis set): the broker, the
// loop's side of it, the API's, the metrics of both, and the relay of SSE
// sends; it starts the broker's goroutine.
func newCluster(h *Hub) {
	o := h.opts
	b := &broker{
		node:       o.NodeID,
		beat:       o.NodeHeartbeat,
		keyTTL:     o.SessionTTL + o.HistoryTTL,
		grace:      o.LeaveGrace, // options clamp it at 0
		sweepEvery: h.sweepEvery(),
		log:        h.log.With("node", o.NodeID),
		metrics:    h.metrics,
		requests:   make(chan brokerRequest, brokerQueue),
		results:    make(chan brokerResult, 256),
		quit:       make(chan struct{}),
		done:       make(chan struct{}),
		sessions:   make(map[string]bool),
		expireSoon: make(map[string]time.Time),
	}
	b.eventLog = cluster.NewLog(o.Redis, &cluster.LogOptions{Size: o.HistorySize, TTL: o.HistoryTTL, MaxBytes: o.HistoryBytes})
	b.bus = cluster.NewBus(o.Redis, &cluster.BusOptions{NodeID: o.NodeID, Logger: h.log, Linger: o.BusLinger})
	b.presence = cluster.NewPresence(o.Redis, nil)
	b.nodes = cluster.NewNodes(o.Redis, &cluster.NodesOptions{
		NodeID: o.NodeID, Heartbeat: o.NodeHeartbeat, Misses: clusterMisses, Logger: h.log})
	h.broker = b
	h.peers = &redisPeers{h: h, b: b}
	h.directory = &redisDirectory{h: h, b: b}
	h.metrics.cluster(b)
	go b.serve()
	h.relay = cluster.NewRelay(o.Redis, &cluster.RelayOptions{NodeID: o.NodeID, Logger: h.log}, h.relayed)
}

// close stops the broker (on Shutdown's goroutine). A clean stop (ctx not
// done) first hands this node's users to the leave grace and says
// goodbye, so the other nodes need not wait for its heartbeat to expire.
func (b *broker) close(ctx context.Context) {
	close(b.quit)
	<-b.done
	if ctx.Err() == nil && b.nodes.Healthy() {
		if _, removed, err := b.presence.DropNode(ctx, b.node, b.grace, time.Now()); err != nil {
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

// redisDirectory is the server API's view of a cluster's sessions: Redis,
// for every node at once. Its methods run on the API's goroutines; they
// use the broker's Redis clients, never its goroutine.
type redisDirectory struct {
	h *Hub
	b *broker
}

var _ directory = (*redisDirectory)(nil)

// apiRedisTimeout bounds the Redis work of one API request in a cluster.
const apiRedisTimeout = 5 * time.Second

// participants lists session id cluster-wide, from Redis.
func (d *redisDirectory) participants(ctx context.Context, id string) ([]protocol.Participant, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, apiRedisTimeout)
	defer cancel()
	members, err := d.b.presence.Members(ctx, id)
	if err != nil {
		return nil, false, err
	}
	state, err := d.b.presence.State(ctx, id)
	if err != nil {
		return nil, false, err
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
	return list, len(list) > 0, nil
}

// broadcast publishes a server broadcast to session id through Redis and
// returns its offset; found is false when the session has no participant
// anywhere.
func (d *redisDirectory) broadcast(ctx context.Context, id string, bc *protocol.Broadcast) (off int64, found bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, apiRedisTimeout)
	defer cancel()
	b, now := d.b, time.Now()
	members, err := b.presence.Members(ctx, id)
	if err != nil || len(members) == 0 {
		return 0, false, err
	}
	head, tail, err := broadcastParts(protocol.BroadcastEvent{
		Event: bc.Event, From: protocol.FromServer, Payload: bc.Payload, Ts: now.UnixMilli()})
	if err != nil {
		return 0, true, err
	}
	pub := published(b.bus, id, bc.To, "", head, tail)
	for range 2 { // a second time when the epoch changed under us
		var epoch string
		if epoch, _, err = b.eventLog.Sync(ctx, id, 0, b.keyTTL); err != nil {
			return 0, true, err
		}
		if off, _, err = b.eventLog.AppendPublish(ctx, id, epoch, bc.To, pub, b.keyTTL); !errors.Is(err, cluster.ErrEpochChanged) {
			break
		}
	}
	return off, true, err
}

// remove takes userID out of session id cluster-wide, tells every node to
// close its connections with 4003, and does so on this node at once.
func (d *redisDirectory) remove(ctx context.Context, id, userID string) (bool, error) {
	rctx, cancel := context.WithTimeout(ctx, apiRedisTimeout)
	defer cancel()
	found, err := d.b.presence.Remove(rctx, id, userID)
	if err != nil {
		return false, err
	}
	// Not the broker's publishNow: that keeps serve's state.
	if err := d.b.bus.PublishNow(rctx, id, busFrame(kindRemoved, userID, nil)); err != nil {
		return found, err
	}
	// The 'r' reaches this node too; taking the user out here at once
	// tells whether it was here. Redis decided the leave, not this node.
	if !d.h.call(func() { found = d.h.remove(id, userID, time.Now(), false) || found }) {
		return false, errStopping
	}
	return found, nil
}
