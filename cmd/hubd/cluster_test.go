package main

// End-to-end tests of cluster mode (the contract's "Cluster" section): three
// real hubd processes (this test binary run as hubd, see proc_test.go) on one
// real redis-server, with clients of both kinds: the project's Go client and
// raw WebSockets, which see every message as the hub sent it (the Go client
// hands each broadcast offset to the application once, which would hide a
// duplicate).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sessionhub/sessionhub/client"
	"github.com/sessionhub/sessionhub/internal/redistest"
	"github.com/sessionhub/sessionhub/protocol"
)

// Timings of the test cluster, short so that the tests run in seconds.
const (
	clHeartbeat = 200 * time.Millisecond
	clGrace     = 400 * time.Millisecond
	// clSlack is added to every bound the contract states in heartbeats
	// and leave graces: scheduling, the race detector, the hub's sweep tick.
	clSlack = time.Second
	// clWait bounds the waits for replies and for deliveries that the
	// contract does not time (a Redis round trip or two).
	clWait = 5 * time.Second
	// clConverge bounds the convergence of participant lists after joins:
	// "normally within a Redis round trip, at worst within one heartbeat".
	clConverge = 3*clHeartbeat + clSlack
)

// testCluster is a redis-server and three hubd nodes using it.
type testCluster struct {
	redis *redistest.Server
	nodes []*hubProc
}

// startCluster starts Redis and three hubd nodes, node1 to node3, with
// heartbeat beat and leave grace clGrace, and waits until each answers
// /readyz with 200.
func startCluster(t *testing.T, beat time.Duration) *testCluster {
	t.Helper()
	return startClusterGrace(t, beat, clGrace)
}

// startClusterGrace is startCluster with the leave grace grace.
func startClusterGrace(t *testing.T, beat, grace time.Duration) *testCluster {
	t.Helper()
	c := &testCluster{redis: redistest.Start(t)}
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("node%d", i)
		c.nodes = append(c.nodes, startHubProc(t, id,
			"--redis-url", c.redis.URL(),
			"--node-heartbeat", beat.String(),
			"--leave-grace", grace.String(),
			"--node-id", id,
			"--shutdown-timeout", "5s"))
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range c.nodes {
		n.waitReadyz(t, http.StatusOK, deadline)
	}
	return c
}

// rec is one thing a peer received, with when it came.
type rec struct {
	at  time.Time
	ref string // the envelope's ref (raw peers only)
	ev  any    // a client.Event, *ackRec, *pongRec or *closeRec
}

type ackRec struct{ offset int64 }
type pongRec struct{}

// closeRec is the end of a raw peer's connection.
type closeRec struct {
	code websocket.StatusCode // -1 when there was no close frame
	err  error
}

// peer is one client connection: a Go client (c) or a raw WebSocket (ws).
// Everything it receives is recorded in order, with its arrival time.
type peer struct {
	t    *testing.T
	name string // userId@node
	node *hubProc
	info protocol.UserInfo

	c *client.Client

	ws     *websocket.Conn
	cancel context.CancelFunc
	refs   atomic.Int64

	mu      sync.Mutex
	recs    []rec
	changed chan struct{} // closed and replaced at every new rec
	done    chan struct{} // closed when the reading goroutine returned
}

func learner(userID string) protocol.UserInfo {
	return protocol.UserInfo{UserID: userID, Name: "User " + userID, Role: protocol.RoleLearner}
}

func newPeer(t *testing.T, n *hubProc, info protocol.UserInfo) *peer {
	return &peer{t: t, name: info.UserID + "@" + n.id, node: n, info: info,
		changed: make(chan struct{}), done: make(chan struct{})}
}

// goPeer connects a Go client to node n, without automatic reconnection
// (the tests decide where a user comes back).
func goPeer(t *testing.T, n *hubProc, info protocol.UserInfo) *peer {
	t.Helper()
	p := newPeer(t, n, info)
	ctx, cancel := context.WithTimeout(context.Background(), clWait)
	defer cancel()
	c, err := client.Dial(ctx, n.wsURL(), &client.Options{
		ConnectTimeout: clWait,
		Reconnect:      &client.ReconnectPolicy{MaxAttempts: -1},
	})
	if err != nil {
		t.Fatalf("%s: dial: %v", p.name, err)
	}
	p.c = c
	go func() {
		defer close(p.done)
		for e := range c.Events() {
			p.add(rec{ev: e})
		}
	}()
	t.Cleanup(func() {
		c.Close()
		<-p.done
	})
	return p
}

// rawDialer makes one connection per upgrade, so that no idle HTTP
// connection outlives a test.
var rawDialer = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// rawPeer connects a raw WebSocket (no batching: one message per frame) to
// node n.
func rawPeer(t *testing.T, n *hubProc, info protocol.UserInfo) *peer {
	t.Helper()
	p := newPeer(t, n, info)
	ctx, cancel := context.WithTimeout(context.Background(), clWait)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, n.wsURL(), &websocket.DialOptions{HTTPClient: rawDialer})
	if err != nil {
		t.Fatalf("%s: dial: %v", p.name, err)
	}
	ws.SetReadLimit(64 << 20)
	p.ws = ws
	var rctx context.Context
	rctx, p.cancel = context.WithCancel(context.Background())
	go p.readRaw(rctx)
	t.Cleanup(func() {
		p.cancel()
		ws.CloseNow()
		<-p.done
	})
	return p
}

// readRaw records the raw peer's messages, as the Go client's event types,
// until its connection ends.
func (p *peer) readRaw(ctx context.Context) {
	defer close(p.done)
	for {
		typ, b, err := p.ws.Read(ctx)
		if err != nil {
			p.add(rec{ev: &closeRec{code: websocket.CloseStatus(err), err: err}})
			return
		}
		if typ != websocket.MessageText {
			p.t.Errorf("%s: a binary frame from the hub", p.name)
			continue
		}
		var env protocol.Envelope
		if err := json.Unmarshal(b, &env); err != nil {
			p.t.Errorf("%s: a frame that is not one JSON message: %q", p.name, b)
			continue
		}
		var ev any
		switch env.Type {
		case protocol.TypeSessionJoined:
			ev = &client.SessionJoined{}
		case protocol.TypeSessionLeft:
			ev = &client.SessionLeft{}
		case protocol.TypeUserJoined:
			ev = &client.UserJoined{}
		case protocol.TypeUserLeft:
			ev = &client.UserLeft{}
		case protocol.TypeCursorMoved:
			ev = &client.CursorMoved{}
		case protocol.TypeUserActivityChanged:
			ev = &client.UserActivityChanged{}
		case protocol.TypeBroadcast:
			ev = &client.BroadcastEvent{}
		case protocol.TypeAck:
			ev = &protocol.Ack{}
		case protocol.TypeError:
			ev = &protocol.ErrorPayload{}
		case protocol.TypePong:
			p.add(rec{ref: env.Ref, ev: &pongRec{}})
			continue
		default:
			p.t.Errorf("%s: unknown message type %q: %s", p.name, env.Type, b)
			continue
		}
		// The client's event types embed the protocol payloads, so they
		// decode as them.
		if err := json.Unmarshal(env.Data, ev); err != nil {
			p.t.Errorf("%s: cannot decode %s: %v", p.name, b, err)
			continue
		}
		switch e := ev.(type) {
		case *protocol.Ack:
			ev = &ackRec{offset: e.Offset}
		case *protocol.ErrorPayload:
			ev = &client.ErrorEvent{Code: e.Code, Message: e.Message, Ref: env.Ref}
		}
		p.add(rec{ref: env.Ref, ev: ev})
	}
}

func (p *peer) add(r rec) {
	r.at = time.Now()
	p.mu.Lock()
	p.recs = append(p.recs, r)
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// snapshot is what p received so far.
func (p *peer) snapshot() []rec {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.recs)
}

// await waits until cond holds of what p received and returns that and
// true, or what p received and false at deadline.
func (p *peer) await(deadline time.Time, cond func([]rec) bool) ([]rec, bool) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		p.mu.Lock()
		recs, changed := slices.Clone(p.recs), p.changed
		p.mu.Unlock()
		if cond(recs) {
			return recs, true
		}
		select {
		case <-changed:
		case <-timer.C:
			recs := p.snapshot()
			return recs, cond(recs)
		}
	}
}

// waitFor waits until cond holds of what p received and returns that, or
// fails the test at deadline.
func (p *peer) waitFor(deadline time.Time, what string, cond func([]rec) bool) []rec {
	p.t.Helper()
	recs, ok := p.await(deadline, cond)
	if !ok {
		p.t.Fatalf("%s: no %s by the deadline; it received:\n%s", p.name, what, describeAll(recs))
	}
	return recs
}

// waitEvent waits until p has received an event that is a T for which ok
// holds, and returns the first such.
func waitEvent[T any](p *peer, deadline time.Time, what string, ok func(T) bool) rec {
	p.t.Helper()
	var found rec
	p.waitFor(deadline, what, func(rs []rec) bool {
		for _, r := range rs {
			if v, is := r.ev.(T); is && ok(v) {
				found = r
				return true
			}
		}
		return false
	})
	return found
}

func (p *peer) nextRef() string { return "r" + strconv.FormatInt(p.refs.Add(1), 10) }

// write sends one message on a raw peer.
func (p *peer) write(typ, ref string, data any) {
	p.t.Helper()
	b, err := protocol.Encode(typ, ref, data)
	if err != nil {
		p.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), clWait)
	defer cancel()
	if err := p.ws.Write(ctx, websocket.MessageText, b); err != nil {
		p.t.Fatalf("%s: write %s: %v", p.name, typ, err)
	}
}

// reply waits for the raw peer's reply to ref and returns it.
func (p *peer) reply(ref, what string) any {
	p.t.Helper()
	var ev any
	p.waitFor(time.Now().Add(clWait), what+" (ref "+ref+")", func(rs []rec) bool {
		for _, r := range rs {
			if r.ref == ref {
				ev = r.ev
				return true
			}
		}
		return false
	})
	if e, ok := ev.(*client.ErrorEvent); ok {
		p.t.Fatalf("%s: %s refused: %s", p.name, what, e)
	}
	return ev
}

// join joins session sid in full presence (a raw peer may recover) and
// returns session-joined.
func (p *peer) join(sid string, recover *protocol.Recover) *protocol.SessionJoined {
	p.t.Helper()
	var sj *protocol.SessionJoined
	if p.c != nil {
		if recover != nil {
			p.t.Fatal("join with recover needs a raw peer")
		}
		ctx, cancel := context.WithTimeout(context.Background(), clWait)
		defer cancel()
		var err error
		if sj, err = p.c.Join(ctx, sid, p.info, client.WithPresence(protocol.PresenceFull)); err != nil {
			p.t.Fatalf("%s: join %s: %v", p.name, sid, err)
		}
	} else {
		ref := p.nextRef()
		p.write(protocol.TypeJoinSession, ref, protocol.JoinSession{SessionID: sid, UserInfo: p.info,
			Presence: protocol.PresenceFull, Recover: recover})
		j, ok := p.reply(ref, "session-joined").(*client.SessionJoined)
		if !ok {
			p.t.Fatalf("%s: join answered with something else than session-joined:\n%s", p.name, describeAll(p.snapshot()))
		}
		sj = &j.SessionJoined
	}
	if sj.SelfID != p.info.UserID || sj.SessionID != sid {
		p.t.Fatalf("%s: session-joined %+v, want selfId %s in %s", p.name, sj, p.info.UserID, sid)
	}
	if !slices.ContainsFunc(sj.Participants, func(q protocol.Participant) bool { return q.UserID == p.info.UserID }) {
		p.t.Errorf("%s: session-joined's participants %v lack the joining user", p.name, userIDs(sj.Participants))
	}
	return sj
}

// cursor sends a cursor-update.
func (p *peer) cursor(cur protocol.Cursor) {
	p.t.Helper()
	if p.c != nil {
		ctx, cancel := context.WithTimeout(context.Background(), clWait)
		defer cancel()
		if err := p.c.UpdateCursor(ctx, cur); err != nil {
			p.t.Fatalf("%s: cursor-update: %v", p.name, err)
		}
		return
	}
	p.write(protocol.TypeCursorUpdate, "", cur)
}

// broadcast sends a broadcast and returns the offset of its ack.
func (p *peer) broadcast(event string, payload any, to string) int64 {
	p.t.Helper()
	if p.c != nil {
		ctx, cancel := context.WithTimeout(context.Background(), clWait)
		defer cancel()
		off, err := p.c.Broadcast(ctx, event, payload, to)
		if err != nil {
			p.t.Fatalf("%s: broadcast %s: %v", p.name, event, err)
		}
		return off
	}
	raw, err := json.Marshal(payload)
	if err != nil {
		p.t.Fatal(err)
	}
	ref := p.nextRef()
	p.write(protocol.TypeBroadcast, ref, protocol.Broadcast{Event: event, Payload: raw, To: to})
	a, ok := p.reply(ref, "ack of "+event).(*ackRec)
	if !ok {
		p.t.Fatalf("%s: broadcast %s answered with something else than ack:\n%s", p.name, event, describeAll(p.snapshot()))
	}
	return a.offset
}

// closeClean closes the connection with 1000, as a closing tab does.
func (p *peer) closeClean() {
	p.t.Helper()
	if p.c != nil {
		p.c.Close()
		return
	}
	if err := p.ws.Close(websocket.StatusNormalClosure, ""); err != nil {
		p.t.Logf("%s: close: %v", p.name, err)
	}
}

// drop ends a raw peer's connection without a close frame.
func (p *peer) drop() {
	if p.ws == nil {
		p.t.Fatal("drop needs a raw peer")
	}
	p.ws.CloseNow()
	<-p.done
}

// closeCode is the close code that ended p's connection, if it ended.
func closeCode(rs []rec) (websocket.StatusCode, bool) {
	for _, r := range rs {
		switch e := r.ev.(type) {
		case *closeRec:
			return e.code, true
		case *client.StateChange:
			var ce *client.CloseError
			if e.To == client.Disconnected && errors.As(e.Err, &ce) {
				return websocket.StatusCode(ce.Code), true
			}
		}
	}
	return 0, false
}

// members is p's participant list as its events built it, in two ways:
// list is the last full list (session-joined, and user-joined and user-left
// in full presence), applied is the first list with each join and leave
// applied to it. They agree when the hub is consistent.
func members(rs []rec) (list, applied map[string]bool) {
	set := func(ps []protocol.Participant) map[string]bool {
		m := map[string]bool{}
		for _, q := range ps {
			m[q.UserID] = true
		}
		return m
	}
	for _, r := range rs {
		switch e := r.ev.(type) {
		case *client.SessionJoined:
			list, applied = set(e.Participants), set(e.Participants)
		case *client.Rejoined:
			list, applied = set(e.Participants), set(e.Participants)
		case *client.UserJoined:
			if applied != nil {
				applied[e.User.UserID] = true
			}
			if e.Participants != nil {
				list = set(e.Participants)
			}
		case *client.UserLeft:
			if applied != nil {
				delete(applied, e.UserID)
			}
			if e.Participants != nil {
				list = set(*e.Participants)
			}
		}
	}
	return list, applied
}

// hasMembers is the condition that p's list, both ways, is exactly want.
func hasMembers(want ...string) func([]rec) bool {
	w := slices.Sorted(slices.Values(want))
	return func(rs []rec) bool {
		list, applied := members(rs)
		return slices.Equal(slices.Sorted(maps.Keys(list)), w) && slices.Equal(slices.Sorted(maps.Keys(applied)), w)
	}
}

// waitMembers waits until the participant list of every peer is exactly
// want.
func waitMembers(deadline time.Time, peers []*peer, want ...string) {
	for _, p := range peers {
		p.t.Helper()
		p.waitFor(deadline, fmt.Sprintf("participant list %v", want), hasMembers(want...))
	}
}

// count counts the recs of rs for which ok holds.
func count[T any](rs []rec, ok func(T) bool) int {
	n := 0
	for _, r := range rs {
		if v, is := r.ev.(T); is && ok(v) {
			n++
		}
	}
	return n
}

func leftOf(uid string) func(*client.UserLeft) bool {
	return func(e *client.UserLeft) bool { return e.UserID == uid }
}

func joinedOf(uid string) func(*client.UserJoined) bool {
	return func(e *client.UserJoined) bool { return e.User.UserID == uid }
}

func broadcastAt(off int64) func(*client.BroadcastEvent) bool {
	return func(e *client.BroadcastEvent) bool { return e.Offset == off }
}

// since keeps the recs that came at or after t0.
func since(rs []rec, t0 time.Time) []rec {
	var out []rec
	for _, r := range rs {
		if !r.at.Before(t0) {
			out = append(out, r)
		}
	}
	return out
}

// observe lets d pass: the window in which something that must not happen
// (a leave, a second join) would show up. Positive conditions are waited
// for with waitFor, never with observe.
func observe(d time.Duration) { time.Sleep(d) }

func userIDs(ps []protocol.Participant) []string {
	var s []string
	for _, q := range ps {
		s = append(s, q.UserID)
	}
	return s
}

func ids(peers ...*peer) []string {
	var s []string
	for _, p := range peers {
		s = append(s, p.info.UserID)
	}
	return s
}

func describe(ev any) string {
	switch e := ev.(type) {
	case *client.SessionJoined:
		return fmt.Sprintf("session-joined %s self=%s participants=%v epoch=%s offset=%d recovered=%v",
			e.SessionID, e.SelfID, userIDs(e.Participants), e.Epoch, e.Offset, e.Recovered)
	case *client.Rejoined:
		return fmt.Sprintf("rejoined participants=%v epoch=%s offset=%d recovered=%v", userIDs(e.Participants), e.Epoch, e.Offset, e.Recovered)
	case *client.UserJoined:
		return fmt.Sprintf("user-joined %s participants=%v", e.User.UserID, userIDs(e.Participants))
	case *client.UserLeft:
		var ps []string
		if e.Participants != nil {
			ps = userIDs(*e.Participants)
		}
		return fmt.Sprintf("user-left %s participants=%v", e.UserID, ps)
	case *client.CursorMoved:
		return fmt.Sprintf("cursor-moved %s %+v", e.UserID, e.Cursor)
	case *client.UserActivityChanged:
		return fmt.Sprintf("user-activity-changed %s %v", e.UserID, e.IsActive)
	case *client.BroadcastEvent:
		return fmt.Sprintf("broadcast %s from=%s offset=%d payload=%s", e.Event, e.From, e.Offset, e.Payload)
	case *ackRec:
		return fmt.Sprintf("ack %d", e.offset)
	case *closeRec:
		return fmt.Sprintf("closed %d (%v)", e.code, e.err)
	case fmt.Stringer:
		return e.String()
	}
	return fmt.Sprintf("%T %+v", ev, ev)
}

func describeAll(rs []rec) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "  %s", r.at.Format("15:04:05.000"))
		if r.ref != "" {
			fmt.Fprintf(&b, " [%s]", r.ref)
		}
		fmt.Fprintf(&b, " %s\n", describe(r.ev))
	}
	return b.String()
}

// sameJSON reports whether a and b are the same JSON value.
func sameJSON(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

// TestClusterSpread: users spread over three nodes share one participant
// list, each other's cursors and broadcasts with shared offsets; two tabs of
// one user on two nodes are one participant.
func TestClusterSpread(t *testing.T) {
	cl := startCluster(t, clHeartbeat)
	n1, n2, n3 := cl.nodes[0], cl.nodes[1], cl.nodes[2]
	const sid = "spread"
	u1, u2 := goPeer(t, n1, learner("u1")), rawPeer(t, n1, learner("u2"))
	u3, u4 := rawPeer(t, n2, learner("u3")), goPeer(t, n2, learner("u4"))
	u5, u6 := goPeer(t, n3, learner("u5")), rawPeer(t, n3, learner("u6"))
	users := []*peer{u1, u2, u3, u4, u5, u6}
	for _, p := range users {
		p.join(sid, nil)
	}
	all := ids(users...)
	waitMembers(time.Now().Add(clConverge), users, all...)

	// A cursor from node1 reaches node1, node2 and node3.
	cur := protocol.Cursor{Line: 12, Column: 4, File: "src/main.go",
		Selection: &protocol.Selection{Start: protocol.Position{Line: 12, Column: 0}, End: protocol.Position{Line: 12, Column: 4}}}
	u1.cursor(cur)
	deadline := time.Now().Add(clWait)
	for _, p := range users[1:] {
		waitEvent(p, deadline, "cursor-moved of u1 at 12:4", func(e *client.CursorMoved) bool {
			return e.UserID == "u1" && reflect.DeepEqual(e.Cursor, cur)
		})
	}

	// A broadcast from node3 reaches everyone else, with the offset of the
	// sender's ack; the next one, from node1, gets the next offset.
	off := u6.broadcast("hello", map[string]any{"text": "hi", "n": 1}, "")
	if off < 1 {
		t.Fatalf("ack offset %d, want ≥ 1", off)
	}
	for _, p := range users[:5] {
		r := waitEvent(p, deadline, fmt.Sprintf("broadcast at offset %d", off), broadcastAt(off))
		e := r.ev.(*client.BroadcastEvent)
		if e.Event != "hello" || e.From != "u6" || !sameJSON(e.Payload, []byte(`{"text":"hi","n":1}`)) {
			t.Errorf("%s got %s, want hello from u6 with the payload sent", p.name, describe(e))
		}
	}
	off2 := u2.broadcast("again", []int{1, 2}, "")
	if off2 != off+1 {
		t.Errorf("the broadcast from node1 after the one from node3 (offset %d) got offset %d, want %d", off, off2, off+1)
	}
	for _, p := range []*peer{u1, u3, u4, u5, u6} {
		waitEvent(p, deadline, fmt.Sprintf("broadcast at offset %d", off2), broadcastAt(off2))
	}
	for _, p := range users {
		rs := p.snapshot()
		for _, o := range []int64{off, off2} {
			n := count(rs, broadcastAt(o))
			sender := (o == off && p == u6) || (o == off2 && p == u2)
			if want := map[bool]int{true: 0, false: 1}[sender]; n != want {
				t.Errorf("%s received the broadcast at offset %d %d times, want %d:\n%s", p.name, o, n, want, describeAll(rs))
			}
		}
		if n := count(rs, func(e *client.CursorMoved) bool { return e.UserID == p.info.UserID }); n != 0 {
			t.Errorf("%s got its own cursor back", p.name)
		}
	}

	// Two tabs of user t, on node1 and node2, are one participant.
	tab1, tab2 := rawPeer(t, n1, learner("t")), goPeer(t, n2, learner("t"))
	tab1.join(sid, nil)
	deadline = time.Now().Add(clWait)
	for _, p := range users {
		waitEvent(p, deadline, "user-joined of t", joinedOf("t"))
	}
	sj := tab2.join(sid, nil)
	if got, want := slices.Sorted(slices.Values(userIDs(sj.Participants))), slices.Sorted(slices.Values(append(ids(users...), "t"))); !slices.Equal(got, want) {
		t.Errorf("the second tab's session-joined lists %v, want the 6 users and t once", userIDs(sj.Participants))
	}
	// A broadcast sent after the second tab joined, once everyone has it,
	// and a heartbeat or two, would have brought a second user-joined.
	mark := u3.broadcast("mark", nil, "")
	deadline = time.Now().Add(clWait)
	for _, p := range append([]*peer{tab1, tab2}, users...) {
		if p != u3 {
			waitEvent(p, deadline, "the mark broadcast", broadcastAt(mark))
		}
	}
	observe(2 * clHeartbeat)
	for _, p := range users {
		if n := count(p.snapshot(), joinedOf("t")); n != 1 {
			t.Errorf("%s saw t join %d times, want once (two tabs are one participant):\n%s", p.name, n, describeAll(p.snapshot()))
		}
	}
	waitMembers(time.Now().Add(clConverge), users, append(all, "t")...)

	// Closing one tab cleanly does not make t leave, not even after a leave
	// grace; closing the second does, at once.
	tab1.closeClean()
	mark = u4.broadcast("mark2", nil, "")
	deadline = time.Now().Add(clWait)
	for _, p := range users {
		if p != u4 {
			waitEvent(p, deadline, "the mark2 broadcast", broadcastAt(mark))
		}
	}
	observe(clGrace + 2*clHeartbeat)
	for _, p := range users {
		if n := count(p.snapshot(), leftOf("t")); n != 0 {
			t.Errorf("%s saw t leave while its tab on node2 is open:\n%s", p.name, describeAll(p.snapshot()))
		}
	}
	waitMembers(time.Now(), users, append(all, "t")...)
	// "At once": well before a leave grace would have ended.
	closed := time.Now()
	tab2.closeClean()
	deadline = closed.Add(clGrace * 3 / 4)
	for _, p := range users {
		r := waitEvent(p, deadline, "user-left of t (its last tab closed cleanly)", leftOf("t"))
		t.Logf("%s: user-left of t %v after its last tab closed", p.name, r.at.Sub(closed).Round(time.Millisecond))
	}
	waitMembers(time.Now().Add(clConverge), users, all...)
}

// TestClusterNodeKilled: a node killed with SIGKILL has its users removed
// from the lists of the other nodes, with user-left, within 3 heartbeats
// plus the leave grace; the others stay.
func TestClusterNodeKilled(t *testing.T) {
	cl := startCluster(t, clHeartbeat)
	n1, n2, n3 := cl.nodes[0], cl.nodes[1], cl.nodes[2]
	const sid = "killed"
	u1, u2 := goPeer(t, n1, learner("u1")), rawPeer(t, n1, learner("u2"))
	u3, u4 := rawPeer(t, n2, learner("u3")), goPeer(t, n2, learner("u4"))
	u5, u6 := rawPeer(t, n3, learner("u5")), goPeer(t, n3, learner("u6"))
	users := []*peer{u1, u2, u3, u4, u5, u6}
	for _, p := range users {
		p.join(sid, nil)
	}
	waitMembers(time.Now().Add(clConverge), users, ids(users...)...)

	survivors := []*peer{u1, u2, u5, u6}
	killed := time.Now()
	n2.kill()
	bound := 3*clHeartbeat + clGrace + clSlack
	deadline := killed.Add(bound)
	for _, p := range survivors {
		for _, gone := range []string{"u3", "u4"} {
			r := waitEvent(p, deadline, "user-left of "+gone, leftOf(gone))
			t.Logf("%s: user-left of %s %v after the kill", p.name, gone, r.at.Sub(killed).Round(time.Millisecond))
		}
	}

	// The others stay: across node1 and node3 a broadcast still flows, and
	// a few heartbeats later nobody else has left.
	off := u1.broadcast("still-here", nil, "")
	for _, p := range []*peer{u2, u5, u6} {
		waitEvent(p, time.Now().Add(clWait), "the broadcast after the kill", broadcastAt(off))
	}
	observe(3 * clHeartbeat)
	for _, p := range survivors {
		rs := p.snapshot()
		for _, uid := range []string{"u3", "u4"} {
			if n := count(rs, leftOf(uid)); n != 1 {
				t.Errorf("%s saw %s leave %d times, want once:\n%s", p.name, uid, n, describeAll(rs))
			}
		}
		for _, uid := range ids(survivors...) {
			if n := count(rs, leftOf(uid)); n != 0 {
				t.Errorf("%s saw %s (not on the killed node) leave:\n%s", p.name, uid, describeAll(rs))
			}
		}
		if !hasMembers(ids(survivors...)...)(rs) {
			list, applied := members(rs)
			t.Errorf("%s's list is %v (applied: %v), want %v", p.name, slices.Sorted(maps.Keys(list)), slices.Sorted(maps.Keys(applied)), ids(survivors...))
		}
	}
	for _, n := range []*hubProc{n1, n3} {
		if code := n.readyz(); code != http.StatusOK {
			t.Errorf("%s: /readyz %d after another node died, want 200", n.id, code)
		}
	}
}

// TestClusterRedisRestart: while Redis is down every node answers 503 on
// /readyz and serves its own users; when Redis is back, empty, the nodes
// are ready again and the lists converge, with the user who joined during
// the outage.
func TestClusterRedisRestart(t *testing.T) {
	cl := startCluster(t, clHeartbeat)
	n1, n2, n3 := cl.nodes[0], cl.nodes[1], cl.nodes[2]
	const sid = "outage"
	a1, a2 := goPeer(t, n1, learner("a1")), rawPeer(t, n1, learner("a2"))
	b := goPeer(t, n2, learner("b"))
	c := rawPeer(t, n3, learner("c"))
	d := goPeer(t, n1, learner("d")) // joins during the outage
	before := []*peer{a1, a2, b, c}
	for _, p := range before {
		p.join(sid, nil)
	}
	waitMembers(time.Now().Add(clConverge), before, ids(before...)...)
	// Some history before the outage, so that offsets have a past.
	off := b.broadcast("before", nil, "")
	off = max(off, c.broadcast("before", nil, ""))
	for _, p := range []*peer{a1, a2} {
		waitEvent(p, time.Now().Add(clWait), "the broadcasts before the outage", broadcastAt(off))
	}

	stopped := time.Now()
	cl.redis.Stop()
	deadline := stopped.Add(2*clHeartbeat + clSlack)
	for _, n := range cl.nodes {
		at := n.waitReadyz(t, http.StatusServiceUnavailable, deadline)
		t.Logf("%s: /readyz 503 %v after Redis stopped", n.id, at.Sub(stopped).Round(time.Millisecond))
	}
	for _, n := range cl.nodes {
		if n.exited() {
			t.Fatalf("%s exited when Redis went away: %s", n.id, n.exit())
		}
	}

	// Node1 is an island that still serves its own users: cursors both
	// ways, a broadcast, and a join.
	cur1 := protocol.Cursor{Line: 3, Column: 7}
	a1.cursor(cur1)
	waitEvent(a2, time.Now().Add(clWait), "cursor-moved of a1 during the outage", func(e *client.CursorMoved) bool {
		return e.UserID == "a1" && reflect.DeepEqual(e.Cursor, cur1)
	})
	cur2 := protocol.Cursor{Line: 40, Column: 1, File: "b.go"}
	a2.cursor(cur2)
	waitEvent(a1, time.Now().Add(clWait), "cursor-moved of a2 during the outage", func(e *client.CursorMoved) bool {
		return e.UserID == "a2" && reflect.DeepEqual(e.Cursor, cur2)
	})
	began := time.Now()
	island := a2.broadcast("island", map[string]string{"k": "v"}, "")
	t.Logf("a broadcast during the outage was acked in %v", time.Since(began).Round(time.Millisecond))
	waitEvent(a1, time.Now().Add(clWait), "the broadcast sent during the outage", func(e *client.BroadcastEvent) bool {
		return e.Event == "island" && e.From == "a2" && e.Offset == island
	})
	began = time.Now()
	d.join(sid, nil)
	t.Logf("a join during the outage took %v", time.Since(began).Round(time.Millisecond))
	for _, p := range []*peer{a1, a2} {
		waitEvent(p, time.Now().Add(clWait), "user-joined of d (same node) during the outage", joinedOf("d"))
	}
	for _, n := range cl.nodes {
		if code := n.readyz(); code != http.StatusServiceUnavailable {
			t.Errorf("%s: /readyz %d while Redis is still down, want 503", n.id, code)
		}
	}

	cl.redis.Restart()
	restarted := time.Now()
	deadline = restarted.Add(3*clHeartbeat + clSlack)
	for _, n := range cl.nodes {
		at := n.waitReadyz(t, http.StatusOK, deadline)
		t.Logf("%s: /readyz 200 %v after Redis restarted", n.id, at.Sub(restarted).Round(time.Millisecond))
	}
	everyone := []*peer{a1, a2, b, c, d}
	waitMembers(deadline, everyone, ids(everyone...)...)
	for _, p := range []*peer{b, c} {
		waitEvent(p, deadline, "user-joined of d, who joined node1 during the outage", joinedOf("d"))
	}
	for _, p := range everyone {
		rs := since(p.snapshot(), stopped)
		if n := count(rs, func(e *client.UserLeft) bool { return true }); n != 0 {
			t.Logf("note: %s saw %d user-left during or after the outage (lists flapped):\n%s", p.name, n, describeAll(rs))
		}
	}

	// Broadcasts flow across the nodes again, and offsets do not go back
	// for a client that stayed (the Go clients a1 and d drop a broadcast
	// whose offset is not past the last one they saw).
	seen := map[*peer]int64{}
	for _, p := range everyone {
		for _, r := range p.snapshot() {
			switch e := r.ev.(type) {
			case *client.BroadcastEvent:
				seen[p] = max(seen[p], e.Offset)
			case *ackRec:
				seen[p] = max(seen[p], e.offset)
			}
		}
	}
	sent := time.Now()
	after := b.broadcast("after", map[string]int{"x": 1}, "")
	t.Logf("offsets: before the outage %d, during it on node1 %d, after it %d", off, island, after)
	isAfter := func(e *client.BroadcastEvent) bool { return e.Event == "after" && e.From == "b" }
	deadline = time.Now().Add(clWait)
	for _, p := range []*peer{a1, a2, c, d} {
		rs, ok := p.await(deadline, func(rs []rec) bool { return count(rs, isAfter) > 0 })
		if !ok {
			t.Errorf("%s: no broadcast from node2 (ack offset %d, sent %v after Redis came back) within %v; it received:\n%s",
				p.name, after, sent.Sub(restarted).Round(time.Millisecond), clWait, describeAll(rs))
			continue
		}
		for _, r := range rs {
			if e, is := r.ev.(*client.BroadcastEvent); is && isAfter(e) && (e.Offset != after || e.Offset <= seen[p]) {
				t.Errorf("%s: the broadcast after the outage has offset %d (ack %d); it had seen offset %d already", p.name, e.Offset, after, seen[p])
			}
		}
	}
}

// TestClusterRecoverOnOtherNode: a client that dropped off node1 recovers
// on node2 exactly the broadcasts addressed to it that it missed, in order.
func TestClusterRecoverOnOtherNode(t *testing.T) {
	cl := startCluster(t, clHeartbeat)
	n1, n2, n3 := cl.nodes[0], cl.nodes[1], cl.nodes[2]
	const sid = "recover"
	a := goPeer(t, n1, learner("a"))
	b := rawPeer(t, n3, protocol.UserInfo{UserID: "b", Name: "Teacher", Role: protocol.RoleInstructor})
	x := rawPeer(t, n1, learner("x"))
	a.join(sid, nil)
	b.join(sid, nil)
	sj := x.join(sid, nil)
	epoch := sj.Epoch
	if epoch == "" {
		t.Fatal("session-joined without an epoch")
	}
	waitMembers(time.Now().Add(clConverge), []*peer{a, b, x}, "a", "b", "x")
	first := b.broadcast("first", map[string]int{"i": 0}, "")
	r := waitEvent(x, time.Now().Add(clWait), "the first broadcast", broadcastAt(first))
	seen := r.ev.(*client.BroadcastEvent).Offset
	x.drop()

	type sent struct {
		from  *peer
		event string
		to    string
		i     int // the payload's i
		off   int64
	}
	plan := []sent{
		{from: a, event: "e1", to: ""},
		{from: b, event: "e2", to: "x"},
		{from: a, event: "not-for-x", to: protocol.ToInstructors},
		{from: b, event: "e3", to: protocol.ToLearners},
		{from: b, event: "e4", to: protocol.ToAll},
		{from: a, event: "e5", to: "x"},
	}
	for i := range plan {
		s := &plan[i]
		s.i = i + 1
		s.off = s.from.broadcast(s.event, map[string]any{"event": s.event, "i": i + 1}, s.to)
		if want := first + int64(i) + 1; s.off != want {
			t.Errorf("%s got offset %d, want %d", s.event, s.off, want)
		}
	}
	last := plan[len(plan)-1].off

	x2 := rawPeer(t, n2, learner("x"))
	sj2 := x2.join(sid, &protocol.Recover{Epoch: epoch, Offset: seen})
	if !sj2.Recovered || sj2.Epoch != epoch || sj2.Offset != last {
		t.Fatalf("recovering on node2: session-joined recovered=%v epoch=%s offset=%d, want true, %s, %d",
			sj2.Recovered, sj2.Epoch, sj2.Offset, epoch, last)
	}
	mark := b.broadcast("mark", nil, "")
	rs := x2.waitFor(time.Now().Add(clWait), "the mark broadcast", func(rs []rec) bool { return count(rs, broadcastAt(mark)) > 0 })
	i := slices.IndexFunc(rs, func(r rec) bool { _, ok := r.ev.(*client.SessionJoined); return ok })
	var want []sent
	for _, s := range plan {
		if s.event != "not-for-x" {
			want = append(want, s)
		}
	}
	replay := rs[i+1:]
	if len(replay) < len(want) {
		t.Fatalf("after session-joined node2 sent:\n%s\nwant the 5 events addressed to x first", describeAll(replay))
	}
	for k, s := range want {
		e, ok := replay[k].ev.(*client.BroadcastEvent)
		if !ok || e.Offset != s.off || e.Event != s.event || e.From != s.from.info.UserID ||
			!sameJSON(e.Payload, []byte(fmt.Sprintf(`{"event":%q,"i":%d}`, s.event, s.i))) {
			t.Fatalf("replayed message %d is %s, want %s from %s at offset %d; after session-joined came:\n%s",
				k+1, describe(replay[k].ev), s.event, s.from.info.UserID, s.off, describeAll(replay))
		}
	}
	var bs []string
	for _, r := range replay {
		if e, ok := r.ev.(*client.BroadcastEvent); ok {
			bs = append(bs, fmt.Sprintf("%s@%d", e.Event, e.Offset))
		}
	}
	wantBs := []string{}
	for _, s := range want {
		wantBs = append(wantBs, fmt.Sprintf("%s@%d", s.event, s.off))
	}
	wantBs = append(wantBs, fmt.Sprintf("mark@%d", mark))
	if !slices.Equal(bs, wantBs) {
		t.Errorf("x received on node2 the broadcasts %v, want exactly %v", bs, wantBs)
	}
}

// TestClusterCleanShutdown: a node stopped with SIGTERM closes its clients
// with 1001 and starts their leave grace at once: a user who comes back
// through another node within it keeps its place, unseen by the others;
// one who does not leaves when the grace ends.
//
// The heartbeat is long here (1 s), so that "at once" can be told from "when
// the other nodes found the node gone": that would take at least a
// heartbeat more than the grace.
func TestClusterCleanShutdown(t *testing.T) {
	// u must come back through node1 within the grace, as the nodes count
	// it: a grace of 2 s leaves a busy machine room for that, and node3's
	// death (3 heartbeats of 2 s, plus the grace) still comes far later
	// than the grace alone.
	const beat, clGrace = 2 * time.Second, 2 * time.Second
	cl := startClusterGrace(t, beat, clGrace)
	n1, n2, n3 := cl.nodes[0], cl.nodes[1], cl.nodes[2]
	const sid = "shutdown"
	w := goPeer(t, n1, learner("w"))
	y := rawPeer(t, n2, learner("y"))
	u := rawPeer(t, n3, learner("u"))
	v := goPeer(t, n3, learner("v"))
	u2 := rawPeer(t, n1, learner("u")) // u's way back, connected ahead to save time
	for _, p := range []*peer{w, y, u, v} {
		p.join(sid, nil)
	}
	observers := []*peer{w, y}
	waitMembers(time.Now().Add(3*beat+clSlack), []*peer{w, y, u, v}, "w", "y", "u", "v")
	var joinedAt time.Time
	for _, r := range w.snapshot() {
		if e, ok := r.ev.(*client.UserJoined); ok && e.User.UserID == "u" {
			joinedAt = e.User.JoinedAt
		}
	}
	if joinedAt.IsZero() {
		t.Fatalf("w did not see u join:\n%s", describeAll(w.snapshot()))
	}

	termed := time.Now()
	n3.terminate()
	rs := u.waitFor(time.Now().Add(clWait), "the end of u's connection", func(rs []rec) bool { _, ok := closeCode(rs); return ok })
	if code, _ := closeCode(rs); code != websocket.StatusGoingAway {
		t.Fatalf("u's connection to node3 ended with %d, want 1001", code)
	}
	sj := u2.join(sid, nil)
	back := time.Since(termed)
	if back >= clGrace {
		t.Fatalf("u came back through node1 %v after the SIGTERM, not within the leave grace (%v): the test is too slow here", back, clGrace)
	}
	t.Logf("u back through node1 %v after the SIGTERM", back.Round(time.Millisecond))
	for _, q := range sj.Participants {
		if q.UserID == "u" && !q.JoinedAt.Equal(joinedAt) {
			t.Errorf("u came back within the grace with joinedAt %v, want its place (%v)", q.JoinedAt, joinedAt)
		}
	}
	vrs := v.waitFor(time.Now().Add(clWait), "the end of v's connection", func(rs []rec) bool { _, ok := closeCode(rs); return ok })
	if code, _ := closeCode(vrs); code != websocket.StatusGoingAway {
		t.Errorf("v's connection to node3 ended with %d, want 1001", code)
	}

	// v, who does not come back, leaves when the grace ends: not before,
	// and well before the other nodes would have found node3 dead.
	deadline := termed.Add(clGrace + clSlack) // node3's death: 3*beat + clGrace
	for _, p := range append(observers, u2) {
		r := waitEvent(p, deadline, "user-left of v", leftOf("v"))
		if early := termed.Add(clGrace - 50*time.Millisecond); r.at.Before(early) {
			t.Errorf("%s saw v leave %v after the SIGTERM, before the leave grace (%v) ended", p.name, r.at.Sub(termed), clGrace)
		}
		t.Logf("%s: user-left of v %v after the SIGTERM", p.name, r.at.Sub(termed).Round(time.Millisecond))
	}
	select {
	case <-n3.done:
		if n3.err != nil {
			t.Errorf("node3 after SIGTERM: %v, want a clean exit", n3.err)
		}
	case <-time.After(clWait):
		t.Errorf("node3 still runs %v after SIGTERM", clWait)
	}

	// Nobody saw u go or come back, even after the next heartbeat's repair
	// and the time node3 would take to be found dead.
	observe(time.Until(termed.Add(3*beat + clGrace)))
	waitMembers(time.Now(), append(observers, u2), "w", "y", "u")
	for _, p := range observers {
		rs := since(p.snapshot(), termed)
		if n := count(rs, leftOf("u")) + count(rs, joinedOf("u")); n != 0 {
			t.Errorf("%s saw u leave or join although it came back within the grace:\n%s", p.name, describeAll(rs))
		}
	}
}
