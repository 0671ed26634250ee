// Command hubload is sessionhub's bundled load generator. It simulates
// sessions of users on one or several hubd nodes, each user a WebSocket
// that joins a session and sends cursor updates (and, if asked, broadcasts)
// at a fixed rate, and it measures what the hub delivers: connect time,
// messages per second, the delivery ratio against the expected fan-out,
// end-to-end cursor latency, errors and close codes, its own CPU per
// received message and, given --server-pid, the RSS and CPU of the
// server's processes (each of them and their total: several hubd nodes and
// their Redis, say).
//
//	hubload --url ws://127.0.0.1:8080/ws --sessions 20 --clients 25 --cursor-rate 5 \
//	        --warmup 5s --duration 20s --server-pid $(pgrep -n hubd)
//	hubload --url ws://127.0.0.1:8081/ws,ws://127.0.0.1:8082/ws,ws://127.0.0.1:8083/ws \
//	        --server-pid $N1,$N2,$N3 --server-pid $REDIS
//
// It runs in three phases: connect (dial and join every user, at --ramp
// connections per second), warm-up (traffic, not measured) and the measured
// window (--duration). Each cursor update carries its send time in the
// cursor's file field ("t/<unix ns>"), which the hub echoes verbatim in
// cursor-moved; receivers find it by byte scanning, not JSON decoding, to
// keep hubload's own CPU per message low. An update counts toward the
// delivery ratio if it was sent inside the window; after the window hubload
// waits up to --drain for the stragglers before it closes every connection.
//
// Progress goes to stderr once a second; the summary to stdout, as text or,
// with --json, as one JSON object.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sessionhub/sessionhub/protocol"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if errors.Is(err, errFailed) {
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "hubload:", err)
		os.Exit(1)
	}
}

// Bounds of the flags: hubload is a tool for one machine's loopback.
const (
	maxUsers    = 200_000
	maxRate     = 1000
	maxDuration = 24 * time.Hour
)

// config is what the flags say.
type config struct {
	urls           []string
	sessions       int
	clients        int
	cursorRate     float64
	broadcastRate  float64
	duration       time.Duration
	warmup         time.Duration
	drain          time.Duration
	ramp           float64
	connectTimeout time.Duration
	sourceAddrs    []net.IP
	jwtSecret      string
	presence       protocol.Presence
	batch          bool
	serverPIDs     []int // local processes to watch, in the order given
	json           bool
	idle           bool
	sessionPrefix  string
}

// listFlag is a repeatable flag whose values may also be comma-separated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// pidFlag is --server-pid: repeatable, and each value may be a
// comma-separated list. 0 means no process, as it did when the flag took one.
type pidFlag []int

func (p *pidFlag) String() string {
	parts := make([]string, len(*p))
	for i, pid := range *p {
		parts[i] = strconv.Itoa(pid)
	}
	return strings.Join(parts, ",")
}

func (p *pidFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		pid, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("%q is not a PID", s)
		}
		if pid != 0 {
			*p = append(*p, pid)
		}
	}
	return nil
}

func parse(args []string, stderr io.Writer) (*config, error) {
	var c config
	var urls, srcs listFlag
	var pids pidFlag
	var presence string
	fs := flag.NewFlagSet("hubload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(&urls, "url", "hub WebSocket URL; repeatable or comma-separated (clients are spread round-robin) (default ws://127.0.0.1:8080/ws)")
	fs.IntVar(&c.sessions, "sessions", 10, "number of sessions")
	fs.IntVar(&c.clients, "clients", 10, "simulated users per session")
	fs.Float64Var(&c.cursorRate, "cursor-rate", 5, "cursor updates per second per user (the hub coalesces above its --cursor-rate, 20 by default)")
	fs.Float64Var(&c.broadcastRate, "broadcast-rate", 0, "broadcasts per second per user")
	fs.DurationVar(&c.duration, "duration", 20*time.Second, "measured window")
	fs.DurationVar(&c.warmup, "warmup", 5*time.Second, "traffic before the measured window, not measured")
	fs.DurationVar(&c.drain, "drain", 2*time.Second, "how long to wait after the window for messages sent inside it")
	fs.Float64Var(&c.ramp, "ramp", 0, "connections opened per second (0: as fast as possible)")
	fs.DurationVar(&c.connectTimeout, "connect-timeout", 10*time.Second, "limit on one dial plus join")
	fs.Var(&srcs, "source-addrs", "comma-separated local addresses (127.0.0.x) to spread outgoing connections over (each has its own ~28k ephemeral ports)")
	fs.StringVar(&c.jwtSecret, "jwt-secret", "", "HS256 secret: mint a token per simulated user, sent as Authorization: Bearer")
	fs.StringVar(&presence, "presence", "diff", "presence mode of the joins: diff or full")
	fs.BoolVar(&c.batch, "batch", true, "offer the "+protocol.BatchSubprotocol+" subprotocol")
	fs.Var(&pids, "server-pid", "PID of a local server process (hubd, redis-server, …): report its RSS and CPU over the measured window; repeatable or comma-separated, for each process and their total")
	fs.BoolVar(&c.json, "json", false, "print the summary as JSON")
	fs.BoolVar(&c.idle, "idle", false, "connect and join only, no traffic (idle-memory scenario)")
	fs.StringVar(&c.sessionPrefix, "session-prefix", "load", "session ids are <prefix>-<n>")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if len(urls) == 0 {
		urls = listFlag{"ws://127.0.0.1:8080/ws"}
	}
	c.urls = urls
	c.serverPIDs = pids
	c.presence = protocol.Presence(presence)
	for _, s := range srcs {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("--source-addrs: %q is not an IP address", s)
		}
		if !ownAddress(ip) {
			return nil, fmt.Errorf("--source-addrs: %s is neither a loopback address nor one of this host's", s)
		}
		c.sourceAddrs = append(c.sourceAddrs, ip)
	}
	return &c, c.validate()
}

func (c *config) validate() error {
	switch {
	case c.sessions < 1 || c.clients < 1:
		return errors.New("--sessions and --clients must be at least 1")
	case c.sessions*c.clients > maxUsers:
		return fmt.Errorf("--sessions × --clients must be at most %d", maxUsers)
	case c.cursorRate < 0 || c.cursorRate > maxRate, c.broadcastRate < 0 || c.broadcastRate > maxRate:
		return fmt.Errorf("--cursor-rate and --broadcast-rate must be between 0 and %d", maxRate)
	case c.ramp < 0:
		return errors.New("--ramp must not be negative")
	case c.duration <= 0 || c.duration > maxDuration:
		return fmt.Errorf("--duration must be positive and at most %s", maxDuration)
	case c.warmup < 0 || c.warmup > maxDuration, c.drain < 0 || c.drain > time.Minute:
		return errors.New("--warmup must be between 0 and 24h, --drain between 0 and 1m")
	case c.connectTimeout <= 0 || c.connectTimeout > 5*time.Minute:
		return errors.New("--connect-timeout must be positive and at most 5m")
	case c.presence != protocol.PresenceDiff && c.presence != protocol.PresenceFull:
		return fmt.Errorf("--presence must be diff or full, not %q", c.presence)
	case c.sessionPrefix == "" || len(c.sessionPrefix) > 40:
		return errors.New("--session-prefix must be 1 to 40 bytes")
	}
	seen := make(map[int]bool, len(c.serverPIDs))
	for _, pid := range c.serverPIDs {
		if pid < 0 {
			return errors.New("--server-pid must not be negative")
		}
		if seen[pid] {
			return fmt.Errorf("--server-pid %d is given twice", pid)
		}
		seen[pid] = true
	}
	for _, raw := range c.urls {
		u, err := url.Parse(raw)
		if err != nil {
			return fmt.Errorf("--url %q: %w", raw, err)
		}
		if u.Scheme != "ws" && u.Scheme != "wss" {
			return fmt.Errorf("--url %q: scheme must be ws or wss", raw)
		}
		host := u.Hostname()
		if host == "localhost" {
			continue
		}
		ip := net.ParseIP(host)
		if ip == nil || !ownAddress(ip) {
			return fmt.Errorf("--url %q: host must be localhost, a loopback address or one of this host's addresses", raw)
		}
	}
	return nil
}

// ownAddress reports whether ip is a loopback address or one of this host's.
func ownAddress(ip net.IP) bool {
	if ip.IsLoopback() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// errFailed is returned by run when the load ran but nobody connected.
var errFailed = errors.New("no simulated user connected")

// run parses args, runs the load and writes the summary to stdout and
// progress to stderr. It stops by itself after the connect phase, the
// warm-up, the window and the drain, or earlier when ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parse(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	l := newLoad(c, stderr)
	s := l.run(ctx)
	if c.json {
		err = s.writeJSON(stdout)
	} else {
		err = s.writeText(stdout)
	}
	if err != nil {
		return err
	}
	if s.Connect.OK == 0 {
		return errFailed
	}
	return nil
}
