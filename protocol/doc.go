// Package protocol holds sessionhub's wire format: the JSON envelope, one Go
// type per event payload, the error codes and the close codes of the
// contract (docs/protocol.md).
//
// Decode turns one client frame into a validated Message or an *Error that
// carries the contract's error code; Encode writes a server envelope. Both
// are safe for concurrent use.
package protocol
