package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sessionhub/sessionhub/client"
	"github.com/sessionhub/sessionhub/protocol"
)

// scrape reads GET /metrics of p into series → value, a series named as the
// text format writes it (`name{label="v",…}`).
func scrape(t *testing.T, p *hubProc) map[string]float64 {
	t.Helper()
	resp, err := probeClient.Get(p.url("/metrics"))
	if err != nil {
		t.Fatalf("%s: GET /metrics: %v", p.id, err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("%s: /metrics line %q: %v", p.id, line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitMetric polls p's /metrics until series has want, failing the test
// after clWait: the hub's own count is the server-side event waited for.
func waitMetric(t *testing.T, p *hubProc, series string, want float64) {
	t.Helper()
	deadline := time.Now().Add(clWait)
	for {
		got, ok := scrape(t, p)[series]
		if ok && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s = %v (present: %v), want %v", p.id, series, got, ok, want)
		}
		time.Sleep(20 * time.Millisecond) // polling /metrics
	}
}

// Every analytics series exists at 0 before anything happened (contract
// v1.1 "The platform's analytics as metrics"), and sessionhub_build_info
// says which build runs.
func TestMetricsAtZero(t *testing.T) {
	p := startHubProc(t, "n1")
	m := scrape(t, p)
	zero := []string{
		`sessionhub_delivery_seconds_count`,
		`sessionhub_session_duration_seconds_count`,
		`sessionhub_participant_duration_seconds_count`,
	}
	for _, r := range []string{"accepted", "origin", "unauthorized", "limit", "shutting_down", "bad_request"} {
		zero = append(zero, `sessionhub_upgrades_total{result="`+r+`"}`)
	}
	for _, k := range []string{"new", "rejoin", "recovered", "not_recovered"} {
		zero = append(zero, `sessionhub_joins_total{kind="`+k+`"}`)
	}
	for _, s := range zero {
		if v, ok := m[s]; !ok || v != 0 {
			t.Errorf("%s = %v (present: %v), want 0 from the start", s, v, ok)
		}
	}
	info := regexp.MustCompile(`^sessionhub_build_info\{goversion="go[^"]+",revision="[^"]+",version="[^"]+"\}$`)
	found := 0
	for s, v := range m {
		if strings.HasPrefix(s, "sessionhub_build_info") {
			found++
			if !info.MatchString(s) || v != 1 {
				t.Errorf("%s %v, want sessionhub_build_info{goversion,revision,version} 1", s, v)
			}
		}
	}
	if found != 1 {
		t.Errorf("%d sessionhub_build_info series, want 1", found)
	}
}

// The analytics count what happens on a real hubd: each refusal by its
// reason, each kind of join, deliveries, and the durations of participants
// and sessions.
func TestMetricsAnalytics(t *testing.T) {
	p := startHubProc(t, "n1", "--max-connections-per-ip", "3", "--session-ttl", "200ms", "--leave-grace", "0")
	upg := func(r string) string { return `sessionhub_upgrades_total{result="` + r + `"}` }
	joins := func(k string) string { return `sessionhub_joins_total{kind="` + k + `"}` }

	// Refusals: a foreign Origin, a plain GET of /ws.
	ctx, cancel := context.WithTimeout(context.Background(), clWait)
	defer cancel()
	_, _, err := websocket.Dial(ctx, p.wsURL(), &websocket.DialOptions{HTTPClient: rawDialer,
		HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
	if err == nil {
		t.Fatal("a foreign Origin was accepted")
	}
	waitMetric(t, p, upg("origin"), 1)
	resp, err := probeClient.Get(p.url("/ws"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	waitMetric(t, p, upg("bad_request"), 1)

	// Joins: a new user, the same user in a second tab, a recovery in the
	// session's epoch and one in another epoch.
	a := rawPeer(t, p, learner("a"))
	sj := a.join("s1", nil)
	a2 := rawPeer(t, p, learner("a"))
	a2.join("s1", nil)
	b := rawPeer(t, p, learner("b"))
	b.join("s1", &protocol.Recover{Epoch: sj.Epoch, Offset: sj.Offset})
	waitMetric(t, p, upg("accepted"), 3)
	// A fourth connection from the same address is over the limit.
	_, _, err = websocket.Dial(ctx, p.wsURL(), &websocket.DialOptions{HTTPClient: rawDialer})
	if err == nil {
		t.Fatal("a fourth connection from one address was accepted")
	}
	waitMetric(t, p, upg("limit"), 1)
	waitMetric(t, p, joins("new"), 1) // b asked to recover: it counts as a recovery
	waitMetric(t, p, joins("rejoin"), 1)
	waitMetric(t, p, joins("recovered"), 1)
	b.join("s1", &protocol.Recover{Epoch: "another-epoch", Offset: 0})
	waitMetric(t, p, joins("not_recovered"), 1)

	// A broadcast reaches a2 and b: at least one frame written after its
	// event entered the hub is a delivery sample.
	before := scrape(t, p)[`sessionhub_delivery_seconds_count`]
	a.broadcast("hello", map[string]int{"n": 1}, "")
	waitEvent(b, time.Now().Add(clWait), "the broadcast", func(e *client.BroadcastEvent) bool { return e.Event == "hello" })
	waitEvent(a2, time.Now().Add(clWait), "the broadcast", func(e *client.BroadcastEvent) bool { return e.Event == "hello" })
	if after := scrape(t, p)[`sessionhub_delivery_seconds_count`]; after <= before {
		t.Errorf("sessionhub_delivery_seconds_count %v after a broadcast, was %v", after, before)
	}
	if v := scrape(t, p)[`sessionhub_delivery_seconds_bucket{le="+Inf"}`]; v == 0 {
		t.Error("no delivery sample in the histogram's buckets")
	}

	// Everyone leaves (cleanly: at once): two participants' durations,
	// then the session's once its TTL is over.
	a.closeClean()
	a2.closeClean()
	b.closeClean()
	waitMetric(t, p, `sessionhub_participant_duration_seconds_count`, 2)
	waitMetric(t, p, `sessionhub_session_duration_seconds_count`, 1)
}

// Token mode refuses an upgrade without a token as unauthorized.
func TestMetricsUnauthorized(t *testing.T) {
	p := startHubProc(t, "n1", "--jwt-secret", tokenSecret)
	resp, err := probeClient.Get(p.url("/ws"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /ws without a token: %d, want 401", resp.StatusCode)
	}
	waitMetric(t, p, `sessionhub_upgrades_total{result="unauthorized"}`, 1)
}

// hubd --version prints "hubd <version> (<vcs revision>, <go version>)".
// (.ci/run checks that -ldflags -X sets them, on the binary of the image.)
func TestVersion(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "--version")
	cmd.Env = append(hubdEnviron(), hubdMainEnv+"=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hubd --version: %v", err)
	}
	if !regexp.MustCompile(`^hubd \S+ \(\S+, go\S+\)\n$`).Match(out) {
		t.Errorf("hubd --version printed %q, want hubd <version> (<revision>, <go version>)", out)
	}

}

// In a cluster each leave is counted once, by the node that ends it,
// however many nodes serve the session.
func TestMetricsClusterParticipantDuration(t *testing.T) {
	cl := startCluster(t, clHeartbeat)
	n1, n2, n3 := cl.nodes[0], cl.nodes[1], cl.nodes[2]
	const sid = "durations"
	a := rawPeer(t, n1, learner("a"))
	b := rawPeer(t, n2, learner("b"))
	c := rawPeer(t, n3, learner("c"))
	a.join(sid, nil)
	b.join(sid, nil)
	c.join(sid, nil)
	waitMembers(time.Now().Add(clConverge), []*peer{a, b, c}, "a", "b", "c")
	total := func() float64 {
		sum := 0.0
		for _, n := range cl.nodes {
			sum += scrape(t, n)[`sessionhub_participant_duration_seconds_count`]
		}
		return sum
	}
	if v := total(); v != 0 {
		t.Fatalf("%v participant durations before anyone left", v)
	}
	a.closeClean()
	waitEvent(b, time.Now().Add(clConverge), "a's leave", leftOf("a"))
	waitEvent(c, time.Now().Add(clConverge), "a's leave", leftOf("a"))
	b.closeClean()
	waitEvent(c, time.Now().Add(clConverge), "b's leave", leftOf("b"))
	// Both leaves reached every node that serves the session: each was
	// counted by the node that ended it, and only there.
	if v := total(); v != 2 {
		t.Errorf("%v participant durations in the cluster after two leaves, want 2", v)
	}
	if v := scrape(t, n3)[`sessionhub_participant_duration_seconds_count`]; v != 0 {
		t.Errorf("node3, where nobody left, counted %v participant durations", v)
	}
}
