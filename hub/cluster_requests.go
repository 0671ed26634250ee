package hub

// This file declares the work that crosses between the run loop
// (cluster_loop.go) and the broker (broker.go): typed requests the loop
// hands the broker (redisPeers.send, never blocking), and typed results
// the broker hands back (broker.reply, on redisPeers.results). Types only:
// no code runs here. A request's pointer fields marked "for the loop" are
// the loop's own values, which the broker carries back in its result
// without touching them.

import (
	"time"

	"github.com/sessionhub/sessionhub/cluster"
	"github.com/sessionhub/sessionhub/protocol"
)

// brokerRequest is one of the requests below.
type brokerRequest interface{ brokerRequest() }

// brokerResult is one of the results below.
type brokerResult interface{ brokerResult() }

// serveRequest tells the broker that the node serves session (serving) or
// no longer does: the sessions whose graces it ends.
type serveRequest struct {
	session string
	serving bool
}

// joinRequest records a connection of user in session (Presence.Attach);
// load asks for the session's snapshot too (its offset raised to floor),
// recover for the log's events after an offset. Answered by a *joinResult.
type joinRequest struct {
	pending *pendingJoin // for the loop
	session string
	user    string
	member  []byte // the participant, as Redis stores it
	at      time.Time
	load    bool
	floor   int64
	recover *protocol.Recover
}

// loadRequest loads session (its offset raised to floor) for a join whose
// own load did not happen; the broker fills result's snap and err and
// hands result back.
type loadRequest struct {
	result  *joinResult // for the loop
	session string
	floor   int64
}

// joinResult is what Redis said about a join.
type joinResult struct {
	pending  *pendingJoin // the join's, from its request
	stored   []byte       // the member Redis holds
	first    bool         // the user's first connection anywhere
	snap     *snapshot
	replay   []cluster.Event
	complete bool // replay holds every event after the recover offset
	err      error
}

// detachRequest tells Redis that a connection of user left session at
// at; when it was the user's last anywhere, the user leaves after grace.
// joinedAt is the participant's, for the duration when this node ends it.
type detachRequest struct {
	session  string
	user     string
	grace    time.Duration
	at       time.Time
	joinedAt time.Time
}

// publishRequest appends a client's broadcast to session's log in Redis
// (epoch; its offsets raised to floor if the epoch changed), which
// publishes it to every node. Answered by a publishResult.
type publishRequest struct {
	origin  *clientBroadcast // for the loop
	session string
	epoch   string
	to      string
	floor   int64
	pub     cluster.Published
}

// publishResult is the offset Redis gave a broadcast, or why it did not;
// epoch and epochOffset are set when Redis started a new epoch of the
// session's history on the way.
type publishResult struct {
	origin      *clientBroadcast
	offset      int64
	err         error
	epoch       string
	epochOffset int64
}

// fillRequest reads the broadcasts of session after from (at most most)
// from its log, to fill a gap in room's offsets. Answered by a
// fillResult.
type fillRequest struct {
	room    *room // for the loop
	session string
	epoch   string
	from    int64
	most    int
}

// fillResult is what the log held after the gap (events), and its latest
// offset.
type fillResult struct {
	room   *room
	events []cluster.Event
	latest int64
}

// repairRequest hands the broker what the node holds, for the
// heartbeat's repair; the loop sends it when asked (repairAsk).
type repairRequest struct {
	sessions []repairSession
}

// repairSession is a session as the node holds it, for repair.
type repairSession struct {
	id     string
	offset int64
	conns  map[string]cluster.NodeConns
	state  map[string][]byte // changed cursors and activity
	asked  time.Time
}

// repairAsk asks the loop for what the node holds (a repairRequest).
type repairAsk struct{}

// snapshotResult is session as Redis held it when the loop listed it for
// a repair at asked.
type snapshotResult struct {
	session string
	snap    *snapshot
	asked   time.Time
}

// snapshot is a session as Redis holds it.
type snapshot struct {
	epoch   string
	offset  int64
	members []cluster.MemberState
	state   map[string][]byte
}

// healthResult says that Redis became reachable (up) or unreachable.
type healthResult struct{ up bool }

// settleResult says that Redis may have lost the presence of every node:
// until then a snapshot adds the users it has but removes none.
type settleResult struct{ until time.Time }

// leftResult says that Redis took user out of session.
type leftResult struct{ session, user string }

func (serveRequest) brokerRequest()   {}
func (joinRequest) brokerRequest()    {}
func (loadRequest) brokerRequest()    {}
func (detachRequest) brokerRequest()  {}
func (publishRequest) brokerRequest() {}
func (fillRequest) brokerRequest()    {}
func (repairRequest) brokerRequest()  {}

func (*joinResult) brokerResult()    {}
func (publishResult) brokerResult()  {}
func (fillResult) brokerResult()     {}
func (repairAsk) brokerResult()      {}
func (snapshotResult) brokerResult() {}
func (healthResult) brokerResult()   {}
func (settleResult) brokerResult()   {}
func (leftResult) brokerResult()     {}
