package cluster_test

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sessionhub/sessionhub/cluster"
	"github.com/sessionhub/sessionhub/internal/redistest"
)

// t0 is the tests' clock origin.
var t0 = time.UnixMilli(1_700_000_000_000)

const grace = 5 * time.Second

// twoNodes returns the Presence of nodes "A" and "B", each on a client of
// its own, on one fresh Redis.
func twoNodes(t *testing.T) (s *redistest.Server, a, b *cluster.Presence) {
	t.Helper()
	s = redistest.Start(t)
	return s, cluster.NewPresence(node(t, s), nil), cluster.NewPresence(node(t, s), nil)
}

func member(user string) []byte { return fmt.Appendf(nil, `{"userId":%q}`, user) }

func attach(t *testing.T, p *cluster.Presence, session, user, nodeID string, now time.Time) (stored []byte, first bool) {
	t.Helper()
	stored, first, err := p.Attach(ctxT(t), session, user, nodeID, member(user), now)
	if err != nil {
		t.Fatalf("Attach(%s, %s, %s): %v", session, user, nodeID, err)
	}
	return stored, first
}

func detach(t *testing.T, p *cluster.Presence, session, user, nodeID string, g time.Duration, now time.Time) bool {
	t.Helper()
	left, err := p.Detach(ctxT(t), session, user, nodeID, g, now)
	if err != nil {
		t.Fatalf("Detach(%s, %s, %s): %v", session, user, nodeID, err)
	}
	return left
}

func members(t *testing.T, p *cluster.Presence, session string) []cluster.MemberState {
	t.Helper()
	ms, err := p.Members(ctxT(t), session)
	if err != nil {
		t.Fatalf("Members(%s): %v", session, err)
	}
	return ms
}

func userIDs(ms []cluster.MemberState) []string {
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.UserID)
	}
	return ids
}

func find(ms []cluster.MemberState, user string) *cluster.MemberState {
	for i := range ms {
		if ms[i].UserID == user {
			return &ms[i]
		}
	}
	return nil
}

func sessionUsers(sm []cluster.SessionMember) []string {
	var out []string
	for _, m := range sm {
		out = append(out, m.Session+"/"+m.UserID)
	}
	slices.Sort(out)
	return out
}

func TestPresenceTwoTabsOnTwoNodesAreOneMember(t *testing.T) {
	_, a, b := twoNodes(t)
	ctx := ctxT(t)
	stored, first := attach(t, a, "s", "u1", "A", t0)
	if !first || !bytes.Equal(stored, member("u1")) {
		t.Fatalf("first Attach = %q, %v; want the member, true", stored, first)
	}
	stored, first, err := b.Attach(ctx, "s", "u1", "B", []byte(`{"other":1}`), t0.Add(time.Second))
	if err != nil || first || !bytes.Equal(stored, member("u1")) {
		t.Fatalf("second tab on B = %q, %v, %v; want the original member, false", stored, first, err)
	}
	if _, first = attach(t, b, "s", "u1", "B", t0.Add(2*time.Second)); first {
		t.Fatal("third tab reported first")
	}
	ms := members(t, a, "s")
	if len(ms) != 1 || ms[0].Conns != 3 || ms[0].Nodes["A"] != 1 || ms[0].Nodes["B"] != 2 ||
		!ms[0].JoinedAt.Equal(t0) || !ms[0].LeaveAt.IsZero() {
		t.Fatalf("Members = %+v; want u1 with 3 connections (A 1, B 2) joined at t0", ms)
	}
	now := t0.Add(time.Minute)
	for _, d := range []struct {
		p    *cluster.Presence
		node string
	}{{b, "B"}, {a, "A"}} {
		if detach(t, d.p, "s", "u1", d.node, 0, now) {
			t.Fatalf("Detach of a tab on %s left while tabs remain", d.node)
		}
		if ms := members(t, b, "s"); len(ms) != 1 || !ms[0].LeaveAt.IsZero() {
			t.Fatalf("after detaching a tab on %s, Members = %+v; want u1 present", d.node, ms)
		}
	}
	if !detach(t, b, "s", "u1", "B", 0, now) {
		t.Fatal("Detach of the last tab with no grace did not leave")
	}
	if ms := members(t, a, "s"); len(ms) != 0 {
		t.Fatalf("Members after leaving = %+v; want none", ms)
	}
	// A connection the node does not hold: nothing happens.
	if detach(t, a, "s", "u1", "A", 0, now) {
		t.Fatal("Detach of an unknown connection left")
	}
}

func TestPresenceDetachLastConnection(t *testing.T) {
	for _, tc := range []struct {
		name  string
		grace time.Duration
		left  bool
	}{
		{"no grace", 0, true},
		{"grace", grace, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, a, b := twoNodes(t)
			attach(t, a, "s", "u1", "A", t0)
			attach(t, b, "s", "u2", "B", t0)
			now := t0.Add(time.Second)
			if left := detach(t, a, "s", "u1", "A", tc.grace, now); left != tc.left {
				t.Fatalf("Detach left = %v; want %v", left, tc.left)
			}
			ms := members(t, b, "s")
			u1 := find(ms, "u1")
			switch {
			case tc.left && u1 != nil:
				t.Fatalf("u1 left but is listed: %+v", ms)
			case !tc.left && (u1 == nil || u1.Conns != 0 || !u1.LeaveAt.Equal(now.Add(tc.grace)) || len(u1.Nodes) != 0):
				t.Fatalf("u1 in its grace: Members = %+v; want it with no connection and LeaveAt now+grace", ms)
			}
			if u2 := find(ms, "u2"); u2 == nil || u2.Conns != 1 {
				t.Fatalf("u2 lost: %+v", ms)
			}
		})
	}
}

func TestPresenceGraceExpireAndReturn(t *testing.T) {
	_, a, b := twoNodes(t)
	ctx := ctxT(t)
	attach(t, a, "s", "u1", "A", t0)
	if err := a.SetState(ctx, "s", "u1", []byte(`{"cursor":1}`)); err != nil {
		t.Fatal(err)
	}
	t1 := t0.Add(time.Minute)
	if detach(t, a, "s", "u1", "A", grace, t1) {
		t.Fatal("Detach with a grace left")
	}
	for _, p := range []*cluster.Presence{a, b} {
		if gone, err := p.Expire(ctx, "s", t1.Add(grace-time.Millisecond)); err != nil || len(gone) != 0 {
			t.Fatalf("Expire before the deadline = %v, %v; want nothing", gone, err)
		}
	}

	// Back within the grace, through the other node: the same member.
	stored, first, err := b.Attach(ctx, "s", "u1", "B", []byte(`{"new":true}`), t1.Add(grace/2))
	if err != nil || first || !bytes.Equal(stored, member("u1")) {
		t.Fatalf("return within the grace = %q, %v, %v; want the original member, not first", stored, first, err)
	}
	ms := members(t, a, "s")
	if len(ms) != 1 || !ms[0].JoinedAt.Equal(t0) || !ms[0].LeaveAt.IsZero() || ms[0].Conns != 1 || ms[0].Nodes["B"] != 1 {
		t.Fatalf("after the return, Members = %+v; want u1 joined at t0, present on B", ms)
	}
	if gone, err := a.Expire(ctx, "s", t1.Add(time.Hour)); err != nil || len(gone) != 0 {
		t.Fatalf("Expire after a return = %v, %v; want nothing", gone, err)
	}
	if st, err := b.State(ctx, "s"); err != nil || string(st["u1"]) != `{"cursor":1}` {
		t.Fatalf("state after a return = %q, %v; want it kept", st, err)
	}

	// Gone for good: twenty callers on both nodes, one gets it.
	t2 := t1.Add(time.Hour)
	if detach(t, b, "s", "u1", "B", grace, t2) {
		t.Fatal("Detach with a grace left")
	}
	var (
		mu   sync.Mutex
		got  []cluster.ExpiredMember
		wg   sync.WaitGroup
		errs = make(chan error, 20)
	)
	for i := range 20 {
		p := []*cluster.Presence{a, b}[i%2]
		wg.Go(func() {
			gone, err := p.Expire(ctx, "s", t2.Add(grace))
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			got = append(got, gone...)
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].UserID != "u1" || !bytes.Equal(got[0].Member, member("u1")) {
		t.Fatalf("concurrent Expire returned %+v; want u1 once", got)
	}
	if ms := members(t, a, "s"); len(ms) != 0 {
		t.Fatalf("Members after Expire = %+v", ms)
	}
	if st, err := a.State(ctx, "s"); err != nil || len(st) != 0 {
		t.Fatalf("state after Expire = %q, %v; want none", st, err)
	}
	// A new join after that is a new participant.
	if _, first := attach(t, a, "s", "u1", "A", t2.Add(time.Minute)); !first {
		t.Fatal("join after the grace ended is not first")
	}
	if ms := members(t, a, "s"); len(ms) != 1 || !ms[0].JoinedAt.Equal(t2.Add(time.Minute)) {
		t.Fatalf("rejoined member = %+v; want a fresh joinedAt", ms)
	}
}

func TestPresenceMembersOrder(t *testing.T) {
	_, a, b := twoNodes(t)
	for _, j := range []struct {
		user string
		p    *cluster.Presence
		node string
		at   time.Time
	}{
		{"b", a, "A", t0},
		{"d", b, "B", t0.Add(time.Millisecond)},
		{"a", b, "B", t0},
		{"c", a, "A", t0.Add(-time.Millisecond)},
		{"B", a, "A", t0}, // upper case sorts first, bytewise
	} {
		attach(t, j.p, "s", j.user, j.node, j.at)
	}
	// A user in its grace keeps its place.
	detach(t, a, "s", "b", "A", grace, t0.Add(time.Second))
	want := []string{"c", "B", "a", "b", "d"}
	if got := userIDs(members(t, b, "s")); !slices.Equal(got, want) {
		t.Fatalf("Members order = %v; want %v", got, want)
	}
}

func TestPresenceRemove(t *testing.T) {
	_, a, b := twoNodes(t)
	ctx := ctxT(t)
	attach(t, a, "s", "u1", "A", t0)
	attach(t, a, "s", "u1", "A", t0)
	attach(t, b, "s", "u1", "B", t0)
	attach(t, b, "s", "u2", "B", t0)
	if err := a.SetState(ctx, "s", "u1", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.Remove(ctx, "s", "u1"); err != nil || !ok {
		t.Fatalf("Remove = %v, %v; want true", ok, err)
	}
	if got := userIDs(members(t, a, "s")); !slices.Equal(got, []string{"u2"}) {
		t.Fatalf("Members after Remove = %v; want [u2]", got)
	}
	if ok, err := a.Remove(ctx, "s", "u1"); err != nil || ok {
		t.Fatalf("second Remove = %v, %v; want false", ok, err)
	}
	if ok, err := a.Remove(ctx, "s", "nobody"); err != nil || ok {
		t.Fatalf("Remove of an unknown user = %v, %v; want false", ok, err)
	}
	// The closed connections' Detaches and a DropNode find nothing of u1.
	if detach(t, a, "s", "u1", "A", 0, t0) {
		t.Fatal("Detach after Remove left")
	}
	if sessions, removed, err := a.DropNode(ctx, "A", 0, t0); err != nil || len(sessions) != 0 || len(removed) != 0 {
		t.Fatalf("DropNode(A) after Remove = %v, %v, %v; want nothing", sessions, removed, err)
	}
	if st, err := a.State(ctx, "s"); err != nil || len(st) != 0 {
		t.Fatalf("state after Remove = %q, %v", st, err)
	}
	if _, first := attach(t, b, "s", "u1", "B", t0.Add(time.Second)); !first {
		t.Fatal("join after Remove is not first")
	}
	if ms := members(t, a, "s"); find(ms, "u1").Conns != 1 {
		t.Fatalf("Members after rejoin = %+v; want u1 with one connection", ms)
	}
}

func TestPresenceDropNode(t *testing.T) {
	for _, tc := range []struct {
		name    string
		grace   time.Duration
		removed []string
	}{
		{"no grace", 0, []string{"s1/onlyB", "s2/onlyB2"}},
		{"grace", grace, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := redistest.Start(t)
			a := cluster.NewPresence(node(t, s), nil)
			rdbB := node(t, s)
			b := cluster.NewPresence(rdbB, nil)
			ctx := ctxT(t)
			attach(t, b, "s1", "onlyB", "B", t0)
			attach(t, b, "s1", "onlyB", "B", t0)
			attach(t, a, "s1", "both", "A", t0)
			attach(t, b, "s1", "both", "B", t0)
			attach(t, a, "s1", "onlyA", "A", t0)
			attach(t, b, "s2", "onlyB2", "B", t0)
			attach(t, a, "s3", "elsewhere", "A", t0)
			rdbB.Close() // B dies

			now := t0.Add(time.Minute)
			sessions, removed, err := a.DropNode(ctx, "B", tc.grace, now)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(sessions, []string{"s1", "s2"}) || !slices.Equal(sessionUsers(removed), tc.removed) {
				t.Fatalf("DropNode(B) = %v, %v; want [s1 s2], %v", sessions, sessionUsers(removed), tc.removed)
			}
			for _, r := range removed {
				if !bytes.Equal(r.Member, member(r.UserID)) {
					t.Fatalf("removed %s with member %q", r.UserID, r.Member)
				}
			}
			ms := members(t, a, "s1")
			if both := find(ms, "both"); both == nil || both.Conns != 1 || both.Nodes["A"] != 1 || len(both.Nodes) != 1 || !both.LeaveAt.IsZero() {
				t.Fatalf("user also on A: %+v; want present with its A connection", both)
			}
			if onlyA := find(ms, "onlyA"); onlyA == nil || onlyA.Conns != 1 {
				t.Fatalf("user only on A: %+v", onlyA)
			}
			onlyB := find(ms, "onlyB")
			if tc.grace == 0 && onlyB != nil {
				t.Fatalf("user only on B still listed with no grace: %+v", onlyB)
			}
			if tc.grace > 0 && (onlyB == nil || onlyB.Conns != 0 || !onlyB.LeaveAt.Equal(now.Add(tc.grace))) {
				t.Fatalf("user only on B: %+v; want it in its grace until now+grace", onlyB)
			}

			// Again, from any node: nothing.
			sessions, removed, err = a.DropNode(ctx, "B", tc.grace, now.Add(time.Second))
			if err != nil || len(sessions) != 0 || len(removed) != 0 {
				t.Fatalf("second DropNode(B) = %v, %v, %v; want nothing", sessions, removed, err)
			}
			if tc.grace > 0 {
				if got := find(members(t, a, "s1"), "onlyB"); got == nil || !got.LeaveAt.Equal(now.Add(tc.grace)) {
					t.Fatalf("second DropNode moved the grace: %+v", got)
				}
				gone, err := a.Expire(ctx, "s1", now.Add(tc.grace))
				if err != nil || len(gone) != 1 || gone[0].UserID != "onlyB" {
					t.Fatalf("Expire at the end of the grace = %+v, %v; want onlyB", gone, err)
				}
			}
			if got := userIDs(members(t, a, "s3")); !slices.Equal(got, []string{"elsewhere"}) {
				t.Fatalf("untouched session s3 = %v", got)
			}
		})
	}
}

func TestPresenceDropNodeConcurrent(t *testing.T) {
	s := redistest.Start(t)
	ctx := ctxT(t)
	a := cluster.NewPresence(node(t, s), nil)
	b := cluster.NewPresence(node(t, s), nil)
	dead := cluster.NewPresence(node(t, s), nil)
	var want []string
	for i := range 10 {
		session := fmt.Sprintf("s%d", i%3)
		user := fmt.Sprintf("u%d", i)
		attach(t, dead, session, user, "C", t0)
		attach(t, dead, session, user, "C", t0)
		want = append(want, session+"/"+user)
		attach(t, a, session, "stays", "A", t0)
	}
	slices.Sort(want)
	var (
		mu       sync.Mutex
		removed  []cluster.SessionMember
		sessions []string
		wg       sync.WaitGroup
		errs     = make(chan error, 20)
	)
	for i := range 20 {
		p := []*cluster.Presence{a, b}[i%2]
		wg.Go(func() {
			ss, rm, err := p.DropNode(ctx, "C", 0, t0.Add(time.Minute))
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			removed = append(removed, rm...)
			sessions = append(sessions, ss...)
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	slices.Sort(sessions)
	if got := sessionUsers(removed); !slices.Equal(got, want) || !slices.Equal(sessions, []string{"s0", "s1", "s2"}) {
		t.Fatalf("concurrent DropNode removed %v in %v; want %v once, in [s0 s1 s2]", got, sessions, want)
	}
	for _, session := range []string{"s0", "s1", "s2"} {
		if ms := members(t, b, session); len(ms) != 1 || ms[0].UserID != "stays" || ms[0].Conns < 1 {
			t.Fatalf("%s after DropNode = %+v; want only A's user", session, ms)
		}
	}
}

func TestPresenceState(t *testing.T) {
	_, a, b := twoNodes(t)
	ctx := ctxT(t)
	attach(t, a, "s", "u1", "A", t0)
	attach(t, b, "s", "u2", "B", t0)
	st1 := []byte(`{"cursor":{"x":1,"y":2},"isActive":true}`)
	st2 := []byte{'{', 0, 0xff, '}'}
	if err := a.SetState(ctx, "s", "u1", []byte("old")); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		p    *cluster.Presence
		user string
		st   []byte
	}{{a, "u1", st1}, {b, "u2", st2}, {a, "stranger", []byte("ignored")}} {
		if err := w.p.SetState(ctx, "s", w.user, w.st); err != nil {
			t.Fatalf("SetState(%s): %v", w.user, err)
		}
	}
	got, err := b.State(ctx, "s")
	if err != nil || len(got) != 2 || !bytes.Equal(got["u1"], st1) || !bytes.Equal(got["u2"], st2) {
		t.Fatalf("State = %q, %v; want u1 and u2's latest", got, err)
	}
	detach(t, b, "s", "u2", "B", 0, t0)
	if got, err := a.State(ctx, "s"); err != nil || len(got) != 1 || got["u2"] != nil {
		t.Fatalf("State after u2 left = %q, %v; want u1 only", got, err)
	}
	if got, err := a.State(ctx, "empty"); err != nil || len(got) != 0 {
		t.Fatalf("State of an unknown session = %q, %v", got, err)
	}
}

func TestPresenceRepublishAfterRedisRestart(t *testing.T) {
	s, a, b := twoNodes(t)
	ctx := ctxT(t)
	attach(t, a, "s1", "tabs", "A", t0)
	attach(t, b, "s1", "tabs", "B", t0.Add(time.Second))
	attach(t, b, "s1", "tabs", "B", t0.Add(time.Second))
	attach(t, a, "s1", "onA", "A", t0.Add(2*time.Second))
	attach(t, b, "s2", "onB", "B", t0.Add(3*time.Second))
	before := map[string][]cluster.MemberState{"s1": members(t, a, "s1"), "s2": members(t, a, "s2")}

	s.Restart() // Redis lost everything
	if ms := members(t, a, "s1"); len(ms) != 0 {
		t.Fatalf("Members after the restart = %+v; want none", ms)
	}
	// What each node holds locally.
	connsA := map[string]map[string]cluster.NodeConns{"s1": {
		"tabs": {Count: 1, Member: member("tabs"), JoinedAt: t0},
		"onA":  {Count: 1, Member: member("onA"), JoinedAt: t0.Add(2 * time.Second)},
	}}
	connsB := map[string]map[string]cluster.NodeConns{
		"s1": {"tabs": {Count: 2, Member: member("tabs"), JoinedAt: t0}},
		"s2": {"onB": {Count: 1, Member: member("onB"), JoinedAt: t0.Add(3 * time.Second)}},
	}
	now := t0.Add(time.Hour)
	var (
		wg     sync.WaitGroup
		firsts [2][]cluster.SessionMember
		errs   [2]error
	)
	for i, r := range []struct {
		p     *cluster.Presence
		node  string
		conns map[string]map[string]cluster.NodeConns
	}{{a, "A", connsA}, {b, "B", connsB}} {
		wg.Go(func() {
			var removed []cluster.SessionMember
			firsts[i], removed, errs[i] = r.p.Republish(ctx, r.node, r.conns, grace, now)
			if errs[i] == nil && len(removed) != 0 {
				errs[i] = fmt.Errorf("republish %s removed %v", r.node, removed)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	all := sessionUsers(append(firsts[0], firsts[1]...))
	if want := []string{"s1/onA", "s1/tabs", "s2/onB"}; !slices.Equal(all, want) {
		t.Fatalf("firsts of A %v and B %v; want %v, each once", sessionUsers(firsts[0]), sessionUsers(firsts[1]), want)
	}
	for _, f := range append(firsts[0], firsts[1]...) {
		if !bytes.Equal(f.Member, member(f.UserID)) {
			t.Fatalf("first %s with member %q", f.UserID, f.Member)
		}
	}
	check := func(when string) {
		t.Helper()
		for session, want := range before {
			got := members(t, b, session)
			if len(got) != len(want) {
				t.Fatalf("%s: %s = %+v; want %+v", when, session, got, want)
			}
			for i := range want {
				g, w := got[i], want[i]
				if g.UserID != w.UserID || g.Conns != w.Conns || !g.JoinedAt.Equal(w.JoinedAt) || !bytes.Equal(g.Member, w.Member) ||
					len(g.Nodes) != len(w.Nodes) || !g.LeaveAt.IsZero() {
					t.Fatalf("%s: %s member %d = %+v; want %+v", when, session, i, g, w)
				}
			}
		}
	}
	check("after republishing")

	// Idempotent: again sets, does not add, and announces nothing.
	for _, r := range []struct {
		p     *cluster.Presence
		node  string
		conns map[string]map[string]cluster.NodeConns
	}{{a, "A", connsA}, {b, "B", connsB}} {
		f, rm, err := r.p.Republish(ctx, r.node, r.conns, grace, now)
		if err != nil || len(f) != 0 || len(rm) != 0 {
			t.Fatalf("second Republish(%s) = %v, %v, %v; want nothing", r.node, f, rm, err)
		}
	}
	check("after republishing twice")

	// The republished index serves DropNode and Detach as before.
	if left := detach(t, a, "s1", "onA", "A", 0, now); !left {
		t.Fatal("Detach of a republished connection did not leave")
	}
	if _, removed, err := a.DropNode(ctx, "B", 0, now); err != nil || !slices.Equal(sessionUsers(removed), []string{"s2/onB"}) {
		t.Fatalf("DropNode(B) after Republish removed %v, %v; want [s2/onB]", sessionUsers(removed), err)
	}
	if ms := members(t, a, "s1"); len(ms) != 1 || ms[0].Conns != 1 || ms[0].Nodes["A"] != 1 {
		t.Fatalf("s1 after DropNode(B) = %+v; want tabs with its A connection", ms)
	}
}

func TestPresenceRepublishDropsStaleConnections(t *testing.T) {
	for _, tc := range []struct {
		name    string
		grace   time.Duration
		removed []string
	}{
		{"no grace", 0, []string{"s/gone"}},
		{"grace", grace, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, a, b := twoNodes(t)
			ctx := ctxT(t)
			attach(t, a, "s", "gone", "A", t0)
			attach(t, a, "s", "kept", "A", t0)
			attach(t, a, "s", "kept", "A", t0)
			attach(t, a, "s", "shared", "A", t0)
			attach(t, b, "s", "shared", "B", t0)
			// While Redis was unreachable from A, "gone" and a tab of
			// "kept" and "shared" closed on A.
			now := t0.Add(time.Minute)
			firsts, removed, err := a.Republish(ctx, "A", map[string]map[string]cluster.NodeConns{"s": {
				"kept":   {Count: 1, Member: member("kept")},
				"shared": {Count: 0},
			}}, tc.grace, now)
			if err != nil || len(firsts) != 0 || !slices.Equal(sessionUsers(removed), tc.removed) {
				t.Fatalf("Republish = %v, %v, %v; want no firsts, removed %v", firsts, sessionUsers(removed), err, tc.removed)
			}
			ms := members(t, b, "s")
			if k := find(ms, "kept"); k == nil || k.Conns != 1 {
				t.Fatalf("kept = %+v; want one connection", k)
			}
			if s := find(ms, "shared"); s == nil || s.Conns != 1 || s.Nodes["B"] != 1 || len(s.Nodes) != 1 {
				t.Fatalf("shared = %+v; want its B connection only", s)
			}
			g := find(ms, "gone")
			if tc.grace == 0 && g != nil || tc.grace > 0 && (g == nil || !g.LeaveAt.Equal(now.Add(tc.grace))) {
				t.Fatalf("gone = %+v with grace %v", g, tc.grace)
			}
		})
	}
}

func TestPresenceBinaryMember(t *testing.T) {
	_, a, b := twoNodes(t)
	ctx := ctxT(t)
	m := []byte("{\"name\":\"Zoë \\u0000\",\"raw\":\"\x00\xff\xfe\r\n\"}")
	stored, first, err := a.Attach(ctx, "s", "u1", "A", m, t0)
	if err != nil || !first || !bytes.Equal(stored, m) {
		t.Fatalf("Attach = %q, %v, %v", stored, first, err)
	}
	if stored, _, err := b.Attach(ctx, "s", "u1", "B", []byte("x"), t0); err != nil || !bytes.Equal(stored, m) {
		t.Fatalf("second Attach = %q, %v; want the binary member", stored, err)
	}
	if ms := members(t, b, "s"); len(ms) != 1 || !bytes.Equal(ms[0].Member, m) {
		t.Fatalf("Members = %+v", ms)
	}
	detach(t, a, "s", "u1", "A", 0, t0)
	detach(t, b, "s", "u1", "B", grace, t0)
	gone, err := b.Expire(ctx, "s", t0.Add(grace))
	if err != nil || len(gone) != 1 || !bytes.Equal(gone[0].Member, m) {
		t.Fatalf("Expire = %+v, %v; want the binary member", gone, err)
	}
}

func TestPresenceRejectsBadIDs(t *testing.T) {
	_, a, _ := twoNodes(t)
	ctx := ctxT(t)
	for _, ids := range [][3]string{{"", "u", "A"}, {"s", "", "A"}, {"s", "u", ""}, {"s\x00x", "u", "A"}, {"s", "u\x00", "A"}} {
		if _, _, err := a.Attach(ctx, ids[0], ids[1], ids[2], nil, t0); err == nil {
			t.Errorf("Attach(%q) accepted", ids)
		}
	}
	if _, _, err := a.DropNode(ctx, "", 0, t0); err == nil {
		t.Error("DropNode(\"\") accepted")
	}
}

func TestPresenceKeyTTL(t *testing.T) {
	s := redistest.Start(t)
	rdb := node(t, s)
	p := cluster.NewPresence(rdb, &cluster.PresenceOptions{KeyPrefix: "t:", KeyTTL: 30 * time.Second})
	ctx := ctxT(t)
	attach(t, p, "s", "u1", "A", t0)
	keys := []string{"t:p:{s}:members", "t:p:{s}:joined", "t:p:{s}:conns", "t:p:{s}:total", "t:pnode:A"}
	ttls := func() []time.Duration {
		var out []time.Duration
		for _, k := range keys {
			d, err := rdb.PTTL(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, d)
		}
		return out
	}
	for i, d := range ttls() {
		if d <= 20*time.Second || d > 30*time.Second {
			t.Fatalf("TTL of %s = %v; want about 30s", keys[i], d)
		}
	}
	for _, k := range keys {
		rdb.PExpire(ctx, k, time.Second)
	}
	if err := p.Refresh(ctx, "A"); err != nil {
		t.Fatal(err)
	}
	for i, d := range ttls() {
		if d <= 20*time.Second {
			t.Fatalf("TTL of %s after Refresh = %v; want about 30s", keys[i], d)
		}
	}
	if n, err := rdb.Exists(ctx, "sessionhub:p:{s}:members").Result(); err != nil || n != 0 {
		t.Fatalf("default prefix used despite KeyPrefix: %d, %v", n, err)
	}
}
