package hub_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/internal/redistest"
	"github.com/sessionhub/sessionhub/protocol"
)

// clusterBeat is the heartbeat of the test clusters: short, so that the
// tests run in seconds, yet long enough that a busy machine does not delay
// a node's beat past its key's life (3 beats) and have it taken for dead,
// nor a Redis round trip past the broker's timeout (one beat).
const clusterBeat = time.Second

// startNode runs a hub that is a node of the cluster on rs, behind a real
// HTTP server, and waits until it is ready (its first heartbeat reached
// Redis).
func startNode(t *testing.T, rs *redistest.Server, id string, opts *hub.Options) *server {
	t.Helper()
	// Timeouts that a busy machine's Redis round trips stay under: one
	// that timed out would make the node serve on as an island. An outage
	// (Redis stopped) shows at once: its dials are refused.
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true,
		DialTimeout: 2 * time.Second, ReadTimeout: 3 * time.Second, WriteTimeout: 3 * time.Second})
	t.Cleanup(func() { rdb.Close() }) // after the hub's Shutdown (cleanups run last first)
	if opts == nil {
		opts = &hub.Options{}
	}
	opts.Redis, opts.NodeID, opts.NodeHeartbeat = rdb, id, clusterBeat
	s := startServer(t, opts)
	waitReady(t, s, http.StatusOK)
	return s
}

// waitReady waits until s's /readyz answers want.
func waitReady(t *testing.T, s *server, want int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		code, _ := s.get(t, "/readyz")
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %d, want %d within %v", code, want, wait)
		}
		time.Sleep(10 * time.Millisecond) // polling an HTTP state
	}
}

// Clients on two nodes are in one session: one list, each other's joins,
// cursors, activity, broadcasts with shared offsets, and the two-tabs rule
// across nodes.
func TestClusterOneSessionOverTwoNodes(t *testing.T) {
	rs := redistest.Start(t)
	n1 := startNode(t, rs, "n1", &hub.Options{LeaveGrace: -1})
	n2 := startNode(t, rs, "n2", &hub.Options{LeaveGrace: -1, APIKey: apiKey})

	a := dial(t, n1, nil)
	a.join("s", "alice", "Alice", protocol.RoleInstructor)
	b := dial(t, n2, nil)
	sj := b.join("s", "bob", "Bob", protocol.RoleLearner)
	if got := ids(sj.Participants); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Fatalf("bob's session-joined lists %v, want [alice bob]", got)
	}
	var uj protocol.UserJoined
	a.expect(protocol.TypeUserJoined, &uj)
	if uj.User.UserID != "bob" || !slices.Equal(ids(uj.Participants), []string{"alice", "bob"}) {
		t.Fatalf("alice got user-joined %+v", uj)
	}

	// A cursor crosses nodes, and a node shows it to later joiners.
	a.send(protocol.TypeCursorUpdate, protocol.Cursor{Line: 3, Column: 4}, "")
	var cm protocol.CursorMoved
	b.expect(protocol.TypeCursorMoved, &cm)
	if cm.UserID != "alice" || cm.Cursor.Line != 3 || cm.Cursor.Column != 4 {
		t.Fatalf("bob got cursor-moved %+v", cm)
	}
	c := dial(t, n2, nil)
	sj = c.join("s", "carol", "Carol", protocol.RoleLearner)
	if got := ids(sj.Participants); !slices.Equal(got, []string{"alice", "bob", "carol"}) || sj.Participants[0].Cursor == nil || sj.Participants[0].Cursor.Line != 3 {
		t.Fatalf("carol's session-joined = %+v", sj.Participants)
	}
	a.expect(protocol.TypeUserJoined, nil)
	b.expect(protocol.TypeUserJoined, nil)

	// Activity crosses nodes.
	b.send(protocol.TypeActivityStatus, protocol.ActivityStatus{IsActive: false}, "")
	var ac protocol.UserActivityChanged
	a.expect(protocol.TypeUserActivityChanged, &ac)
	if ac.UserID != "bob" || ac.IsActive {
		t.Fatalf("alice got %+v", ac)
	}
	c.expect(protocol.TypeUserActivityChanged, nil) // same node as bob

	// Broadcasts get the session's offsets whichever node sent them, and
	// reach everybody else once.
	b.send(protocol.TypeBroadcast, protocol.Broadcast{Event: "chat", Payload: json.RawMessage(`{"m":1}`)}, "b1")
	var ack protocol.Ack
	b.expect(protocol.TypeAck, &ack)
	var ev protocol.BroadcastEvent
	for _, p := range []*peer{a, c} {
		p.skipUntil(protocol.TypeBroadcast, &ev)
		if ev.From != "bob" || ev.Offset != ack.Offset {
			t.Fatalf("got broadcast %+v, want bob's at %d", ev, ack.Offset)
		}
	}
	a.send(protocol.TypeBroadcast, protocol.Broadcast{Event: "chat", Payload: json.RawMessage(`{"m":2}`)}, "a1")
	var ack2 protocol.Ack
	a.skipUntil(protocol.TypeAck, &ack2)
	if ack.Offset != sj.Offset+1 || ack2.Offset != ack.Offset+1 {
		t.Fatalf("acks %d, %d after session offset %d", ack.Offset, ack2.Offset, sj.Offset)
	}
	for _, p := range []*peer{b, c} {
		var ev protocol.BroadcastEvent
		p.skipUntil(protocol.TypeBroadcast, &ev)
		if ev.From != "alice" || ev.Offset != ack2.Offset {
			t.Fatalf("got broadcast %+v, want alice's at %d", ev, ack2.Offset)
		}
	}

	// Bob's second tab, on the other node, is the same participant: no
	// join, and closing the first tab is no leave.
	b2 := dial(t, n1, nil)
	sj = b2.join("s", "bob", "Bob", protocol.RoleLearner)
	if got := ids(sj.Participants); !slices.Equal(got, []string{"alice", "bob", "carol"}) {
		t.Fatalf("bob's second tab lists %v", got)
	}
	b.ws.Close(1000, "") // a clean close: a closing tab
	waitFor(t, "n2 to see bob's first tab go", func() bool {
		return mustMetric(t, n2, "sessionhub_connections") == 1
	})
	// carol's broadcast is queued on n2's broker behind bob's detach: had
	// Redis decided that bob left, carol's node would have said so first.
	c.send(protocol.TypeBroadcast, protocol.Broadcast{Event: "still-here"}, "")
	for _, p := range []*peer{a, b2} {
		m := p.skipUntilAny(protocol.TypeBroadcast, protocol.TypeUserLeft)
		if m.Type == protocol.TypeUserLeft {
			t.Fatalf("user-left %s after one of two tabs closed", m.Data)
		}
	}
	var got struct {
		SessionID    string                 `json:"sessionId"`
		Participants []protocol.Participant `json:"participants"`
	}
	apiJSON(t, n2, "GET", "/api/sessions/s", nil, http.StatusOK, &got)
	if !slices.Equal(ids(got.Participants), []string{"alice", "bob", "carol"}) {
		t.Fatalf("Redis lists %v after one of bob's tabs closed", ids(got.Participants))
	}
	// The last tab goes: a leave on every node.
	b2.ws.Close(1000, "")
	for _, p := range []*peer{a, c} {
		var ul protocol.UserLeft
		p.skipUntil(protocol.TypeUserLeft, &ul)
		if ul.UserID != "bob" || !slices.Equal(ids(*ul.Participants), []string{"alice", "carol"}) {
			t.Fatalf("got user-left %+v", ul)
		}
	}
}

// A client that reconnects to another node recovers the broadcasts it
// missed from the session's log in Redis.
func TestClusterRecoverOnAnotherNode(t *testing.T) {
	rs := redistest.Start(t)
	n1 := startNode(t, rs, "n1", nil)
	n2 := startNode(t, rs, "n2", nil)

	a := dial(t, n1, nil)
	a.join("s", "alice", "Alice", protocol.RoleInstructor)
	x := dial(t, n1, nil)
	sj := x.join("s", "xavier", "Xavier", protocol.RoleLearner)
	a.send(protocol.TypeBroadcast, protocol.Broadcast{Event: "e", Payload: json.RawMessage(`0`)}, "")
	var first protocol.BroadcastEvent
	x.skipUntil(protocol.TypeBroadcast, &first)
	x.ws.CloseNow() // drops without a close frame

	var offs []int64
	for i := range 5 {
		to := protocol.ToAll
		if i == 2 {
			to = protocol.ToInstructors // not for xavier
		}
		a.send(protocol.TypeBroadcast, protocol.Broadcast{Event: "e", Payload: json.RawMessage(`1`), To: to}, "r")
		var ack protocol.Ack
		a.skipUntil(protocol.TypeAck, &ack)
		if to == protocol.ToAll {
			offs = append(offs, ack.Offset)
		}
	}
	x2 := dial(t, n2, nil)
	x2.send(protocol.TypeJoinSession, protocol.JoinSession{SessionID: "s",
		UserInfo: protocol.UserInfo{UserID: "xavier", Name: "Xavier"},
		Recover:  &protocol.Recover{Epoch: sj.Epoch, Offset: first.Offset}}, "j")
	var sj2 protocol.SessionJoined
	x2.expect(protocol.TypeSessionJoined, &sj2)
	if !sj2.Recovered || sj2.Epoch != sj.Epoch || sj2.Offset != first.Offset+5 {
		t.Fatalf("session-joined on n2 = %+v; want recovered in epoch %s at %d", sj2, sj.Epoch, first.Offset+5)
	}
	for _, want := range offs {
		var ev protocol.BroadcastEvent
		x2.expect(protocol.TypeBroadcast, &ev)
		if ev.Offset != want {
			t.Fatalf("replayed offset %d, want %d", ev.Offset, want)
		}
	}
	x2.sync()
	x2.quiet("after the replay", protocol.TypeBroadcast)

	// An epoch the session never had recovers nothing.
	x3 := dial(t, n2, nil)
	x3.send(protocol.TypeJoinSession, protocol.JoinSession{SessionID: "s",
		UserInfo: protocol.UserInfo{UserID: "yann", Name: "Yann"},
		Recover:  &protocol.Recover{Epoch: "other", Offset: 1}}, "j")
	var sj3 protocol.SessionJoined
	x3.expect(protocol.TypeSessionJoined, &sj3)
	if sj3.Recovered {
		t.Fatal("recovered from another epoch")
	}
}

// What a client sends right behind its join waits for the join (which
// waits for Redis) and is handled after it, in order.
func TestClusterMessagesBehindAJoin(t *testing.T) {
	rs := redistest.Start(t)
	n1 := startNode(t, rs, "n1", nil)
	n2 := startNode(t, rs, "n2", nil)
	a := dial(t, n2, nil)
	a.join("s", "alice", "Alice", protocol.RoleInstructor)

	b := dial(t, n1, nil)
	b.send(protocol.TypeJoinSession, protocol.JoinSession{SessionID: "s",
		UserInfo: protocol.UserInfo{UserID: "bob", Name: "Bob"}}, "j")
	b.send(protocol.TypeCursorUpdate, protocol.Cursor{Line: 7, Column: 1}, "")
	b.send(protocol.TypeBroadcast, protocol.Broadcast{Event: "hi"}, "b")
	b.send(protocol.TypePing, map[string]any{}, "p")
	b.expect(protocol.TypeSessionJoined, nil)
	// The ack waits for Redis; the pong need not.
	got := []string{b.next().Type, b.next().Type}
	slices.Sort(got)
	if want := []string{protocol.TypeAck, protocol.TypePong}; !slices.Equal(got, want) {
		t.Fatalf("after session-joined: %v, want %v", got, want)
	}
	a.expect(protocol.TypeUserJoined, nil)
	// The cursor crosses on the bus, the broadcast through the session's
	// log: between the two, another node may see either first.
	var cm protocol.CursorMoved
	seen := map[string]bool{}
	for range 2 {
		m := a.next()
		seen[m.Type] = true
		if m.Type == protocol.TypeCursorMoved {
			json.Unmarshal(m.Data, &cm)
		}
	}
	if !seen[protocol.TypeCursorMoved] || !seen[protocol.TypeBroadcast] || cm.UserID != "bob" || cm.Cursor.Line != 7 {
		t.Fatalf("alice got %v, cursor %+v", seen, cm)
	}
}

// The server API acts on the whole cluster: a node lists and removes a
// user whose connection is on another node.
func TestClusterAPI(t *testing.T) {
	rs := redistest.Start(t)
	n1 := startNode(t, rs, "n1", &hub.Options{APIKey: apiKey})
	n2 := startNode(t, rs, "n2", &hub.Options{APIKey: apiKey})
	a := dial(t, n1, nil)
	a.join("s", "alice", "Alice", protocol.RoleInstructor)
	b := dial(t, n1, nil)
	b.join("s", "bob", "Bob", protocol.RoleLearner)
	a.expect(protocol.TypeUserJoined, nil)

	var got struct {
		SessionID    string                 `json:"sessionId"`
		Participants []protocol.Participant `json:"participants"`
	}
	apiJSON(t, n2, "GET", "/api/sessions/s", nil, http.StatusOK, &got)
	if !slices.Equal(ids(got.Participants), []string{"alice", "bob"}) {
		t.Fatalf("n2 lists %v", ids(got.Participants))
	}
	apiExpectError(t, n2, "GET", "/api/sessions/nope", apiKey, nil, http.StatusNotFound)

	var off struct {
		Offset int64 `json:"offset"`
	}
	apiJSON(t, n2, "POST", "/api/sessions/s/broadcast", []byte(`{"event":"notice","payload":{"x":1}}`), http.StatusAccepted, &off)
	var ev protocol.BroadcastEvent
	a.expect(protocol.TypeBroadcast, &ev)
	if ev.From != protocol.FromServer || ev.Offset != off.Offset || off.Offset != 1 {
		t.Fatalf("broadcast %+v, API offset %d", ev, off.Offset)
	}
	b.expect(protocol.TypeBroadcast, nil)

	if status, _, body := apiDo(t, n2, "DELETE", "/api/sessions/s/participants/bob", apiKey, nil); status != http.StatusNoContent {
		t.Fatalf("DELETE = %d %s", status, body)
	}
	if code := b.closed(); code != 4003 {
		t.Fatalf("bob's connection closed with %d, want 4003", code)
	}
	var ul protocol.UserLeft
	a.expect(protocol.TypeUserLeft, &ul)
	if ul.UserID != "bob" {
		t.Fatalf("got %+v", ul)
	}
	apiExpectError(t, n2, "DELETE", "/api/sessions/s/participants/bob", apiKey, nil, http.StatusNotFound)
}

// While Redis is down a node serves its own members and says it is not
// ready; when Redis is back the nodes converge without a restart.
func TestClusterRedisOutage(t *testing.T) {
	rs := redistest.Start(t)
	n1 := startNode(t, rs, "n1", &hub.Options{LeaveGrace: -1})
	n2 := startNode(t, rs, "n2", &hub.Options{LeaveGrace: -1})
	a := dial(t, n1, nil)
	a.join("s", "alice", "Alice", protocol.RoleInstructor)
	b := dial(t, n2, nil)
	b.join("s", "bob", "Bob", protocol.RoleLearner)
	a.expect(protocol.TypeUserJoined, nil)

	rs.Stop()
	waitReady(t, n1, http.StatusServiceUnavailable)
	waitReady(t, n2, http.StatusServiceUnavailable)
	if v := mustMetric(t, n1, "sessionhub_cluster_up"); v != 0 {
		t.Errorf("sessionhub_cluster_up = %v while Redis is down", v)
	}

	// n1's members still see each other.
	c := dial(t, n1, nil)
	sj := c.join("s", "carol", "Carol", protocol.RoleLearner)
	if !slices.Equal(ids(sj.Participants), []string{"alice", "bob", "carol"}) {
		t.Fatalf("carol's list during the outage: %v", ids(sj.Participants))
	}
	a.expect(protocol.TypeUserJoined, nil)
	c.send(protocol.TypeCursorUpdate, protocol.Cursor{Line: 1, Column: 2}, "")
	a.expect(protocol.TypeCursorMoved, nil)
	c.send(protocol.TypeBroadcast, protocol.Broadcast{Event: "island"}, "r")
	var ack protocol.Ack
	c.expect(protocol.TypeAck, &ack)
	var ev protocol.BroadcastEvent
	a.expect(protocol.TypeBroadcast, &ev)
	if ev.Offset != ack.Offset {
		t.Fatalf("island broadcast at %d, ack %d", ev.Offset, ack.Offset)
	}

	rs.Restart()
	waitReady(t, n1, http.StatusOK)
	waitReady(t, n2, http.StatusOK)
	// bob learns of carol, who joined while n2 could not hear of it.
	var uj protocol.UserJoined
	b.skipUntil(protocol.TypeUserJoined, &uj)
	if uj.User.UserID != "carol" || !slices.Equal(ids(uj.Participants), []string{"alice", "bob", "carol"}) {
		t.Fatalf("bob got %+v", uj)
	}
	// Redis lost the history: a new epoch, whose offsets go on from the
	// ones the clients saw.
	b.send(protocol.TypeBroadcast, protocol.Broadcast{Event: "after"}, "r")
	var ack2 protocol.Ack
	b.skipUntil(protocol.TypeAck, &ack2)
	if ack2.Offset <= ack.Offset {
		t.Fatalf("offset after the outage %d, not above %d", ack2.Offset, ack.Offset)
	}
	for _, p := range []*peer{a, c} {
		var ev protocol.BroadcastEvent
		p.skipUntil(protocol.TypeBroadcast, &ev)
		if ev.Event != "after" || ev.Offset != ack2.Offset {
			t.Fatalf("got %+v, want after at %d", ev, ack2.Offset)
		}
	}
	// And a join on n2 now sees the whole cluster.
	d := dial(t, n2, nil)
	if sj := d.join("s", "dan", "Dan", protocol.RoleLearner); !slices.Equal(ids(sj.Participants), []string{"alice", "bob", "carol", "dan"}) {
		t.Fatalf("dan's list after the outage: %v", ids(sj.Participants))
	}
}

// The write delay applies to what comes from the other nodes too: a burst
// of cursor updates from a user on n1 reaches a batch client on n2, whose
// node holds messages for 200 ms, in fewer frames than messages, in order,
// ending on the last position. n1 has the delay too, and its bus holds its
// events for a quarter of it (--bus-linger, the bus's share of the delay).
func TestClusterWriteDelayOnBusDeliveries(t *testing.T) {
	rs := redistest.Start(t)
	n1 := startNode(t, rs, "n1", &hub.Options{LeaveGrace: -1, CursorRate: 1000, WriteDelay: 200 * time.Millisecond, BusLinger: 50 * time.Millisecond})
	n2 := startNode(t, rs, "n2", &hub.Options{LeaveGrace: -1, WriteDelay: 200 * time.Millisecond, BusLinger: 50 * time.Millisecond})

	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()
	bws, _, err := websocket.Dial(ctx, n2.url, &websocket.DialOptions{Subprotocols: []string{protocol.BatchSubprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	defer bws.CloseNow()
	join, _ := protocol.Encode(protocol.TypeJoinSession, "j", protocol.JoinSession{SessionID: "s", UserInfo: protocol.UserInfo{UserID: "bob", Name: "Bob"}})
	if err := bws.Write(ctx, websocket.MessageText, join); err != nil {
		t.Fatal(err)
	}
	// Read bob's frames as they come: session-joined, alice's user-joined,
	// then her cursors.
	var frames, cursors, last int
	bobIn, joined := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	const n = 5
	go func() {
		for {
			_, b, err := bws.Read(ctx)
			if err != nil {
				done <- err
				return
			}
			counted := false
			for _, line := range bytes.Split(b, []byte("\n")) {
				var ev struct {
					Type string
					Data protocol.CursorMoved
				}
				if err := json.Unmarshal(line, &ev); err != nil {
					done <- fmt.Errorf("%s: %w", line, err)
					return
				}
				switch ev.Type {
				case protocol.TypeSessionJoined:
					close(bobIn)
				case protocol.TypeUserJoined:
					close(joined)
				case protocol.TypeCursorMoved:
					if !counted {
						frames, counted = frames+1, true
					}
					cursors++
					if ev.Data.Cursor.Column <= last {
						done <- fmt.Errorf("column %d after %d", ev.Data.Cursor.Column, last)
						return
					}
					last = ev.Data.Cursor.Column
				}
			}
			if last == n {
				done <- nil
				return
			}
		}
	}()
	select {
	case <-bobIn:
	case err := <-done:
		t.Fatalf("bob's join: %v", err)
	}
	a := dial(t, n1, nil)
	a.join("s", "alice", "Alice", protocol.RoleInstructor)
	select {
	case <-joined:
	case err := <-done:
		t.Fatalf("bob before alice's join: %v", err)
	case <-ctx.Done():
		t.Fatal("bob never saw alice join")
	}
	for i := 1; i <= n; i++ {
		a.send(protocol.TypeCursorUpdate, protocol.Cursor{Line: 1, Column: i}, "")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if frames >= cursors {
		t.Errorf("bob got %d cursor-moved in %d frames; want fewer frames than messages", cursors, frames)
	}
}
