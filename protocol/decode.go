package protocol

import (
	"bytes"
	"encoding/json"
	"math"
	"unicode/utf8"
)

// Message is one decoded, validated client message.
type Message struct {
	Type string
	Ref  string
	// Payload is *JoinSession, *Cursor (cursor-update), *ActivityStatus,
	// *Broadcast, Ping or *RefreshToken; nil for leave-session.
	Payload any
}

// Decode parses and validates one client frame. On failure it returns an
// *Error with the contract's code, and a Message whose Type and Ref are set
// as far as they could be read, so that the error can echo the ref.
//
// A frame that is not valid UTF-8 gets ErrInvalidUTF8 (the hub closes the
// connection with 1007), and no identifier it returns (userId, sessionId,
// name, color, event, to, file) holds a control character (U+0000–U+001F,
// U+007F): such a message is bad_request. Payloads are kept as sent.
//
// Decode validates shape and ranges only; rules that depend on the server's
// mode (a name being required in open mode) are the hub's.
func Decode(b []byte) (Message, error) {
	b = bytes.TrimSpace(b)
	if m, ok := decodeCursorFast(b); ok {
		return m, nil
	}
	return decode(b)
}

// ErrInvalidUTF8 is Decode's error for a frame that is not valid UTF-8: the
// contract closes the connection with 1007 (CloseInvalidData), and nothing of
// the frame reaches anyone. Callers must not modify it.
var ErrInvalidUTF8 = &Error{Code: CodeBadRequest, Message: "message is not valid UTF-8"}

// cursorHead, cursorMid and cursorFile frame the most frequent message,
// the cursor update as the platform's clients and hubload send it:
// cursorHead L cursorMid C [cursorFile F '"'] "}}".
const (
	cursorHead = `{"type":"cursor-update","data":{"line":`
	cursorMid  = `,"column":`
	cursorFile = `,"file":"`
)

// decodeCursorFast decodes a cursor update of exactly the shape
// cursorHead L cursorMid C [cursorFile F '"'] "}}", with L and C plain JSON
// integers in range and F a string with no escape, without encoding/json.
// Anything else (a ref, a selection, spaces, another order, an escape, an
// error) reports false and takes the general way, which gives the same
// result for this shape (FuzzDecodeCursorFast checks that).
func decodeCursorFast(b []byte) (Message, bool) {
	rest, ok := bytes.CutPrefix(b, []byte(cursorHead))
	if !ok {
		return Message{}, false
	}
	line, rest, ok := coordinatePrefix(rest)
	if !ok {
		return Message{}, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(cursorMid)); !ok {
		return Message{}, false
	}
	column, rest, ok := coordinatePrefix(rest)
	if !ok {
		return Message{}, false
	}
	c := &Cursor{Line: line, Column: column}
	if rest, ok = bytes.CutPrefix(rest, []byte(cursorFile)); ok {
		end := bytes.IndexByte(rest, '"')
		if end < 0 || end > MaxFileBytes {
			return Message{}, false
		}
		file := rest[:end]
		for _, ch := range file {
			if ch < 0x20 || ch == 0x7f || ch == '\\' {
				return Message{}, false // an escape or a control character
			}
		}
		if !utf8.Valid(file) {
			return Message{}, false // encoding/json would replace the bad bytes
		}
		c.File, rest = string(file), rest[end+1:]
	}
	if string(rest) != "}}" {
		return Message{}, false
	}
	return Message{Type: TypeCursorUpdate, Payload: c}, true
}

// coordinatePrefix reads a JSON integer from 0 to MaxCoordinate (no sign,
// no leading zero, no fraction or exponent) at the start of b.
func coordinatePrefix(b []byte) (int, []byte, bool) {
	n, i := 0, 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if i == 8 { // more digits than MaxCoordinate has
			return 0, nil, false
		}
		n = n*10 + int(b[i]-'0')
	}
	if i == 0 || i > 1 && b[0] == '0' || n > MaxCoordinate {
		return 0, nil, false
	}
	if i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E') {
		return 0, nil, false
	}
	return n, b[i:], true
}

// decode is Decode's general way, for any frame (b is trimmed).
func decode(b []byte) (Message, error) {
	var env struct {
		Type json.RawMessage `json:"type"`
		Data json.RawMessage `json:"data"`
		Ref  json.RawMessage `json:"ref"`
	}
	if !utf8.Valid(b) {
		return Message{}, ErrInvalidUTF8
	}
	if len(b) == 0 || b[0] != '{' {
		return Message{}, Errorf(CodeBadRequest, "message must be a JSON object")
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return Message{}, Errorf(CodeBadRequest, "message is not valid JSON")
	}
	var m Message
	if env.Ref != nil && !isNull(env.Ref) {
		if err := json.Unmarshal(env.Ref, &m.Ref); err != nil {
			return m, Errorf(CodeBadRequest, "ref must be a string")
		}
		if len(m.Ref) > MaxRefBytes {
			m.Ref = ""
			return m, Errorf(CodeBadRequest, "ref must be at most %d bytes", MaxRefBytes)
		}
	}
	if env.Type == nil || isNull(env.Type) {
		return m, Errorf(CodeBadRequest, "type is required")
	}
	if err := json.Unmarshal(env.Type, &m.Type); err != nil {
		return m, Errorf(CodeBadRequest, "type must be a string")
	}
	data := env.Data
	if isNull(data) {
		data = nil
	}
	if data != nil && data[0] != '{' {
		return m, Errorf(CodeBadRequest, "data must be an object")
	}
	var err *Error
	switch m.Type {
	case TypeJoinSession:
		m.Payload, err = decodeJoin(data)
	case TypeLeaveSession:
	case TypeCursorUpdate:
		m.Payload, err = decodeCursor(data)
	case TypeActivityStatus:
		m.Payload, err = decodeActivity(data)
	case TypeBroadcast:
		m.Payload, err = decodeBroadcast(data)
	case TypePing:
		m.Payload = Ping(bytes.Clone(data))
	case TypeRefreshToken:
		m.Payload, err = decodeRefresh(data)
	default:
		return m, Errorf(CodeUnknownType, "unknown message type %q", truncate(m.Type, 64))
	}
	if err != nil {
		m.Payload = nil // not a typed nil pointer: Payload is nil on error
		return m, err
	}
	return m, nil
}

func isNull(b json.RawMessage) bool { return string(b) == "null" }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// unmarshalData decodes an object into v, or reports bad_request naming the
// field whose type is wrong.
func unmarshalData(data json.RawMessage, v any) *Error {
	if data == nil {
		return Errorf(CodeBadRequest, "data is required")
	}
	if err := json.Unmarshal(data, v); err != nil {
		if te, ok := err.(*json.UnmarshalTypeError); ok && te.Field != "" {
			return Errorf(CodeBadRequest, "data.%s must be %s", te.Field, typeName(te.Type.Kind().String()))
		}
		return Errorf(CodeBadRequest, "data is not a valid object")
	}
	return nil
}

func typeName(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "float64":
		return "a number"
	case "struct", "ptr", "map":
		return "an object"
	}
	return "of another type"
}

func decodeJoin(data json.RawMessage) (*JoinSession, *Error) {
	var w struct {
		SessionID *string `json:"sessionId"`
		UserInfo  *struct {
			UserID *string `json:"userId"`
			Name   *string `json:"name"`
			Role   *string `json:"role"`
			Color  *string `json:"color"`
		} `json:"userInfo"`
		Presence *string `json:"presence"`
		Recover  *struct {
			Epoch  *string  `json:"epoch"`
			Offset *float64 `json:"offset"`
		} `json:"recover"`
	}
	if err := unmarshalData(data, &w); err != nil {
		return nil, err
	}
	if w.SessionID == nil {
		return nil, Errorf(CodeBadRequest, "data.sessionId is required")
	}
	if !ValidSessionID(*w.SessionID) {
		return nil, Errorf(CodeInvalidSessionID, "sessionId must be 1 to %d of A-Za-z0-9._:-", MaxSessionIDBytes)
	}
	j := &JoinSession{SessionID: *w.SessionID, Presence: PresenceFull}
	if u := w.UserInfo; u != nil {
		if u.UserID != nil {
			if *u.UserID == "" || len(*u.UserID) > MaxUserIDBytes || !ValidText(*u.UserID) {
				return nil, Errorf(CodeBadRequest, "data.userInfo.userId must be 1 to %d bytes of UTF-8 without control characters", MaxUserIDBytes)
			}
			j.UserInfo.UserID = *u.UserID
		}
		if u.Name != nil {
			if n := utf8.RuneCountInString(*u.Name); n < 1 || n > MaxNameChars || !ValidText(*u.Name) {
				return nil, Errorf(CodeBadRequest, "data.userInfo.name must be 1 to %d characters, no control character", MaxNameChars)
			}
			j.UserInfo.Name = *u.Name
		}
		if u.Role != nil {
			switch r := Role(*u.Role); r {
			case RoleInstructor, RoleLearner:
				j.UserInfo.Role = r
			default:
				return nil, Errorf(CodeBadRequest, "data.userInfo.role must be %q or %q", RoleInstructor, RoleLearner)
			}
		}
		if u.Color != nil {
			if len(*u.Color) > MaxColorBytes || !ValidText(*u.Color) {
				return nil, Errorf(CodeBadRequest, "data.userInfo.color must be at most %d bytes, no control character", MaxColorBytes)
			}
			j.UserInfo.Color = *u.Color
		}
	}
	if w.Presence != nil {
		switch p := Presence(*w.Presence); p {
		case PresenceFull, PresenceDiff:
			j.Presence = p
		default:
			return nil, Errorf(CodeBadRequest, "data.presence must be %q or %q", PresenceFull, PresenceDiff)
		}
	}
	if r := w.Recover; r != nil {
		if r.Epoch == nil || r.Offset == nil {
			return nil, Errorf(CodeBadRequest, "data.recover needs epoch and offset")
		}
		if !ValidText(*r.Epoch) {
			return nil, Errorf(CodeBadRequest, "data.recover.epoch must not hold control characters")
		}
		off := *r.Offset
		if off < 0 || off != math.Trunc(off) || off > 1<<53 {
			return nil, Errorf(CodeBadRequest, "data.recover.offset must be a non-negative integer")
		}
		j.Recover = &Recover{Epoch: *r.Epoch, Offset: int64(off)}
	}
	return j, nil
}

type wirePosition struct {
	Line   *float64 `json:"line"`
	Column *float64 `json:"column"`
}

func (w *wirePosition) position(field string) (Position, *Error) {
	l, err := coordinate(w.Line, field+"line")
	if err != nil {
		return Position{}, err
	}
	c, err := coordinate(w.Column, field+"column")
	if err != nil {
		return Position{}, err
	}
	return Position{Line: l, Column: c}, nil
}

func coordinate(v *float64, field string) (int, *Error) {
	if v == nil {
		return 0, Errorf(CodeBadRequest, "data.%s is required", field)
	}
	if *v < 0 || *v > MaxCoordinate || *v != math.Trunc(*v) {
		return 0, Errorf(CodeBadRequest, "data.%s must be an integer from 0 to %d", field, MaxCoordinate)
	}
	return int(*v), nil
}

func decodeCursor(data json.RawMessage) (*Cursor, *Error) {
	var w struct {
		wirePosition
		File      *string `json:"file"`
		Selection *struct {
			Start *wirePosition `json:"start"`
			End   *wirePosition `json:"end"`
		} `json:"selection"`
	}
	if err := unmarshalData(data, &w); err != nil {
		return nil, err
	}
	p, err := w.position("")
	if err != nil {
		return nil, err
	}
	c := &Cursor{Line: p.Line, Column: p.Column}
	if w.File != nil {
		if len(*w.File) > MaxFileBytes || !ValidText(*w.File) {
			return nil, Errorf(CodeBadRequest, "data.file must be at most %d bytes, no control character", MaxFileBytes)
		}
		c.File = *w.File
	}
	if s := w.Selection; s != nil {
		if s.Start == nil || s.End == nil {
			return nil, Errorf(CodeBadRequest, "data.selection needs start and end")
		}
		start, err := s.Start.position("selection.start.")
		if err != nil {
			return nil, err
		}
		end, err := s.End.position("selection.end.")
		if err != nil {
			return nil, err
		}
		c.Selection = &Selection{Start: start, End: end}
	}
	return c, nil
}

func decodeActivity(data json.RawMessage) (*ActivityStatus, *Error) {
	var w struct {
		IsActive *bool `json:"isActive"`
	}
	if err := unmarshalData(data, &w); err != nil {
		return nil, err
	}
	if w.IsActive == nil {
		return nil, Errorf(CodeBadRequest, "data.isActive is required")
	}
	return &ActivityStatus{IsActive: *w.IsActive}, nil
}

func decodeBroadcast(data json.RawMessage) (*Broadcast, *Error) {
	var w struct {
		Event   *string         `json:"event"`
		Payload json.RawMessage `json:"payload"`
		To      *string         `json:"to"`
	}
	if err := unmarshalData(data, &w); err != nil {
		return nil, err
	}
	if w.Event == nil {
		return nil, Errorf(CodeBadRequest, "data.event is required")
	}
	if n := utf8.RuneCountInString(*w.Event); n < 1 || n > MaxEventChars || !ValidText(*w.Event) {
		return nil, Errorf(CodeBadRequest, "data.event must be 1 to %d characters, no control character", MaxEventChars)
	}
	b := &Broadcast{Event: *w.Event, To: ToAll, Payload: json.RawMessage("null")}
	if w.Payload != nil {
		b.Payload = bytes.Clone(w.Payload)
	}
	if w.To != nil {
		if *w.To == "" || len(*w.To) > MaxUserIDBytes || !ValidText(*w.To) {
			return nil, Errorf(CodeBadRequest, "data.to must be %q, %q, %q or a userId", ToAll, ToInstructors, ToLearners)
		}
		b.To = *w.To
	}
	return b, nil
}

func decodeRefresh(data json.RawMessage) (*RefreshToken, *Error) {
	var w struct {
		Token *string `json:"token"`
	}
	if err := unmarshalData(data, &w); err != nil {
		return nil, err
	}
	if w.Token == nil || *w.Token == "" {
		return nil, Errorf(CodeBadRequest, "data.token is required")
	}
	if len(*w.Token) > MaxTokenBytes {
		return nil, Errorf(CodeBadRequest, "data.token must be at most %d bytes", MaxTokenBytes)
	}
	return &RefreshToken{Token: *w.Token}, nil
}

// ValidSessionID reports whether id is 1 to 64 of A-Za-z0-9._:-.
func ValidSessionID(id string) bool {
	if len(id) == 0 || len(id) > MaxSessionIDBytes {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}
