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
	// none.
	Token string

	// Header holds extra HTTP headers sent with every WebSocket upgrade
	// request. Defaults to none.
	Header http.Header

	// Origin, when set, is sent as the upgrade request's Origin header.
	// Defaults to none (the hub allows requests without an Origin).
	Origin string

	// ConnectTimeout bounds each connection attempt (TCP, TLS and the
	// WebSocket upgrade). Defaults to 20s.
	ConnectTimeout time.Duration

	// Reconnect is the policy for reconnecting after an unexpected end of
	// the connection. Defaults to DefaultReconnectPolicy (500ms initial
	// delay, factor 2, 10s maximum, 5 attempts).
	Reconnect *ReconnectPolicy

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
	DefaultConnectTimeout = 20 * time.Second
	DefaultEventBuffer    = 1024
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
