// Package hub is sessionhub's server: it accepts WebSockets, runs the
// contract of docs/protocol.md, and serves the HTTP routes.
//
// One goroutine, the run loop in this file, owns every session and every
// connection's membership. Each connection has a reader goroutine and,
// while it has something to write, a writer goroutine (conn.go); they talk
// to the loop over channels. Under a write delay one flusher goroutine
// writes the frames due when delays end (flusher.go). The run loop does bookkeeping only: it encodes
// each event once (once per presence mode for membership events) and puts
// the same bytes on every recipient's bounded send queue without blocking
// (fanout.go); it does no network I/O and never blocks (the only locks it
// takes are short ones: the subscriber mutex and Prometheus's label lock).
//
// What the loop needs from the other nodes goes through one seam, peers
// (peers.go): a single node's answers are its own (singleNode); a cluster
// node's (Options.Redis) are in cluster_loop.go, on the loop, whose broker
// (broker.go) is the goroutine that talks to Redis for it. The server API
// reads sessions through another, directory (api.go, cluster_api.go).
package hub

// Everything in this file runs on the run loop (run), but New, which runs
// on its caller's goroutine before the loop starts, and sweepEvery, which
// is pure. The doors into the loop from the other goroutines (submit,
// call, wake) are in handoff.go.

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/sessionhub/sessionhub/cluster"
	"github.com/sessionhub/sessionhub/protocol"
	"github.com/sessionhub/sessionhub/session"
)

// Hub is a running hub. Create it with New, serve its Handler, and stop it
// with Shutdown. All methods may be called concurrently.
type Hub struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	accept  websocket.AcceptOptions

	// Channels to run.
	inbox      chan inbound
	departures chan departure
	drained    chan *conn // writers that emptied their channel while run held a backlog
	calls      chan func()
	quit       chan struct{} // closed by Shutdown once every connection ended
	done       chan struct{} // closed when run returns

	// Owned by run.
	rooms map[string]*room
	// histBudget is Options.HistoryTotalBytes, shared by every room's
	// history.
	histBudget *session.Budget
	toDetach   []*conn // ended during a step, detached at its end
	// eventMark is when the event the loop is handling entered the hub,
	// as a mark (markOf): deliver stamps it on the connections it queues
	// for, for sessionhub_delivery_seconds.
	eventMark int64
	// The write delay (Options.WriteDelay): the delay connections with
	// something queued, in the order of their due times, from delayHead
	// on; delayTimer is armed (delayArmed) for the first while any wait.
	// It is the only timer of the delay: a connection has none of its own.
	// delay is how long a message waits: Options.WriteDelay on a single
	// node; on a cluster node, what is left of it after the bus's share
	// (Options.BusLinger), so that a message from another node waits no
	// longer than Options.WriteDelay in all.
	delay      time.Duration
	delayQ     []delayedConn
	delayHead  int
	delayTimer *time.Timer
	delayArmed bool
	// flusher writes the frames of the connections whose delay ended
	// (flusher.go); nil without a write delay.
	flusher *flusher

	// peers is what run needs from the other nodes (peers.go): singleNode,
	// or a cluster's redisPeers (cluster_loop.go). Called by run only.
	peers peers
	// directory is where the server API reads and changes sessions
	// (api.go): localDirectory, or a cluster's redisDirectory.
	directory directory
	// Cluster only (Options.Redis set; nil on a single node): the broker
	// between run and Redis (broker.go), which Shutdown stops and /readyz
	// asks; relay carries the sends of SSE streams between nodes
	// (sse_cluster.go).
	broker *broker
	relay  *cluster.Relay

	// Guarded by mu.
	mu           sync.Mutex
	conns        map[*conn]struct{}
	streams      map[string]*conn // the SSE streams among conns, by stream id
	open         int              // admitted connections
	perIP        map[string]int   // admitted connections by remote address (ipKey)
	tcpPerIP     map[string]int   // TCP connections by remote address (Listener)
	shuttingDown bool

	started time.Time // the origin of marks (markOf), with its monotonic reading
	// rateLimited is the rate_limited error without a ref, encoded once
	// (rateLimitedReply).
	rateLimited    []byte
	serving        sync.WaitGroup // one per connection being served
	lastRefusalLog atomic.Int64   // unix ns of the last logged refusal (logRefusal)
	refusedSince   atomic.Int64   // refusals since that line
	nextID         atomic.Uint64
	ready          atomic.Bool
	// tokens verifies the tokens of token mode; nil in open mode. Its
	// static keys are swapped by SetKeys and SetJWTSecret.
	tokens *verifier
}

// inbound is a decoded message from a connection's reader, or (msg.Type
// empty) an error reply the reader encoded itself, such as rate_limited or
// the error for a frame that did not decode; run delivers it in order with
// the connection's other messages, and counts it as sent once it is queued
// (as dropped if it is not).
type inbound struct {
	c     *conn
	msg   protocol.Message
	at    time.Time // when the reader read it
	reply []byte    // pre-encoded direct reply (pong, error), if any
	// refused marks the rate_limited reply to a message over the rate. It
	// is queued like any reply (every message gets its answer); a send
	// queue that overflows with it is closed for rate abuse (1008), not as
	// a slow consumer.
	refused bool
	// seq is the reader's conn.memberSeq for a join-session or
	// leave-session.
	seq uint64
	// refreshed is the identity of a refresh-token's token, verified by
	// the reader (signature, exp, claims); run checks that it fits the
	// connection.
	refreshed *identity
}

// delayedConn is a delay connection whose queued messages are due at due.
type delayedConn struct {
	c   *conn
	due time.Time
}

// departure tells run that a connection has ended; clean is true when the
// peer closed with 1000 or 1001, so that its user leaves at once.
type departure struct {
	c     *conn
	clean bool
}

// room is a session and its connections on this hub.
type room struct {
	s     *session.Session
	conns []*conn
	// cluster is the room's cluster state (cluster_loop.go); nil on a
	// single node.
	cluster *roomCluster
	created time.Time // for sessionhub_session_duration_seconds
}

func (r *room) add(c *conn) {
	c.idx = len(r.conns)
	r.conns = append(r.conns, c)
}

func (r *room) remove(c *conn) {
	last := r.conns[len(r.conns)-1]
	r.conns[c.idx] = last
	last.idx = c.idx
	r.conns[len(r.conns)-1] = nil
	r.conns = r.conns[:len(r.conns)-1]
}

// New starts a hub with opts (nil for the defaults). It panics on a key
// that Options.JWTSecret or Options.JWTKeys should not hold (a secret under
// MinSecretBytes, a key type the hub does not take): ParseSecrets and
// ParsePublicKeys return only keys it takes.
func New(opts *Options) *Hub {
	o := opts.withDefaults()
	h := &Hub{
		opts:       o,
		log:        o.Logger,
		metrics:    newMetrics(),
		inbox:      make(chan inbound, 1024),
		departures: make(chan departure, 64),
		drained:    make(chan *conn, 1024),
		calls:      make(chan func()),
		quit:       make(chan struct{}),
		done:       make(chan struct{}),
		rooms:      make(map[string]*room),
		histBudget: &session.Budget{Max: o.HistoryTotalBytes},
		conns:      make(map[*conn]struct{}),
		streams:    make(map[string]*conn),
		perIP:      make(map[string]int),
		tcpPerIP:   make(map[string]int),
		started:    time.Now(),
		rateLimited: protocol.EncodeError("", protocol.Errorf(protocol.CodeRateLimited,
			"over %g messages per second", o.MessageRate)),
	}
	if o.APIKey != "" && len(o.APIKey) < MinAPIKeyBytes {
		h.log.Error("the server API is off: its key is shorter than 16 bytes")
	}
	h.accept = websocket.AcceptOptions{
		OriginPatterns: o.AllowedOrigins,
		Subprotocols:   []string{protocol.BatchSubprotocol},
		// A pong the library reads (rather than the reader's wsfast TakePong)
		// counts too; the reader's context names the connection.
		OnPongReceived: func(ctx context.Context, _ []byte) {
			if c, ok := ctx.Value(connKey{}).(*conn); ok {
				c.pong()
			}
		},
		// A client's ping counts against its message rate.
		OnPingReceived: func(ctx context.Context, _ []byte) bool {
			if c, ok := ctx.Value(connKey{}).(*conn); ok {
				return c.pingReceived()
			}
			return true
		},
	}
	tokens, err := newVerifier(&o)
	if err != nil {
		panic("hub: " + err.Error())
	}
	if o.WriteDelay > 0 {
		h.delayTimer = time.NewTimer(time.Hour)
		h.delayTimer.Stop()
		h.delay = o.WriteDelay
		if o.Redis != nil {
			h.delay -= o.BusLinger
		}
		h.flusher = newFlusher()
		go h.flusher.run(h)
	}
	h.tokens = tokens
	h.metrics.queueDepth(h)
	h.metrics.readiness(h)
	h.peers, h.directory = singleNode{h}, localDirectory{h}
	if o.Redis != nil {
		newCluster(h) // cluster_api.go
	}
	h.ready.Store(true)
	go h.run()
	return h
}

// sweepEvery is how often run looks for ended graces, idle participants and
// expired sessions: a tenth of the shortest of those durations, kept between
// 10 ms and 1 s.
func (h *Hub) sweepEvery() time.Duration {
	d := min(h.opts.IdleAfter, h.opts.SessionTTL)
	if h.opts.LeaveGrace > 0 {
		d = min(d, h.opts.LeaveGrace)
	}
	return min(max(d/10, 10*time.Millisecond), time.Second)
}

// run is the run loop: one step at a time, for a reader's message, a
// connection's end, a writer that drained, a call, the other nodes' news,
// the write delay's timer and the sweep; after each step, reap. A writer
// that drained goes first, before any other step: what it waits for is
// already queued, and refilled before more work adds to the backlogs
// (a class-start storm adds a message for every member with every join).
func (h *Hub) run() {
	defer close(h.done)
	sweep := time.NewTicker(h.sweepEvery())
	defer sweep.Stop()
	// The other nodes' messages and the broker's results: nil on a single
	// node, never ready.
	bus, results := h.peers.inbound()
	var delayed <-chan time.Time // nil without a write delay
	if h.delayTimer != nil {
		delayed = h.delayTimer.C
		defer h.delayTimer.Stop()
	}
	for {
		// Writers that emptied their channel while a backlog waits come
		// first (see above); a select picks among ready cases at random.
		select {
		case c := <-h.drained:
			h.flushBacklog(c)
			h.reap()
			continue
		default:
		}
		select {
		case in := <-h.inbox:
			h.metrics.loopLatency.Observe(time.Since(in.at).Seconds())
			h.eventMark = h.markOf(in.at)
			h.apply(in)
		case d := <-h.departures:
			h.eventMark = h.markOf(time.Now())
			h.depart(d.c, d.clean)
		case c := <-h.drained:
			h.flushBacklog(c)
		case f := <-h.calls:
			h.eventMark = h.markOf(time.Now())
			f()
		case res := <-results:
			h.eventMark = h.markOf(time.Now())
			h.peers.fromBroker(res)
		case m := <-bus:
			h.eventMark = h.markOf(time.Now())
			h.peers.fromBus(m)
		case now := <-delayed:
			h.flushDelayed(now)
		case now := <-sweep.C:
			h.eventMark = h.markOf(now)
			h.sweep(now)
		case <-h.quit:
			return
		}
		h.reap()
	}
}

// markOf is t as a delivery mark: nanoseconds since the hub started, plus
// one so that a mark is never 0 (no mark). Marks use the monotonic clock.
func (h *Hub) markOf(t time.Time) int64 { return int64(t.Sub(h.started)) + 1 }

// apply is run's step for one inbound (the reader's step before it is
// conn.handle): it applies a message of c's to the hub's state and
// queues the answers, or queues the reply the reader made.
func (h *Hub) apply(in inbound) {
	c, m := in.c, in.msg
	if c.ended {
		if m.Type == "" {
			h.metrics.droppedGone.Inc() // the reader's reply, not sent
		}
		return
	}
	if c.joining != nil {
		// Its join waits for the other nodes (peers.join): what it sends
		// meanwhile waits too.
		c.joining.held = append(c.joining.held, in)
		return
	}
	now := time.Now()
	switch m.Type {
	case "":
		if h.queue(c, in.reply, in.refused) {
			h.metrics.out(protocol.TypeError, 1)
		}
	case protocol.TypeJoinSession:
		c.runSeq = in.seq
		h.join(c, m.Ref, m.Payload.(*protocol.JoinSession), now)
		if c.joining == nil { // a join that waits is marked when it ends
			c.markRoom()
		}
	case protocol.TypeLeaveSession:
		c.runSeq = in.seq
		id := ""
		if c.room != nil {
			id = c.room.s.ID
			h.detach(c, 0, now)
			c.member.Store(nil)
		}
		c.markRoom()
		h.reply(c, protocol.TypeSessionLeft, m.Ref, protocol.SessionLeft{SessionID: id})
	case protocol.TypeCursorUpdate:
		if h.notInSession(c, m) {
			return
		}
		cur := m.Payload.(*protocol.Cursor)
		_, woke := c.room.s.SetCursor(c.userID, cur, now)
		r := c.room
		ev := event{typ: protocol.TypeCursorMoved, data: protocol.CursorMoved{UserID: c.userID, Cursor: *cur}}
		h.toRoom(r, &ev, recipients{skipUser: c.userID})
		h.peers.cursorMoved(r, c.userID, ev)
		if woke {
			h.activityChanged(c.room, c.userID, true)
		}
	case protocol.TypeActivityStatus:
		if h.notInSession(c, m) {
			return
		}
		active := m.Payload.(*protocol.ActivityStatus).IsActive
		if c.room.s.SetActive(c.userID, active, now) {
			h.activityChanged(c.room, c.userID, active)
		}
	case protocol.TypeBroadcast:
		if h.notInSession(c, m) {
			return
		}
		h.broadcast(c, m.Ref, m.Payload.(*protocol.Broadcast), now)
	case protocol.TypePing:
		// Liveness, not activity: client libraries ping in every quiet
		// spell, and a participant who only pings still goes idle.
		if h.deliver(c, in.reply) {
			h.metrics.out(protocol.TypePong, 1)
		}
	case protocol.TypeRefreshToken:
		h.refreshToken(c, m.Ref, in.refreshed)
	}
}

// refreshToken gives c the identity of a refresh-token's verified token
// when it is the same user's and allows c's current session: c then
// expires at the new token's exp, and the new name and role apply from
// its next join. Otherwise the answer is forbidden and c keeps its token.
func (h *Hub) refreshToken(c *conn, ref string, id *identity) {
	old := c.identity
	switch {
	case old == nil || id == nil:
		// The reader answers refresh-token in open mode itself.
		h.replyError(c, ref, protocol.Errorf(protocol.CodeInternal, "no token to refresh"))
		return
	case id.userID != old.userID:
		h.replyError(c, ref, protocol.Errorf(protocol.CodeForbidden, "the token is for another user"))
		return
	case c.room != nil && !id.mayJoin(c.room.s.ID):
		h.replyError(c, ref, protocol.Errorf(protocol.CodeForbidden, "the token does not allow session %s", c.room.s.ID))
		return
	}
	c.identity = id
	c.rearmExpiry(id.expires)
	h.reply(c, protocol.TypeTokenRefreshed, ref, protocol.TokenRefreshed{ExpiresAt: id.expires})
}

func (h *Hub) notInSession(c *conn, m protocol.Message) bool {
	if c.room != nil {
		return false
	}
	h.replyError(c, m.Ref, protocol.Errorf(protocol.CodeNotInSession, "%s needs a joined session", m.Type))
	return true
}

// identify decides who a join on c is from. In token mode the token does:
// its sub is the userId and its role the role, whatever the client says,
// and its name claim wins over userInfo.name; a session the token does not
// list is forbidden. In open mode the client says who it is: a missing
// userId gets a fresh UUID and a missing role is learner. Either way a name
// is required.
func (h *Hub) identify(c *conn, sessionID string, info protocol.UserInfo) (protocol.UserInfo, *protocol.Error) {
	if id := c.identity; id != nil {
		if !id.mayJoin(sessionID) {
			return info, protocol.Errorf(protocol.CodeForbidden, "the token does not allow session %s", sessionID)
		}
		info.UserID, info.Role = id.userID, id.role
		if id.name != "" {
			info.Name = id.name
		}
	}
	if info.Name == "" {
		return info, protocol.Errorf(protocol.CodeBadRequest, "data.userInfo.name is required")
	}
	if info.UserID == "" {
		info.UserID = uuid.NewString()
	}
	if info.Role == "" {
		info.Role = protocol.RoleLearner
	}
	return info, nil
}

func (h *Hub) join(c *conn, ref string, j *protocol.JoinSession, now time.Time) {
	info, perr := h.identify(c, j.SessionID, j.UserInfo)
	if perr != nil {
		h.replyError(c, ref, perr)
		return
	}
	if r := c.room; r != nil && r.s.ID == j.SessionID && c.userID == info.UserID {
		// The same user joining the same session again: no leave, no join.
		c.presence = j.Presence
		h.touch(r, c.userID, now)
		h.metrics.joined(j.Recover != nil, h.replyJoined(c, ref, r, j.Recover, nil), false)
		return
	}
	r := h.rooms[j.SessionID]
	if r != nil && r.s.Get(info.UserID) == nil && r.s.Len() >= h.opts.MaxParticipants {
		h.replyError(c, ref, protocol.Errorf(protocol.CodeSessionFull, "session %s has %d participants", j.SessionID, r.s.Len()))
		return
	}
	if r == nil && len(h.rooms) >= h.opts.MaxSessions {
		h.replyError(c, ref, protocol.Errorf(protocol.CodeSessionFull, "the server holds %d sessions", len(h.rooms)))
		return
	}
	if c.room != nil {
		h.detach(c, 0, now)
		r = h.rooms[j.SessionID] // a cluster drops a room it no longer serves
	}
	if r == nil {
		r = &room{s: session.New(j.SessionID, "", now), created: now}
		r.s.History.Size, r.s.History.TTL = h.opts.HistorySize, h.opts.HistoryTTL
		r.s.History.MaxBytes, r.s.History.Budget = h.opts.HistoryBytes, h.histBudget
		h.peers.newRoom(r)
		h.rooms[j.SessionID] = r
	}
	h.peers.join(c, ref, j, info, r, now)
}

// joinLocal adds c to r as info's connection, deciding here whether the
// user is new (on a single node, or in a cluster that cannot reach Redis:
// then publish tells the other nodes, should the bus get through). peers
// call it.
func (h *Hub) joinLocal(c *conn, ref string, j *protocol.JoinSession, info protocol.UserInfo, r *room, now time.Time, publish bool) {
	_, isNew := r.s.Join(info, now)
	h.attachConn(c, attachment{ref: ref, join: j, info: info, room: r, now: now, isNew: isNew, publish: publish})
}

// attachment is what attachConn needs to finish a join.
type attachment struct {
	ref  string                // the join-session's ref, for the reply
	join *protocol.JoinSession // what the client asked: presence mode, recover
	info protocol.UserInfo     // the identity the join resolved to
	room *room                 // holds the participant already
	now  time.Time
	// isNew: the user is new to the session, and is announced. publish:
	// the announcement goes to the other nodes too (a cluster node that
	// joined without Redis).
	isNew, publish bool
	// replay is what the session's log in Redis had for a recovery
	// (cluster joins only; nil otherwise).
	replay *clusterReplay
}

// attachConn finishes a join whose participant a.room holds already: it
// adds c to the room, answers with session-joined (and the replay), and
// announces a new user.
func (h *Hub) attachConn(c *conn, a attachment) {
	r, j, info, now, isNew := a.room, a.join, a.info, a.now, a.isNew
	r.add(c)
	c.joined.Store(true) // the handshake timeout is met
	c.room, c.userID, c.presence = r, info.UserID, j.Presence
	c.markRoom()
	c.member.Store(&memberLog{session: r.s.ID, user: info.UserID})
	if !isNew {
		h.touch(r, c.userID, now) // before the reply, so that it shows the user active
	}
	h.metrics.joined(j.Recover != nil, h.replyJoined(c, a.ref, r, j.Recover, a.replay), isNew)
	if isNew {
		h.announceJoined(r, r.s.Get(info.UserID), a.publish)
	}
}

// announceJoined tells r's connections but p's that p joined (the list
// encoded only if a connection in full presence gets it), and, when
// publish is set, the other nodes.
func (h *Hub) announceJoined(r *room, p *session.Participant, publish bool) {
	h.peers.decodeCursors(r)
	u := p.Wire()
	diff := event{typ: protocol.TypeUserJoined, data: protocol.UserJoined{User: u}}
	full := event{typ: protocol.TypeUserJoined, diff: &diff,
		lazy: func() any { return protocol.UserJoined{User: u, Participants: r.s.Wire()} }}
	h.toRoom(r, &full, recipients{skipUser: p.UserID})
	if publish {
		h.peers.userJoined(r, p)
	}
}

// touch records a message of userID's own; a participant the idle sweep
// had marked inactive is active again, and the others are told.
func (h *Hub) touch(r *room, userID string, now time.Time) {
	if r.s.Touch(userID, now) {
		h.activityChanged(r, userID, true)
	}
}

// replyJoined answers a join with session-joined and, when the join asked
// to recover and the session's history reaches back far enough, replays
// the events after rec.Offset addressed to the user, in order, right after
// it (recovered: true). Another epoch, an offset the session never had, or
// a history that no longer reaches back gives recovered: false and no
// replay. In a cluster, cr holds what the session's log in Redis had after
// rec.Offset, for when the node's own history does not reach back. It
// reports whether it recovered.
func (h *Hub) replyJoined(c *conn, ref string, r *room, rec *protocol.Recover, cr *clusterReplay) bool {
	h.peers.decodeCursors(r)
	var replay []session.Event
	recovered := false
	if rec != nil && rec.Epoch == r.s.Epoch && rec.Offset <= r.s.Offset {
		replay, recovered = r.s.History.Since(rec.Offset)
		if !recovered && cr != nil {
			replay, recovered = cr.merge(rec.Offset, &r.s.History, r.s.Offset)
		}
	}
	var expiresAt *time.Time
	if id := c.identity; id != nil && !id.expires.IsZero() {
		expiresAt = &id.expires
	}
	h.reply(c, protocol.TypeSessionJoined, ref, protocol.SessionJoined{
		SessionID:    r.s.ID,
		SelfID:       c.userID,
		Participants: r.s.Wire(),
		Epoch:        r.s.Epoch,
		Offset:       r.s.Offset,
		Recovered:    recovered,
		ExpiresAt:    expiresAt,
	})
	if len(replay) == 0 {
		return recovered
	}
	// The replay may be longer than the send queue: it gets room of its own
	// on top, kept until the backlog it makes has drained.
	c.replayRoom = len(replay)
	joiner := []*conn{c}
	n := 0
	for _, e := range replay {
		ev := event{typ: protocol.TypeBroadcast, b: e.Data}
		selected, _ := h.fanout(joiner, r.s, &ev, recipients{to: e.To})
		n += selected
	}
	c.replayRoom = len(c.backlog)
	h.metrics.replayed.Add(float64(n))
	return recovered
}

// detach takes c out of its room; when it was its user's last connection
// the user leaves after grace (at once for 0).
func (h *Hub) detach(c *conn, grace time.Duration, now time.Time) {
	r := c.room
	r.remove(c)
	c.room = nil
	c.markRoom()
	if h.peers.detach(r, c.userID, grace) {
		return // the cluster decides; the leave reaches this node like any other
	}
	if p, left := r.s.Detach(c.userID, now, grace); left {
		h.announceLeft(r, p, true)
	}
	h.peers.release(r)
}

// announceLeft tells r's connections that p left. When decided, this node
// decided the leave: it is counted here, and the other nodes are told (in
// a cluster that reaches Redis, the broker decides and counts: broker.left).
func (h *Hub) announceLeft(r *room, p *session.Participant, decided bool) {
	if decided {
		h.metrics.participantLeft(p.JoinedAt, time.Now())
	}
	h.peers.decodeCursors(r)
	u := p.Wire()
	diff := event{typ: protocol.TypeUserLeft, data: protocol.UserLeft{UserID: u.UserID, User: u}}
	full := event{typ: protocol.TypeUserLeft, diff: &diff, lazy: func() any {
		list := r.s.Wire()
		return protocol.UserLeft{UserID: u.UserID, User: u, Participants: &list}
	}}
	h.toRoom(r, &full, recipients{})
	if decided {
		h.peers.userLeft(r, p)
	}
}

// activityChanged tells r's connections but userID's, and the other
// nodes, that userID became active or inactive.
func (h *Hub) activityChanged(r *room, userID string, active bool) {
	ev := event{typ: protocol.TypeUserActivityChanged, data: protocol.UserActivityChanged{UserID: userID, IsActive: active}}
	h.toRoom(r, &ev, recipients{skipUser: userID})
	h.peers.activityChanged(r, userID, ev)
}

// clientBroadcast is a client's broadcast on its way to its offset
// (peers.broadcast): from c, in room, answered with ref.
type clientBroadcast struct {
	c    *conn
	ref  string
	room *room
	b    *protocol.Broadcast
	now  time.Time
}

// broadcast delivers a client's app event to those it is addressed to,
// and acks it when the client gave a ref (answerBroadcast, once the peers
// gave it its offset).
func (h *Hub) broadcast(c *conn, ref string, b *protocol.Broadcast, now time.Time) {
	h.touch(c.room, c.userID, now)
	h.peers.broadcast(&clientBroadcast{c: c, ref: ref, room: c.room, b: b, now: now})
}

// answerBroadcast answers a client's broadcast: its error, or, when the
// client gave a ref, an ack with its offset.
func (h *Hub) answerBroadcast(cb *clientBroadcast, off int64, err error) {
	if err != nil {
		h.replyError(cb.c, cb.ref, err)
		return
	}
	if cb.ref != "" {
		h.reply(cb.c, protocol.TypeAck, cb.ref, protocol.Ack{Offset: off})
	}
}

// publishLocal gives an app event the session's next offset, stamps it
// with from and now, and delivers it to the connections it is addressed to
// but skip (the sender's own connection; nil for the server). It returns
// the offset. In a cluster that cannot reach Redis, the offset is the
// node's own (Redis skips it when it is back) and only this node's
// members get the event.
func (h *Hub) publishLocal(r *room, from string, skip *conn, b *protocol.Broadcast, now time.Time) (int64, error) {
	ev := protocol.BroadcastEvent{Event: b.Event, From: from, Payload: b.Payload, Offset: r.s.Offset + 1, Ts: now.UnixMilli()}
	data, err := protocol.Encode(protocol.TypeBroadcast, "", ev)
	if err != nil { // the payload was valid JSON when decoded
		return 0, err
	}
	r.s.Offset = ev.Offset
	r.s.History.Append(session.Event{Offset: ev.Offset, At: now, To: b.To, Data: data}, now)
	rs := recipients{to: b.To}
	if skip != nil {
		rs.skipConn = skip.id
	}
	h.toRoom(r, &event{typ: protocol.TypeBroadcast, b: data}, rs)
	return ev.Offset, nil
}

// addressed reports whether a broadcast to reaches p.
func addressed(p *session.Participant, to string) bool {
	switch to {
	case protocol.ToAll, "":
		return true
	case protocol.ToInstructors:
		return p.Role == protocol.RoleInstructor
	case protocol.ToLearners:
		return p.Role == protocol.RoleLearner
	}
	return p.UserID == to
}

// remove takes userID out of session id at once (the server API): its
// connections there are closed with 4003 and the others see it leave
// (decided: this node decided it, as announceLeft's). It reports whether
// the user was there.
func (h *Hub) remove(id, userID string, now time.Time, decided bool) bool {
	r := h.rooms[id]
	if r == nil || r.s.Get(userID) == nil {
		return false
	}
	closeUser(r, userID)
	if p, ok := r.s.Remove(userID, now); ok {
		h.announceLeft(r, p, decided)
	}
	return true
}

// closeUser closes the connections of userID in r with 4003 and takes
// them out of r; it reports whether there were any.
func closeUser(r *room, userID string) bool {
	found := false
	for i := len(r.conns) - 1; i >= 0; i-- {
		if c := r.conns[i]; c.userID == userID {
			c.kill(closeRemoved)
			c.ended = true
			r.remove(c)
			c.room = nil
			c.markRoom()
			found = true
		}
	}
	return found
}

// depart handles the end of a connection.
func (h *Hub) depart(c *conn, clean bool) {
	c.ended = true
	grace := h.opts.LeaveGrace
	if clean {
		grace = 0
	}
	if c.joining != nil {
		c.joining.departGrace = grace // for when the join it waits for ends
		return
	}
	if c.room == nil {
		return
	}
	h.detach(c, grace, time.Now())
}

// reap detaches the connections dropped during the last step (slow
// consumers); their users leave after the grace.
func (h *Hub) reap() {
	for len(h.toDetach) > 0 {
		c := h.toDetach[len(h.toDetach)-1]
		h.toDetach = h.toDetach[:len(h.toDetach)-1]
		if c.room != nil {
			h.detach(c, h.opts.LeaveGrace, time.Now())
		}
	}
}

// sweep ends the leave graces that are over, marks idle participants
// inactive, drops the sessions peers.expire lets go, and sets the gauges.
func (h *Hub) sweep(now time.Time) {
	participants, events, bytes := 0, 0, 0
	for _, r := range h.rooms {
		for _, p := range r.s.Expire(now) {
			h.announceLeft(r, p, true)
		}
		for _, p := range r.s.Idle(now, h.opts.IdleAfter) {
			h.activityChanged(r, p.UserID, false)
		}
		if h.peers.expire(r, now) {
			continue // dropped
		}
		r.s.History.Trim(now)
		participants += r.s.Len()
		events += r.s.History.Len()
		bytes += r.s.History.Bytes()
	}
	h.metrics.sessions.Set(float64(len(h.rooms)))
	h.metrics.participants.Set(float64(participants))
	h.metrics.historyEvents.Set(float64(events))
	h.metrics.historyBytes.Set(float64(bytes))
}

// deliver queues b for c without blocking: on its send channel while that
// has room and no backlog is waiting, else on the backlog, which run
// allocates only while c falls behind and hands to the channel when the
// writer has drained it (wake). A connection whose send queue (channel and
// backlog) holds Options.SendQueue messages is dropped as a slow consumer.
// It reports whether b was queued; one that was not is counted in
// sessionhub_dropped_messages_total, and must not be counted as sent.
func (h *Hub) deliver(c *conn, b []byte) bool { return h.queue(c, b, false) }

// queue is deliver; refused marks a rate_limited reply, with which (or
// while its reader refuses a flood) an overflowing queue is closed for
// rate abuse (1008) rather than as a slow consumer (1013).
func (h *Hub) queue(c *conn, b []byte, refused bool) bool {
	if c.ended {
		h.metrics.droppedGone.Inc()
		return false
	}
	// The first message queued since the writer's last frame marks when
	// its event entered the hub (run is the only one to set a mark, the
	// writer the only one to clear it). Set before the message is on
	// send, so that the frame that carries it, or an earlier one, takes
	// the mark.
	if c.mark.Load() == 0 {
		c.mark.Store(h.eventMark)
	}
	if len(c.backlog) == 0 {
		select {
		case c.send <- b:
			h.queued(c)
			return true
		default:
		}
		// Raise the flag, then try once more: either the writer made room
		// meanwhile, or it will see the flag when it empties the channel.
		c.backlogged.Store(true)
		select {
		case c.send <- b:
			c.backlogged.Store(false)
			h.queued(c)
			return true
		default:
		}
		// A full channel has a writer, or gets one, delay or not.
		c.flushDue.Store(c.delay)
		c.startWriter()
	}
	if cap(c.send)+len(c.backlog) >= h.opts.SendQueue+c.replayRoom {
		h.metrics.droppedQueued.Inc()
		if refused || c.flooding(time.Now()) {
			c.kill(closeRateAbuse)
		} else {
			h.metrics.slowConsumers.Inc()
			c.kill(closeSlowConsumer)
		}
		c.ended = true
		c.backlog = nil
		c.queued.Store(0)
		h.toDetach = append(h.toDetach, c)
		return false
	}
	c.backlog = append(c.backlog, b)
	c.queued.Store(int32(len(c.backlog)))
	return true
}

// queued gets c's writer going for what deliver just put on its send
// channel: at once, or, on a delay connection, when the delay of the first
// message waiting ends (flushDelayed) or the channel is full.
func (h *Hub) queued(c *conn) {
	switch {
	case !c.delay:
		c.startWriter()
	case len(c.send) == cap(c.send):
		c.flushDue.Store(true)
		c.startWriter()
	case !c.delayed:
		c.delayed = true
		h.delayQ = append(h.delayQ, delayedConn{c: c, due: time.Now().Add(h.delay)})
		if !h.delayArmed {
			h.delayArmed = true
			h.delayTimer.Reset(h.delay)
		}
	}
}

// flushDelayed runs when the delay timer fires at now: the connections due
// by then are handed to the flusher, which writes their frames, and with
// them those due within a quarter of the delay (early rather than one more
// wake-up each), so that a message waits between three quarters of the
// delay and the delay. The timer is
// re-armed for the next one, if any.
func (h *Hub) flushDelayed(now time.Time) {
	horizon := now.Add(h.delay / 4)
	q := h.delayQ
	i := h.delayHead
	f := h.flusher
	f.mu.Lock()
	for ; i < len(q) && !q[i].due.After(horizon); i++ {
		c := q[i].c
		q[i] = delayedConn{}
		c.delayed = false
		if c.ended {
			continue
		}
		c.flushDue.Store(true)
		switch {
		case c.out == nil: // not a WebSocket's: its own writer
			c.startWriter()
		case c.writer.Load() == writerIdle && c.writer.CompareAndSwap(writerIdle, writerRunning):
			f.hand(c)
		}
		// A writer that runs already (or the flusher, which has c) sees
		// flushDue.
	}
	f.mu.Unlock()
	f.wake()
	if i == len(q) {
		h.delayQ, h.delayHead, h.delayArmed = q[:0], 0, false
		return
	}
	if i > len(q)/2 { // keep the queue's array from growing without end
		n := copy(q, q[i:])
		clear(q[n:])
		q, i = q[:n], 0
	}
	h.delayQ, h.delayHead = q, i
	h.delayTimer.Reset(q[i].due.Sub(now))
}

// flushBacklog moves what fits of c's backlog to its send channel, and
// releases the backlog once it is empty.
func (h *Hub) flushBacklog(c *conn) {
	if c.ended || len(c.backlog) == 0 {
		return
	}
	n := 0
move:
	for ; n < len(c.backlog); n++ {
		select {
		case c.send <- c.backlog[n]:
		default:
			break move
		}
	}
	c.flushDue.Store(c.delay) // what waited in the backlog is due
	c.startWriter()
	if n == len(c.backlog) {
		c.backlog = nil
		c.replayRoom = 0
		c.queued.Store(0)
		c.backlogged.Store(false)
		// A writer that emptied the channel after the last move saw the
		// flag still up and will wake run again: harmless.
		return
	}
	clear(c.backlog[:n])
	c.backlog = c.backlog[n:]
	c.queued.Store(int32(len(c.backlog)))
}

// reply queues an answer of c's own: data encoded as typ with ref, or,
// if that fails (logged), an error with ref.
func (h *Hub) reply(c *conn, typ, ref string, data any) {
	b, err := h.encode(typ, ref, data)
	if err != nil {
		b = protocol.EncodeError(ref, err)
	}
	if h.deliver(c, b) {
		h.metrics.out(typ, 1)
	}
}

// replyError queues err for c, with ref.
func (h *Hub) replyError(c *conn, ref string, err error) {
	if h.deliver(c, protocol.EncodeError(ref, err)) {
		h.metrics.out(protocol.TypeError, 1)
	}
}
