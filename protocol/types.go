package protocol

import (
	"encoding/json"
	"time"
)

// Message types sent by clients.
const (
	TypeJoinSession    = "join-session"
	TypeLeaveSession   = "leave-session"
	TypeCursorUpdate   = "cursor-update"
	TypeActivityStatus = "activity-status"
	TypeBroadcast      = "broadcast"
	TypePing           = "ping"
	TypeRefreshToken   = "refresh-token" // v1.1: a new token on a live connection
)

// Message types sent by the server.
const (
	TypeSessionJoined       = "session-joined"
	TypeSessionLeft         = "session-left"
	TypeUserJoined          = "user-joined"
	TypeUserLeft            = "user-left"
	TypeCursorMoved         = "cursor-moved"
	TypeUserActivityChanged = "user-activity-changed"
	TypeAck                 = "ack"
	TypePong                = "pong"
	TypeError               = "error"
	TypeTokenRefreshed      = "token-refreshed" // v1.1: the answer to refresh-token
)

// BatchSubprotocol is the WebSocket subprotocol with which a client opts in to
// receiving several server messages in one text frame, separated by '\n'.
const BatchSubprotocol = "sessionhub.batch"

// Limits of the contract.
const (
	MaxRefBytes       = 64
	MaxSessionIDBytes = 64
	MaxNameChars      = 64
	MaxUserIDBytes    = 128 // extension: the contract sets no bound, the hub does
	MaxColorBytes     = 64  // extension: the contract sets no bound, the hub does
	MaxFileBytes      = 256
	MaxEventChars     = 64
	MaxCoordinate     = 10_000_000
	MaxTokenBytes     = 8192 // extension: the longest token refresh-token may carry
)

// Role is a participant's role in a session.
type Role string

// Roles of the contract.
const (
	RoleInstructor Role = "instructor"
	RoleLearner    Role = "learner"
)

// Presence says how a connection wants membership changes: the whole
// participant list with every change (PresenceFull) or only the user who
// came or went (PresenceDiff).
type Presence string

// Presence modes of the contract.
const (
	PresenceFull Presence = "full"
	PresenceDiff Presence = "diff"
)

// Broadcast audiences of the contract; any other value of Broadcast.To is a userId.
const (
	ToAll         = "all"
	ToInstructors = "instructors"
	ToLearners    = "learners"
)

// FromServer is the Broadcast.From of events sent through the server API.
const FromServer = "server"

// Position is a place in a text: a line and a column, counted as the
// client's editor counts them (the hub does not interpret them).
type Position struct {
	Line   int `json:"line"`
	Column int `json:"column"`
}

// Selection is a range of text from Start to End.
type Selection struct {
	Start Position `json:"start"`
	End   Position `json:"end"`
}

// Cursor is where a participant's caret is: the payload of cursor-update and
// the cursor of cursor-moved and Participant.
type Cursor struct {
	Line      int        `json:"line"`
	Column    int        `json:"column"`
	File      string     `json:"file,omitempty"`
	Selection *Selection `json:"selection,omitempty"`
}

// UserInfo is who a client says it is in join-session.
type UserInfo struct {
	UserID string `json:"userId,omitempty"`
	Name   string `json:"name,omitempty"`
	Role   Role   `json:"role,omitempty"`
	Color  string `json:"color,omitempty"`
}

// Recover asks join-session to replay the events after Offset of Epoch.
type Recover struct {
	Epoch  string `json:"epoch"`
	Offset int64  `json:"offset"`
}

// JoinSession is the payload of join-session.
type JoinSession struct {
	SessionID string   `json:"sessionId"`
	UserInfo  UserInfo `json:"userInfo"`
	Presence  Presence `json:"presence,omitempty"` // PresenceFull when empty
	Recover   *Recover `json:"recover,omitempty"`  // nil: no replay asked
}

// ActivityStatus is the payload of activity-status.
type ActivityStatus struct {
	IsActive bool `json:"isActive"`
}

// Broadcast is the payload of a client's broadcast.
type Broadcast struct {
	Event   string          `json:"event"`        // the application's name for it
	Payload json.RawMessage `json:"payload"`      // any JSON value
	To      string          `json:"to,omitempty"` // ToAll (when empty), ToInstructors, ToLearners or a userId
}

// Ping is the payload of ping, echoed by pong: any JSON object, or nil.
type Ping json.RawMessage

// MarshalJSON writes the ping's object, or {} when it is empty.
func (p Ping) MarshalJSON() ([]byte, error) {
	if len(p) == 0 {
		return []byte("{}"), nil
	}
	return p, nil
}

// Participant is one user in a session as the wire shows it.
type Participant struct {
	UserID   string    `json:"userId"`
	Name     string    `json:"name"`
	Role     Role      `json:"role"`
	Color    string    `json:"color,omitempty"`
	IsActive bool      `json:"isActive"`
	Cursor   *Cursor   `json:"cursor"` // null until its first cursor-update
	JoinedAt time.Time `json:"joinedAt"`
}

// SessionJoined is the payload of session-joined.
type SessionJoined struct {
	SessionID    string        `json:"sessionId"`
	SelfID       string        `json:"selfId"`
	Participants []Participant `json:"participants"`
	Epoch        string        `json:"epoch"`     // names this life of the session's history
	Offset       int64         `json:"offset"`    // the session's latest broadcast offset, 0 before the first
	Recovered    bool          `json:"recovered"` // the join's Recover replay follows, complete
	// ExpiresAt is when the connection's token expires (token mode, v1.1);
	// nil (left out) when the connection has no token.
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
}

// RefreshToken is the payload of refresh-token: a new token for the
// connection, which must have the same sub as the one it has.
type RefreshToken struct {
	Token string `json:"token"`
}

// TokenRefreshed is the payload of token-refreshed: the connection now
// expires at ExpiresAt (RFC 3339 on the wire).
type TokenRefreshed struct {
	ExpiresAt time.Time `json:"expiresAt"`
}

// SessionLeft is the payload of session-left.
type SessionLeft struct {
	SessionID string `json:"sessionId"`
}

// UserJoined is the payload of user-joined. Participants is nil in diff presence.
type UserJoined struct {
	User         Participant   `json:"user"`
	Participants []Participant `json:"participants,omitempty"`
}

// UserLeft is the payload of user-left. Participants is nil in diff presence;
// in full presence it is present even when empty.
type UserLeft struct {
	UserID       string         `json:"userId"`
	User         Participant    `json:"user"`
	Participants *[]Participant `json:"participants,omitempty"`
}

// CursorMoved is the payload of cursor-moved.
type CursorMoved struct {
	UserID string `json:"userId"`
	Cursor Cursor `json:"cursor"`
}

// UserActivityChanged is the payload of user-activity-changed.
type UserActivityChanged struct {
	UserID   string `json:"userId"`
	IsActive bool   `json:"isActive"`
}

// BroadcastEvent is the payload of a broadcast delivered to a client.
type BroadcastEvent struct {
	Event   string          `json:"event"`
	From    string          `json:"from"` // the sender's userId, or FromServer
	Payload json.RawMessage `json:"payload"`
	Offset  int64           `json:"offset"` // the session's broadcast offset, increasing from 1
	Ts      int64           `json:"ts"`     // when the hub sent it, in ms since the Unix epoch
}

// Ack is the payload of ack.
type Ack struct {
	Offset int64 `json:"offset"`
}

// ErrorPayload is the payload of error.
type ErrorPayload struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}
