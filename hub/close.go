package hub

import "github.com/sessionhub/sessionhub/protocol"

// closeReason is why the server closes a connection: the close code and
// text the peer gets, and the label under which
// sessionhub_server_closes_total counts it.
type closeReason struct {
	code  protocol.StatusCode // 0: drop the TCP connection without a close frame
	text  string
	label string
}

// Every close the server starts. A frame over the size limit is closed by
// the WebSocket library itself with 1009 and counted as "too_big".
var (
	closePingTimeout  = closeReason{0, "ping timeout", "ping_timeout"}
	closeShutdown     = closeReason{protocol.CloseGoingAway, "server shutting down", "shutdown"}
	closeBinary       = closeReason{protocol.CloseUnsupported, "binary frames are not supported", "binary_frame"}
	closeRateAbuse    = closeReason{protocol.ClosePolicy, "rate limit exceeded", "rate_abuse"}
	closeInvalidUTF8  = closeReason{protocol.CloseInvalidData, "text frame is not valid UTF-8", "invalid_utf8"}
	closeHandshake    = closeReason{protocol.ClosePolicy, "no join-session within the handshake timeout", "handshake_timeout"}
	closeSlowConsumer = closeReason{protocol.CloseSlowConsumer, "slow consumer", "slow_consumer"}
	closeTokenExpired = closeReason{protocol.CloseTokenExpired, "token expired", "token_expired"}
	closeRemoved      = closeReason{protocol.CloseRemovedByAPI, "removed by the server", "removed"}
)

// closeTooBig is the label of the library's 1009 close.
const closeTooBig = "too_big"

// closeLabels are the labels of sessionhub_server_closes_total: every close
// above, and the library's 1009.
var closeLabels = []string{closePingTimeout.label, closeShutdown.label, closeBinary.label, closeRateAbuse.label,
	closeHandshake.label, closeTooBig, closeSlowConsumer.label, closeTokenExpired.label, closeRemoved.label,
	closeInvalidUTF8.label}
