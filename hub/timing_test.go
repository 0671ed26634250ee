package hub_test

// Tests of the contract's timings and back-pressure: cursor coalescing, slow
// consumers, the leave grace, idle marking, the session TTL, rate abuse and
// ping timeouts. Every duration is made small through hub.Options, and every
// wait is for an event, with a deadline. The only plain waits are those that
// let a duration pass to show that something did NOT happen.

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/protocol"
)

// Every other participant ends on the sender's true last position, and the
// updates over the cursor rate are coalesced, not all fanned out.
func TestCursorCoalescing(t *testing.T) {
	s := startServer(t, nil) // the default cursor rate: 20 per second
	sender, o1, o2 := dial(t, s, nil), dial(t, s, nil), dial(t, s, nil)
	sender.join("co", "sender", "Sender", "")
	o1.join("co", "o1", "O1", "")
	o2.join("co", "o2", "O2", "")
	o1.expect(protocol.TypeUserJoined, nil) // o2
	sender.sync()

	const n = 200
	for i := 1; i <= n; i++ {
		sender.send(protocol.TypeCursorUpdate, protocol.Cursor{Line: i, Column: i % 80, File: fmt.Sprintf("f%d.go", i)}, "")
	}
	for _, o := range []*peer{o1, o2} {
		got, last := 0, 0
		for {
			var cm protocol.CursorMoved
			decode(t, o.expect(protocol.TypeCursorMoved, nil), &cm)
			got++
			if cm.UserID != "sender" {
				t.Fatalf("cursor-moved of %q", cm.UserID)
			}
			if cm.Cursor.Line <= last {
				t.Fatalf("cursor went back from line %d to %d", last, cm.Cursor.Line)
			}
			last = cm.Cursor.Line
			if cm.Cursor.File != fmt.Sprintf("f%d.go", cm.Cursor.Line) || cm.Cursor.Column != cm.Cursor.Line%80 {
				t.Fatalf("cursor-moved mixes updates: %+v", cm.Cursor)
			}
			if cm.Cursor.Line == n {
				break
			}
		}
		if got >= n {
			t.Errorf("an observer got %d cursor-moved for %d updates: nothing was coalesced", got, n)
		}
		t.Logf("an observer got %d cursor-moved for %d updates", got, n)
		o.strictSync() // and nothing after the final position
	}
	if v := metricValue(t, s, "sessionhub_cursor_updates_coalesced_total"); v <= 0 {
		t.Errorf("sessionhub_cursor_updates_coalesced_total = %v, want > 0", v)
	}
	// A later joiner sees the final position in the list.
	late := dial(t, s, nil)
	sj := late.join("co", "late", "Late", "")
	for _, p := range sj.Participants {
		if p.UserID == "sender" && (p.Cursor == nil || p.Cursor.Line != n) {
			t.Errorf("sender's cursor in the list = %+v, want line %d", p.Cursor, n)
		}
	}
}

// A client that stops reading is closed as a slow consumer without delaying
// anybody else; the others see it leave after the grace, and it gets 1013.
// Under --write-delay the stuck client takes batches, so that its frames
// are the flusher's: the one it cannot finish is left to the client's
// writer, which the drop ends.
func TestSlowConsumer(t *testing.T) {
	for _, delay := range []time.Duration{0, 20 * time.Millisecond} {
		t.Run(fmt.Sprintf("write delay %v", delay), func(t *testing.T) { testSlowConsumer(t, delay) })
	}
}

func testSlowConsumer(t *testing.T, delay time.Duration) {
	const grace = 300 * time.Millisecond
	s, ln := startServerSmallBuf(t, &hub.Options{SendQueue: 256, CursorRate: 1e9, LeaveGrace: grace, WriteDelay: delay}, serverLimits{})
	obs := dial(t, s, &websocket.DialOptions{Subprotocols: []string{protocol.BatchSubprotocol}})
	sender := dial(t, s, nil)
	obs.join("slow", "obs", "Obs", "")
	sender.join("slow", "sender", "Sender", "")
	ln.small.Store(true)
	stuck := rawDial(t, s, rawOptions{smallRcvBuf: true, batch: delay > 0})
	ln.small.Store(false)
	rawJoin(t, stuck, "slow", "stuck", true) // and read nothing more
	obs.skipUntilMatch("user-joined of stuck", func(m protocol.Envelope) bool {
		var uj protocol.UserJoined
		return m.Type == protocol.TypeUserJoined && json.Unmarshal(m.Data, &uj) == nil && uj.User.UserID == "stuck"
	})

	// The sender floods at a steady 2000 updates per second (2 a
	// millisecond, none coalesced): far more than the stuck client's buffers
	// take, paced so that the flood does not starve the machine's CPUs.
	// start is taken before the flood: the server's grace for the stuck
	// client begins after it, however the goroutines are scheduled.
	start := time.Now()
	stop := make(chan struct{})
	var flood sync.WaitGroup
	var sent int
	flood.Go(func() {
		file := strings.Repeat("f", 250)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for range 2 {
				b, _ := protocol.Encode(protocol.TypeCursorUpdate, "", protocol.Cursor{Line: sent % 10_000_000, File: file})
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				err := sender.ws.Write(ctx, websocket.MessageText, b)
				cancel()
				if err != nil {
					return
				}
				sent++
			}
		}
	})
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		flood.Wait()
	}()

	// The observer pings every 20 ms while it waits for the stuck user to
	// leave: every ping is answered while the hub serves the flood and
	// drops the stuck client (a hub that blocked on the stuck client would
	// answer none). How long the round trips take depends on how busy the
	// machine is: they are logged, not asserted.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(wait + 10*time.Second)
	var (
		pingAt  time.Time
		pinging bool
		pings   int
		maxRTT  time.Duration
		seq     int
		cursors int
	)
	leftAt := time.Duration(0)
loop:
	for {
		select {
		case m, ok := <-obs.msgs:
			if !ok {
				t.Fatalf("observer's connection ended during the flood: %v", <-obs.end)
			}
			switch {
			case m.Type == protocol.TypeCursorMoved:
				cursors++
			case m.Type == protocol.TypePong && m.Ref == "rtt"+strconv.Itoa(seq):
				rtt := time.Since(pingAt)
				maxRTT = max(maxRTT, rtt)
				pinging = false
				pings++
			case isUserLeft("stuck")(m):
				leftAt = time.Since(start)
				break loop
			case m.Type == protocol.TypeUserLeft:
				t.Fatalf("unexpected %s %s", m.Type, m.Data)
			}
		case <-tick.C:
			if pinging {
				continue
			}
			seq++
			pinging = true
			pingAt = time.Now()
			obs.send(protocol.TypePing, map[string]any{"n": seq}, "rtt"+strconv.Itoa(seq))
		case <-deadline:
			t.Fatal("the stuck client never left")
		}
	}
	close(stop)
	flood.Wait()
	if pinging { // the last ping is answered too
		obs.skipUntilMatch("the pong of the last ping", func(m protocol.Envelope) bool {
			return m.Type == protocol.TypePong && m.Ref == "rtt"+strconv.Itoa(seq)
		})
		pings++
	}
	t.Logf("stuck left after %v; %d updates sent, observer got %d cursor-moved, %d pings, max RTT %v",
		leftAt, sent, cursors, pings, maxRTT)
	if leftAt < grace {
		t.Errorf("user-left %v after the flood started, before the %v grace", leftAt, grace)
	}
	if pings == 0 {
		t.Error("the observer's pings were not answered")
	}
	if cursors == 0 {
		t.Error("observer got no cursor-moved during the flood")
	}
	if v := metricValue(t, s, "sessionhub_slow_consumer_closes_total"); v < 1 {
		t.Errorf("sessionhub_slow_consumer_closes_total = %v, want >= 1", v)
	}
	// The sender and the observer are still connected.
	obs.sync()
	sender.sync()

	// Now the stuck client reads: what it had, then the close frame.
	p := asPeer(t, stuck)
	if code := p.closed(); code != websocket.StatusCode(protocol.CloseSlowConsumer) {
		t.Errorf("stuck client's connection ended with %v, want 1013", code)
	}
}

// A participant dropped without a close frame keeps its place through the
// leave grace if it comes back, and leaves when the grace ends if it does not.
func TestLeaveGrace(t *testing.T) {
	const grace = time.Second
	t.Run("rejoin within grace", func(t *testing.T) {
		t.Parallel()
		// The rejoin must come within the grace as the server counts it;
		// a machine too busy to dial and join again in time makes the
		// attempt inconclusive, and it is made again with a longer grace.
		for _, grace := range []time.Duration{grace, 4 * grace} {
			if leaveGraceRejoin(t, grace) {
				return
			}
			t.Logf("rejoining took longer than the %v grace on this busy machine: again with a longer one", grace)
		}
		t.Fatal("the rejoin never came within the grace")
	})
	t.Run("no rejoin", func(t *testing.T) {
		t.Parallel()
		s := startServer(t, &hub.Options{LeaveGrace: grace})
		obs, b := dial(t, s, nil), dial(t, s, nil)
		obs.join("g", "obs", "Obs", "")
		b.join("g", "bob", "Bob", "")
		obs.expect(protocol.TypeUserJoined, nil)
		dropped := time.Now()
		b.ws.CloseNow()
		var ul protocol.UserLeft
		obs.expect(protocol.TypeUserLeft, &ul)
		after := time.Since(dropped)
		if ul.UserID != "bob" || ul.Participants == nil || len(*ul.Participants) != 1 {
			t.Errorf("user-left = %+v", ul)
		}
		if after < grace {
			t.Errorf("user-left came %v after the drop, before the %v grace", after, grace)
		}
		t.Logf("user-left %v after the drop", after)
	})
}

// leaveGraceRejoin is TestLeaveGrace's rejoin: a participant dropped
// without a close frame comes back within grace and keeps its place, its
// cursor and its activity, and nobody sees it leave or join. It reports
// false, having asserted nothing, if the rejoin took grace or longer.
func leaveGraceRejoin(t *testing.T, grace time.Duration) bool {
	s := startServer(t, &hub.Options{LeaveGrace: grace})
	obs, a := dial(t, s, nil), dial(t, s, nil)
	obs.join("g", "obs", "Obs", "")
	sj := a.join("g", "alice", "Alice", "")
	obs.expect(protocol.TypeUserJoined, nil)
	var joinedAt time.Time
	for _, p := range sj.Participants {
		if p.UserID == "alice" {
			joinedAt = p.JoinedAt
		}
	}
	a.send(protocol.TypeCursorUpdate, protocol.Cursor{Line: 7, Column: 3, File: "x.go"}, "")
	a.send(protocol.TypeActivityStatus, protocol.ActivityStatus{IsActive: false}, "")
	obs.expect(protocol.TypeCursorMoved, nil)
	obs.expect(protocol.TypeUserActivityChanged, nil)

	before := metricValue(t, s, "sessionhub_connections")
	dropped := time.Now()
	a.ws.CloseNow() // no close frame
	// The hub has seen the drop once its connection count goes down.
	metricUntil(t, s, "sessionhub_connections", func(v float64) bool { return v == before-1 })
	obs.sync()

	a2 := dial(t, s, nil)
	sj = a2.join("g", "alice", "Alice", "")
	if time.Since(dropped) >= grace {
		return false // inconclusive: the server may have ended the grace
	}
	var me *protocol.Participant
	for i, p := range sj.Participants {
		if p.UserID == "alice" {
			me = &sj.Participants[i]
		}
	}
	switch {
	case len(sj.Participants) != 2 || me == nil:
		t.Fatalf("session-joined participants = %+v", sj.Participants)
	case !me.JoinedAt.Equal(joinedAt):
		t.Errorf("joinedAt = %v, want the original %v", me.JoinedAt, joinedAt)
	case me.Cursor == nil || me.Cursor.Line != 7 || me.Cursor.Column != 3 || me.Cursor.File != "x.go":
		t.Errorf("cursor = %+v, want the one before the drop", me.Cursor)
	case me.IsActive:
		t.Errorf("isActive = true, want the false set before the drop")
	}

	// Let the grace pass (a wait to show that nothing happens), then a
	// sentinel event: it must be the first thing the others see.
	time.Sleep(time.Until(dropped.Add(grace + 300*time.Millisecond)))
	c := dial(t, s, nil)
	c.join("g", "carol", "Carol", "")
	for _, p := range []*peer{obs, a2} {
		var uj protocol.UserJoined
		p.expect(protocol.TypeUserJoined, &uj)
		if uj.User.UserID != "carol" || len(uj.Participants) != 3 {
			t.Errorf("user-joined = %+v, want carol with 3 participants", uj)
		}
	}
	return true
}

// A silent participant is marked inactive after IdleAfter, and its next
// message of its own makes it active again.
func TestIdleMarking(t *testing.T) {
	const idle = 300 * time.Millisecond
	s := startServer(t, &hub.Options{IdleAfter: idle})
	obs, quiet := dial(t, s, nil), dial(t, s, nil)
	obs.join("idle", "obs", "Obs", "")
	joining := time.Now()
	quiet.join("idle", "quiet", "Quiet", "")
	obs.expect(protocol.TypeUserJoined, nil)

	obs.skipUntilMatch("quiet inactive", isActivity("quiet", false))
	if d := time.Since(joining); d < idle {
		t.Errorf("marked inactive %v after its join, before %v", d, idle)
	}
	quiet.send(protocol.TypeCursorUpdate, protocol.Cursor{Line: 1, Column: 1}, "")
	moved := false
	obs.skipUntilMatch("quiet active again", func(m protocol.Envelope) bool {
		moved = moved || m.Type == protocol.TypeCursorMoved
		return isActivity("quiet", true)(m)
	})
	if !moved {
		t.Error("no cursor-moved for the update that woke it")
	}
}

// An application ping is liveness, not activity: a participant whose
// client only pings (as both client libraries do in a quiet spell) is
// still marked inactive after IdleAfter.
func TestPingIsNotActivity(t *testing.T) {
	const idle = 300 * time.Millisecond
	s := startServer(t, &hub.Options{IdleAfter: idle})
	obs, quiet := dial(t, s, nil), dial(t, s, nil)
	obs.join("pinging", "obs", "Obs", "")
	quiet.join("pinging", "quiet", "Quiet", "")
	obs.expect(protocol.TypeUserJoined, nil)

	ping, _ := protocol.Encode(protocol.TypePing, "", map[string]any{})
	defer sendEvery(quiet.ws, ping, idle/6)()
	obs.skipUntilMatch("quiet inactive while it pings", isActivity("quiet", false))
}

// An empty session goes away after the session TTL, and not before: its
// epoch changes only then.
func TestSessionTTL(t *testing.T) {
	const ttl = 300 * time.Millisecond
	s := startServer(t, &hub.Options{SessionTTL: ttl})
	a := dial(t, s, nil)
	// leave returns a time before the session emptied on the server.
	leave := func() time.Time {
		before := time.Now()
		a.send(protocol.TypeLeaveSession, nil, "l")
		a.expect(protocol.TypeSessionLeft, nil)
		return before
	}
	first := a.join("ttl", "alice", "Alice", "").Epoch
	metricUntil(t, s, "sessionhub_sessions", func(v float64) bool { return v == 1 })
	leave()
	if e := a.join("ttl", "alice", "Alice", "").Epoch; e != first {
		t.Errorf("rejoin before the TTL: epoch %q, want the same %q", e, first)
	}
	left := leave()
	metricUntil(t, s, "sessionhub_sessions", func(v float64) bool { return v == 0 })
	if d := time.Since(left); d < ttl {
		t.Errorf("session removed %v after it emptied, before the %v TTL", d, ttl)
	}
	if e := a.join("ttl", "alice", "Alice", "").Epoch; e == first {
		t.Errorf("join after the TTL: epoch %q, the first life's", e)
	}
}

// A client over the message rate gets rate_limited, and one that keeps it up
// for the abuse window is closed with 1008; one under the rate never is.
func TestRateAbuse(t *testing.T) {
	s := startServer(t, &hub.Options{MessageRate: 5, MessageBurst: 5, AbuseWindow: 500 * time.Millisecond})
	abuser, polite := dial(t, s, nil), dial(t, s, nil)

	ping, _ := protocol.Encode(protocol.TypePing, "p", map[string]any{})
	defer sendEvery(abuser.ws, ping, 2*time.Millisecond)() // 500 per second

	var e protocol.ErrorPayload
	m := abuser.skipUntilMatch("rate_limited", func(m protocol.Envelope) bool { return m.Type == protocol.TypeError })
	decode(t, m, &e)
	if e.Code != protocol.CodeRateLimited {
		t.Fatalf("error %+v, want rate_limited", e)
	}
	// Meanwhile the polite client pings 4 times a second (under 5, burst 5).
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i < 6; i++ {
		polite.send(protocol.TypePing, map[string]any{"i": i}, strconv.Itoa(i))
		polite.expect(protocol.TypePong, nil) // an error here fails the test
		<-tick.C                              // pacing under the rate
	}
	if code := abuser.closed(); code != websocket.StatusPolicyViolation {
		t.Errorf("abuser's connection ended with %v, want 1008", code)
	}
	polite.sync()
}

// A client that answers no ping is dropped after the ping timeout, and the
// others see it leave after the grace.
func TestPingTimeout(t *testing.T) {
	const grace = 200 * time.Millisecond
	s := startServer(t, &hub.Options{PingInterval: 100 * time.Millisecond, PingTimeout: 200 * time.Millisecond, LeaveGrace: grace})
	obs := dial(t, s, nil) // reads, so it answers pings
	obs.join("pt", "obs", "Obs", "")
	start := time.Now() // before the server starts the mute connection's ping timer
	mute := rawDial(t, s, rawOptions{})
	rawJoin(t, mute, "pt", "mute", false) // never reads
	obs.expect(protocol.TypeUserJoined, nil)
	var ul protocol.UserLeft
	obs.expect(protocol.TypeUserLeft, &ul)
	if ul.UserID != "mute" {
		t.Fatalf("user-left of %q, want mute", ul.UserID)
	}
	if d := time.Since(start); d < 300*time.Millisecond+grace {
		t.Errorf("user-left %v after the join, before a ping could time out and the grace pass", d)
	}
	obs.sync() // the observer, who answers pings, is still there
	// The mute client's connection was dropped.
	p := asPeer(t, mute)
	p.skipUntil(protocol.TypeSessionJoined, nil)
	if code := p.closed(); code != -1 {
		t.Errorf("mute client's connection ended with %v, want a drop without close frame", code)
	}
}

// A participant the idle sweep made inactive is active again when it joins
// from another tab: the others are told, and the new tab's own list agrees.
func TestIdleWokenBySecondTab(t *testing.T) {
	const idle = 300 * time.Millisecond
	s := startServer(t, &hub.Options{IdleAfter: idle})
	obs, quiet := dial(t, s, nil), dial(t, s, nil)
	obs.join("idle2", "obs", "Obs", "")
	quiet.join("idle2", "quiet", "Quiet", "")
	obs.expect(protocol.TypeUserJoined, nil)
	obs.skipUntilMatch("quiet inactive", isActivity("quiet", false))

	tab2 := dial(t, s, nil)
	sj := tab2.join("idle2", "quiet", "Quiet", "")
	for _, p := range sj.Participants {
		if p.UserID == "quiet" && !p.IsActive {
			t.Errorf("the second tab's session-joined shows quiet inactive, though its join made it active")
		}
	}
	obs.skipUntilMatch("quiet active again", isActivity("quiet", true))
}

// A cursor update still waiting for the cursor rate when its sender leaves
// the session belongs to that session: it must not surface afterwards as an
// error (not_in_session) nor as a cursor-moved in the next session.
func TestPendingCursorAcrossLeave(t *testing.T) {
	s := startServer(t, nil) // 20 cursor updates per second: the 2nd waits ~50ms
	t.Run("leave-session", func(t *testing.T) {
		a, o := dial(t, s, nil), dial(t, s, nil)
		a.join("pa", "a", "A", "")
		o.join("pa", "o", "O", "")
		a.send(protocol.TypeCursorUpdate, protocol.Cursor{Line: 1}, "")
		a.send(protocol.TypeCursorUpdate, protocol.Cursor{Line: 2}, "")
		a.send(protocol.TypeLeaveSession, nil, "l")
		a.skipUntil(protocol.TypeSessionLeft, nil)
		time.Sleep(200 * time.Millisecond) // past the cursor window: nothing may come
		a.strictSync()
	})
	t.Run("join another session", func(t *testing.T) {
		a, oa, ob := dial(t, s, nil), dial(t, s, nil), dial(t, s, nil)
		a.join("pa2", "a", "A", "")
		oa.join("pa2", "oa", "OA", "")
		ob.join("pb2", "ob", "OB", "")
		a.skipUntil(protocol.TypeUserJoined, nil)
		a.send(protocol.TypeCursorUpdate, protocol.Cursor{Line: 1, File: "in-pa2.go"}, "")
		a.send(protocol.TypeCursorUpdate, protocol.Cursor{Line: 2, File: "in-pa2.go"}, "")
		a.join("pb2", "a", "A", "")
		ob.expect(protocol.TypeUserJoined, nil)
		time.Sleep(200 * time.Millisecond) // past the cursor window: nothing may come
		ob.strictSync()
		sj := dial(t, s, nil).join("pb2", "late", "Late", "")
		for _, p := range sj.Participants {
			if p.UserID == "a" && p.Cursor != nil {
				t.Errorf("a's cursor in pb2 = %+v, an update sent in pa2", p.Cursor)
			}
		}
	})
}
