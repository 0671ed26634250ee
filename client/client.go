package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/sessionhub/sessionhub/protocol"
)

// Errors of the client's methods, besides *ServerError, *CloseError and
// *GaveUpError.
var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("sessionhub: client closed")

	// ErrConnectionLost is returned by a request whose connection ended
	// before its reply came. The client reconnects by itself (unless the
	// close was final); the request may be sent again.
	ErrConnectionLost = errors.New("sessionhub: connection lost before the reply")

	// ErrHeartbeatTimeout is wrapped by the *CloseError of a connection
	// the client dropped because nothing came within
	// Options.HeartbeatTimeout of its heartbeat ping.
	ErrHeartbeatTimeout = errors.New("sessionhub: no answer to the heartbeat ping")
)

const (
	// readLimit is the largest server frame the client accepts: a batch of
	// full participant lists of a large session can be big.
	readLimit = 64 << 20

	// writeTimeout bounds one frame's write. The caller's context is not
	// used for writes, because cancelling a write closes the WebSocket.
	writeTimeout = 10 * time.Second
)

// Client is a connection to a sessionhub hub, kept open across unexpected
// drops. All its methods are safe for concurrent use.
type Client struct {
	url    string
	opts   Options
	log    *slog.Logger
	events chan Event

	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	closeOnce sync.Once
	done      chan struct{} // closed when run has returned

	nextRef atomic.Uint64

	mu      sync.Mutex
	state   State
	closing bool          // Close was called
	final   error         // why methods fail from now on; nil while usable
	cn      *conn         // the open connection; nil while there is none
	changed chan struct{} // closed and replaced when cn or final changes
	pending map[string]*pending
	joined  *membership // the session to join again after a reconnect
}

// conn is one WebSocket connection of a Client.
type conn struct {
	ws    *websocket.Conn
	ready chan struct{} // closed when requests may use it (after the rejoin)
	done  chan struct{} // closed when its reader has returned
	err   error         // the read error that ended it; set before done

	recv    chan struct{}  // signalled, without blocking, after each frame the reader handled
	busy    atomic.Bool    // the reader is handing a frame's messages over (it may wait for the application)
	expires chan time.Time // the latest expiresAt of session-joined (capacity 1, the reader replaces it)
	helpers sync.WaitGroup // the connection's heartbeat and token refresh goroutines

	mu      sync.Mutex
	dropped error // why the client dropped the connection itself, if it did
}

// drop ends cn from the client's side, without a close handshake: the peer
// is not answering. err is what the connection's *CloseError wraps.
func (cn *conn) drop(err error) {
	cn.mu.Lock()
	if cn.dropped == nil {
		cn.dropped = err
	}
	cn.mu.Unlock()
	cn.ws.CloseNow()
}

// membership is the session the client is in, as needed to join it again
// and to deliver its broadcasts exactly once.
type membership struct {
	join protocol.JoinSession // UserInfo.UserID is the selfId the server gave
	// epoch and offset are the session's epoch and the latest broadcast
	// offset the client has seen in it (delivered, or acked as its own):
	// the recover of a rejoin, and the bar a broadcast must pass to be
	// delivered.
	epoch  string
	offset int64
	// participants is the client's own list of the session's participants;
	// fill says that UserJoined and UserLeft events carry a copy of it when
	// the server sent none (the join left the presence mode to the client).
	participants roster
	fill         bool
}

// pending is a request waiting for its reply.
type pending struct {
	cn     *conn
	ch     chan reply            // buffered: the reader never blocks on it
	join   *protocol.JoinSession // for join-session: what was asked
	fill   bool                  // for join-session: the presence mode was the client's default
	rejoin int                   // for an automatic rejoin: the reconnect attempt
}

type reply struct {
	joined    *protocol.SessionJoined
	offset    int64     // of an ack
	expiresAt time.Time // of token-refreshed
	err       error
}

// JoinOption is an option of Join.
type JoinOption func(*protocol.JoinSession)

// WithPresence asks for presence mode p on the wire. protocol.PresenceFull:
// every user-joined and user-left carries the server's whole list.
// protocol.PresenceDiff: they carry only the user who came or went, and the
// events' Participants is nil (Client.Participants still has the list).
// Without this option the client joins in diff presence (O(n) bytes per
// join instead of O(n²)) and fills the events' Participants from its own
// list, so that they read as in full presence.
func WithPresence(p protocol.Presence) JoinOption {
	return func(j *protocol.JoinSession) { j.Presence = p }
}

// Dial connects to the hub's WebSocket endpoint url (ws://host/ws or
// wss://host/ws) and returns a connected Client. opts may be nil.
//
// A failed first connect is retried under Options.Reconnect, as a
// reconnect is (a hub that starts late is waited for), until ctx ends or
// the policy gives up (a *GaveUpError that wraps the last attempt's
// error). An answer that no retry can change is returned at once: an
// *UpgradeError with HTTP 400, 403, 404 or another 4xx but 408 and 429,
// and 401 unless Options.TokenFunc can give another token. A negative
// MaxAttempts makes one attempt only.
//
// The Client must be closed with Close, and its Events channel read.
func Dial(ctx context.Context, url string, opts *Options) (*Client, error) {
	o := opts.withDefaults()
	c := &Client{
		url:     url,
		opts:    o,
		log:     o.Logger,
		events:  make(chan Event, o.EventBuffer),
		done:    make(chan struct{}),
		state:   Connecting,
		changed: make(chan struct{}),
		pending: make(map[string]*pending),
	}
	ws, n, err := c.connect(ctx, true, 0, nil)
	if err != nil {
		return nil, err
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	cn := newConn(ws)
	close(cn.ready)
	c.cn, c.state = cn, Connected
	go c.run(cn, n)
	return c, nil
}

func newConn(ws *websocket.Conn) *conn {
	return &conn{ws: ws, ready: make(chan struct{}), done: make(chan struct{}),
		recv: make(chan struct{}, 1), expires: make(chan time.Time, 1)}
}

// setExpiry hands the refresher the connection's new expiry, replacing
// one it has not taken yet. Only the reader calls it.
func (cn *conn) setExpiry(t time.Time) {
	select {
	case <-cn.expires:
	default:
	}
	cn.expires <- t
}

// UpgradeError is a connection attempt that the server answered with an
// HTTP status instead of upgrading to a WebSocket (for example 401 for a
// missing or invalid token, 403 for a refused origin, 429 or 503 for a
// connection limit or a hub shutting down).
type UpgradeError struct {
	StatusCode int   // the HTTP status of the answer
	Err        error // the WebSocket library's error for it
}

// Error says the status the server answered instead of the upgrade.
func (e *UpgradeError) Error() string {
	return fmt.Sprintf("HTTP %d %s instead of the WebSocket upgrade", e.StatusCode, http.StatusText(e.StatusCode))
}

// Unwrap returns Err.
func (e *UpgradeError) Unwrap() error { return e.Err }

// permanent reports whether err, a failed connection attempt, would fail
// the same way however often it was retried.
func (c *Client) permanent(err error) bool {
	var ue *UpgradeError
	if !errors.As(err, &ue) {
		return false
	}
	switch ue.StatusCode {
	case http.StatusUnauthorized:
		return c.opts.TokenFunc == nil
	case http.StatusRequestTimeout, http.StatusTooManyRequests:
		return false
	}
	return ue.StatusCode >= 400 && ue.StatusCode < 500
}

// token returns the token of a connection attempt or refresh ("" for
// none).
func (c *Client) token(ctx context.Context) (string, error) {
	if c.opts.TokenFunc == nil {
		return c.opts.Token, nil
	}
	tok, err := c.opts.TokenFunc(ctx)
	if err != nil {
		return "", fmt.Errorf("sessionhub: token function: %w", err)
	}
	return tok, nil
}

// dial makes one connection attempt.
func (c *Client) dial(ctx context.Context) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.ConnectTimeout)
	defer cancel()
	h := c.opts.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	tok, err := c.token(ctx)
	if err != nil {
		return nil, err
	}
	if tok != "" {
		h.Set("Authorization", "Bearer "+tok)
	}
	if c.opts.Origin != "" {
		h.Set("Origin", c.opts.Origin)
	}
	do := &websocket.DialOptions{HTTPHeader: h, HTTPClient: c.opts.HTTPClient}
	if !c.opts.DisableBatch {
		do.Subprotocols = []string{protocol.BatchSubprotocol}
	}
	ws, resp, err := websocket.Dial(ctx, c.url, do)
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, fmt.Errorf("sessionhub: dial %s: %w", c.url, &UpgradeError{StatusCode: resp.StatusCode, Err: err})
		}
		return nil, fmt.Errorf("sessionhub: dial %s: %w", c.url, err)
	}
	ws.SetReadLimit(readLimit)
	return ws, nil
}

// Events returns the channel on which the client delivers, in order, the
// server's events and its own state changes (see Event). It is closed
// after Close, a final close code or the last failed reconnect attempt.
//
// The consumer must keep reading it: when its buffer (Options.EventBuffer)
// is full, the client stops reading from the connection, so replies to
// requests wait too, and the hub may eventually close the connection as a
// slow consumer. After Close, events that do not fit the buffer are dropped.
func (c *Client) Events() <-chan Event { return c.events }

// State returns the client's current state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Join joins session sessionID as info (in open mode info.Name is required;
// a missing info.UserID is chosen by the server and returned as SelfID). A
// client is in at most one session: joining another leaves the first. The
// reply is also delivered as a *SessionJoined event. After a reconnect the
// client joins the last session it joined again by itself, as the same
// user (SelfID), with the same name, role, colour and presence.
//
// The client joins in diff presence unless WithPresence says otherwise, and
// keeps the participant list itself (see Participants and WithPresence).
func (c *Client) Join(ctx context.Context, sessionID string, info protocol.UserInfo, opts ...JoinOption) (*protocol.SessionJoined, error) {
	j := protocol.JoinSession{SessionID: sessionID, UserInfo: info}
	for _, o := range opts {
		o(&j)
	}
	fill := j.Presence == ""
	if fill {
		j.Presence = protocol.PresenceDiff
	}
	r, err := c.request(ctx, protocol.TypeJoinSession, j, &pending{join: &j, fill: fill})
	if err != nil {
		return nil, err
	}
	return r.joined, nil
}

// Leave leaves the session (it succeeds outside a session too). The reply
// is also delivered as a *SessionLeft event.
func (c *Client) Leave(ctx context.Context) error {
	_, err := c.request(ctx, protocol.TypeLeaveSession, nil, &pending{})
	return err
}

// UpdateCursor sends the client's cursor (with optional file and
// selection) to the other participants. The server does not reply; an
// error (not_in_session, bad_request) arrives as an *ErrorEvent.
// The client's own entry in Participants takes the cursor.
func (c *Client) UpdateCursor(ctx context.Context, cur protocol.Cursor) error {
	if err := c.send(ctx, protocol.TypeCursorUpdate, cur); err != nil {
		return err
	}
	c.mu.Lock()
	if m := c.joined; m != nil {
		m.participants.setCursor(m.join.UserInfo.UserID, cur)
	}
	c.mu.Unlock()
	return nil
}

// SetActive tells the other participants whether the user is active. The
// server does not reply; an error arrives as an *ErrorEvent. The client's
// own entry in Participants takes the state.
func (c *Client) SetActive(ctx context.Context, active bool) error {
	if err := c.send(ctx, protocol.TypeActivityStatus, protocol.ActivityStatus{IsActive: active}); err != nil {
		return err
	}
	c.mu.Lock()
	if m := c.joined; m != nil {
		m.participants.setActive(m.join.UserInfo.UserID, active)
	}
	c.mu.Unlock()
	return nil
}

// Participants returns a copy of the client's list of its session's
// participants, in the contract's order (joinedAt, then userId), or nil
// outside a session. The client keeps it from the last session-joined
// (Join's reply, or a *Rejoined after a reconnect) and the membership,
// cursor and activity events since, whatever the presence mode; the
// client's own entry follows its UpdateCursor and SetActive. It is as
// current as the events the client has read from the connection, which
// may be ahead of those the application has taken from Events.
func (c *Client) Participants() []protocol.Participant {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.joined == nil {
		return nil
	}
	return c.joined.participants.clone()
}

// Broadcast sends event with payload (marshalled to JSON) to the session's
// participants addressed by to: "" or protocol.ToAll, protocol.ToInstructors,
// protocol.ToLearners, or one userId. It waits for the server's ack and
// returns the broadcast's offset in the session.
func (c *Client) Broadcast(ctx context.Context, event string, payload any, to string) (int64, error) {
	raw, err := json.Marshal(payload)
	if err != nil {
		return 0, fmt.Errorf("sessionhub: broadcast payload: %w", err)
	}
	r, err := c.request(ctx, protocol.TypeBroadcast, protocol.Broadcast{Event: event, Payload: raw, To: to}, &pending{})
	if err != nil {
		return 0, err
	}
	return r.offset, nil
}

// Ping sends an application-level ping and returns the time until its pong.
func (c *Client) Ping(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	if _, err := c.request(ctx, protocol.TypePing, struct{}{}, &pending{}); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// Close closes the connection with 1000, stops reconnecting, waits for the
// client's goroutines to end and closes the Events channel. The state
// becomes Closed. It is idempotent and always returns nil.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closing = true
		if c.final == nil {
			c.final = ErrClosed
		}
		cn := c.cn
		c.wakeLocked()
		c.mu.Unlock()
		if cn != nil {
			cn.ws.Close(websocket.StatusNormalClosure, "")
		}
		c.cancel()
	})
	<-c.done
	return nil
}

// wakeLocked tells the waiters of current that cn or final changed.
func (c *Client) wakeLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// current waits for a usable connection.
func (c *Client) current(ctx context.Context) (*conn, error) {
	for {
		c.mu.Lock()
		if c.final != nil {
			err := c.final
			c.mu.Unlock()
			return nil, err
		}
		cn, changed := c.cn, c.changed
		c.mu.Unlock()
		var ready chan struct{}
		if cn != nil {
			ready = cn.ready
		}
		select {
		case <-ready:
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return cn, nil
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// send writes a message that gets no reply.
func (c *Client) send(ctx context.Context, typ string, data any) error {
	cn, err := c.current(ctx)
	if err != nil {
		return err
	}
	b, err := protocol.Encode(typ, "", data)
	if err != nil {
		return err
	}
	return c.write(cn, b)
}

// request sends a message with a fresh ref on the current connection and
// waits for its reply.
func (c *Client) request(ctx context.Context, typ string, data any, p *pending) (reply, error) {
	cn, err := c.current(ctx)
	if err != nil {
		return reply{}, err
	}
	return c.roundTrip(ctx, cn, typ, data, p)
}

func (c *Client) roundTrip(ctx context.Context, cn *conn, typ string, data any, p *pending) (reply, error) {
	ref := strconv.FormatUint(c.nextRef.Add(1), 10)
	b, err := protocol.Encode(typ, ref, data)
	if err != nil {
		return reply{}, err
	}
	p.cn, p.ch = cn, make(chan reply, 1)
	c.mu.Lock()
	c.pending[ref] = p
	c.mu.Unlock()
	if err := c.write(cn, b); err != nil {
		c.mu.Lock()
		delete(c.pending, ref)
		c.mu.Unlock()
		return reply{}, err
	}
	// A request whose ctx ends stays pending until its reply comes or its
	// connection ends, so that a late session-joined is still recorded.
	select {
	case r := <-p.ch:
		return r, r.err
	case <-cn.done:
		select {
		case r := <-p.ch:
			return r, r.err
		default:
		}
		return reply{}, c.lostErr()
	case <-ctx.Done():
		return reply{}, ctx.Err()
	}
}

// lostErr is the error of a request whose connection ended.
func (c *Client) lostErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return ErrClosed
	}
	return ErrConnectionLost
}

func (c *Client) write(cn *conn, b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	if err := cn.ws.Write(ctx, websocket.MessageText, b); err != nil {
		if err := c.lostErr(); err == ErrClosed {
			return err
		}
		return fmt.Errorf("%w: %v", ErrConnectionLost, err)
	}
	return nil
}

// emit delivers e, blocking while the channel is full, unless the client
// is closing: then e is dropped if it does not fit.
func (c *Client) emit(e Event) {
	select {
	case c.events <- e:
	case <-c.ctx.Done():
		select {
		case c.events <- e:
		default:
		}
	}
}

// setState changes the state and reports it.
func (c *Client) setState(to State, err error) {
	c.mu.Lock()
	from := c.state
	c.state = to
	c.mu.Unlock()
	c.emit(&StateChange{From: from, To: to, Err: err})
}

// setConnected makes cn the current connection; it reports false (and
// closes cn) if Close was called meanwhile.
func (c *Client) setConnected(cn *conn) bool {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		cn.ws.Close(websocket.StatusNormalClosure, "")
		return false
	}
	from := c.state
	c.state, c.cn = Connected, cn
	c.wakeLocked()
	c.mu.Unlock()
	c.emit(&StateChange{From: from, To: Connected})
	return true
}

// terminate ends the client in state to (Disconnected with err, or Closed).
func (c *Client) terminate(to State, err error) {
	c.mu.Lock()
	from := c.state
	c.state, c.cn = to, nil
	if c.final == nil {
		c.final = err
	}
	c.wakeLocked()
	c.mu.Unlock()
	c.emit(&StateChange{From: from, To: to, Err: err})
}

// run owns the connection's lifetime: it reads each connection (on a
// goroutine of its own, with a heartbeat goroutine beside it), reconnects
// after unexpected drops and rejoins. failures is the number of attempts
// Dial needed (0 when the first one worked).
func (c *Client) run(cn *conn, failures int) {
	defer close(c.done)
	defer close(c.events)
	c.emit(&StateChange{From: Connecting, To: Connected})
	rejoin := false
	for {
		c.start(cn)
		if rejoin {
			c.rejoin(cn, failures)
		}
		// The attempt counter restarts only once the connection has stayed
		// up for a while after its rejoin.
		stable := time.NewTimer(c.opts.Reconnect.ResetAfter)
		select {
		case <-cn.done:
		case <-stable.C:
			failures = 0
			<-cn.done
		}
		stable.Stop()
		cn.ws.CloseNow()
		cn.helpers.Wait()
		c.mu.Lock()
		if c.cn == cn {
			c.cn = nil
			c.wakeLocked()
		}
		for ref, p := range c.pending {
			if p.cn == cn {
				delete(c.pending, ref)
			}
		}
		closing := c.closing
		c.mu.Unlock()
		if closing {
			c.terminate(Closed, nil)
			return
		}
		ce := cn.closeError()
		if c.isFinal(ce.Code) {
			c.log.Info("sessionhub: connection closed for good", "code", int(ce.Code), "reason", ce.Reason)
			c.terminate(Disconnected, ce)
			return
		}
		c.log.Info("sessionhub: connection lost, reconnecting", "code", int(ce.Code), "reason", ce.Reason)
		c.setState(Reconnecting, ce)
		ws, n, err := c.connect(c.ctx, false, failures, ce)
		if err != nil {
			if c.ctx.Err() != nil {
				c.terminate(Closed, nil)
			} else {
				c.log.Info("sessionhub: gave up reconnecting", "err", err)
				c.terminate(Disconnected, err)
			}
			return
		}
		cn, failures, rejoin = newConn(ws), n, true
		if !c.setConnected(cn) {
			c.terminate(Closed, nil)
			return
		}
		c.log.Info("sessionhub: reconnected", "attempt", n)
	}
}

// isFinal reports whether a connection closed with code ends the client.
func (c *Client) isFinal(code protocol.StatusCode) bool {
	if c.opts.Reconnect.MaxAttempts < 0 {
		return true
	}
	if code == protocol.CloseTokenExpired && c.opts.TokenFunc != nil {
		return false // a new token, and what was missed is recovered
	}
	return code.Final()
}

// start starts cn's reader, heartbeat and token refresher.
func (c *Client) start(cn *conn) {
	go c.read(cn)
	if c.opts.HeartbeatInterval > 0 {
		cn.helpers.Add(1)
		go c.heartbeat(cn)
	}
	if c.opts.TokenFunc != nil {
		cn.helpers.Add(1)
		go c.refresher(cn)
	}
}

// refreshAfter returns how long after learning that its token expires in
// lifetime the client refreshes it: 60 s before the expiry for tokens of
// 2 minutes or more, at 90 % of the lifetime for shorter ones (never sooner
// than minRefresh). The browser client has the same rule.
func refreshAfter(lifetime time.Duration) time.Duration {
	d := lifetime / 10 * 9
	if lifetime >= 2*refreshLead {
		d = lifetime - refreshLead
	}
	return max(d, minRefresh)
}

const (
	refreshLead = 60 * time.Second
	minRefresh  = time.Second
)

// refresher keeps cn's token fresh: when the connection learns its expiry
// (session-joined's expiresAt, or token-refreshed's), it schedules a
// refresh-token with a token from Options.TokenFunc (see refreshAfter). A
// refresh that fails is tried again halfway to the expiry, while at least
// a second is left; a refresh the hub refuses is also reported as an
// *ErrorEvent. Past the expiry the hub closes with 4001, after which the
// client reconnects with a new token and recovers. It runs on a
// goroutine of its own per connection, when there is a TokenFunc, and
// returns when cn's reader has.
func (c *Client) refresher(cn *conn) {
	defer cn.helpers.Done()
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	var expiry time.Time
	for {
		select {
		case <-cn.done:
			return
		case expiry = <-cn.expires:
			t.Reset(refreshAfter(time.Until(expiry)))
		case <-t.C:
			exp, err := c.refresh(cn, expiry)
			if err == nil {
				expiry = exp
				t.Reset(refreshAfter(time.Until(expiry)))
				continue
			}
			select {
			case <-cn.done:
				return
			default:
			}
			left := time.Until(expiry)
			c.log.Warn("sessionhub: token refresh failed", "err", err, "expires_in", left)
			var se *ServerError
			if errors.As(err, &se) {
				// The hub refused the new token (invalid_token,
				// forbidden): the application should know that its token
				// function gives tokens the hub does not take.
				c.emit(&ErrorEvent{Code: se.Code, Message: "refresh-token: " + se.Message})
			}
			if left > 2*minRefresh {
				t.Reset(left / 2)
			}
		}
	}
}

// refresh sends refresh-token with a new token on cn and returns the new
// expiry; it waits at most until the current one, or ConnectTimeout, and
// no longer than cn lives.
func (c *Client) refresh(cn *conn, expiry time.Time) (time.Time, error) {
	deadline := time.Now().Add(c.opts.ConnectTimeout)
	if expiry.Before(deadline) {
		deadline = expiry
	}
	ctx, cancel := context.WithDeadline(c.ctx, deadline)
	defer cancel()
	cn.helpers.Add(1) // the refresher holds a count: Wait cannot be at zero
	go func() {
		defer cn.helpers.Done()
		select {
		case <-cn.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	tok, err := c.token(ctx)
	if err != nil {
		return time.Time{}, err
	}
	r, err := c.roundTrip(ctx, cn, protocol.TypeRefreshToken, protocol.RefreshToken{Token: tok}, &pending{})
	if err != nil {
		return time.Time{}, err
	}
	c.log.Debug("sessionhub: token refreshed", "expires_at", r.expiresAt)
	return r.expiresAt, nil
}

// closeError is how cn ended, as a *CloseError (1006 when there was no
// close frame).
func (cn *conn) closeError() *CloseError {
	var ce websocket.CloseError
	if errors.As(cn.err, &ce) {
		// A close frame came: it says how, even if the heartbeat gave up
		// at the same moment.
		return &CloseError{Code: protocol.StatusCode(ce.Code), Reason: ce.Reason}
	}
	cn.mu.Lock()
	dropped := cn.dropped
	cn.mu.Unlock()
	if dropped != nil {
		return &CloseError{Code: protocol.CloseAbnormal, Reason: dropped.Error(), Err: dropped}
	}
	reason := ""
	if cn.err != nil {
		reason = cn.err.Error()
	}
	return &CloseError{Code: protocol.CloseAbnormal, Reason: reason}
}

// connect dials until a connection is open, the reconnect policy gives up
// (*GaveUpError), an attempt fails in a way no retry changes (see
// permanent) or ctx ends. failures is the number of attempts made since the
// last connection that stayed up (ReconnectPolicy.ResetAfter), last the
// reason of the latest; attempt failures+1 and the next ones wait for their
// backoff first. now makes one attempt at once before them (Dial's first
// connect). It returns the number of the attempt that succeeded (0 for the
// one made at once).
func (c *Client) connect(ctx context.Context, now bool, failures int, last error) (*websocket.Conn, int, error) {
	p := c.opts.Reconnect
	extra := 0 // the attempt made at once, when it failed
	if now {
		ws, err := c.dial(ctx)
		if err == nil {
			return ws, 0, nil
		}
		if p.MaxAttempts < 0 || c.permanent(err) || ctx.Err() != nil {
			return nil, 0, err
		}
		last, extra = err, 1
		c.log.Info("sessionhub: connect failed, retrying", "err", err)
	}
	n := failures + 1
	for ; p.MaxAttempts == 0 || n <= p.MaxAttempts; n++ {
		if err := c.opts.sleep(ctx, c.opts.jitter(p.Bound(n-1))); err != nil || ctx.Err() != nil {
			return nil, n, fmt.Errorf("sessionhub: connect to %s: %w (last attempt: %v)", c.url, ctx.Err(), last)
		}
		ws, err := c.dial(ctx)
		if err == nil {
			return ws, n, nil
		}
		if ctx.Err() != nil {
			return nil, n, fmt.Errorf("sessionhub: connect to %s: %w (last attempt: %v)", c.url, ctx.Err(), err)
		}
		last = err
		c.log.Info("sessionhub: connection attempt failed", "attempt", n, "err", err)
		if c.permanent(err) {
			return nil, n, &GaveUpError{Attempts: n + extra, Err: err}
		}
	}
	return nil, n - 1, &GaveUpError{Attempts: n - 1 + extra, Err: last}
}

// rejoin joins the last joined session again on a new connection, then
// lets requests use it.
func (c *Client) rejoin(cn *conn, attempt int) {
	c.mu.Lock()
	m := c.joined
	c.mu.Unlock()
	if m != nil {
		j := m.join
		j.Recover = &protocol.Recover{Epoch: m.epoch, Offset: m.offset}
		_, err := c.roundTrip(c.ctx, cn, protocol.TypeJoinSession, j, &pending{join: &j, fill: m.fill, rejoin: attempt})
		var se *ServerError
		if err != nil && !errors.As(err, &se) {
			return // the connection ended: run goes on with the next one
		}
		if err != nil {
			c.log.Info("sessionhub: rejoin refused", "session", j.SessionID, "err", err)
		}
	}
	close(cn.ready)
}

// read reads cn's frames and dispatches their messages until it ends.
func (c *Client) read(cn *conn) {
	defer close(cn.done)
	for {
		typ, b, err := cn.ws.Read(c.ctx)
		if err != nil {
			cn.err = err
			return
		}
		if typ != websocket.MessageText {
			continue
		}
		cn.busy.Store(true)
		for line := range protocol.SplitBatch(b) {
			c.dispatch(cn, line)
		}
		cn.busy.Store(false)
		select {
		case cn.recv <- struct{}{}:
		default:
		}
	}
}

// pingFrame is the heartbeat's ping.
var pingFrame = []byte(`{"type":"ping","data":{}}`)

// heartbeat watches cn for silence: after HeartbeatInterval with no frame
// it sends a ping, and if nothing at all has come HeartbeatTimeout later
// it drops cn (the reader then ends, and run reconnects). Time spent by the
// reader waiting for room in Events does not count as silence. It runs on
// a goroutine of its own per connection and returns when cn's reader has.
func (c *Client) heartbeat(cn *conn) {
	defer cn.helpers.Done()
	interval, timeout := c.opts.HeartbeatInterval, c.opts.HeartbeatTimeout
	t := time.NewTimer(interval)
	defer t.Stop()
	pinged := false
	for {
		select {
		case <-cn.done:
			return
		case <-cn.recv:
			pinged = false
			t.Reset(interval)
		case <-t.C:
			switch {
			case cn.busy.Load():
				pinged = false
				t.Reset(interval)
			case pinged:
				c.log.Info("sessionhub: no answer to the heartbeat, dropping the connection", "timeout", timeout)
				cn.drop(fmt.Errorf("%w within %v", ErrHeartbeatTimeout, timeout))
				return
			default:
				pinged = true
				t.Reset(timeout)
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				err := cn.ws.Write(ctx, websocket.MessageText, pingFrame)
				timedOut := ctx.Err() != nil
				cancel()
				if err != nil {
					// A write that could not finish in time is silence too;
					// any other failure means the connection is ending
					// anyway, and the reader says how.
					if timedOut {
						cn.drop(fmt.Errorf("%w: the ping could not be written within %v", ErrHeartbeatTimeout, timeout))
					}
					return
				}
			}
		}
	}
}

// dispatch handles one server message: it completes the request it
// answers and delivers its event.
func (c *Client) dispatch(cn *conn, line []byte) {
	var env protocol.Envelope
	if err := json.Unmarshal(line, &env); err != nil {
		c.log.Warn("sessionhub: invalid message from the server", "err", err)
		return
	}
	var p *pending
	if env.Ref != "" {
		c.mu.Lock()
		if q := c.pending[env.Ref]; q != nil && q.cn == cn {
			p = q
			delete(c.pending, env.Ref)
		}
		c.mu.Unlock()
	}
	decode := func(v any) bool {
		if err := json.Unmarshal(env.Data, v); err != nil {
			c.log.Warn("sessionhub: invalid message from the server", "type", env.Type, "err", err)
			if p != nil {
				p.ch <- reply{err: fmt.Errorf("sessionhub: invalid %s from the server: %w", env.Type, err)}
			}
			return false
		}
		return true
	}
	switch env.Type {
	case protocol.TypeError:
		var e protocol.ErrorPayload
		if !decode(&e) {
			return
		}
		if p == nil || p.rejoin > 0 {
			c.emit(&ErrorEvent{Code: e.Code, Message: e.Message, Ref: env.Ref})
		}
		if p != nil {
			if p.rejoin > 0 {
				c.mu.Lock()
				c.joined = nil
				c.mu.Unlock()
			}
			p.ch <- reply{err: &ServerError{Code: e.Code, Message: e.Message}}
		}
	case protocol.TypeSessionJoined:
		var sj protocol.SessionJoined
		if !decode(&sj) {
			return
		}
		if p != nil && p.join != nil {
			j := *p.join
			j.UserInfo.UserID, j.Recover = sj.SelfID, nil
			m := &membership{join: j, epoch: sj.Epoch, offset: sj.Offset,
				participants: newRoster(sj.Participants), fill: p.fill}
			if rec := p.join.Recover; sj.Recovered && rec != nil && rec.Epoch == sj.Epoch {
				// The replay of what was missed follows and advances it.
				// Otherwise (a first join, or a fresh start) the events up
				// to sj.Offset are not coming.
				m.offset = rec.Offset
			}
			c.mu.Lock()
			c.joined = m
			c.mu.Unlock()
		}
		if sj.ExpiresAt != nil && c.opts.TokenFunc != nil {
			cn.setExpiry(*sj.ExpiresAt)
		}
		if p != nil && p.rejoin > 0 {
			c.emit(&Rejoined{SessionJoined: sj, Attempt: p.rejoin})
		} else {
			c.emit(&SessionJoined{sj})
		}
		if p != nil {
			p.ch <- reply{joined: &sj}
		}
	case protocol.TypeSessionLeft:
		var sl protocol.SessionLeft
		if !decode(&sl) {
			return
		}
		c.mu.Lock()
		c.joined = nil
		c.mu.Unlock()
		c.emit(&SessionLeft{sl})
		if p != nil {
			p.ch <- reply{}
		}
	case protocol.TypeUserJoined:
		var e UserJoined
		if !decode(&e.UserJoined) {
			return
		}
		c.mu.Lock()
		if m := c.joined; m != nil {
			if e.Participants != nil {
				m.participants = newRoster(e.Participants)
			} else {
				m.participants.upsert(e.User)
				if m.fill {
					e.Participants = m.participants.clone()
				}
			}
		}
		c.mu.Unlock()
		c.emit(&e)
	case protocol.TypeUserLeft:
		var e UserLeft
		if !decode(&e.UserLeft) {
			return
		}
		c.mu.Lock()
		if m := c.joined; m != nil {
			if e.Participants != nil {
				m.participants = newRoster(*e.Participants)
			} else {
				m.participants.remove(e.UserID)
				if m.fill {
					l := m.participants.clone()
					e.Participants = &l
				}
			}
		}
		c.mu.Unlock()
		c.emit(&e)
	case protocol.TypeCursorMoved:
		var e CursorMoved
		if !decode(&e.CursorMoved) {
			return
		}
		c.mu.Lock()
		if m := c.joined; m != nil {
			m.participants.setCursor(e.UserID, e.Cursor)
		}
		c.mu.Unlock()
		c.emit(&e)
	case protocol.TypeUserActivityChanged:
		var e UserActivityChanged
		if !decode(&e.UserActivityChanged) {
			return
		}
		c.mu.Lock()
		if m := c.joined; m != nil {
			m.participants.setActive(e.UserID, e.IsActive)
		}
		c.mu.Unlock()
		c.emit(&e)
	case protocol.TypeBroadcast:
		var e BroadcastEvent
		if decode(&e.BroadcastEvent) && c.seen(e.Offset) {
			c.emit(&e)
		}
	case protocol.TypeAck:
		var a protocol.Ack
		if !decode(&a) {
			return
		}
		c.seen(a.Offset)
		if p != nil {
			p.ch <- reply{offset: a.Offset}
		}
	case protocol.TypePong:
		if p != nil {
			p.ch <- reply{}
		}
	case protocol.TypeTokenRefreshed:
		var tr protocol.TokenRefreshed
		if !decode(&tr) {
			return
		}
		if p != nil {
			p.ch <- reply{expiresAt: tr.ExpiresAt}
		}
	default:
		c.log.Debug("sessionhub: unknown message type from the server", "type", env.Type)
		if p != nil {
			p.ch <- reply{err: fmt.Errorf("sessionhub: unexpected reply %q", env.Type)}
		}
	}
}

// seen records offset as the latest broadcast offset seen in the session,
// for the recover of a rejoin. It reports whether the offset is new: a
// broadcast is delivered only if it is, so that an event the client already
// had (or its own acked broadcast, in a replay) is not delivered twice.
// Outside a session (no membership) every broadcast is new.
func (c *Client) seen(offset int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.joined == nil {
		return true
	}
	if offset <= c.joined.offset {
		return false
	}
	c.joined.offset = offset
	return true
}
