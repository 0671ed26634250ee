package client

import (
	"context"
	"time"
)

// SetTestHooks replaces the sleep between reconnect attempts and the jitter
// source of o.
func SetTestHooks(o *Options, sleep func(ctx context.Context, d time.Duration) error, jitter func(max time.Duration) time.Duration) {
	o.sleep, o.jitter = sleep, jitter
}

// RefreshAfter is refreshAfter: when a token of lifetime is refreshed.
var RefreshAfter = refreshAfter
