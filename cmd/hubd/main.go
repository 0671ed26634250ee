// Command hubd runs the sessionhub server: embedded, in memory, no setup.
//
//	go run ./cmd/hubd                  # listens on :8080
//	hubd --addr :9000 --log-format json
//	hubd token --sub u1 --name Ada --role instructor --ttl 1h   # mint a development token
//	hubd healthcheck                   # exit 0 if the hubd of HUB_ADDR (or PORT) is alive
//	hubd --version                     # hubd <version> (<vcs revision>, <go version>)
//
// Every flag has an environment twin HUB_<FLAG> (upper case, - as _), and
// PORT is honoured too; a flag given on the command line wins. See
// docs/protocol.md for the wire contract.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/internal/rawsock"
	"github.com/sessionhub/sessionhub/internal/version"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "--version" || os.Args[1] == "-version") {
		fmt.Println(version.Get())
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		if err := healthcheck(os.Args[2:], os.Getenv, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "hubd healthcheck:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "token" {
		if err := mintToken(os.Args[2:], os.Getenv, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "hubd token:", err)
			os.Exit(2)
		}
		return
	}
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "hubd:", err)
		os.Exit(1)
	}
}

// config is what the flags say.
type config struct {
	addr            string
	allowedOrigins  string
	allowedHosts    string
	httpIdleTimeout time.Duration
	jwtSecret       string
	jwtSecretFile   string
	jwtKeyFile      string // --jwt-public-key-file
	jwksURL         string
	apiKey          string
	redisURL        string
	redisOpts       *redis.Options // parsed from redisURL
	shutdownTimeout time.Duration
	logLevel        string
	logFormat       string
	gcPercent       int
	gcPercentSet    bool // given as a flag or HUB_GC_PERCENT: wins over GOGC
	version         bool // --version: print the version and exit
	hub             hub.Options
}

// defaultGCPercent is hubd's garbage-collection target (GOGC). Most of a
// hub's heap is what its connections hold for as long as they live, and an
// idle hub allocates little: collecting at 50 % growth instead of Go's 100 %
// keeps the resident memory per connection close to what connections hold,
// for a collector that costs under 1 % of the CPU under load (BENCHMARKS.md,
// idle connections and the single node's profile).
const defaultGCPercent = 50

// parse reads args, then the HUB_* environment (and PORT) for every flag
// not given on the command line; then it checks the values (validate) and
// resolves what they name (resolve). The config is returned with any error.
func parse(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	var c config
	fs := flag.NewFlagSet("hubd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", ":8080", "listen address")
	fs.StringVar(&c.allowedOrigins, "allowed-origins", "", "comma-separated Origin host patterns allowed besides the same host (path.Match syntax)")
	fs.StringVar(&c.jwtSecret, "jwt-secret", "", "HS256 secret: token mode (empty: open mode)")
	fs.StringVar(&c.jwtSecretFile, "jwt-secret-file", "", "file of HS256 secrets, one a line: each verifies, the first signs (keeps them out of process lists; re-read on SIGHUP)")
	fs.StringVar(&c.jwtKeyFile, "jwt-public-key-file", "", "PEM file of public keys (RSA: RS256, ECDSA P-256: ES256, Ed25519: EdDSA) that verify tokens (re-read on SIGHUP)")
	fs.StringVar(&c.jwksURL, "jwks-url", "", "URL of an identity provider's JSON Web Key Set (RS256, ES256, EdDSA by kid; cached, refreshed every 10m and on an unknown kid at most every 30s)")
	fs.StringVar(&c.hub.JWTIssuer, "jwt-issuer", "", "the iss every token must carry (empty: not checked)")
	fs.StringVar(&c.hub.JWTAudience, "jwt-audience", "", "the aud every token must carry (empty: not checked)")
	fs.IntVar(&c.hub.MaxConnections, "max-connections", 0, "open WebSockets in the process (0: no limit); more get HTTP 503")
	fs.IntVar(&c.hub.MaxConnectionsPerIP, "max-connections-per-ip", 0, "open WebSockets per remote address (0: no limit); more get HTTP 429")
	fs.DurationVar(&c.hub.HandshakeTimeout, "handshake-timeout", hub.DefaultHandshake, "how long a connection may stay without joining a session")
	fs.StringVar(&c.allowedHosts, "allowed-hosts", "", "comma-separated Host header values answered (path.Match syntax; empty: any); others get 403 (DNS rebinding)")
	fs.DurationVar(&c.httpIdleTimeout, "http-idle-timeout", 60*time.Second, "how long an idle keep-alive HTTP connection is kept")
	fs.StringVar(&c.apiKey, "api-key", "", "bearer key of the server API, at least 16 bytes (empty: API off)")
	fs.StringVar(&c.redisURL, "redis-url", "", "Redis URL for a cluster (empty: single node, all state in memory)")
	fs.DurationVar(&c.hub.NodeHeartbeat, "node-heartbeat", hub.DefaultNodeHeartbeat, "how often a cluster node proves it is alive (found dead within 3)")
	fs.StringVar(&c.hub.NodeID, "node-id", "", "this node's name in the cluster, unique there (empty: host name and 8 random hex digits)")
	fs.Int64Var(&c.hub.MaxMessageBytes, "max-message-bytes", hub.DefaultMaxMessageBytes, "largest frame a client may send")
	fs.Float64Var(&c.hub.CursorRate, "cursor-rate", hub.DefaultCursorRate, "cursor updates per second per connection (more are coalesced)")
	fs.Float64Var(&c.hub.MessageRate, "message-rate", hub.DefaultMessageRate, "other messages per second per connection")
	fs.IntVar(&c.hub.MessageBurst, "message-burst", hub.DefaultMessageBurst, "burst of other messages per connection")
	fs.IntVar(&c.hub.SendQueue, "send-queue", hub.DefaultSendQueue, "messages queued per connection before it is closed as a slow consumer")
	fs.DurationVar(&c.hub.WriteDelay, "write-delay", 0, "how long a sessionhub.batch connection's messages may wait to share a frame (0: written at once)")
	fs.DurationVar(&c.hub.BusLinger, "bus-linger", 0, "with --redis-url, how long a node may hold its events for the other nodes to send them together; taken out of --write-delay (0: sent at once)")
	fs.DurationVar(&c.hub.PingInterval, "ping-interval", hub.DefaultPingInterval, "how often to ping each connection")
	fs.DurationVar(&c.hub.PingTimeout, "ping-timeout", hub.DefaultPingTimeout, "how long to wait for a pong")
	fs.DurationVar(&c.hub.IdleAfter, "idle-after", hub.DefaultIdleAfter, "silence after which a participant is marked inactive")
	fs.DurationVar(&c.hub.LeaveGrace, "leave-grace", hub.DefaultLeaveGrace, "how long a dropped participant is kept for a reconnect")
	fs.DurationVar(&c.hub.SessionTTL, "session-ttl", hub.DefaultSessionTTL, "how long an empty session is kept")
	fs.IntVar(&c.hub.HistorySize, "history-size", hub.DefaultHistorySize, "broadcasts kept per session")
	fs.DurationVar(&c.hub.HistoryTTL, "history-ttl", hub.DefaultHistoryTTL, "how long broadcasts are kept")
	fs.IntVar(&c.hub.MaxParticipants, "max-participants", hub.DefaultMaxParticipants, "participants per session")
	fs.IntVar(&c.hub.HistoryBytes, "history-bytes", hub.DefaultHistoryBytes, "bytes of broadcasts kept per session (oldest go first)")
	fs.IntVar(&c.hub.HistoryTotalBytes, "history-total-bytes", hub.DefaultHistoryTotal, "bytes of broadcasts kept in all sessions (oldest go first)")
	fs.Float64Var(&c.hub.JoinRate, "join-rate", hub.DefaultJoinRate, "join-session and leave-session per second per connection")
	fs.IntVar(&c.hub.JoinBurst, "join-burst", hub.DefaultJoinBurst, "burst of join-session and leave-session per connection")
	fs.IntVar(&c.hub.MaxSessions, "max-sessions", hub.DefaultMaxSessions, "sessions in the process; a join that would create one more gets session_full")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long a graceful shutdown may take")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "text or json")
	fs.IntVar(&c.gcPercent, "gc-percent", defaultGCPercent, "garbage collection target, as GOGC (-1: off, for use with GOMEMLIMIT); GOGC wins over the default")
	fs.BoolVar(&c.version, "version", false, "print the version and exit (no environment twin)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	c.gcPercentSet = given["gc-percent"] || getenv("HUB_GC_PERCENT") != ""
	// A secret given on the command line, in either form, wins over both
	// environment forms.
	switch {
	case given["jwt-secret-file"] && !given["jwt-secret"]:
		given["jwt-secret"] = true // do not read HUB_JWT_SECRET
	case given["jwt-secret"] && !given["jwt-secret-file"]:
		given["jwt-secret-file"] = true // do not read HUB_JWT_SECRET_FILE
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil || f.Name == "version" {
			return
		}
		env := "HUB_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v := getenv(env)
		if v == "" && f.Name == "addr" && getenv("PORT") != "" {
			env, v = "PORT", ":"+getenv("PORT")
		}
		if v == "" {
			return
		}
		if e := f.Value.Set(v); e != nil {
			err = fmt.Errorf("%s=%q: %w", env, v, e)
		}
	})
	if err != nil {
		return nil, err
	}
	c.hub.AllowedHosts = splitList(c.allowedHosts)
	c.hub.AllowedOrigins = splitList(c.allowedOrigins)
	if err := c.validate(); err != nil {
		return &c, err
	}
	return &c, c.resolve()
}

// splitList is the non-empty, trimmed items of a comma-separated flag
// value; nil for none.
func splitList(s string) []string {
	var items []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			items = append(items, p)
		}
	}
	return items
}

// validate checks what the flags say, and changes nothing: every value in
// range, the patterns well formed, the flags that go together given
// together. It reads no file and parses no URL into options; resolve does.
func (c *config) validate() error {
	o := &c.hub
	switch {
	case o.MaxMessageBytes < 256:
		return errors.New("--max-message-bytes must be at least 256")
	case o.CursorRate <= 0, o.MessageRate <= 0, o.MessageBurst < 1:
		return errors.New("--cursor-rate, --message-rate and --message-burst must be positive")
	case o.SendQueue < 1, o.MaxParticipants < 1, o.HistorySize < 1:
		return errors.New("--send-queue, --max-participants and --history-size must be positive")
	case o.HistoryBytes < 1, o.HistoryTotalBytes < 1, o.JoinRate <= 0, o.JoinBurst < 1, o.MaxSessions < 1:
		return errors.New("--history-bytes, --history-total-bytes, --join-rate, --join-burst and --max-sessions must be positive")
	case o.PingInterval <= 0, o.PingTimeout <= 0, o.IdleAfter <= 0, o.SessionTTL <= 0, o.HistoryTTL <= 0, c.shutdownTimeout <= 0, c.httpIdleTimeout <= 0:
		return errors.New("durations must be positive (--leave-grace may be 0)")
	case o.WriteDelay < 0 || o.WriteDelay > time.Second:
		return errors.New("--write-delay must be between 0 and 1s")
	case o.BusLinger < 0 || o.BusLinger > time.Second:
		return errors.New("--bus-linger must be between 0 and 1s")
	case o.WriteDelay > 0 && o.BusLinger >= o.WriteDelay:
		return errors.New("--bus-linger must be shorter than --write-delay, of which it is a share")
	case o.LeaveGrace < 0:
		return errors.New("--leave-grace must not be negative")
	case c.logFormat != "text" && c.logFormat != "json":
		return fmt.Errorf("--log-format must be text or json, not %q", c.logFormat)
	case c.gcPercent < -1 || c.gcPercent == 0:
		return errors.New("--gc-percent must be positive, or -1 (off)")
	}
	for _, p := range o.AllowedHosts {
		if _, err := pathMatch(p); err != nil {
			return fmt.Errorf("--allowed-hosts: bad pattern %q: %w", p, err)
		}
	}
	if c.apiKey != "" && len(c.apiKey) < hub.MinAPIKeyBytes {
		return fmt.Errorf("--api-key must be at least %d bytes", hub.MinAPIKeyBytes)
	}
	for _, p := range o.AllowedOrigins {
		if _, err := pathMatch(p); err != nil {
			return fmt.Errorf("--allowed-origins: bad pattern %q: %w", p, err)
		}
	}
	switch {
	case o.MaxConnections < 0, o.MaxConnectionsPerIP < 0:
		return errors.New("--max-connections and --max-connections-per-ip must not be negative")
	case o.HandshakeTimeout <= 0:
		return errors.New("--handshake-timeout must be positive")
	case c.jwtSecret != "" && c.jwtSecretFile != "":
		return errors.New("give --jwt-secret or --jwt-secret-file, not both")
	case c.jwtSecret != "" && len(c.jwtSecret) < hub.MinSecretBytes:
		return fmt.Errorf("the JWT secret must be at least %d bytes", hub.MinSecretBytes)
	}
	if c.jwksURL != "" {
		u, err := url.Parse(c.jwksURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("--jwks-url must be an http or https URL, not %q", c.jwksURL)
		}
	}
	if (o.JWTIssuer != "" || o.JWTAudience != "") && !c.tokenMode() {
		return errors.New("--jwt-issuer and --jwt-audience need token mode (a secret, a key file or --jwks-url)")
	}
	if c.hub.NodeHeartbeat <= 0 {
		return errors.New("--node-heartbeat must be positive")
	}
	if len(c.hub.NodeID) > 128 || strings.ContainsRune(c.hub.NodeID, 0) {
		return errors.New("--node-id must be at most 128 bytes, with no NUL")
	}
	return nil
}

// resolve turns what the flags name into what the hub takes, after
// validate: it reads the key files (loadKeys), parses --redis-url into
// redis.Options (set for the hub: no retries, contexts honoured), and writes
// the values hub.Options spells differently (a --leave-grace of 0 is
// hub.Options' negative; the API key). An error is a file that cannot be
// read or holds no key the hub takes, or a Redis URL go-redis refuses.
func (c *config) resolve() error {
	o := &c.hub
	if o.LeaveGrace == 0 {
		o.LeaveGrace = -1 // hub.Options: negative means none
	}
	keys, err := c.loadKeys()
	if err != nil {
		return err
	}
	o.JWTKeys = keys
	o.APIKey = c.apiKey
	if c.redisURL != "" {
		ro, err := redis.ParseURL(c.redisURL)
		if err != nil {
			return fmt.Errorf("--redis-url: %w", err)
		}
		// Appends are not idempotent: a retried one could be stored twice.
		ro.MaxRetries = -1
		ro.ContextTimeoutEnabled = true
		// The node's Redis connections read and write as its WebSockets
		// do (internal/rawsock): a bus message does not wake the runtime's
		// sysmon each time the node had gone idle.
		dial := redis.NewDialer(ro)
		ro.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return rawsock.Wrap(conn), nil
		}
		c.redisOpts = ro
	}
	return nil
}

// tokenMode reports whether the flags turn token mode on.
func (c *config) tokenMode() bool {
	return c.jwtSecret != "" || c.jwtSecretFile != "" || c.jwtKeyFile != "" || c.jwksURL != ""
}

// loadKeys returns the static keys of token mode: the secret of
// --jwt-secret or the secrets --jwt-secret-file holds now, and the public
// keys --jwt-public-key-file holds now (the files are read again on every
// call, for reload). No key at all is open mode (or --jwks-url alone).
func (c *config) loadKeys() (hub.Keys, error) {
	var k hub.Keys
	if c.jwtSecret != "" { // its length is checked by validate
		k.Secrets = [][]byte{[]byte(c.jwtSecret)}
	}
	if c.jwtSecretFile != "" {
		b, err := os.ReadFile(c.jwtSecretFile)
		if err != nil {
			return k, fmt.Errorf("--jwt-secret-file: %w", err)
		}
		if k.Secrets, err = hub.ParseSecrets(b); err != nil {
			return k, fmt.Errorf("--jwt-secret-file %s: %w", c.jwtSecretFile, err)
		}
	}
	if c.jwtKeyFile != "" {
		b, err := os.ReadFile(c.jwtKeyFile)
		if err != nil {
			return k, fmt.Errorf("--jwt-public-key-file: %w", err)
		}
		if k.PublicKeys, err = hub.ParsePublicKeys(b); err != nil {
			return k, fmt.Errorf("--jwt-public-key-file %s: %w", c.jwtKeyFile, err)
		}
	}
	return k, nil
}

// reload re-reads what may change without a restart, on SIGHUP: the JWT
// secret file and the public key file. It logs what it loaded, or why it
// kept what was in force (a file that cannot be read or holds a key the hub
// would not take changes nothing); it never stops the process. The JWKS
// needs no reload: it refreshes itself.
func reload(c *config, h *hub.Hub, log *slog.Logger) {
	if c.jwtSecretFile == "" && c.jwtKeyFile == "" {
		log.Info("reload: nothing to reload (no --jwt-secret-file or --jwt-public-key-file)")
		return
	}
	keys, err := c.loadKeys()
	if err == nil {
		err = h.SetKeys(keys)
	}
	if err != nil {
		log.Error("reload failed: the JWT keys in force stay", "err", err)
		return
	}
	log.Info("reload: JWT keys loaded", "secrets", len(keys.Secrets), "public_keys", len(keys.PublicKeys),
		"secret_file", c.jwtSecretFile, "public_key_file", c.jwtKeyFile)
}

func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// gcTarget is the GOGC that run sets, and whether it sets one: that of
// --gc-percent or HUB_GC_PERCENT when given, else none when GOGC is set (the
// runtime has read it), else defaultGCPercent. GOMEMLIMIT works as in any Go
// program, alongside.
func gcTarget(c *config, getenv func(string) string) (int, bool) {
	if !c.gcPercentSet && getenv("GOGC") != "" {
		return 0, false
	}
	return c.gcPercent, true
}

// run serves until ctx is done or a SIGINT or SIGTERM arrives, then shuts
// down within --shutdown-timeout. If ready is not nil it receives the
// listening address.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer, ready chan<- net.Addr) error {
	c, err := parse(args, getenv, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if c.version {
		fmt.Println(version.Get())
		return nil
	}
	log, err := newLogger(c.logLevel, c.logFormat, stderr)
	if err != nil {
		return err
	}
	c.hub.Logger = log
	if pct, ok := gcTarget(c, getenv); ok {
		debug.SetGCPercent(pct)
	}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	store := "memory"
	if c.redisOpts != nil {
		redis.SetLogger(redisLog{log})
		rdb := redis.NewClient(c.redisOpts)
		defer rdb.Close()
		c.hub.Redis = rdb
		store = "redis"
	}
	if c.jwksURL != "" {
		// The first fetch happens here; one that fails is logged and tried
		// again at the first token with a kid.
		jwks, err := hub.NewJWKS(c.jwksURL, &hub.JWKSOptions{Logger: log})
		if err != nil {
			ln.Close()
			return fmt.Errorf("--jwks-url: %w", err)
		}
		defer jwks.Close()
		c.hub.JWKS = jwks
	}
	// The signals are ours before the "listening" line: a SIGTERM or
	// SIGHUP that follows it is handled, never the default (exit).
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	h := hub.New(&c.hub)
	ln = h.Listener(ln) // plain HTTP connections count per address too
	srv := &http.Server{
		Handler:           h.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       c.httpIdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	mode := "open"
	if c.tokenMode() {
		mode = "token"
	}
	v := version.Get()
	log.Info("listening", "addr", ln.Addr().String(), "version", v.Version, "revision", v.Revision, "mode", mode, "api", c.hub.APIKey != "", "store", store, "node", h.NodeID())
	if ready != nil {
		ready <- ln.Addr()
	}

wait:
	for {
		select {
		case err = <-served:
			h.Shutdown(context.Background())
			return err
		case <-hup:
			reload(c, h, log)
		case <-ctx.Done():
			break wait
		}
	}
	log.Info("shutting down", "timeout", c.shutdownTimeout)
	return shutdown(h, srv, served, c.shutdownTimeout, log)
}

// shutdown stops h and srv within timeout: WebSockets get 1001 and
// /readyz 503, then the listener closes and plain HTTP requests finish.
// What has not ended at timeout is dropped. A shutdown that ran its
// course, dropping included, returns nil (exit status 0): only a server
// that failed otherwise returns an error.
func shutdown(h *hub.Hub, srv *http.Server, served <-chan error, timeout time.Duration, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := h.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) {
		log.Warn("shutdown timeout: dropped the WebSockets that had not closed", "timeout", timeout)
	}
	if err := srv.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) {
		log.Warn("shutdown timeout: closed the HTTP requests still running", "timeout", timeout)
		srv.Close()
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// redisLog sends go-redis's own messages (each failed dial of its pool,
// and the like) to the log at debug level: the hub says once, at warn,
// when Redis becomes unreachable and when it is back.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

// pathMatch checks an --allowed-origins pattern the way the WebSocket
// library will use it.
func pathMatch(pattern string) (bool, error) {
	return path.Match(strings.ToLower(pattern), "")
}
