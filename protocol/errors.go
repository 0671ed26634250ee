package protocol

import "fmt"

// Code is an error code of the contract, carried by the error event.
type Code string

// Error codes of the contract.
const (
	CodeBadRequest       Code = "bad_request"        // not JSON, not an object, a field missing, of the wrong type or out of range
	CodeUnknownType      Code = "unknown_type"       // the envelope's type is not one the server knows
	CodeInvalidSessionID Code = "invalid_session_id" // sessionId is not 1–64 of A-Za-z0-9._:-
	CodeNotInSession     Code = "not_in_session"     // a session message from a connection that has not joined
	CodeForbidden        Code = "forbidden"          // the token does not allow this session
	CodeSessionFull      Code = "session_full"       // the session has --max-participants participants
	CodeRateLimited      Code = "rate_limited"       // over the connection's message rate
	CodeInternal         Code = "internal"           // the server failed; not the client's fault
	CodeInvalidToken     Code = "invalid_token"      // refresh-token's token is malformed, wrongly signed or expired (v1.1)
)

// Error is a protocol error: one of the contract's codes and a message for
// people. It never closes the connection by itself.
type Error struct {
	Code    Code
	Message string
}

// Error is "code: message".
func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf returns an *Error with code and a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// StatusCode is a WebSocket close code of the contract.
type StatusCode int

// Close codes of the contract. A client reconnects after 1001, 1006 (no
// close frame), 1009, 1011 and 1013; 1000, 1003, 1007, 1008, 4001 and 4003
// are final.
const (
	CloseNormal       StatusCode = 1000 // the peer is done
	CloseGoingAway    StatusCode = 1001 // the server is shutting down: reconnect
	CloseUnsupported  StatusCode = 1003 // a binary frame was sent
	CloseInvalidData  StatusCode = 1007 // a text frame that is not valid UTF-8
	ClosePolicy       StatusCode = 1008 // sustained rate abuse
	CloseTooBig       StatusCode = 1009 // a frame over --max-message-bytes
	CloseInternal     StatusCode = 1011 // the server failed: reconnect
	CloseSlowConsumer StatusCode = 1013 // the send queue overflowed: reconnect
	CloseTokenExpired StatusCode = 4001 // the token's exp passed: come back with a fresh one
	CloseRemovedByAPI StatusCode = 4003 // removed through the server API
	CloseAbnormal     StatusCode = 1006 // no close frame (never sent, only observed)
)

// Final reports whether a client should give up rather than reconnect after
// the connection was closed with code.
func (c StatusCode) Final() bool {
	switch c {
	case CloseUnsupported, CloseInvalidData, ClosePolicy, CloseTokenExpired, CloseRemovedByAPI, CloseNormal:
		return true
	}
	return false
}
