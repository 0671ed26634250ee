package client

import (
	"math"
	"math/rand/v2"
	"time"
)

// ReconnectPolicy says how a Client reconnects after an unexpected end of
// its connection: attempt n (counting from 0) waits a random delay in
// [0, min(Max, Initial*Factor^n)] ("full jitter") before dialing.
type ReconnectPolicy struct {
	// Initial is the upper bound of the first delay. Defaults to 500ms.
	Initial time.Duration

	// Factor multiplies the bound after each failed attempt. Defaults to 2.
	Factor float64

	// Max caps the bound. Defaults to 10s.
	Max time.Duration

	// MaxAttempts is how many failed attempts in a row the client makes
	// before it gives up. 0 means forever; a negative value turns
	// reconnecting off. DefaultReconnectPolicy (used when Options.Reconnect
	// is nil) has 5. The count runs across connections: it restarts only
	// once a connection has stayed up for ResetAfter after its rejoin, so
	// a hub that accepts and then drops the client right away every time
	// still ends in a *GaveUpError. Dial's first connect is retried under
	// the same policy: it makes up to 1+MaxAttempts attempts.
	MaxAttempts int

	// ResetAfter is how long a connection must stay up (counted from its
	// rejoin, or from Dial for the first one) for the attempt counter to
	// restart, so that the next drop starts again at attempt 1 with the
	// Initial delay. Defaults to 10s.
	ResetAfter time.Duration
}

// DefaultReconnectPolicy is the policy of a nil Options.Reconnect, as the
// platform's earlier client had it.
var DefaultReconnectPolicy = ReconnectPolicy{
	Initial:     500 * time.Millisecond,
	Factor:      2,
	Max:         10 * time.Second,
	MaxAttempts: 5,
	ResetAfter:  10 * time.Second,
}

func (p ReconnectPolicy) withDefaults() ReconnectPolicy {
	if p.Initial <= 0 {
		p.Initial = DefaultReconnectPolicy.Initial
	}
	if p.Factor < 1 {
		p.Factor = DefaultReconnectPolicy.Factor
	}
	if p.Max <= 0 {
		p.Max = DefaultReconnectPolicy.Max
	}
	if p.ResetAfter <= 0 {
		p.ResetAfter = DefaultReconnectPolicy.ResetAfter
	}
	if p.Max < p.Initial {
		p.Max = p.Initial
	}
	return p
}

// Bound returns the upper bound of the delay before attempt n (counting
// from 0): min(Max, Initial*Factor^n).
func (p ReconnectPolicy) Bound(n int) time.Duration {
	p = p.withDefaults()
	d := float64(p.Initial) * math.Pow(p.Factor, float64(n))
	if math.IsInf(d, 0) || math.IsNaN(d) || d >= float64(p.Max) {
		return p.Max
	}
	return time.Duration(d)
}

// fullJitter returns a uniformly random duration in [0, max].
func fullJitter(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(max) + 1))
}
