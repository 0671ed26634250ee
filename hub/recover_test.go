package hub_test

// History and recovery (contract: "History and recovery", the broadcast
// and ack rows, Lifetimes) over real WebSockets. A "drop" is CloseNow: the
// TCP connection ends without a close frame, so the user keeps its place
// for the leave grace; a rejoin is a fresh connection whose join-session
// carries recover {epoch, offset of the last broadcast seen}.

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/sessionhub/sessionhub/protocol"
)

// A participant that drops while another sends 50 broadcasts gets exactly
// those 50 after session-joined (recovered: true), in order and once, then
// live traffic; nobody saw it leave or join again; every ack's offset is the
// offset the others saw.
func TestRecoverDroppedGetsMissed(t *testing.T) {
	s := startServer(t, recoveryOpts())
	a, b, c := dial(t, s, nil), dial(t, s, nil), dial(t, s, nil)
	a.joinRecover("rc", "a", protocol.RoleInstructor, nil)
	sj := b.joinRecover("rc", "b", protocol.RoleLearner, nil)
	c.joinRecover("rc", "c", protocol.RoleLearner, nil)
	a.sync()
	b.sync()

	// Two live broadcasts: b's last seen offset is the second's.
	for i := range 2 {
		off := a.broadcastAcked("live-"+strconv.Itoa(i), "")
		if off != int64(i+1) {
			t.Fatalf("ack offset %d, want %d", off, i+1)
		}
	}
	got := b.queuedBroadcasts()
	if len(got) != 2 {
		t.Fatalf("b got %d live broadcasts, want 2", len(got))
	}
	last := got[1].Offset

	b.ws.CloseNow()
	want := make([]string, 50)
	acks := make([]int64, 50)
	for i := range want {
		want[i] = "missed-" + strconv.Itoa(i)
		acks[i] = a.broadcastAcked(want[i], "")
	}
	// c, live, sees each with the offset a was acked.
	live := c.queuedBroadcasts()
	if len(live) != 52 {
		t.Fatalf("c got %d broadcasts, want 52", len(live))
	}
	for i, ack := range acks {
		if ev := live[i+2]; ev.Offset != ack || ev.Event != want[i] || ev.From != "a" {
			t.Fatalf("c got %+v for ack %d of %s", ev, ack, want[i])
		}
	}

	b2 := dial(t, s, nil)
	sj2 := b2.joinRecover("rc", "b", protocol.RoleLearner, &protocol.Recover{Epoch: sj.Epoch, Offset: last})
	if !sj2.Recovered || sj2.Epoch != sj.Epoch || sj2.Offset != acks[49] {
		t.Fatalf("session-joined %+v, want recovered in epoch %s at offset %d", sj2, sj.Epoch, acks[49])
	}
	replay := b2.readReplay(50)
	for i, ev := range replay {
		if ev.Event != want[i] || ev.Offset != acks[i] || ev.From != "a" || string(ev.Payload) != `{"e":"`+want[i]+`"}` {
			t.Fatalf("replay %d = %+v, want %s at %d", i, ev, want[i], acks[i])
		}
	}
	// Nothing more was replayed, and live traffic follows, once.
	if extra := b2.queuedBroadcasts(); len(extra) != 0 {
		t.Fatalf("after the replay b got %v more", eventNames(extra))
	}
	next := a.broadcastAcked("after", "")
	if got := b2.queuedBroadcasts(); len(got) != 1 || got[0].Offset != next || got[0].Event != "after" {
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
	s := startServer(t, recoveryOpts())
	a := dial(t, s, nil)
	sj := a.joinRecover("ep", "a", protocol.RoleInstructor, nil)
	for i := range 3 {
		a.broadcastAcked("e"+strconv.Itoa(i), "")
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
		got := p.joinRecover("ep", "u"+strconv.Itoa(i), protocol.RoleLearner, &tc.rec)
		if got.Recovered != tc.recovered || got.Epoch != sj.Epoch || got.Offset != 3 {
			t.Errorf("%s: session-joined recovered %v epoch %s offset %d, want %v %s 3",
				tc.name, got.Recovered, got.Epoch, got.Offset, tc.recovered, sj.Epoch)
		}
		if n := len(p.queuedBroadcasts()); n != tc.replay {
			t.Errorf("%s: %d replayed, want %d", tc.name, n, tc.replay)
		}
	}
}

// A session removed after its TTL takes its history along: a new session
// of the same id has another epoch, and a recovery into the old one gets
// recovered: false and nothing.
func TestRecoverAfterSessionExpired(t *testing.T) {
	opts := recoveryOpts()
	opts.SessionTTL = 100 * time.Millisecond
	s := startServer(t, opts)
	a := dial(t, s, nil)
	sj := a.joinRecover("gone", "a", protocol.RoleInstructor, nil)
	for i := range 3 {
		a.broadcastAcked("e"+strconv.Itoa(i), "")
	}
	metricUntil(t, s, "sessionhub_history_events", func(v float64) bool { return v == 3 })
	a.send(protocol.TypeLeaveSession, nil, "bye")
	a.skipUntil(protocol.TypeSessionLeft, nil)
	metricUntil(t, s, "sessionhub_sessions", func(v float64) bool { return v == 0 })
	// The sweep that removed the session may have counted its history; the
	// next one no longer does.
	metricUntil(t, s, "sessionhub_history_events", func(v float64) bool { return v == 0 })
	if v := metricValue(t, s, "sessionhub_history_bytes"); v != 0 {
		t.Errorf("history bytes %v once the session is gone, want 0", v)
	}

	b := dial(t, s, nil)
	got := b.joinRecover("gone", "a", protocol.RoleInstructor, &protocol.Recover{Epoch: sj.Epoch, Offset: 1})
	if got.Recovered || got.Epoch == sj.Epoch || got.Offset != 0 {
		t.Fatalf("session-joined %+v, want recovered false in a new epoch at offset 0", got)
	}
	if n := len(b.queuedBroadcasts()); n != 0 {
		t.Fatalf("%d replayed into a new epoch", n)
	}
}

// A history that no longer reaches back to offset+1, by size or by age,
// gives recovered: false and no replay; one that just reaches back replays.
func TestRecoverWindowExceeded(t *testing.T) {
	t.Run("size", func(t *testing.T) {
		opts := recoveryOpts()
		opts.HistorySize = 5
		s := startServer(t, opts)
		a, b := dial(t, s, nil), dial(t, s, nil)
		a.joinRecover("win", "a", protocol.RoleInstructor, nil)
		sj := b.joinRecover("win", "b", protocol.RoleLearner, nil)
		b.ws.CloseNow()
		for i := range 20 {
			a.broadcastAcked("e"+strconv.Itoa(i), "")
		}
		b2 := dial(t, s, nil)
		got := b2.joinRecover("win", "b", protocol.RoleLearner, &protocol.Recover{Epoch: sj.Epoch, Offset: 0})
		if got.Recovered || got.Epoch != sj.Epoch || got.Offset != 20 {
			t.Fatalf("20 missed, 5 kept: session-joined %+v, want recovered false at 20", got)
		}
		if n := len(b2.queuedBroadcasts()); n != 0 {
			t.Fatalf("%d replayed after a failed recovery", n)
		}
		// Offsets 16..20 are kept: from 15 the history reaches back, from 14 not.
		b2.ws.CloseNow()
		b3 := dial(t, s, nil)
		if got := b3.joinRecover("win", "b", protocol.RoleLearner, &protocol.Recover{Epoch: sj.Epoch, Offset: 14}); got.Recovered {
			t.Fatal("recovered from 14 although 15 was dropped")
		}
		b3.ws.CloseNow()
		b4 := dial(t, s, nil)
		if got := b4.joinRecover("win", "b", protocol.RoleLearner, &protocol.Recover{Epoch: sj.Epoch, Offset: 15}); !got.Recovered {
			t.Fatal("not recovered from 15 although 16..20 are kept")
		}
		if evs := b4.readReplay(5); evs[0].Offset != 16 || evs[4].Offset != 20 {
			t.Fatalf("replay from 15: %v", evs)
		}
	})
	t.Run("ttl", func(t *testing.T) {
		opts := recoveryOpts()
		opts.HistoryTTL = time.Second
		opts.IdleAfter = time.Second // the sweep runs every 100 ms
		s := startServer(t, opts)
		a, b := dial(t, s, nil), dial(t, s, nil)
		a.joinRecover("old", "a", protocol.RoleInstructor, nil)
		sj := b.joinRecover("old", "b", protocol.RoleLearner, nil)
		b.ws.CloseNow()
		for i := range 3 {
			a.broadcastAcked("e"+strconv.Itoa(i), "")
		}
		if v := metricUntil(t, s, "sessionhub_history_events", func(v float64) bool { return v > 0 }); v != 3 {
			t.Fatalf("history events %v, want 3", v)
		}
		// The sweep trims them once they are older than the TTL.
		metricUntil(t, s, "sessionhub_history_events", func(v float64) bool { return v == 0 })
		if v := metricValue(t, s, "sessionhub_history_bytes"); v != 0 {
			t.Errorf("history bytes %v with no events kept", v)
		}
		b2 := dial(t, s, nil)
		got := b2.joinRecover("old", "b", protocol.RoleLearner, &protocol.Recover{Epoch: sj.Epoch, Offset: 0})
		if got.Recovered || got.Epoch != sj.Epoch || got.Offset != 3 {
			t.Fatalf("history aged out: session-joined %+v, want recovered false at 3", got)
		}
		if n := len(b2.queuedBroadcasts()); n != 0 {
			t.Fatalf("%d replayed after a failed recovery", n)
		}
		// Still false once a new event is kept: 1..3 are gone for good.
		a.broadcastAcked("fresh", "")
		b2.ws.CloseNow()
		b3 := dial(t, s, nil)
		if got := b3.joinRecover("old", "b", protocol.RoleLearner, &protocol.Recover{Epoch: sj.Epoch, Offset: 2}); got.Recovered {
			t.Fatal("recovered from 2 although 3 aged out")
		}
		b3.ws.CloseNow()
		b4 := dial(t, s, nil)
		if got := b4.joinRecover("old", "b", protocol.RoleLearner, &protocol.Recover{Epoch: sj.Epoch, Offset: 3}); !got.Recovered {
			t.Fatal("not recovered from 3 although 4 is kept")
		}
		if evs := b4.readReplay(1); evs[0].Event != "fresh" {
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
	s := startServer(t, recoveryOpts())
	tch, t2, l1, l2 := dial(t, s, nil), dial(t, s, nil), dial(t, s, nil), dial(t, s, nil)
	sj := tch.joinRecover("ad", "t", protocol.RoleInstructor, nil)
	t2.joinRecover("ad", "t2", protocol.RoleInstructor, nil)
	l1.joinRecover("ad", "l1", protocol.RoleLearner, nil)
	l2.joinRecover("ad", "l2", protocol.RoleLearner, nil)
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
		if off := tch.broadcastAcked(sd.event, sd.to); off != int64(i+1) {
			t.Fatalf("%s acked at %d, want %d", sd.event, off, i+1)
		}
	}
	// Live: l2 gets what is addressed to learners and all; t's own
	// connection none of its own.
	if got := eventNames(l2.queuedBroadcasts()); !slices.Equal(got, []string{"to-learners", "to-all"}) {
		t.Errorf("l2 live: %v", got)
	}
	if got := tch.queuedBroadcasts(); len(got) != 0 {
		t.Errorf("the sender's connection got its own broadcasts: %v", eventNames(got))
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
		got := p.joinRecover("ad", rj.user, rj.role, &protocol.Recover{Epoch: sj.Epoch, Offset: 0})
		if !got.Recovered {
			t.Errorf("%s: not recovered", rj.user)
			continue
		}
		evs := p.readReplay(len(rj.want))
		if names := eventNames(evs); !slices.Equal(names, rj.want) {
			t.Errorf("%s replay: %v, want %v", rj.user, names, rj.want)
		}
		for i := 1; i < len(evs); i++ {
			if evs[i].Offset <= evs[i-1].Offset {
				t.Errorf("%s replay offsets not increasing: %d then %d", rj.user, evs[i-1].Offset, evs[i].Offset)
			}
		}
		if extra := p.queuedBroadcasts(); len(extra) != 0 {
			t.Errorf("%s: more replayed: %v", rj.user, eventNames(extra))
		}
	}
	// Live again: a learner rejoined gets no instructors event.
	tch.broadcastAcked("live-instructors", protocol.ToInstructors)
	if got := l2.queuedBroadcasts(); len(got) != 0 {
		t.Errorf("learner l2 got %v", eventNames(got))
	}
}

// An API broadcast (from "server") takes the next offset, is stored, and
// is replayed like a client's.
func TestRecoverAPIBroadcast(t *testing.T) {
	opts := recoveryOpts()
	opts.APIKey = apiKey
	s := startServer(t, opts)
	a, b := dial(t, s, nil), dial(t, s, nil)
	a.joinRecover("api", "a", protocol.RoleInstructor, nil)
	sj := b.joinRecover("api", "b", protocol.RoleLearner, nil)
	a.broadcastAcked("first", "")
	b.sync()
	b.ws.CloseNow()

	var res struct {
		Offset int64 `json:"offset"`
	}
	apiJSON(t, s, "POST", "/api/sessions/api/broadcast", []byte(`{"event":"announce","payload":{"n":1}}`), 202, &res)
	if res.Offset != 2 {
		t.Fatalf("API broadcast offset %d, want 2", res.Offset)
	}
	if ev := a.queuedBroadcasts(); len(ev) != 1 || ev[0].Offset != 2 || ev[0].From != protocol.FromServer {
		t.Fatalf("a live: %+v", ev)
	}
	next := a.broadcastAcked("third", "")

	b2 := dial(t, s, nil)
	got := b2.joinRecover("api", "b", protocol.RoleLearner, &protocol.Recover{Epoch: sj.Epoch, Offset: 1})
	if !got.Recovered {
		t.Fatal("not recovered")
	}
	evs := b2.readReplay(2)
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
	opts := recoveryOpts()
	opts.HistorySize = 5
	s := startServer(t, opts)
	a, b := dial(t, s, nil), dial(t, s, nil)
	a.joinRecover("m", "a", protocol.RoleInstructor, nil)
	sj := b.joinRecover("m", "b", protocol.RoleLearner, nil)
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
	metricUntil(t, s, "sessionhub_history_events", func(v float64) bool { return v == 3 })
	bytes3 := metricValue(t, s, "sessionhub_history_bytes")
	if bytes3 < 3*payload || bytes3 > 3*(payload+200) {
		t.Errorf("history bytes %v for 3 events of a %d-byte payload", bytes3, payload)
	}
	for i := 3; i < 10; i++ {
		send("e"+strconv.Itoa(i), "")
	}
	metricUntil(t, s, "sessionhub_history_events", func(v float64) bool { return v == 5 })
	if v := metricValue(t, s, "sessionhub_history_bytes"); v < 5*payload || v > 5*(payload+200) {
		t.Errorf("history bytes %v for 5 events kept", v)
	}

	b.ws.CloseNow()
	send("x1", "")
	send("x2", protocol.ToInstructors) // not for b
	send("x3", "b")
	b2 := dial(t, s, nil)
	if got := b2.joinRecover("m", "b", protocol.RoleLearner, &protocol.Recover{Epoch: sj.Epoch, Offset: 10}); !got.Recovered {
		t.Fatal("not recovered")
	}
	b2.readReplay(2)
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
	s := startServer(t, recoveryOpts())
	a, b := dial(t, s, nil), dial(t, s, nil)
	a.joinRecover("big", "a", protocol.RoleInstructor, nil)
	sj := b.joinRecover("big", "b", protocol.RoleLearner, nil)
	b.ws.CloseNow()
	for i := range missed {
		a.send(protocol.TypeBroadcast, map[string]any{"event": "e" + strconv.Itoa(i)}, "")
	}
	a.sync()

	b2 := dial(t, s, nil)
	got := b2.joinRecover("big", "b", protocol.RoleLearner, &protocol.Recover{Epoch: sj.Epoch, Offset: 0})
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
			if ev := decodeBroadcast(t, m); ev.Offset != int64(i+1) {
				t.Fatalf("replay %d: offset %d", i, ev.Offset)
			}
		case <-time.After(wait):
			t.Fatalf("replay stalled after %d of %d", i, missed)
		}
	}
}
