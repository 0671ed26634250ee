package hub

// This file is the seam between the run loop and the other nodes of a
// cluster: peers, what the loop needs from them, and singleNode, the
// answer of a hub alone. Everything here runs on the run loop. The
// cluster's answer, redisPeers, is in cluster_loop.go (on the loop too),
// with its broker in broker.go (the broker's goroutine).

import (
	"time"

	"github.com/google/uuid"

	"github.com/sessionhub/sessionhub/cluster"
	"github.com/sessionhub/sessionhub/protocol"
	"github.com/sessionhub/sessionhub/session"
)

// peers is what the run loop needs from the other nodes. Its methods are
// called on the run loop, run there and never block: what needs Redis is
// handed to the broker as a request, and finished when its result comes
// back (fromBroker). On a single node (singleNode) there is nobody to
// tell, and every answer is the node's own, at once.
type peers interface {
	// inbound returns what the loop reads from the other nodes: the
	// messages they published on the bus, and the broker's results. Both
	// are nil (never ready) on a single node.
	inbound() (bus <-chan cluster.Message, results <-chan brokerResult)
	// fromBus handles a message of the bus.
	fromBus(m cluster.Message)
	// fromBroker handles a result of the broker.
	fromBroker(res brokerResult)

	// newRoom readies r, a room the loop just made for a session it did
	// not hold.
	newRoom(r *room)
	// join finishes a join of c to r as info (r exists; c left its former
	// room): at once (Hub.joinLocal), or when the cluster has answered
	// (c.joining is set meanwhile, and what c sends waits).
	join(c *conn, ref string, j *protocol.JoinSession, info protocol.UserInfo, r *room, now time.Time)
	// detach is told that userID lost a connection in r (already out of
	// r). It reports whether the cluster decides whether the user leaves
	// (the leave then reaches the loop like any other); if not, the loop
	// decides, then calls release.
	detach(r *room, userID string, grace time.Duration) (decided bool)
	// release lets go of r if nothing on this node holds it any more (a
	// cluster's sessions live on in Redis).
	release(r *room)
	// expire is the sweep's question for r at now: it reports whether r
	// was dropped (and is not counted any more).
	expire(r *room, now time.Time) (dropped bool)
	// broadcast gives a client's broadcast its offset, delivers it to the
	// connections it is addressed to on every node, and answers the client
	// (Hub.answerBroadcast): at once, or when Redis has answered.
	broadcast(cb *clientBroadcast)
	// cursorMoved and activityChanged tell the other nodes about an event
	// of userID's in r, which the loop handed to this node's connections:
	// ev as they got it (encoded, if any did; a copy, so that a single
	// node's does not make the loop's escape).
	cursorMoved(r *room, userID string, ev event)
	activityChanged(r *room, userID string, ev event)
	// userJoined and userLeft tell the other nodes that p joined or left
	// r by this node's decision (it could not reach Redis, or ran the
	// user's leave grace itself).
	userJoined(r *room, p *session.Participant)
	userLeft(r *room, p *session.Participant)
	// decodeCursors brings the cursors of r's participants up to date
	// before their list is encoded (other nodes' cursors are decoded only
	// then).
	decodeCursors(r *room)
}

// singleNode is a hub alone: it keeps its sessions until their TTL, and
// decides every join, leave and offset itself.
type singleNode struct{ h *Hub }

var _ peers = singleNode{}

func (singleNode) inbound() (<-chan cluster.Message, <-chan brokerResult) { return nil, nil }
func (singleNode) fromBus(cluster.Message)                                {}
func (singleNode) fromBroker(brokerResult)                                {}

// newRoom gives the session its epoch: its history's life is the room's.
func (singleNode) newRoom(r *room) { r.s.Epoch = uuid.NewString() }

func (n singleNode) join(c *conn, ref string, j *protocol.JoinSession, info protocol.UserInfo, r *room, now time.Time) {
	n.h.joinLocal(c, ref, j, info, r, now, false)
}

func (singleNode) detach(*room, string, time.Duration) bool { return false }
func (singleNode) release(*room)                            {}

// expire drops a session past Options.SessionTTL, and its history.
func (n singleNode) expire(r *room, now time.Time) bool {
	h := n.h
	if !r.s.Expired(now, h.opts.SessionTTL) {
		return false
	}
	delete(h.rooms, r.s.ID) // its history goes with it
	r.s.History.Clear()
	h.metrics.sessionDuration.Observe(now.Sub(r.created).Seconds())
	return true
}

func (n singleNode) broadcast(cb *clientBroadcast) {
	off, err := n.h.publishLocal(cb.room, cb.c.userID, cb.c, cb.b, cb.now)
	n.h.answerBroadcast(cb, off, err)
}

func (singleNode) cursorMoved(*room, string, event)       {}
func (singleNode) activityChanged(*room, string, event)   {}
func (singleNode) userJoined(*room, *session.Participant) {}
func (singleNode) userLeft(*room, *session.Participant)   {}
func (singleNode) decodeCursors(*room)                    {}
