// Package client is the Go client library of sessionhub: a program imports
// it to take part in a live-coding session over the hub's WebSocket
// protocol (docs/protocol.md).
//
// Dial connects to a hub's /ws endpoint and returns a *Client. Its methods
// (Join, Leave, UpdateCursor, SetActive, Broadcast, Ping, Close) are safe for
// concurrent use. Requests that get a reply (Join, Leave, Broadcast, Ping)
// are matched to it by a unique ref and wait for it; an error reply is
// returned as a *ServerError carrying the contract's error code.
//
// Everything the server sends on its own (another user joining, a cursor
// moving, a broadcast, …) and every change of the connection's State is
// delivered, in order, on the one channel returned by Events, as one Go type
// per event (see Event). While the client is connected no event is lost or
// reordered: when the channel's buffer is full the client stops reading from
// the connection until there is room, so a program must keep reading Events
// (the hub closes a connection that falls too far behind with 1013, after
// which the client reconnects).
//
// Dial's first connect is retried under the reconnect policy, so a hub that
// starts after the program does is waited for. After an unexpected end of
// the connection (no close frame, or close codes 1001, 1009, 1011, 1013)
// the client reconnects with exponential backoff and full jitter (see
// ReconnectPolicy), joins its session again by itself as the same user,
// and reports it with a *Rejoined event. The attempt counter restarts only
// once a connection has stayed up for ReconnectPolicy.ResetAfter (10 s)
// after its rejoin, so a hub that drops the client right after every rejoin
// ends in a *GaveUpError instead of a loop. Close codes 1000, 1003, 1008,
// 4001 and 4003 are final (4001 is not with Options.TokenFunc): the client
// does not reconnect, its state becomes Disconnected with a *CloseError,
// and the Events channel is closed. So it is after the last failed
// reconnect attempt, with a *GaveUpError, and after Close.
//
// Liveness: a connection can die without any sign (a NAT or a mobile
// network forgets it; nothing closes). After Options.HeartbeatInterval
// (25 s) with nothing received the client sends an application ping; if
// nothing comes within Options.HeartbeatTimeout (10 s) it drops the
// connection (a *CloseError with code 1006 wrapping ErrHeartbeatTimeout),
// reconnects and recovers, as after any drop. Time the client spends
// waiting for the application to read Events is not silence.
//
// Tokens: Options.Token is sent with every connection attempt;
// Options.TokenFunc instead is called for every attempt, so that a
// reconnect after an hour carries a fresh token, and for every refresh:
// when session-joined says when the connection's token expires
// (expiresAt), the client sends refresh-token with a new token ahead of it
// (60 s before for tokens of 2 minutes or more, at 90 % of the lifetime
// for shorter ones), and the connection lives on with no reconnect. If a
// refresh fails and the hub closes with 4001, the client reconnects with a
// new token and recovers, so nothing is lost. Without a TokenFunc, 4001 is
// final.
//
// Presence: Join asks the hub for diff presence (each membership change
// carries only the user who came or went: O(n) bytes per join instead of
// O(n²) for a class that fills) and the client keeps the participant list
// itself, from session-joined and the events that follow. UserJoined and
// UserLeft still carry the whole list, and Client.Participants returns it;
// WithPresence chooses the mode on the wire explicitly.
//
// Broadcasts are delivered exactly once across such drops. The client keeps
// the session's epoch and the latest broadcast offset it has seen (delivered
// to the application, or acked for its own Broadcast) and rejoins with them
// (recover). If the hub still has the missed events, Rejoined.Recovered is
// true and they follow the *Rejoined event in offset order; an event whose
// offset the client has already seen is never delivered twice. If not
// (Recovered false: the hub restarted, or its history no longer reaches
// back), the missed events are lost and the application should fetch its
// state again. A Broadcast that failed with ErrConnectionLost may still have
// been stored by the hub: then it comes back in the replay, with From equal
// to the client's SelfID.
package client
