package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/sessionhub/sessionhub/internal/redistest"
)

// exported is the set of series names a cluster hubd exports: each metric
// family's name and, for histograms and summaries, its _bucket, _sum and
// _count series.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	rs := redistest.Start(t)
	p := startHubProc(t, "n1", "--redis-url", rs.URL())
	resp, err := probeClient.Get(p.url("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			names[f[2]] = true
			if f[3] == "histogram" || f[3] == "summary" {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					names[f[2]+s] = true
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

// metricRE finds the metric names in a PromQL expression: hubd's own and
// the Go and process collectors' (label names and values never start so).
var metricRE = regexp.MustCompile(`\b(?:sessionhub|go|process)_[a-zA-Z0-9_]+`)

// The Grafana dashboard and the Prometheus rules name only metrics that
// hubd exports, and cover what an operator watches.
func TestDashboardAndAlerts(t *testing.T) {
	names := exported(t)

	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	b, err := os.ReadFile("../../deploy/grafana/sessionhub.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	var dashExprs []string
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			dashExprs = append(dashExprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if v.Definition != "" {
			dashExprs = append(dashExprs, v.Definition)
		}
	}

	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	b, err = os.ReadFile("../../deploy/prometheus/sessionhub.rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	var ruleExprs []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			ruleExprs = append(ruleExprs, r.Expr)
		}
	}

	used := func(where string, exprs []string) map[string]bool {
		seen := map[string]bool{}
		for _, e := range exprs {
			ms := metricRE.FindAllString(e, -1)
			if len(ms) == 0 && !strings.Contains(e, "up{") {
				t.Errorf("%s: %q names no metric", where, e)
			}
			for _, m := range ms {
				seen[m] = true
				if !names[m] {
					t.Errorf("%s: %q names %s, which hubd does not export", where, e, m)
				}
			}
		}
		return seen
	}
	inDash := used("dashboard", dashExprs)
	inRules := used("alert rules", ruleExprs)

	for _, m := range []string{
		"sessionhub_connections", "sessionhub_sessions", "sessionhub_participants",
		"sessionhub_messages_in_total", "sessionhub_messages_out_total",
		"sessionhub_delivery_seconds_bucket", "sessionhub_slow_consumer_closes_total",
		"sessionhub_rate_limited_total", "sessionhub_send_queue_messages",
		"sessionhub_hub_loop_latency_seconds_bucket", "sessionhub_cluster_up",
		"sessionhub_cluster_redis_errors_total", "sessionhub_upgrades_total", "sessionhub_joins_total",
		"sessionhub_session_duration_seconds_bucket", "sessionhub_participant_duration_seconds_bucket",
	} {
		if !inDash[m] {
			t.Errorf("the dashboard does not show %s", m)
		}
	}
	for _, m := range []string{"sessionhub_ready", "sessionhub_hub_loop_latency_seconds_bucket",
		"sessionhub_slow_consumer_closes_total", "sessionhub_cluster_up"} {
		if !inRules[m] {
			t.Errorf("no alert rule on %s", m)
		}
	}
}

// The alert rules pass promtool's own checks: their syntax, and their unit
// tests (deploy/prometheus/*.rules.test.yaml: each alert fires on the series
// hubd would export when it fails, and stays silent on a healthy node). CI
// installs promtool (Debian's prometheus package); elsewhere the test is
// skipped without it.
func TestAlertRulesPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is not installed (CI installs it: apt-get install prometheus)")
		}
		t.Skip("promtool is not installed")
	}
	for _, args := range [][]string{
		{"check", "rules", "../../deploy/prometheus/sessionhub.rules.yaml"},
		{"test", "rules", "../../deploy/prometheus/sessionhub.rules.test.yaml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
