package client

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"time"
)

// Options configures a Client. A nil *Options, and every zero field, takes
// the default stated on the field.
type Options struct {
	// Token, when set, is sent on every connection attempt as
	// "Authorization: Bearer <Token>" (the hub's token mode). Defaults to
	// none. TokenFunc wins over it.
	Token string

	// TokenFunc, when set, is called for the token of every connection
	// attempt (Dial's first connect and every reconnect, with a context
	// bounded by ConnectTimeout; the token is sent as "Authorization:
	// Bearer <token>") and of every refresh-token on a live connection
	// (with a context that ends at the current token's expiry; see the
	// package documentation for when). An error fails that attempt, which
	// the reconnect policy retries. With a TokenFunc a close with 4001
	// (token expired) is not final: the client reconnects with a new token
	// and recovers what it missed. It may be called from several
	// goroutines, one call at a time per connection. Defaults to none:
	// Token (or no token) is used.
	TokenFunc func(ctx context.Context) (string, error)

	// Header holds extra HTTP headers sent with every WebSocket upgrade
	// request. Defaults to none.
	Header http.Header

	// HTTPClient makes the WebSocket upgrade requests: set it for a proxy,
	// a TLS configuration of your own or another dialer. Defaults to
	// http.DefaultClient.
	HTTPClient *http.Client

	// Origin, when set, is sent as the upgrade request's Origin header.
	// Defaults to none (the hub allows requests without an Origin).
	Origin string

	// ConnectTimeout bounds each connection attempt (the token function,
	// TCP, TLS and the WebSocket upgrade). Defaults to 20s.
	ConnectTimeout time.Duration

	// Reconnect is the policy for the first connect and for reconnecting
	// after an unexpected end of the connection. Defaults to
	// DefaultReconnectPolicy (500ms initial delay, factor 2, 10s maximum,
	// 5 attempts, counter restarted after 10s up).
	Reconnect *ReconnectPolicy

	// HeartbeatInterval is how long the client waits, having received
	// nothing on its connection, before it sends an application ping to
	// check that the connection is alive. Defaults to 25s; a negative value
	// turns the heartbeat off.
	HeartbeatInterval time.Duration

	// HeartbeatTimeout is how long the client waits for anything (the pong,
	// or any other message) after that ping; when nothing comes, it drops the
	// connection (a *CloseError with code 1006 that wraps
	// ErrHeartbeatTimeout) and reconnects. Defaults to 10s.
	HeartbeatTimeout time.Duration

	// DisableBatch stops the client from offering the sessionhub.batch
	// subprotocol, with which the hub may put several messages in one
	// frame. Defaults to false: batching is offered.
	DisableBatch bool

	// EventBuffer is the capacity of the Events channel. Defaults to 1024.
	EventBuffer int

	// Logger receives the client's connection and reconnection logs.
	// Defaults to a logger that discards everything.
	Logger *slog.Logger

	// Test hooks (set through export_test.go).
	sleep  func(ctx context.Context, d time.Duration) error // waits d or until ctx ends
	jitter func(max time.Duration) time.Duration            // a random duration in [0, max]
}

// Defaults of Options.
const (
	DefaultConnectTimeout    = 20 * time.Second
	DefaultEventBuffer       = 1024
	DefaultHeartbeatInterval = 25 * time.Second
	DefaultHeartbeatTimeout  = 10 * time.Second
)

func (o *Options) withDefaults() Options {
	var c Options
	if o != nil {
		c = *o
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.EventBuffer <= 0 {
		c.EventBuffer = DefaultEventBuffer
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Reconnect == nil {
		p := DefaultReconnectPolicy
		c.Reconnect = &p
	} else {
		p := c.Reconnect.withDefaults()
		c.Reconnect = &p
	}
	if c.sleep == nil {
		c.sleep = sleepCtx
	}
	if c.jitter == nil {
		c.jitter = fullJitter
	}
	c.Header = c.Header.Clone()
	return c
}

// sleepCtx waits for d, or until ctx ends (then it returns ctx's error).
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
