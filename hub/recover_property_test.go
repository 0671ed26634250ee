package hub_test

// A property-style test of history and recovery: random sequences of
// joins, drops (no close frame), rejoins with recover, leaves and
// broadcasts among a few users with roles, over real WebSockets, checked
// against a model of what each user must receive.

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/protocol"
)

type userState int

const (
	stateAbsent    userState = iota // never joined
	stateConnected                  // a participant with a live connection
	stateDropped                    // a participant whose connection was cut (in its leave grace)
	stateLeft                       // left with leave-session
)

// offsetSpan is a range of offsets [lo, hi] a user is entitled to; hi < 0
// while it is open.
type offsetSpan struct{ lo, hi int64 }

type modelUser struct {
	id    string
	role  protocol.Role
	state userState
	p     *peer
	// connJoined is the session offset in the current connection's
	// session-joined: its broadcasts at or below it are replays, above it
	// live; connLast is the last offset that connection saw.
	connJoined, connLast int64
	// lastSeen is what a client keeps for recovery: the highest offset it
	// saw in a broadcast, or in a session-joined that did not recover.
	lastSeen int64
	epoch    string
	spans    []offsetSpan
	got      map[int64]int // non-own broadcasts received (live or replayed), by offset
	ownLive  []int64       // own broadcasts received live (must stay empty)
}

type modelEvent struct {
	offset int64
	name   string
	from   string
	to     string
}

type recoveryModel struct {
	t      *testing.T
	s      *server
	sid    string
	rnd    *rand.Rand
	users  []*modelUser
	events map[int64]modelEvent
	offset int64 // the session's offset: every broadcast is acked before the next step
	epoch  string
	steps  []string // a log of the steps, printed on failure
}

func addressedTo(u *modelUser, to string) bool {
	switch to {
	case protocol.ToAll, "":
		return true
	case protocol.ToInstructors:
		return u.role == protocol.RoleInstructor
	case protocol.ToLearners:
		return u.role == protocol.RoleLearner
	}
	return u.id == to
}

func (m *recoveryModel) fail(format string, args ...any) {
	m.t.Helper()
	m.t.Fatalf("%s\nsteps:\n%v", fmt.Sprintf(format, args...), m.steps)
}

// absorb records one message read from u's current connection.
func (m *recoveryModel) absorb(u *modelUser, env protocol.Envelope) {
	m.t.Helper()
	switch env.Type {
	case protocol.TypeError:
		m.fail("%s got error %s", u.id, env.Data)
	case protocol.TypeBroadcast:
	default:
		return
	}
	var ev protocol.BroadcastEvent
	if err := json.Unmarshal(env.Data, &ev); err != nil {
		m.t.Fatal(err)
	}
	if ev.Offset <= u.connLast {
		m.fail("%s: offset %d after %d on one connection", u.id, ev.Offset, u.connLast)
	}
	u.connLast = ev.Offset
	u.lastSeen = max(u.lastSeen, ev.Offset)
	want, ok := m.events[ev.Offset]
	if !ok || want.name != ev.Event || want.from != ev.From {
		m.fail("%s got %+v, the model has %+v", u.id, ev, want)
	}
	if !addressedTo(u, want.to) {
		m.fail("%s (%s) got %s addressed to %q", u.id, u.role, ev.Event, want.to)
	}
	if ev.From == u.id {
		if ev.Offset > u.connJoined {
			u.ownLive = append(u.ownLive, ev.Offset)
		}
		return
	}
	u.got[ev.Offset]++
}

// drain reads everything u's connection was sent up to now.
func (m *recoveryModel) drain(u *modelUser) {
	m.t.Helper()
	for _, env := range u.p.collect() {
		m.absorb(u, env)
	}
}

// join opens a connection for u and joins, with recover when rec.
func (m *recoveryModel) join(u *modelUser, rec bool) {
	m.t.Helper()
	var r *protocol.Recover
	if rec {
		r = &protocol.Recover{Epoch: u.epoch, Offset: u.lastSeen}
	}
	u.p = dial(m.t, m.s, nil)
	sj := u.p.joinRecover(m.sid, u.id, u.role, r)
	if m.epoch == "" {
		m.epoch = sj.Epoch
	}
	if sj.Epoch != m.epoch || sj.Offset != m.offset {
		m.fail("%s: session-joined epoch %s offset %d, want %s %d", u.id, sj.Epoch, sj.Offset, m.epoch, m.offset)
	}
	if sj.Recovered != rec {
		m.fail("%s: recovered %v from %+v, want %v (history is large, epoch unchanged)", u.id, sj.Recovered, r, rec)
	}
	if u.state != stateConnected && u.state != stateDropped {
		u.spans = append(u.spans, offsetSpan{lo: sj.Offset + 1, hi: -1})
	}
	if rec {
		u.spans = append(u.spans, offsetSpan{lo: r.Offset + 1, hi: sj.Offset})
	}
	u.state, u.epoch = stateConnected, sj.Epoch
	u.connJoined, u.connLast = sj.Offset, 0
	if !rec {
		// A fresh start: what is at or below sj.Offset is not owed. After a
		// recovery the client must not move on to sj.Offset, only to the
		// offsets it reads: a cut right after session-joined loses the
		// replay, and the next recovery must ask for it again.
		u.lastSeen = max(u.lastSeen, sj.Offset)
	}
}

// drop cuts u's connection without a close frame and reads what reached
// it before the cut: what did not is for the recovery.
func (m *recoveryModel) drop(u *modelUser) {
	m.t.Helper()
	u.p.ws.CloseNow()
	for env := range u.p.msgs {
		m.absorb(u, env)
	}
	u.p, u.state = nil, stateDropped
}

// leave sends leave-session and reads up to session-left.
func (m *recoveryModel) leave(u *modelUser) {
	m.t.Helper()
	u.p.send(protocol.TypeLeaveSession, nil, "leave")
	for {
		env := u.p.next()
		if env.Type == protocol.TypeSessionLeft {
			break
		}
		m.absorb(u, env)
	}
	for i := range u.spans {
		if u.spans[i].hi < 0 {
			u.spans[i].hi = m.offset // the participation ends here
		}
	}
	u.p.ws.CloseNow()
	u.p, u.state = nil, stateLeft
}

// broadcast sends from u to `to` and waits for the ack.
func (m *recoveryModel) broadcast(u *modelUser, to string) {
	m.t.Helper()
	name := "ev-" + strconv.Itoa(len(m.steps))
	ref := "r-" + name
	u.p.send(protocol.TypeBroadcast, map[string]any{"event": name, "payload": len(m.steps), "to": to}, ref)
	for {
		env := u.p.next()
		if env.Type == protocol.TypeAck && env.Ref == ref {
			var ack protocol.Ack
			if err := json.Unmarshal(env.Data, &ack); err != nil {
				m.t.Fatal(err)
			}
			if ack.Offset != m.offset+1 {
				m.fail("%s: ack offset %d, want %d", u.id, ack.Offset, m.offset+1)
			}
			m.offset = ack.Offset
			m.events[ack.Offset] = modelEvent{offset: ack.Offset, name: name, from: u.id, to: to}
			return
		}
		m.absorb(u, env)
	}
}

func (m *recoveryModel) pick(state ...userState) *modelUser {
	var c []*modelUser
	for _, u := range m.users {
		if slices.Contains(state, u.state) {
			c = append(c, u)
		}
	}
	if len(c) == 0 {
		return nil
	}
	return c[m.rnd.IntN(len(c))]
}

func (m *recoveryModel) step() {
	m.t.Helper()
	switch k := m.rnd.IntN(100); {
	case k < 12:
		if u := m.pick(stateAbsent, stateLeft); u != nil {
			// A user that left may come back with or without recover.
			rec := u.state == stateLeft && m.rnd.IntN(2) == 0
			m.steps = append(m.steps, fmt.Sprintf("join %s recover=%v", u.id, rec))
			m.join(u, rec)
			return
		}
	case k < 26:
		if u := m.pick(stateConnected); u != nil {
			m.steps = append(m.steps, "drop "+u.id)
			m.drop(u)
			return
		}
	case k < 40:
		if u := m.pick(stateDropped); u != nil {
			m.steps = append(m.steps, "rejoin "+u.id)
			m.join(u, true)
			return
		}
	case k < 46:
		if u := m.pick(stateConnected); u != nil {
			m.steps = append(m.steps, "leave "+u.id)
			m.leave(u)
			return
		}
	}
	u := m.pick(stateConnected)
	if u == nil {
		u = m.pick(stateAbsent, stateLeft, stateDropped)
		m.steps = append(m.steps, "join "+u.id+" (nobody connected)")
		m.join(u, u.state == stateDropped)
		return
	}
	tos := []string{protocol.ToAll, protocol.ToInstructors, protocol.ToLearners, "ghost"}
	for _, o := range m.users {
		tos = append(tos, o.id)
	}
	to := tos[m.rnd.IntN(len(tos))]
	m.steps = append(m.steps, fmt.Sprintf("%s to %s", u.id, to))
	m.broadcast(u, to)
}

// The invariant, per user U: take every broadcast U received on any of its
// connections, live or replayed after a session-joined with recovered:
// true. Leaving out the broadcasts U sent itself, each offset is received
// exactly once, and the set is exactly the events addressed to U (by its
// role, or its userId) whose offset lies in U's entitlement: from each
// join on (offsets after that session-joined's offset) until it leaves,
// across drops (the leave grace keeps it a participant and the recovery
// replays what the cut lost), plus the offsets a recovery asked for
// (after recover.offset up to that session-joined's offset). U's own
// broadcasts never come back live to the connection that sent them; a
// replay includes those addressed to U (clients skip them by offset), so
// they are left out of the count. Besides, the offsets each connection
// sees strictly increase, every received broadcast is addressed to its
// receiver, and every recovery (the epoch never changes here, the history
// keeps everything) succeeds.
func TestRecoverProperty(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 42, 20250506} {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			s := startServer(t, &hub.Options{
				LeaveGrace:   time.Minute,
				HistorySize:  10000,
				MessageRate:  1e6,
				MessageBurst: 1e6,
			})
			m := &recoveryModel{t: t, s: s, sid: "prop", rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), events: map[int64]modelEvent{}}
			for i, role := range []protocol.Role{protocol.RoleInstructor, protocol.RoleLearner, protocol.RoleLearner, protocol.RoleInstructor, protocol.RoleLearner} {
				m.users = append(m.users, &modelUser{id: "u" + strconv.Itoa(i), role: role, got: map[int64]int{}})
			}
			for range 60 {
				m.step()
			}
			// Bring every dropped user back, then read everything.
			for _, u := range m.users {
				if u.state == stateDropped {
					m.steps = append(m.steps, "final rejoin "+u.id)
					m.join(u, true)
				}
			}
			for _, u := range m.users {
				if u.state == stateConnected {
					m.drain(u)
				}
			}

			for _, u := range m.users {
				if len(u.ownLive) > 0 {
					m.fail("%s got its own broadcasts %v live", u.id, u.ownLive)
				}
				var want, got []int64
				for off := int64(1); off <= m.offset; off++ {
					e := m.events[off]
					if e.from == u.id || !addressedTo(u, e.to) {
						continue
					}
					for _, sp := range u.spans {
						if off >= sp.lo && (sp.hi < 0 || off <= sp.hi) {
							want = append(want, off)
							break
						}
					}
				}
				for off, n := range u.got {
					if n != 1 {
						m.fail("%s received offset %d %d times", u.id, off, n)
					}
					got = append(got, off)
				}
				slices.Sort(got)
				if !slices.Equal(got, want) {
					m.fail("%s (%s, spans %v) received %v, want %v", u.id, u.role, u.spans, got, want)
				}
			}
			t.Logf("%d steps, %d broadcasts", len(m.steps), m.offset)
		})
	}
}
