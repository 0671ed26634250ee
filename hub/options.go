package hub

// This file is the hub's configuration: plain data, read by New (its
// caller's goroutine) and never written after.

import (
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options configures a Hub. A nil *Options, and every zero field, takes the
// contract's default.
type Options struct {
	// AllowedOrigins lists the host patterns (path.Match syntax, matched
	// case-insensitively against the Origin's host and port) allowed to open
	// a WebSocket besides the same host. Requests without an Origin header
	// are always allowed. Defaults to none: same host only.
	AllowedOrigins []string

	// MaxMessageBytes is the largest frame a client may send; a larger one
	// closes the connection with 1009. Defaults to 16384.
	MaxMessageBytes int64

	// CursorRate is how many cursor updates per second a connection may
	// have fanned out; those over it are coalesced, the latest delivered
	// when the window opens. Defaults to 20.
	CursorRate float64

	// MessageRate and MessageBurst limit every other message of a
	// connection; over it a message is refused with rate_limited, and a
	// connection over it for AbuseWindow is closed with 1008. Default to 50
	// per second with a burst of 100.
	MessageRate  float64
	MessageBurst int

	// AbuseWindow is how long a connection may keep being refused for its
	// rate before it is closed with 1008. Defaults to 10s.
	AbuseWindow time.Duration

	// SendQueue is how many messages may wait for a connection's writer; a
	// connection whose queue is full is closed with 1013. Defaults to 256.
	SendQueue int

	// WriteDelay, when positive, lets the writer of a connection that
	// negotiated protocol.BatchSubprotocol hold what is queued for it for at
	// most that long after the first message was queued, and then write it
	// in as few frames as its send channel allows. Connections without
	// batching are not affected. Defaults to 0: every message is written as
	// soon as the writer gets to it.
	WriteDelay time.Duration

	// BusLinger, on a cluster node (Redis set), is how long the bus may
	// hold this node's events for the other nodes, so that the events of
	// that time leave in one write to Redis and reach each node in one read
	// (cluster.BusOptions.Linger). It delays those events for every client
	// on the other nodes, batch or not. With WriteDelay, it is taken out of
	// the delay: the delay connections wait WriteDelay - BusLinger, so that
	// a message from another node waits at most WriteDelay in all; a
	// BusLinger not shorter than WriteDelay is taken as a quarter of it.
	// Ignored on a single node. Defaults to 0: every event leaves as soon
	// as the bus's publisher takes it.
	BusLinger time.Duration

	// PingInterval is how often the server pings a connection, and
	// PingTimeout how long it waits for the pong before it drops the
	// connection. Default to 25s and 20s.
	PingInterval time.Duration
	PingTimeout  time.Duration

	// IdleAfter is how long a participant may stay silent before it is
	// marked inactive. Defaults to 5m.
	IdleAfter time.Duration

	// LeaveGrace is how long a participant whose last connection dropped
	// without a clean close stays in the list, waiting for it to come back.
	// Defaults to 5s; a negative value means no grace.
	LeaveGrace time.Duration

	// SessionTTL is how long an empty session is kept. Defaults to 30m.
	SessionTTL time.Duration

	// HistorySize and HistoryTTL bound each session's broadcast history.
	// Default to 1000 events and 10m.
	HistorySize int
	HistoryTTL  time.Duration

	// HistoryBytes bounds the encoded size of one session's history, and
	// HistoryTotalBytes that of every session's history in the process;
	// the oldest events go first, and a recovery that would need one gets
	// recovered: false. Default to 8 MiB and 256 MiB.
	HistoryBytes      int
	HistoryTotalBytes int

	// JoinRate and JoinBurst limit a connection's join-session and
	// leave-session messages together (besides MessageRate); over it they
	// are refused with rate_limited. Default to 2 per second with a burst
	// of 10.
	JoinRate  float64
	JoinBurst int

	// MaxSessions is how many sessions the process holds; a join that would
	// create one more is refused with session_full. Defaults to 100000.
	MaxSessions int

	// MaxParticipants is how many participants a session may have; joins
	// past it are refused with session_full. Defaults to 1000.
	MaxParticipants int

	// JWTSecret, JWTKeys and JWKS turn token mode on: every upgrade needs
	// a JWT (see Claims) that one of their keys verifies, by the key's own
	// algorithm. JWTSecret is one HS256 secret (verifying before those of
	// JWTKeys); JWTKeys holds HS256 secrets and RS256, ES256 and EdDSA
	// public keys (replaced at run time by Hub.SetKeys); JWKS is an
	// identity provider's key set, which the caller closes. Default to
	// none: open mode.
	JWTSecret []byte
	JWTKeys   Keys
	JWKS      *JWKS

	// JWTIssuer and JWTAudience, when set, must match a token's iss and
	// (one of) its aud. Default to empty: not checked.
	JWTIssuer   string
	JWTAudience string

	// APIKey turns the server API (/api/...) on, for callers that send it
	// as a Bearer token. Defaults to none: the API routes answer 404.
	APIKey string

	// MaxConnections and MaxConnectionsPerIP refuse upgrades past that many
	// open WebSockets in the process (503) or from one remote address (429).
	// Default to 0: no limit.
	// MaxConnectionsPerIP counts IPv6 peers per /64; with Hub.Listener
	// it counts plain HTTP connections too.
	MaxConnections      int
	MaxConnectionsPerIP int

	// AllowedHosts lists the Host header values (path.Match patterns,
	// matched case-insensitively with and without the port) the hub
	// answers; any other gets 403, except /healthz and /readyz: protection
	// against DNS rebinding for a hub on a private address. Defaults to
	// none: any Host.
	AllowedHosts []string

	// HandshakeTimeout is how long a connection may stay open without
	// sending join-session before it is closed with 1008. Defaults to 30s.
	HandshakeTimeout time.Duration

	// Redis, when set, makes the hub a node of a cluster: the nodes that
	// share one Redis share their sessions (see cluster_loop.go and the README's
	// "Scaling out"). Defaults to nil: a single node, all state in memory.
	// The hub does not close it. Give it MaxRetries -1 (appends are not
	// idempotent) and ContextTimeoutEnabled.
	Redis redis.UniversalClient
	// NodeID names this node in the cluster; it must be unique there and
	// at most 128 bytes. Defaults to the host name and 8 random hex digits.
	NodeID string
	// NodeHeartbeat is how often a cluster node proves to the others that
	// it is alive: one that stops is found dead within 3 heartbeats.
	// Defaults to 5s.
	NodeHeartbeat time.Duration

	// Logger receives one line per connect and disconnect, and the hub's
	// warnings. Defaults to slog.Default().
	Logger *slog.Logger
}

// The contract's defaults.
const (
	DefaultMaxMessageBytes = 16384
	DefaultCursorRate      = 20
	DefaultMessageRate     = 50
	DefaultMessageBurst    = 100
	DefaultAbuseWindow     = 10 * time.Second
	DefaultSendQueue       = 256
	DefaultPingInterval    = 25 * time.Second
	DefaultPingTimeout     = 20 * time.Second
	DefaultIdleAfter       = 5 * time.Minute
	DefaultLeaveGrace      = 5 * time.Second
	DefaultSessionTTL      = 30 * time.Minute
	DefaultHistorySize     = 1000
	DefaultHistoryTTL      = 10 * time.Minute
	DefaultHistoryBytes    = 8 << 20
	DefaultHistoryTotal    = 256 << 20
	DefaultJoinRate        = 2
	DefaultJoinBurst       = 10
	DefaultMaxSessions     = 100_000
	DefaultMaxParticipants = 1000
	DefaultHandshake       = 30 * time.Second
	DefaultNodeHeartbeat   = 5 * time.Second
)

func (o *Options) withDefaults() Options {
	var c Options
	if o != nil {
		c = *o
	}
	setDefault(&c.MaxMessageBytes, DefaultMaxMessageBytes)
	setDefault(&c.CursorRate, DefaultCursorRate)
	setDefault(&c.MessageRate, DefaultMessageRate)
	setDefault(&c.MessageBurst, DefaultMessageBurst)
	setDefault(&c.AbuseWindow, DefaultAbuseWindow)
	setDefault(&c.SendQueue, DefaultSendQueue)
	setDefault(&c.PingInterval, DefaultPingInterval)
	setDefault(&c.PingTimeout, DefaultPingTimeout)
	setDefault(&c.IdleAfter, DefaultIdleAfter)
	setDefault(&c.LeaveGrace, DefaultLeaveGrace)
	if c.WriteDelay < 0 {
		c.WriteDelay = 0
	}
	switch {
	case c.BusLinger < 0:
		c.BusLinger = 0
	case c.WriteDelay > 0 && c.BusLinger >= c.WriteDelay:
		c.BusLinger = c.WriteDelay / 4
	}
	if c.LeaveGrace < 0 {
		c.LeaveGrace = 0
	}
	setDefault(&c.SessionTTL, DefaultSessionTTL)
	setDefault(&c.HistorySize, DefaultHistorySize)
	setDefault(&c.HistoryTTL, DefaultHistoryTTL)
	setDefault(&c.HistoryBytes, DefaultHistoryBytes)
	setDefault(&c.HistoryTotalBytes, DefaultHistoryTotal)
	setDefault(&c.JoinRate, DefaultJoinRate)
	setDefault(&c.JoinBurst, DefaultJoinBurst)
	setDefault(&c.MaxSessions, DefaultMaxSessions)
	setDefault(&c.MaxParticipants, DefaultMaxParticipants)
	setDefault(&c.HandshakeTimeout, DefaultHandshake)
	setDefault(&c.NodeHeartbeat, DefaultNodeHeartbeat)
	if c.Redis != nil && c.NodeID == "" {
		c.NodeID = defaultNodeID()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func setDefault[T int | int64 | float64 | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}
