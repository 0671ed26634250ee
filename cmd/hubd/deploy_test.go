package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// The deployment files of deploy/ and compose.yaml set only flags and
// environment variables that hubd knows, with values it accepts; their
// probes hit real routes; they give a shutdown more time than
// --shutdown-timeout.

// knownFlags are hubd's flags, as --help lists them.
func knownFlags(t *testing.T) map[string]bool {
	t.Helper()
	var usage bytes.Buffer
	if _, err := parse([]string{"--help"}, env(), &usage); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("parse --help: %v", err)
	}
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(usage.String(), -1) {
		flags[m[1]] = true
	}
	if !flags["addr"] || !flags["shutdown-timeout"] || !flags["redis-url"] {
		t.Fatalf("--help lists %v: no addr, shutdown-timeout or redis-url", flags)
	}
	return flags
}

// knownEnv reports whether hubd (or the Go runtime) reads name.
func knownEnv(flags map[string]bool, name string) bool {
	switch name {
	case "PORT", "GOMEMLIMIT", "GOGC", "GOMAXPROCS", "GODEBUG":
		return true
	}
	f, ok := strings.CutPrefix(name, "HUB_")
	f = strings.ToLower(strings.ReplaceAll(f, "_", "-"))
	return ok && flags[f] && f != "version"
}

// flagName is the flag an argument like --name=value or -name sets.
func flagName(arg string) (string, bool) {
	if !strings.HasPrefix(arg, "-") {
		return "", false
	}
	name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
	return name, true
}

// placeholder stands for a value that comes from the cluster (a secret, the
// pod's name): long enough to pass as a JWT secret.
const placeholder = "placeholder-from-the-cluster-0123456789"

type k8sContainer struct {
	Name  string   `json:"name"`
	Image string   `json:"image"`
	Args  []string `json:"args"`
	Env   []struct {
		Name      string          `json:"name"`
		Value     string          `json:"value"`
		ValueFrom *map[string]any `json:"valueFrom"`
	} `json:"env"`
	Ports []struct {
		Name          string `json:"name"`
		ContainerPort int    `json:"containerPort"`
	} `json:"ports"`
	ReadinessProbe *k8sProbe `json:"readinessProbe"`
	LivenessProbe  *k8sProbe `json:"livenessProbe"`
}

type k8sProbe struct {
	HTTPGet *struct {
		Path string `json:"path"`
		Port any    `json:"port"`
	} `json:"httpGet"`
}

type k8sObject struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Selector *struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
			Spec struct {
				TerminationGracePeriodSeconds *int64         `json:"terminationGracePeriodSeconds"`
				Containers                    []k8sContainer `json:"containers"`
			} `json:"spec"`
		} `json:"template"`
		SessionAffinity string `json:"sessionAffinity"`
		MaxUnavailable  any    `json:"maxUnavailable"`
		MinAvailable    any    `json:"minAvailable"`
	} `json:"spec"`
}

// k8sObjects reads every object of the YAML files in dir.
func k8sObjects(t *testing.T, dir string) []k8sObject {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no manifests in %s (%v)", dir, err)
	}
	var out []k8sObject
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
			var o k8sObject
			if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
				t.Fatalf("%s, document %d: %v", p, i, err)
			}
			if o.Kind != "" {
				out = append(out, o)
			}
		}
	}
	return out
}

// checkConfig parses args and env as hubd would and returns its
// configuration, failing on any flag or variable hubd does not know.
func checkConfig(t *testing.T, where string, flags map[string]bool, args []string, envs map[string]string) *config {
	t.Helper()
	for _, a := range args {
		if name, ok := flagName(a); ok && !flags[name] {
			t.Errorf("%s: flag --%s is not one of hubd's", where, name)
		}
	}
	var kv []string
	for k, v := range envs {
		if !knownEnv(flags, k) {
			t.Errorf("%s: environment variable %s is not one hubd reads", where, k)
		}
		kv = append(kv, k, v)
	}
	c, err := parse(args, env(kv...), &bytes.Buffer{})
	if err != nil {
		t.Fatalf("%s: hubd refuses its configuration: %v", where, err)
	}
	return c
}

func TestKubernetesManifests(t *testing.T) {
	flags := knownFlags(t)
	objs := k8sObjects(t, "../../deploy/k8s")
	byKind := map[string][]k8sObject{}
	for _, o := range objs {
		byKind[o.Kind] = append(byKind[o.Kind], o)
	}
	var dep *k8sObject
	var hubd *k8sContainer
	for i, o := range byKind["Deployment"] {
		for j, c := range o.Spec.Template.Spec.Containers {
			if c.Name == "hubd" {
				dep, hubd = &byKind["Deployment"][i], &byKind["Deployment"][i].Spec.Template.Spec.Containers[j]
			}
		}
	}
	if hubd == nil {
		t.Fatal("no Deployment with a hubd container")
	}
	envs := map[string]string{}
	for _, e := range hubd.Env {
		v := e.Value
		if e.ValueFrom != nil {
			v = placeholder
		}
		if e.Name == "GOMEMLIMIT" {
			continue // the runtime's, not parse's
		}
		envs[e.Name] = v
	}
	for _, e := range hubd.Env {
		if !knownEnv(flags, e.Name) {
			t.Errorf("Deployment env %s is not one hubd reads", e.Name)
		}
	}
	c := checkConfig(t, "Deployment "+dep.Metadata.Name, flags, hubd.Args, envs)

	// The grace period is above the shutdown timeout.
	grace := dep.Spec.Template.Spec.TerminationGracePeriodSeconds
	if grace == nil {
		t.Fatal("no terminationGracePeriodSeconds (the default 30 s may not match --shutdown-timeout)")
	}
	if g := time.Duration(*grace) * time.Second; g <= c.shutdownTimeout {
		t.Errorf("terminationGracePeriodSeconds %v is not above --shutdown-timeout %v", g, c.shutdownTimeout)
	}

	// The container port is where hubd listens, and the probes use it.
	_, port, _ := strings.Cut(c.addr, ":")
	ports := map[string]int{}
	for _, p := range hubd.Ports {
		ports[p.Name] = p.ContainerPort
		if strconv.Itoa(p.ContainerPort) != port {
			t.Errorf("containerPort %d, but hubd listens on %s", p.ContainerPort, c.addr)
		}
	}
	// The probes hit real routes of a hubd with the Deployment's flags.
	var args []string
	for _, a := range hubd.Args {
		if name, _ := flagName(a); name != "log-format" { // the test reads the text log
			args = append(args, a)
		}
	}
	p := startHubProc(t, "k8s", args...)
	for _, pr := range []struct {
		name string
		pr   *k8sProbe
		path string
	}{{"readinessProbe", hubd.ReadinessProbe, "/readyz"}, {"livenessProbe", hubd.LivenessProbe, "/healthz"}} {
		if pr.pr == nil || pr.pr.HTTPGet == nil {
			t.Errorf("no httpGet %s", pr.name)
			continue
		}
		g := pr.pr.HTTPGet
		if g.Path != pr.path {
			t.Errorf("%s on %s, want %s", pr.name, g.Path, pr.path)
		}
		switch port := g.Port.(type) {
		case string:
			if _, ok := ports[port]; !ok {
				t.Errorf("%s on port %q, which the container does not name", pr.name, port)
			}
		case float64:
			if strconv.Itoa(int(port)) != strings.TrimPrefix(c.addr, ":") {
				t.Errorf("%s on port %v, hubd listens on %s", pr.name, port, c.addr)
			}
		}
		resp, err := probeClient.Get(p.url(g.Path))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: GET %s answers %d on a running hubd", pr.name, g.Path, resp.StatusCode)
		}
	}

	// A Service and a PodDisruptionBudget select the pods; nothing sticky.
	labels := dep.Spec.Template.Metadata.Labels
	selects := func(o k8sObject) bool {
		if o.Spec.Selector == nil || len(o.Spec.Selector.MatchLabels) == 0 {
			return false
		}
		for k, v := range o.Spec.Selector.MatchLabels {
			if labels[k] != v {
				return false
			}
		}
		return true
	}
	found := false
	for _, o := range byKind["PodDisruptionBudget"] {
		if selects(o) && (o.Spec.MaxUnavailable != nil || o.Spec.MinAvailable != nil) {
			found = true
		}
	}
	if !found {
		t.Error("no PodDisruptionBudget selects the hubd pods")
	}
	// A Service's selector is a plain map: read it again as such.
	svcFound := false
	for _, path := range []string{"../../deploy/k8s/sessionhub.yaml"} {
		b, _ := os.ReadFile(path)
		for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
			var s struct {
				Kind string `json:"kind"`
				Spec struct {
					Selector        map[string]string `json:"selector"`
					SessionAffinity string            `json:"sessionAffinity"`
				} `json:"spec"`
			}
			if yaml.Unmarshal([]byte(doc), &s) != nil || s.Kind != "Service" {
				continue
			}
			match := len(s.Spec.Selector) > 0
			for k, v := range s.Spec.Selector {
				match = match && labels[k] == v
			}
			if match {
				svcFound = true
				if s.Spec.SessionAffinity != "" && s.Spec.SessionAffinity != "None" {
					t.Errorf("the Service has sessionAffinity %s: nothing may be sticky", s.Spec.SessionAffinity)
				}
			}
		}
	}
	if !svcFound {
		t.Error("no Service selects the hubd pods")
	}
	// Redis, for reference, and HUB_REDIS_URL names its Service.
	redisSvc := false
	for _, o := range byKind["Service"] {
		if o.Metadata.Name == "redis" {
			redisSvc = true
		}
	}
	if !redisSvc || !strings.Contains(envs["HUB_REDIS_URL"], "//redis:6379") {
		t.Errorf("the reference Redis Service (found: %v) and HUB_REDIS_URL %q do not match", redisSvc, envs["HUB_REDIS_URL"])
	}
}

// compose.yaml: the hubd services' environment is hubd's, HAProxy's
// servers are those services, and a stop gives hubd its shutdown timeout.
func TestComposeFile(t *testing.T) {
	flags := knownFlags(t)
	b, err := os.ReadFile("../../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Services map[string]struct {
			Build            any               `json:"build"`
			Image            string            `json:"image"`
			Environment      map[string]string `json:"environment"`
			StopGracePeriod  string            `json:"stop_grace_period"`
			Volumes          []string          `json:"volumes"`
			Ports            []string          `json:"ports"`
			SecurityOpt      []string          `json:"security_opt"`
			HealthcheckProbe any               `json:"healthcheck"`
		} `json:"services"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	hubs := map[string]bool{}
	for name, s := range f.Services {
		if s.Build == nil {
			continue
		}
		hubs[name] = true
		c := checkConfig(t, "compose service "+name, flags, nil, s.Environment)
		if c.redisURL == "" {
			t.Errorf("compose service %s has no HUB_REDIS_URL: the nodes would not share sessions", name)
		}
		g, err := time.ParseDuration(s.StopGracePeriod)
		if err != nil || g <= c.shutdownTimeout {
			t.Errorf("compose service %s: stop_grace_period %q is not above --shutdown-timeout %v", name, s.StopGracePeriod, c.shutdownTimeout)
		}
	}
	if len(hubs) != 3 {
		t.Errorf("%d hubd services, want 3", len(hubs))
	}
	lb, ok := f.Services["haproxy"]
	if !ok {
		t.Fatal("no haproxy service")
	}
	servers := map[string]bool{}
	for k, v := range lb.Environment {
		if strings.HasPrefix(k, "HUBD_") {
			host, port, _ := strings.Cut(v, ":")
			if !hubs[host] || port != "8080" {
				t.Errorf("haproxy's %s=%s is not a hubd service on :8080", k, v)
			}
			servers[host] = true
		}
	}
	if len(servers) != len(hubs) {
		t.Errorf("haproxy balances %v, the hubd services are %v", servers, hubs)
	}
	mounted := false
	for _, v := range lb.Volumes {
		mounted = mounted || strings.HasPrefix(v, "./deploy/haproxy/haproxy.cfg:")
	}
	if !mounted {
		t.Error("haproxy does not use deploy/haproxy/haproxy.cfg")
	}
	cfg, err := os.ReadFile(haproxyConfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, sticky := range []string{"cookie", "stick-table", "stick on", "balance source", "hash-type"} {
		if bytes.Contains(cfg, []byte("\n    "+sticky)) {
			t.Errorf("haproxy.cfg has %q: nothing may be sticky", sticky)
		}
	}
}

// The systemd unit: its environment is hubd's, it is hardened, and it
// waits longer than --shutdown-timeout before SIGKILL.
func TestSystemdUnit(t *testing.T) {
	flags := knownFlags(t)
	f, err := os.Open("../../deploy/systemd/sessionhub.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dirs := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		dirs[k] = append(dirs[k], v)
	}
	envs := map[string]string{}
	for _, e := range dirs["Environment"] {
		k, v, _ := strings.Cut(e, "=")
		envs[k] = v
	}
	c := checkConfig(t, "systemd unit", flags, nil, envs)
	for k, want := range map[string]string{"DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict"} {
		if got := dirs[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%v, want %s", k, got, want)
		}
	}
	if n, err := strconv.Atoi(strings.Join(dirs["LimitNOFILE"], "")); err != nil || n < 65536 {
		t.Errorf("LimitNOFILE=%v, want at least 65536 (one descriptor per WebSocket)", dirs["LimitNOFILE"])
	}
	stop, err := time.ParseDuration(strings.Join(dirs["TimeoutStopSec"], ""))
	if err != nil || stop <= c.shutdownTimeout {
		t.Errorf("TimeoutStopSec=%v is not above --shutdown-timeout %v", dirs["TimeoutStopSec"], c.shutdownTimeout)
	}
}
