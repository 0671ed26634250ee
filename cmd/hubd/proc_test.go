package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// hubdMainEnv, set to 1 in a process's environment, makes the test binary
// run as hubd (main, with its own arguments) instead of running tests: the
// cluster tests start real hubd processes without a go build.
const hubdMainEnv = "HUBD_TEST_MAIN"

func init() {
	if os.Getenv(hubdMainEnv) != "1" {
		return
	}
	// A hubd of the tests does not outlive the test binary that started it,
	// even if that one is killed before its cleanups run.
	ppid := os.Getppid()
	go func() {
		for range time.Tick(100 * time.Millisecond) {
			if os.Getppid() != ppid {
				os.Exit(3)
			}
		}
	}()
	main()
	os.Exit(0)
}

// logBuffer is a process's stdout and stderr.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// hubProc is a hubd process started by a test.
type hubProc struct {
	id   string
	addr string // host:port it listens on, once started
	cmd  *exec.Cmd
	log  logBuffer
	done chan struct{} // closed when the process has exited
	err  error         // how it exited; set before done is closed
}

// listeningRE finds the address in hubd's "listening" log line.
var listeningRE = regexp.MustCompile(`msg=listening .*?\baddr=(\S+)`)

// startHubProc starts hubd with args (plus --addr 127.0.0.1:0 and debug
// logs) and returns once it listens. It is killed at the end of the test,
// and its log is shown if the test failed (or HUBD_TEST_LOGS is set).
func startHubProc(t *testing.T, id string, args ...string) *hubProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &hubProc{id: id, done: make(chan struct{})}
	args = append([]string{"--addr", "127.0.0.1:0", "--log-level", "debug"}, args...)
	p.cmd = exec.Command(exe, args...)
	p.cmd.Env = append(hubdEnviron(), hubdMainEnv+"=1")
	p.cmd.Stdout, p.cmd.Stderr = &p.log, &p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s did not exit after SIGKILL", id)
		}
		log := p.log.String()
		if strings.Contains(log, "WARNING: DATA RACE") {
			t.Errorf("%s: the race detector found a data race (see its log)", id)
		}
		if strings.Contains(log, "\npanic: ") || strings.HasPrefix(log, "panic: ") {
			t.Errorf("%s panicked (see its log)", id)
		}
		if t.Failed() || os.Getenv("HUBD_TEST_LOGS") != "" {
			const most = 256 << 10
			if len(log) > most {
				log = "…" + log[len(log)-most:]
			}
			t.Logf("log of %s (%s, pid %d, %v):\n%s", id, p.addr, p.cmd.Process.Pid, p.exit(), log)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := listeningRE.FindStringSubmatch(p.log.String()); m != nil {
			p.addr = m[1]
			break
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before listening (%v):\n%s", id, p.err, p.log.String())
		case <-time.After(10 * time.Millisecond): // polling its log for the address
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not say where it listens within 10s:\n%s", id, p.log.String())
		}
	}
	return p
}

// hubdEnviron is this process's environment without the variables that
// configure hubd.
func hubdEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HUB_") && !strings.HasPrefix(kv, "PORT=") && !strings.HasPrefix(kv, hubdMainEnv+"=") {
			env = append(env, kv)
		}
	}
	return env
}

func (p *hubProc) url(path string) string { return "http://" + p.addr + path }
func (p *hubProc) wsURL() string          { return "ws://" + p.addr + "/ws" }

// kill ends the process with SIGKILL (no goodbye).
func (p *hubProc) kill() { p.cmd.Process.Kill() }

// terminate sends SIGTERM (a clean shutdown).
func (p *hubProc) terminate() { p.cmd.Process.Signal(syscall.SIGTERM) }

// exited reports whether the process has exited.
func (p *hubProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exit describes how the process exited, or says it runs.
func (p *hubProc) exit() string {
	if !p.exited() {
		return "running"
	}
	if p.err == nil {
		return "exited with status 0"
	}
	return p.err.Error()
}

// probeClient makes one request per connection, so that no idle connection
// outlives a test. It connects from 127.0.0.2 (loopback too), so that its
// probes do not count toward the per-address limit of the clients under
// test, which connect from 127.0.0.1 (hubd counts plain HTTP connections
// too).
var probeClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true,
	DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}, Timeout: 2 * time.Second}

// readyz is the status of GET /readyz (0 when the request failed).
func (p *hubProc) readyz() int {
	resp, err := probeClient.Get(p.url("/readyz"))
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitReadyz polls /readyz until it answers code and returns when it did,
// failing the test at deadline.
func (p *hubProc) waitReadyz(t *testing.T, code int, deadline time.Time) time.Time {
	t.Helper()
	last := 0
	for {
		if last = p.readyz(); last == code {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: /readyz still answers %d, want %d (%s)", p.id, last, code, p.exit())
		}
		time.Sleep(20 * time.Millisecond) // polling /readyz
	}
}

func (p *hubProc) String() string { return fmt.Sprintf("%s (%s)", p.id, p.addr) }
