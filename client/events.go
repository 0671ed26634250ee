package client

import (
	"fmt"

	"github.com/sessionhub/sessionhub/protocol"
)

// Event is what the Events channel delivers: one of *SessionJoined,
// *SessionLeft, *UserJoined, *UserLeft, *CursorMoved,
// *UserActivityChanged, *BroadcastEvent, *ErrorEvent (server events),
// *Rejoined and *StateChange (the client's own).
type Event interface {
	event()
}

// SessionJoined is the server's session-joined: the reply to Join, also
// delivered as an event, in order with the others.
type SessionJoined struct{ protocol.SessionJoined }

// SessionLeft is the server's session-left: the reply to Leave, also
// delivered as an event.
type SessionLeft struct{ protocol.SessionLeft }

// UserJoined is the server's user-joined: another user came into the
// session. Participants is the whole list after the join: the server's in
// full presence, the client's own when the join left the presence mode to
// the client (see WithPresence), nil in a diff presence asked for with
// WithPresence.
type UserJoined struct{ protocol.UserJoined }

// UserLeft is the server's user-left: another user's last connection left
// the session. Participants is the whole list after the leave, as for
// UserJoined.
type UserLeft struct{ protocol.UserLeft }

// CursorMoved is the server's cursor-moved: another user's cursor.
type CursorMoved struct{ protocol.CursorMoved }

// UserActivityChanged is the server's user-activity-changed.
type UserActivityChanged struct{ protocol.UserActivityChanged }

// BroadcastEvent is a broadcast the server delivered to this client. Within
// a session each offset is delivered at most once and offsets only grow:
// a replayed event the client already delivered, or its own broadcast that
// the server acked, is not delivered again.
type BroadcastEvent struct{ protocol.BroadcastEvent }

// ErrorEvent is an error the server sent that answers no pending request:
// for example not_in_session for an UpdateCursor or SetActive outside a
// session, or the refusal (invalid_token, forbidden) of a token refresh the
// client made by itself, whose Message then starts with "refresh-token: ".
// Errors that answer a request are returned by that request's method as a
// *ServerError instead.
type ErrorEvent struct {
	Code    protocol.Code // one of the contract's error codes
	Message string        // for people, not for matching
	Ref     string        // the ref the server echoed, if any
}

// Rejoined reports that the client, after reconnecting, joined its session
// again by itself. SessionJoined is the server's fresh reply (its
// Participants is the current list, which replaces the client's own);
// Attempt is the reconnect attempt that succeeded, counting from 1 since
// the last connection that stayed up (see ReconnectPolicy.ResetAfter).
//
// Recovered tells whether the broadcasts missed while the connection was
// down are coming: when true, the *BroadcastEvent values the client had not
// delivered yet follow at once, in offset order, each exactly once. When
// false (the hub restarted, so the session has another Epoch, or its history
// no longer reaches back far enough) they are not coming: the application
// should fetch its own state again; broadcasts after Offset are delivered as
// usual.
type Rejoined struct {
	protocol.SessionJoined
	Attempt int // the reconnect attempt that succeeded, from 1
}

// StateChange reports a change of the client's State. Err says why, when
// there is a reason: the *CloseError that ended a connection (To is
// Reconnecting, or Disconnected for a final code), or the *GaveUpError after
// the last failed reconnect attempt.
type StateChange struct {
	From, To State // the state before and after
	Err      error // why, when there is a reason; nil otherwise
}

func (*SessionJoined) event()       {}
func (*SessionLeft) event()         {}
func (*UserJoined) event()          {}
func (*UserLeft) event()            {}
func (*CursorMoved) event()         {}
func (*UserActivityChanged) event() {}
func (*BroadcastEvent) event()      {}
func (*ErrorEvent) event()          {}
func (*Rejoined) event()            {}
func (*StateChange) event()         {}

// String is the error's code and message, for logs.
func (e *ErrorEvent) String() string { return fmt.Sprintf("error %s: %s", e.Code, e.Message) }

// String is the change as "from -> to", with its error if any, for logs.
func (e *StateChange) String() string {
	if e.Err != nil {
		return fmt.Sprintf("%s -> %s: %v", e.From, e.To, e.Err)
	}
	return fmt.Sprintf("%s -> %s", e.From, e.To)
}

// State is the state of a Client's connection.
type State int

// States of a Client.
const (
	Connecting   State = iota // Dial is connecting
	Connected                 // a connection is open
	Reconnecting              // the connection ended unexpectedly; the client is reconnecting
	Disconnected              // the client gave up or was closed with a final code; terminal
	Closed                    // Close was called; terminal
)

// String is the state's name in lower case ("connecting", …), or
// "State(n)" for a value that is none of the States.
func (s State) String() string {
	switch s {
	case Connecting:
		return "connecting"
	case Connected:
		return "connected"
	case Reconnecting:
		return "reconnecting"
	case Disconnected:
		return "disconnected"
	case Closed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// ServerError is an error reply of the server to a request.
type ServerError struct {
	Code    protocol.Code // one of the contract's error codes
	Message string        // for people, not for matching
}

// Error is the code and message, prefixed "sessionhub: ".
func (e *ServerError) Error() string { return "sessionhub: " + string(e.Code) + ": " + e.Message }

// CloseError is how a connection ended: the close code the client observed
// (1006, protocol.CloseAbnormal, when there was no close frame) and the
// reason the server gave. A CloseError with a final code
// (protocol.StatusCode.Final; 4001 is not final with Options.TokenFunc)
// ends the client: it is the Err of the StateChange to Disconnected, and
// every later method call returns it.
type CloseError struct {
	Code   protocol.StatusCode // as observed: 1006 when no close frame came
	Reason string              // the close frame's reason, "" when none
	// Err is set when the client dropped the connection itself:
	// ErrHeartbeatTimeout (wrapped) when nothing came in time.
	Err error
}

// Unwrap returns Err.
func (e *CloseError) Unwrap() error { return e.Err }

// Error says the close code, and the reason when the server gave one.
func (e *CloseError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("sessionhub: connection closed with %d", int(e.Code))
	}
	return fmt.Sprintf("sessionhub: connection closed with %d: %s", int(e.Code), e.Reason)
}

// GaveUpError is the Err of the StateChange to Disconnected after the
// reconnect policy's last attempt failed (or an attempt failed in a way no
// retry changes, see Dial); every later method call returns it. Dial
// returns it when its first connect and the retries failed.
type GaveUpError struct {
	// Attempts is the attempt counter at the end: the attempts made since
	// the last connection that stayed up (ReconnectPolicy.ResetAfter),
	// those that connected but did not stay up included, Dial's first
	// included.
	Attempts int
	// Err is the last attempt's error, or how the last connection ended
	// when the counter had already reached MaxAttempts.
	Err error
}

// Error says how many attempts were made and the last one's error.
func (e *GaveUpError) Error() string {
	return fmt.Sprintf("sessionhub: gave up reconnecting after %d attempts: %v", e.Attempts, e.Err)
}

// Unwrap returns Err.
func (e *GaveUpError) Unwrap() error { return e.Err }
