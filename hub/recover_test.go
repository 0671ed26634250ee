package hub_test

// History and recovery (contract: "History and recovery", the broadcast
// and ack rows, Lifetimes) over real WebSockets. A "drop" is CloseNow: the
// TCP connection ends without a close frame, so the user keeps its place
// for the leave grace; a rejoin is a fresh connection whose join-session
// carries recover {epoch, offset of the last broadcast seen}.

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/protocol"
)

// rcOpts are the options of the recovery tests: a leave grace that outlasts
// every drop, and rates that never refuse a test's bursts of broadcasts.
func rcOpts() *hub.Options {
	return &hub.Options{LeaveGrace: 5 * time.Second, MessageRate: 1e6, MessageBurst: 1e6}
}

// rcJoin sends join-session with rec (nil: none) and returns the reply.
func (p *peer) rcJoin(sessionID, userID string, role protocol.Role, rec *protocol.Recover) protocol.SessionJoined {
	p.t.Helper()
	p.send(protocol.TypeJoinSession, protocol.JoinSession{SessionID: sessionID, Recover: rec,
		UserInfo: protocol.UserInfo{UserID: userID, Name: "N-" + userID, Role: role}}, "j-"+userID)
	var sj protocol.SessionJoined
	p.expect(protocol.TypeSessionJoined, &sj)
	return sj
}

// rcSend broadcasts event to `to` ("" leaves it out) with a ref, waits for
// its ack and returns the ack's offset. Other messages before the ack are
// dropped.
func (p *peer) rcSend(event, to string) int64 {
	p.t.Helper()
	data := map[string]any{"event": event, "payload": map[string]any{"e": event}}
	if to != "" {
		data["to"] = to
	}
	ref := "ack-" + event
	p.send(protocol.TypeBroadcast, data, ref)
	for {
		m := p.next()
		switch {
		case m.Type == protocol.TypeError:
			p.t.Fatalf("broadcast %s: error %s", event, m.Data)
		case m.Type == protocol.TypeAck && m.Ref == ref:
			var ack protocol.Ack
			if err := json.Unmarshal(m.Data, &ack); err != nil {
				p.t.Fatal(err)
			}
			return ack.Offset
		}
	}
}

// rcDecode decodes a broadcast envelope.
func rcDecode(t testing.TB, m protocol.Envelope) protocol.BroadcastEvent {
	t.Helper()
	if m.Type != protocol.TypeBroadcast {
		t.Fatalf("got %s %s, want broadcast", m.Type, m.Data)
	}
	var ev protocol.BroadcastEvent
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

// rcBroadcasts returns the broadcasts queued for p so far (a ping round
// trip), in the order received.
func (p *peer) rcBroadcasts() []protocol.BroadcastEvent {
	p.t.Helper()
	var out []protocol.BroadcastEvent
	for _, m := range p.collect() {
		if m.Type == protocol.TypeBroadcast {
			out = append(out, rcDecode(p.t, m))
		}
	}
	return out
}

// rcReplay reads the n messages right after session-joined, each of which
// must be a broadcast, and returns their events.
func (p *peer) rcReplay(n int) []protocol.BroadcastEvent {
	p.t.Helper()
	out := make([]protocol.BroadcastEvent, n)
	for i := range out {
		out[i] = rcDecode(p.t, p.next())
	}
	return out
}

func rcEvents(evs []protocol.BroadcastEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Event
	}
	return out
}

func rcSame(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A participant that drops while another sends 50 broadcasts gets exactly
// those 50 after session-joined (recovered: true), in order and once, then
// live traffic; nobody saw it leave or join again; every ack's offset is the
// offset the others saw.
func TestRecoverDroppedGetsMissed(t *testing.T) {
	s := startServer(t, rcOpts())
	a, b, c := dial(t, s, nil), dial(t, s, nil), dial(t, s, nil)
	a.rcJoin("rc", "a", protocol.RoleInstructor, nil)
	sj := b.rcJoin("rc", "b", protocol.RoleLearner, nil)
	c.rcJoin("rc", "c", protocol.RoleLearner, nil)
	a.sync()
	b.sync()

	// Two live broadcasts: b's last seen offset is the second's.
	for i := range 2 {
		off := a.rcSend("live-"+strconv.Itoa(i), "")
		if off != int64(i+1) {
			t.Fatalf("ack offset %d, want %d", off, i+1)
		}
	}
	got := b.rcBroadcasts()
	if len(got) != 2 {
		t.Fatalf("b got %d live broadcasts, want 2", len(got))
	}
	last := got[1].Offset

	b.ws.CloseNow()
	want := make([]string, 50)
	acks := make([]int64, 50)
	for i := range want {
		want[i] = "missed-" + strconv.Itoa(i)
		acks[i] = a.rcSend(want[i], "")
	}
	// c, live, sees each with the offset a was acked.
	live := c.rcBroadcasts()
	if len(live) != 52 {
		t.Fatalf("c got %d broadcasts, want 52", len(live))
	}
	for i, ack := range acks {
		if ev := live[i+2]; ev.Offset != ack || ev.Event != want[i] || ev.From != "a" {
			t.Fatalf("c got %+v for ack %d of %s", ev, ack, want[i])
		}
	}

	b2 := dial(t, s, nil)
	sj2 := b2.rcJoin("rc", "b", protocol.RoleLearner, &protocol.Recover{Epoch: sj.Epoch, Offset: last})
	if !sj2.Recovered || sj2.Epoch != sj.Epoch || sj2.Offset != acks[49] {
		t.Fatalf("session-joined %+v, want recovered in epoch %s at offset %d", sj2, sj.Epoch, acks[49])
	}
	replay := b2.rcReplay(50)
	for i, ev := range replay {
		if ev.Event != want[i] || ev.Offset != acks[i] || ev.From != "a" || string(ev.Payload) != `{"e":"`+want[i]+`"}` {
			t.Fatalf("replay %d = %+v, want %s at %d", i, ev, want[i], acks[i])
		}
	}
	// Nothing more was replayed, and live traffic follows, once.
	if extra := b2.rcBroadcasts(); len(extra) != 0 {
		t.Fatalf("after the replay b got %v more", rcEvents(extra))
	}
	next := a.rcSend("after", "")
	if got := b2.rcBroadcasts(); len(got) != 1 || got[0].Offset != next || got[0].Event != "after" {
		t.Fatalf("live after recovery: %+v, want one 'after' at %d", got, next)
	}
	// b never left: a and c saw neither user-left nor user-joined.
	for name, p := range map[string]*peer{"a": a, "c": c} {
		for _, m := range p.collect() {
			if m.Type == protocol.TypeUserLeft || m.Type == protocol.TypeUserJoined {
				t.Errorf("%s saw %s %s across b's drop", name, m.Type, m.Data)
			}
		}
	}
}

// A recovery at the session's offset is recovered with nothing to replay;
// one past it (an offset the session never had) and one in another epoch
// get recovered: false and no replay.
func TestRecoverEpochAndOffset(t *testing.T) {
	s := startServer(t, rcOpts())
	a := dial(t, s, nil)
	sj := a.rcJoin("ep", "a", protocol.RoleInstructor, nil)
	for i := range 3 {
		a.rcSend("e"+strconv.Itoa(i), "")
	}
	tests := []struct {
		name      string
		rec       protocol.Recover
		recovered bool
		replay    int
	}{
		{"from the start", protocol.Recover{Epoch: sj.Epoch, Offset: 0}, true, 3},
		{"at the offset", protocol.Recover{Epoch: sj.Epoch, Offset: 3}, true, 0},
		{"beyond the offset", protocol.Recover{Epoch: sj.Epoch, Offset: 4}, false, 0},
		{"far beyond", protocol.Recover{Epoch: sj.Epoch, Offset: 1 << 40}, false, 0},
		{"made-up epoch", protocol.Recover{Epoch: "not-" + sj.Epoch, Offset: 0}, false, 0},
		{"empty epoch", protocol.Recover{Epoch: "", Offset: 1}, false, 0},
	}
	for i, tc := range tests {
		p := dial(t, s, nil)
		got := p.rcJoin("ep", "u"+strconv.Itoa(i), protocol.RoleLearner, &tc.rec)
		if got.Recovered != tc.recovered || got.Epoch != sj.Epoch || got.Offset != 3 {
			t.Errorf("%s: session-joined recovered %v epoch %s offset %d, want %v %s 3",
				tc.name, got.Recovered, got.Epoch, got.Offset, tc.recovered, sj.Epoch)
		}
		if n := len(p.rcBroadcasts()); n != tc.replay {
			t.Errorf("%s: %d replayed, want %d", tc.name, n, tc.replay)
		}
	}
}

// A session removed after its TTL takes its history along: a new session
// of the same id has another epoch, and a recovery into the old one gets
// recovered: false and nothing.
func TestRecoverAfterSessionExpired(t *testing.T) {
	opts := rcOpts()
	opts.SessionTTL = 100 * time.Millisecond
	s := startServer(t, opts)
	a := dial(t, s, nil)
	sj := a.rcJoin("gone", "a", protocol.RoleInstructor, nil)
	for i := range 3 {
		a.rcSend("e"+strconv.Itoa(i), "")
	}
	tmMetricUntil(t, s, "sessionhub_history_events", func(v float64) bool { return v == 3 })
	a.send(protocol.TypeLeaveSession, nil, "bye")
	a.skipUntil(protocol.TypeSessionLeft, nil)
	tmMetricUntil(t, s, "sessionhub_sessions", func(v float64) bool { return v == 0 })
	// The sweep that removed the session may have counted its history; the
	// next one no longer does.
	tmMetricUntil(t, s, "sessionhub_history_events", func(v float64) bool { return v == 0 })
	if v := tmMetric(t, s, "sessionhub_history_bytes"); v != 0 {
		t.Errorf("history bytes %v once the session is gone, want 0", v)
	}

	b := dial(t, s, nil)
	got := b.rcJoin("gone", "a", protocol.RoleInstructor, &protocol.Recover{Epoch: sj.Epoch, Offset: 1})
	if got.Recovered || got.Epoch == sj.Epoch || got.Offset != 0 {
		t.Fatalf("session-joined %+v, want recovered false in a new epoch at offset 0", got)
	}
	if n := len(b.rcBroadcasts()); n != 0 {
		t.Fatalf("%d replayed into a new epoch", n)
	}
}

// A history that no longer reaches back to offset+1, by size or by age,
// gives recovered: false and no replay; one that just reaches back replays.
func TestRecoverWindowExceeded(t *testing.T) {
	t.Run("size", func(t *testing.T) {
		opts := rcOpts()
		opts.HistorySize = 5
		s := startServer(t, opts)
		a, b := dial(t, s, nil), dial(t, s, nil)
		a.rcJoin("win", "a", protocol.RoleInstructor, nil)
		sj := b.rcJoin("win", "b", protocol.RoleLearner, nil)
		b.ws.CloseNow()
		for i := range 20 {
			a.rcSend("e"+strconv.Itoa(i), "")
		}
		b2 := dial(t, s, nil)
		got := b2.rcJoin("win", "b", protocol.RoleLearner, &protocol.Recover{Epoch: sj.Epoch, Offset: 0})
		if got.Recovered || got.Epoch != sj.Epoch || got.Offset != 20 {
			t.Fatalf("20 missed, 5 kept: session-joined %+v, want recovered false at 20", got)
		}
		if n := len(b2.rcBroadcasts()); n != 0 {
			t.Fatalf("%d replayed after a failed recovery", n)
		}
		// Offsets 16..20 are kept: from 15 the history reaches back, from 14 not.
		b2.ws.CloseNow()
		b3 := dial(t, s, nil)
		if got := b3.rcJoin("win", "b", protocol.RoleLearner, &protocol.Recover{Epoch: sj.Epoch, Offset: 14}); got.Recovered {
			t.Fatal("recovered from 14 although 15 was dropped")
		}
		b3.ws.CloseNow()
		b4 := dial(t, s, nil)
		if got := b4.rcJoin("win", "b", protocol.RoleLearner, &protocol.Recover{Epoch: sj.Epoch, Offset: 15}); !got.Recovered {
			t.Fatal("not recovered from 15 although 16..20 are kept")
		}
		if evs := b4.rcReplay(5); evs[0].Offset != 16 || evs[4].Offset != 20 {
			t.Fatalf("replay from 15: %v", evs)
		}
	})
	t.Run("ttl", func(t *testing.T) {
		opts := rcOpts()
		opts.HistoryTTL = time.Second
		opts.IdleAfter = time.Second // the sweep runs every 100 ms
		s := startServer(t, opts)
		a, b := dial(t, s, nil), dial(t, s, nil)
		a.rcJoin("old", "a", protocol.RoleInstructor, nil)
		sj := b.rcJoin("old", "b", protocol.RoleLearner, nil)
		b.ws.CloseNow()
		for i := range 3 {
			a.rcSend("e"+strconv.Itoa(i), "")
		}
		if v := tmMetricUntil(t, s, "sessionhub_history_events", func(v float64) bool { return v > 0 }); v != 3 {
			t.Fatalf("history events %v, want 3", v)
		}
		// The sweep trims them once they are older than the TTL.
		tmMetricUntil(t, s, "sessionhub_history_events", func(v float64) bool { return v == 0 })
		if v := tmMetric(t, s, "sessionhub_history_bytes"); v != 0 {
			t.Errorf("history bytes %v with no events kept", v)
		}
		b2 := dial(t, s, nil)
		got := b2.rcJoin("old", "b", protocol.RoleLearner, &protocol.Recover{Epoch: sj.Epoch, Offset: 0})
		if got.Recovered || got.Epoch != sj.Epoch || got.Offset != 3 {
			t.Fatalf("history aged out: session-joined %+v, want recovered false at 3", got)
		}
		if n := len(b2.rcBroadcasts()); n != 0 {
			t.Fatalf("%d replayed after a failed recovery", n)
		}
		// Still false once a new event is kept: 1..3 are gone for good.
		a.rcSend("fresh", "")
		b2.ws.CloseNow()
		b3 := dial(t, s, nil)
		if got := b3.rcJoin("old", "b", protocol.RoleLearner, &protocol.Recover{Epoch: sj.Epoch, Offset: 2}); got.Recovered {
			t.Fatal("recovered from 2 although 3 aged out")
		}
		b3.ws.CloseNow()
		b4 := dial(t, s, nil)
		if got := b4.rcJoin("old", "b", protocol.RoleLearner, &protocol.Recover{Epoch: sj.Epoch, Offset: 3}); !got.Recovered {
			t.Fatal("not recovered from 3 although 4 is kept")
		}
		if evs := b4.rcReplay(1); evs[0].Event != "fresh" {
			t.Fatalf("replay from 3: %+v", evs)
		}
	})
}

// Addressing holds live and in replay: a learner never receives an
// instructors event, a userId-addressed event reaches that user only, and
// one to a user not (yet) in the session is acked, stored, and reaches that
// user through a recovery. A replay includes the rejoining user's own
// events when they were addressed to it.
func TestRecoverAddressing(t *testing.T) {
	s := startServer(t, rcOpts())
	tch, t2, l1, l2 := dial(t, s, nil), dial(t, s, nil), dial(t, s, nil), dial(t, s, nil)
	sj := tch.rcJoin("ad", "t", protocol.RoleInstructor, nil)
	t2.rcJoin("ad", "t2", protocol.RoleInstructor, nil)
	l1.rcJoin("ad", "l1", protocol.RoleLearner, nil)
	l2.rcJoin("ad", "l2", protocol.RoleLearner, nil)
	for _, p := range []*peer{tch, t2, l1, l2} {
		p.sync()
	}
	t2.ws.CloseNow()
	l1.ws.CloseNow()

	sends := []struct{ event, to string }{
		{"to-instructors", protocol.ToInstructors},
		{"to-learners", protocol.ToLearners},
		{"to-all", ""},
		{"to-l1", "l1"},
		{"to-t2", "t2"},
		{"to-ghost", "ghost"}, // nobody of that id in the session yet
		{"to-t", "t"},         // the sender itself: its own connection skips it
	}
	for i, sd := range sends {
		if off := tch.rcSend(sd.event, sd.to); off != int64(i+1) {
			t.Fatalf("%s acked at %d, want %d", sd.event, off, i+1)
		}
	}
	// Live: l2 gets what is addressed to learners and all; t's own
	// connection none of its own.
	if got := rcEvents(l2.rcBroadcasts()); !rcSame(got, []string{"to-learners", "to-all"}) {
		t.Errorf("l2 live: %v", got)
	}
	if got := tch.rcBroadcasts(); len(got) != 0 {
		t.Errorf("the sender's connection got its own broadcasts: %v", rcEvents(got))
	}

	rejoin := []struct {
		user string
		role protocol.Role
		want []string
	}{
		{"t2", protocol.RoleInstructor, []string{"to-instructors", "to-all", "to-t2"}},
		{"l1", protocol.RoleLearner, []string{"to-learners", "to-all", "to-l1"}},
		// Not in the session when its event was sent: a first join with
		// recover from 0 reaches it, with what a learner was addressed.
		{"ghost", protocol.RoleLearner, []string{"to-learners", "to-all", "to-ghost"}},
		// The sender, in another tab, recovering from 0: its own events
		// addressed to it are in the replay.
		{"t", protocol.RoleInstructor, []string{"to-instructors", "to-all", "to-t"}},
	}
	for _, rj := range rejoin {
		p := dial(t, s, nil)
		got := p.rcJoin("ad", rj.user, rj.role, &protocol.Recover{Epoch: sj.Epoch, Offset: 0})
		if !got.Recovered {
			t.Errorf("%s: not recovered", rj.user)
			continue
		}
		evs := p.rcReplay(len(rj.want))
		if names := rcEvents(evs); !rcSame(names, rj.want) {
			t.Errorf("%s replay: %v, want %v", rj.user, names, rj.want)
		}
		for i := 1; i < len(evs); i++ {
			if evs[i].Offset <= evs[i-1].Offset {
				t.Errorf("%s replay offsets not increasing: %d then %d", rj.user, evs[i-1].Offset, evs[i].Offset)
			}
		}
		if extra := p.rcBroadcasts(); len(extra) != 0 {
			t.Errorf("%s: more replayed: %v", rj.user, rcEvents(extra))
		}
	}
	// Live again: a learner rejoined gets no instructors event.
	tch.rcSend("live-instructors", protocol.ToInstructors)
	if got := l2.rcBroadcasts(); len(got) != 0 {
		t.Errorf("learner l2 got %v", rcEvents(got))
	}
}

// An API broadcast (from "server") takes the next offset, is stored, and
// is replayed like a client's.
func TestRecoverAPIBroadcast(t *testing.T) {
	opts := rcOpts()
	opts.APIKey = apiKey
	s := startServer(t, opts)
	a, b := dial(t, s, nil), dial(t, s, nil)
	a.rcJoin("api", "a", protocol.RoleInstructor, nil)
	sj := b.rcJoin("api", "b", protocol.RoleLearner, nil)
	a.rcSend("first", "")
	b.sync()
	b.ws.CloseNow()

	var res struct {
		Offset int64 `json:"offset"`
	}
	apiJSON(t, s, "POST", "/api/sessions/api/broadcast", []byte(`{"event":"announce","payload":{"n":1}}`), 202, &res)
	if res.Offset != 2 {
		t.Fatalf("API broadcast offset %d, want 2", res.Offset)
	}
	if ev := a.rcBroadcasts(); len(ev) != 1 || ev[0].Offset != 2 || ev[0].From != protocol.FromServer {
		t.Fatalf("a live: %+v", ev)
	}
	next := a.rcSend("third", "")

	b2 := dial(t, s, nil)
	got := b2.rcJoin("api", "b", protocol.RoleLearner, &protocol.Recover{Epoch: sj.Epoch, Offset: 1})
	if !got.Recovered {
		t.Fatal("not recovered")
	}
	evs := b2.rcReplay(2)
	if evs[0].Event != "announce" || evs[0].From != protocol.FromServer || evs[0].Offset != 2 || string(evs[0].Payload) != `{"n":1}` {
		t.Errorf("replayed API broadcast: %+v", evs[0])
	}
	if evs[1].Event != "third" || evs[1].Offset != next {
		t.Errorf("replayed client broadcast: %+v", evs[1])
	}
}

// The history gauges follow what the sweep finds kept (bounded by the
// history size); the replayed counter counts the events replayed (those
// addressed to the rejoining user only).
func TestRecoverMetrics(t *testing.T) {
	opts := rcOpts()
	opts.HistorySize = 5
	s := startServer(t, opts)
	a, b := dial(t, s, nil), dial(t, s, nil)
	a.rcJoin("m", "a", protocol.RoleInstructor, nil)
	sj := b.rcJoin("m", "b", protocol.RoleLearner, nil)
	if v := mustMetric(t, s, "sessionhub_replayed_messages_total"); v != 0 {
		t.Fatalf("replayed %v before any recovery", v)
	}
	const payload = 100
	send := func(event, to string) {
		data := map[string]any{"event": event, "payload": fmt.Sprintf("%0*d", payload, 0)}
		if to != "" {
			data["to"] = to
		}
		a.send(protocol.TypeBroadcast, data, "r-"+event)
		a.skipUntil(protocol.TypeAck, nil)
	}
	for i := range 3 {
		send("e"+strconv.Itoa(i), "")
	}
	tmMetricUntil(t, s, "sessionhub_history_events", func(v float64) bool { return v == 3 })
	bytes3 := tmMetric(t, s, "sessionhub_history_bytes")
	if bytes3 < 3*payload || bytes3 > 3*(payload+200) {
		t.Errorf("history bytes %v for 3 events of a %d-byte payload", bytes3, payload)
	}
	for i := 3; i < 10; i++ {
		send("e"+strconv.Itoa(i), "")
	}
	tmMetricUntil(t, s, "sessionhub_history_events", func(v float64) bool { return v == 5 })
	if v := tmMetric(t, s, "sessionhub_history_bytes"); v < 5*payload || v > 5*(payload+200) {
		t.Errorf("history bytes %v for 5 events kept", v)
	}

	b.ws.CloseNow()
	send("x1", "")
	send("x2", protocol.ToInstructors) // not for b
	send("x3", "b")
	b2 := dial(t, s, nil)
	if got := b2.rcJoin("m", "b", protocol.RoleLearner, &protocol.Recover{Epoch: sj.Epoch, Offset: 10}); !got.Recovered {
		t.Fatal("not recovered")
	}
	b2.rcReplay(2)
	b2.sync()
	if v := mustMetric(t, s, "sessionhub_replayed_messages_total"); v != 2 {
		t.Errorf("replayed %v, want 2", v)
	}
}

// A recovery may replay up to the whole history (--history-size, 1000 by
// default), more than a connection's send queue (256 by default) holds. The
// replay must arrive whole, not get the recovering connection closed as a
// slow consumer: a client closed with 1013 would reconnect, ask for the
// same replay and be closed again, for ever. (It was, before the replay got
// queue room of its own; queue_internal_test.go checks that room without
// sockets, this test end to end.)
func TestRecoverReplayLargerThanSendQueue(t *testing.T) {
	const missed = 600 // over the default send queue of 256, under the default history of 1000
	s := startServer(t, rcOpts())
	a, b := dial(t, s, nil), dial(t, s, nil)
	a.rcJoin("big", "a", protocol.RoleInstructor, nil)
	sj := b.rcJoin("big", "b", protocol.RoleLearner, nil)
	b.ws.CloseNow()
	for i := range missed {
		a.send(protocol.TypeBroadcast, map[string]any{"event": "e" + strconv.Itoa(i)}, "")
	}
	a.sync()

	b2 := dial(t, s, nil)
	got := b2.rcJoin("big", "b", protocol.RoleLearner, &protocol.Recover{Epoch: sj.Epoch, Offset: 0})
	if !got.Recovered || got.Offset != missed {
		t.Fatalf("session-joined %+v, want recovered at %d", got, missed)
	}
	for i := range missed {
		select {
		case m, ok := <-b2.msgs:
			if !ok {
				t.Fatalf("the recovering connection ended after %d of %d replayed events: close %v",
					i, missed, <-b2.end)
			}
			if ev := rcDecode(t, m); ev.Offset != int64(i+1) {
				t.Fatalf("replay %d: offset %d", i, ev.Offset)
			}
		case <-time.After(wait):
			t.Fatalf("replay stalled after %d of %d", i, missed)
		}
	}
}
