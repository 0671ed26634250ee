package protocol_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sessionhub/sessionhub/protocol"
)

// join, cursor and bcast build a message of their type around data.
func join(data string) string   { return `{"type":"join-session","data":` + data + `}` }
func cursor(data string) string { return `{"type":"cursor-update","data":` + data + `}` }
func bcast(data string) string  { return `{"type":"broadcast","data":` + data + `}` }

// joinSID is a join-session for sessionId id (any JSON value).
func joinSID(id string) string { return join(`{"sessionId":` + id + `,"userInfo":{"name":"Ada"}}`) }

// joinUser is a join-session to s1 whose userInfo is info.
func joinUser(info string) string { return join(`{"sessionId":"s1","userInfo":` + info + `}`) }

// q quotes s as a JSON string.
func q(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

var (
	sid64     = strings.Repeat("a", 64)
	sid65     = strings.Repeat("a", 65)
	ascii64   = strings.Repeat("x", 64)
	ascii65   = strings.Repeat("x", 65)
	runes64   = strings.Repeat("é", 64) // 128 bytes, 64 characters
	runes65   = strings.Repeat("é", 65) // 130 bytes, 65 characters
	emoji64   = strings.Repeat("🙂", 64) // 256 bytes, 64 characters
	file256   = strings.Repeat("f", 256)
	file257   = strings.Repeat("f", 257)
	ref64     = strings.Repeat("r", 64)
	ref65     = strings.Repeat("r", 65)
	refRunes  = strings.Repeat("é", 32) // 64 bytes
	refRunes2 = strings.Repeat("é", 33) // 66 bytes, 33 characters
)

func TestDecodeValid(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		typ     string
		ref     string
		payload any
	}{
		// join-session
		{
			name:    "join minimal: presence defaults to full",
			in:      join(`{"sessionId":"s1"}`),
			typ:     protocol.TypeJoinSession,
			payload: &protocol.JoinSession{SessionID: "s1", Presence: protocol.PresenceFull},
		},
		{
			name: "join every field",
			in: `{"type":"join-session","ref":"7","data":{"sessionId":"course-42:lab_1.a",` +
				`"userInfo":{"userId":"u1","name":"Ada","role":"instructor","color":"#f00"},` +
				`"presence":"diff","recover":{"epoch":"e1","offset":42}}}`,
			typ: protocol.TypeJoinSession,
			ref: "7",
			payload: &protocol.JoinSession{
				SessionID: "course-42:lab_1.a",
				UserInfo:  protocol.UserInfo{UserID: "u1", Name: "Ada", Role: protocol.RoleInstructor, Color: "#f00"},
				Presence:  protocol.PresenceDiff,
				Recover:   &protocol.Recover{Epoch: "e1", Offset: 42},
			},
		},
		{
			name:    "join presence full explicit, role learner",
			in:      join(`{"sessionId":"s1","userInfo":{"name":"Bo","role":"learner"},"presence":"full"}`),
			typ:     protocol.TypeJoinSession,
			payload: &protocol.JoinSession{SessionID: "s1", UserInfo: protocol.UserInfo{Name: "Bo", Role: protocol.RoleLearner}, Presence: protocol.PresenceFull},
		},
		{
			name:    "join presence null is the default",
			in:      join(`{"sessionId":"s1","presence":null}`),
			typ:     protocol.TypeJoinSession,
			payload: &protocol.JoinSession{SessionID: "s1", Presence: protocol.PresenceFull},
		},
		{
			name:    "join sessionId of exactly 64 chars",
			in:      joinSID(q(sid64)),
			typ:     protocol.TypeJoinSession,
			payload: &protocol.JoinSession{SessionID: sid64, UserInfo: protocol.UserInfo{Name: "Ada"}, Presence: protocol.PresenceFull},
		},
		{
			name:    "join sessionId of every allowed class",
			in:      joinSID(`"AZaz09._:-"`),
			typ:     protocol.TypeJoinSession,
			payload: &protocol.JoinSession{SessionID: "AZaz09._:-", UserInfo: protocol.UserInfo{Name: "Ada"}, Presence: protocol.PresenceFull},
		},
		{
			name:    "join name of 64 two-byte runes",
			in:      joinUser(`{"name":` + q(runes64) + `}`),
			typ:     protocol.TypeJoinSession,
			payload: &protocol.JoinSession{SessionID: "s1", UserInfo: protocol.UserInfo{Name: runes64}, Presence: protocol.PresenceFull},
		},
		{
			name:    "join name of 64 four-byte runes",
			in:      joinUser(`{"name":` + q(emoji64) + `}`),
			typ:     protocol.TypeJoinSession,
			payload: &protocol.JoinSession{SessionID: "s1", UserInfo: protocol.UserInfo{Name: emoji64}, Presence: protocol.PresenceFull},
		},
		{
			name:    "join name of 64 ASCII chars",
			in:      joinUser(`{"name":` + q(ascii64) + `}`),
			typ:     protocol.TypeJoinSession,
			payload: &protocol.JoinSession{SessionID: "s1", UserInfo: protocol.UserInfo{Name: ascii64}, Presence: protocol.PresenceFull},
		},
		{
			name:    "join name escaped in JSON",
			in:      joinUser(`{"name":"\u00c9mile"}`),
			typ:     protocol.TypeJoinSession,
			payload: &protocol.JoinSession{SessionID: "s1", UserInfo: protocol.UserInfo{Name: "Émile"}, Presence: protocol.PresenceFull},
		},
		{
			name:    "join recover offset 0",
			in:      join(`{"sessionId":"s1","recover":{"epoch":"","offset":0}}`),
			typ:     protocol.TypeJoinSession,
			payload: &protocol.JoinSession{SessionID: "s1", Presence: protocol.PresenceFull, Recover: &protocol.Recover{Epoch: "", Offset: 0}},
		},
		{
			name:    "join recover null is no recover",
			in:      join(`{"sessionId":"s1","recover":null}`),
			typ:     protocol.TypeJoinSession,
			payload: &protocol.JoinSession{SessionID: "s1", Presence: protocol.PresenceFull},
		},
		{
			name:    "join unknown fields ignored",
			in:      `{"type":"join-session","extra":[1],"data":{"sessionId":"s1","avatar":"x","userInfo":{"name":"Ada","age":3}}}`,
			typ:     protocol.TypeJoinSession,
			payload: &protocol.JoinSession{SessionID: "s1", UserInfo: protocol.UserInfo{Name: "Ada"}, Presence: protocol.PresenceFull},
		},

		// leave-session
		{name: "leave without data", in: `{"type":"leave-session","ref":"9"}`, typ: protocol.TypeLeaveSession, ref: "9"},
		{name: "leave with empty data", in: `{"type":"leave-session","data":{}}`, typ: protocol.TypeLeaveSession},
		{name: "leave with null data", in: `{"type":"leave-session","data":null}`, typ: protocol.TypeLeaveSession},

		// cursor-update
		{
			name:    "cursor line and column",
			in:      `{"type":"cursor-update","data":{"line":12,"column":4},"ref":"7"}`,
			typ:     protocol.TypeCursorUpdate,
			ref:     "7",
			payload: &protocol.Cursor{Line: 12, Column: 4},
		},
		{
			name:    "cursor zero",
			in:      cursor(`{"line":0,"column":0}`),
			typ:     protocol.TypeCursorUpdate,
			payload: &protocol.Cursor{},
		},
		{
			name:    "cursor exactly 10,000,000",
			in:      cursor(`{"line":10000000,"column":10000000}`),
			typ:     protocol.TypeCursorUpdate,
			payload: &protocol.Cursor{Line: 10_000_000, Column: 10_000_000},
		},
		{
			name:    "cursor integral numbers in other notations",
			in:      cursor(`{"line":1e3,"column":5.0}`),
			typ:     protocol.TypeCursorUpdate,
			payload: &protocol.Cursor{Line: 1000, Column: 5},
		},
		{
			name: "cursor with file and selection",
			in:   cursor(`{"line":3,"column":4,"file":"src/main.go","selection":{"start":{"line":1,"column":2},"end":{"line":3,"column":4}}}`),
			typ:  protocol.TypeCursorUpdate,
			payload: &protocol.Cursor{Line: 3, Column: 4, File: "src/main.go",
				Selection: &protocol.Selection{Start: protocol.Position{Line: 1, Column: 2}, End: protocol.Position{Line: 3, Column: 4}}},
		},
		{
			name:    "cursor file of exactly 256 bytes",
			in:      cursor(`{"line":1,"column":2,"file":` + q(file256) + `}`),
			typ:     protocol.TypeCursorUpdate,
			payload: &protocol.Cursor{Line: 1, Column: 2, File: file256},
		},
		{
			name:    "cursor selection null and file null are absent",
			in:      cursor(`{"line":1,"column":2,"file":null,"selection":null}`),
			typ:     protocol.TypeCursorUpdate,
			payload: &protocol.Cursor{Line: 1, Column: 2},
		},

		// activity-status
		{
			name:    "activity true",
			in:      `{"type":"activity-status","data":{"isActive":true}}`,
			typ:     protocol.TypeActivityStatus,
			payload: &protocol.ActivityStatus{IsActive: true},
		},
		{
			name:    "activity false",
			in:      `{"type":"activity-status","data":{"isActive":false}}`,
			typ:     protocol.TypeActivityStatus,
			payload: &protocol.ActivityStatus{IsActive: false},
		},

		// broadcast
		{
			name:    "broadcast minimal: to defaults to all, payload to null",
			in:      bcast(`{"event":"e"}`),
			typ:     protocol.TypeBroadcast,
			payload: &protocol.Broadcast{Event: "e", To: protocol.ToAll, Payload: json.RawMessage("null")},
		},
		{
			name:    "broadcast explicit null payload",
			in:      bcast(`{"event":"e","payload":null}`),
			typ:     protocol.TypeBroadcast,
			payload: &protocol.Broadcast{Event: "e", To: protocol.ToAll, Payload: json.RawMessage("null")},
		},
		{
			name:    "broadcast object payload to instructors",
			in:      `{"type":"broadcast","ref":"b1","data":{"event":"quiz-start","payload":{"q":[1,2]},"to":"instructors"}}`,
			typ:     protocol.TypeBroadcast,
			ref:     "b1",
			payload: &protocol.Broadcast{Event: "quiz-start", To: protocol.ToInstructors, Payload: json.RawMessage(`{"q":[1,2]}`)},
		},
		{
			name:    "broadcast scalar payload to learners",
			in:      bcast(`{"event":"n","payload":42,"to":"learners"}`),
			typ:     protocol.TypeBroadcast,
			payload: &protocol.Broadcast{Event: "n", To: protocol.ToLearners, Payload: json.RawMessage(`42`)},
		},
		{
			name:    "broadcast to one userId",
			in:      bcast(`{"event":"hint","payload":"look left","to":"u-17"}`),
			typ:     protocol.TypeBroadcast,
			payload: &protocol.Broadcast{Event: "hint", To: "u-17", Payload: json.RawMessage(`"look left"`)},
		},
		{
			name:    "broadcast to all explicit",
			in:      bcast(`{"event":"e","payload":[],"to":"all"}`),
			typ:     protocol.TypeBroadcast,
			payload: &protocol.Broadcast{Event: "e", To: protocol.ToAll, Payload: json.RawMessage(`[]`)},
		},
		{
			name:    "broadcast event of 64 chars",
			in:      bcast(`{"event":` + q(ascii64) + `}`),
			typ:     protocol.TypeBroadcast,
			payload: &protocol.Broadcast{Event: ascii64, To: protocol.ToAll, Payload: json.RawMessage("null")},
		},
		{
			name:    "broadcast event of 64 multi-byte runes",
			in:      bcast(`{"event":` + q(runes64) + `}`),
			typ:     protocol.TypeBroadcast,
			payload: &protocol.Broadcast{Event: runes64, To: protocol.ToAll, Payload: json.RawMessage("null")},
		},

		// ping
		{
			name:    "ping with data",
			in:      `{"type":"ping","ref":"p","data":{"t":1700000000000}}`,
			typ:     protocol.TypePing,
			ref:     "p",
			payload: protocol.Ping(`{"t":1700000000000}`),
		},
		{name: "ping without data", in: `{"type":"ping"}`, typ: protocol.TypePing, payload: protocol.Ping(nil)},
		{name: "ping with null data", in: `{"type":"ping","data":null}`, typ: protocol.TypePing, payload: protocol.Ping(nil)},

		// refresh-token
		{
			name:    "refresh-token",
			in:      `{"type":"refresh-token","ref":"r1","data":{"token":"a.b.c"}}`,
			typ:     protocol.TypeRefreshToken,
			ref:     "r1",
			payload: &protocol.RefreshToken{Token: "a.b.c"},
		},

		// envelope
		{name: "surrounding whitespace", in: " \n\t{\"type\":\"ping\",\"data\":{}}\r\n ", typ: protocol.TypePing, payload: protocol.Ping(`{}`)},
		{name: "ref null is no ref", in: `{"type":"leave-session","ref":null}`, typ: protocol.TypeLeaveSession},
		{name: "ref empty", in: `{"type":"leave-session","ref":""}`, typ: protocol.TypeLeaveSession},
		{name: "ref of exactly 64 bytes", in: `{"type":"leave-session","ref":` + q(ref64) + `}`, typ: protocol.TypeLeaveSession, ref: ref64},
		{name: "ref of 64 bytes in 32 runes", in: `{"type":"leave-session","ref":` + q(refRunes) + `}`, typ: protocol.TypeLeaveSession, ref: refRunes},
		{name: "unknown envelope fields ignored", in: `{"type":"leave-session","v":2,"meta":{"a":[]}}`, typ: protocol.TypeLeaveSession},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := protocol.Decode([]byte(tt.in))
			if err != nil {
				t.Fatalf("Decode(%s) error = %v, want nil", tt.in, err)
			}
			if got.Type != tt.typ {
				t.Errorf("Type = %q, want %q", got.Type, tt.typ)
			}
			if got.Ref != tt.ref {
				t.Errorf("Ref = %q, want %q", got.Ref, tt.ref)
			}
			if !reflect.DeepEqual(got.Payload, tt.payload) {
				t.Errorf("Payload = %#v, want %#v", got.Payload, tt.payload)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	const (
		bad  = protocol.CodeBadRequest
		unk  = protocol.CodeUnknownType
		sess = protocol.CodeInvalidSessionID
	)
	tests := []struct {
		name string
		in   string
		code protocol.Code
		ref  string // the ref the error must echo
		typ  string // when not empty, the Type the message must carry
	}{
		// not JSON
		{name: "empty", in: ``, code: bad},
		{name: "whitespace only", in: " \n ", code: bad},
		{name: "not JSON", in: `nope`, code: bad},
		{name: "broken object", in: `{not json}`, code: bad},
		{name: "truncated object", in: `{"type":"ping"`, code: bad},
		{name: "trailing garbage", in: `{"type":"ping"} x`, code: bad},
		{name: "two objects", in: `{"type":"ping"}{"type":"ping"}`, code: bad},
		{name: "single quotes", in: `{'type':'ping'}`, code: bad},

		// refresh-token
		{name: "refresh-token without data", in: `{"type":"refresh-token","ref":"r"}`, code: bad, ref: "r", typ: protocol.TypeRefreshToken},
		{name: "refresh-token without token", in: `{"type":"refresh-token","ref":"r","data":{}}`, code: bad, ref: "r", typ: protocol.TypeRefreshToken},
		{name: "refresh-token with empty token", in: `{"type":"refresh-token","data":{"token":""}}`, code: bad, typ: protocol.TypeRefreshToken},
		{name: "refresh-token with a number", in: `{"type":"refresh-token","data":{"token":7}}`, code: bad, typ: protocol.TypeRefreshToken},
		{name: "refresh-token over 8192 bytes", in: `{"type":"refresh-token","data":{"token":"` + strings.Repeat("a", protocol.MaxTokenBytes+1) + `"}}`, code: bad, typ: protocol.TypeRefreshToken},

		// not an object
		{name: "array", in: `[{"type":"ping"}]`, code: bad},
		{name: "empty array", in: `[]`, code: bad},
		{name: "string", in: `"ping"`, code: bad},
		{name: "number", in: `42`, code: bad},
		{name: "null", in: `null`, code: bad},
		{name: "bool", in: `true`, code: bad},

		// type
		{name: "type missing", in: `{}`, code: bad},
		{name: "type missing with data", in: `{"data":{}}`, code: bad},
		{name: "type missing echoes ref", in: `{"ref":"r1","data":{}}`, code: bad, ref: "r1"},
		{name: "type null", in: `{"type":null,"ref":"r2"}`, code: bad, ref: "r2"},
		{name: "type number", in: `{"type":5,"ref":"r3"}`, code: bad, ref: "r3"},
		{name: "type bool", in: `{"type":true}`, code: bad},
		{name: "type object", in: `{"type":{"name":"ping"}}`, code: bad},
		{name: "type array", in: `{"type":["ping"]}`, code: bad},

		// ref
		{name: "ref number", in: `{"type":"ping","ref":7}`, code: bad},
		{name: "ref object", in: `{"type":"ping","ref":{}}`, code: bad},
		{name: "ref bool", in: `{"type":"ping","ref":false}`, code: bad},
		{name: "ref of 65 bytes is not echoed", in: `{"type":"ping","ref":` + q(ref65) + `}`, code: bad},
		{name: "ref of 33 runes over 64 bytes", in: `{"type":"ping","ref":` + q(refRunes2) + `}`, code: bad},

		// data
		{name: "data array", in: `{"type":"ping","ref":"d1","data":[1]}`, code: bad, ref: "d1", typ: protocol.TypePing},
		{name: "data string", in: `{"type":"cursor-update","data":"12,4"}`, code: bad, typ: protocol.TypeCursorUpdate},
		{name: "data number", in: `{"type":"join-session","data":1}`, code: bad, typ: protocol.TypeJoinSession},
		{name: "data bool", in: `{"type":"activity-status","data":true}`, code: bad, typ: protocol.TypeActivityStatus},
		{name: "data array on leave", in: `{"type":"leave-session","data":[]}`, code: bad, typ: protocol.TypeLeaveSession},

		// unknown type
		{name: "unknown type", in: `{"type":"nope","ref":"u1"}`, code: unk, ref: "u1", typ: "nope"},
		{name: "empty type", in: `{"type":""}`, code: unk},
		{name: "type is case-sensitive", in: `{"type":"Join-Session","data":{"sessionId":"s1"}}`, code: unk, typ: "Join-Session"},
		{name: "server type from a client", in: `{"type":"session-joined","data":{}}`, code: unk, typ: protocol.TypeSessionJoined},
		{name: "error type from a client", in: `{"type":"error","data":{"code":"internal"}}`, code: unk, typ: protocol.TypeError},
		{name: "long unknown type", in: `{"type":` + q(strings.Repeat("é", 100)) + `}`, code: unk},

		// join-session: sessionId
		{name: "join data missing", in: `{"type":"join-session","ref":"j0"}`, code: bad, ref: "j0", typ: protocol.TypeJoinSession},
		{name: "join data null", in: `{"type":"join-session","data":null}`, code: bad},
		{name: "join sessionId missing", in: join(`{"userInfo":{"name":"Ada"}}`), code: bad},
		{name: "join sessionId null", in: joinSID(`null`), code: bad},
		{name: "join sessionId number", in: joinSID(`12`), code: bad},
		{name: "join sessionId empty", in: `{"type":"join-session","ref":"j1","data":{"sessionId":""}}`, code: sess, ref: "j1", typ: protocol.TypeJoinSession},
		{name: "join sessionId 65 chars", in: joinSID(q(sid65)), code: sess},
		{name: "join sessionId with space", in: joinSID(`"a b"`), code: sess},
		{name: "join sessionId with slash", in: joinSID(`"a/b"`), code: sess},
		{name: "join sessionId with unicode", in: joinSID(`"café"`), code: sess},
		{name: "join sessionId with escaped unicode", in: joinSID(`"caf\u00e9"`), code: sess},
		{name: "join sessionId with NUL", in: joinSID(`"a\u0000b"`), code: sess},
		{name: "join sessionId with hash", in: joinSID(`"a#b"`), code: sess},
		{name: "join sessionId with newline", in: joinSID(`"a\nb"`), code: sess},

		// join-session: userInfo
		{name: "join userInfo not an object", in: joinUser(`"Ada"`), code: bad},
		{name: "join userInfo array", in: joinUser(`["Ada"]`), code: bad},
		{name: "join name empty", in: joinUser(`{"name":""}`), code: bad},
		{name: "join name 65 ASCII chars", in: joinUser(`{"name":` + q(ascii65) + `}`), code: bad},
		{name: "join name 65 runes", in: joinUser(`{"name":` + q(runes65) + `}`), code: bad},
		{name: "join name number", in: joinUser(`{"name":7}`), code: bad},
		{name: "join role admin", in: joinUser(`{"name":"Ada","role":"admin"}`), code: bad},
		{name: "join role empty", in: joinUser(`{"name":"Ada","role":""}`), code: bad},
		{name: "join role capitalised", in: joinUser(`{"name":"Ada","role":"Instructor"}`), code: bad},
		{name: "join role number", in: joinUser(`{"name":"Ada","role":1}`), code: bad},
		{name: "join userId empty", in: joinUser(`{"name":"Ada","userId":""}`), code: bad},
		{name: "join userId over 128 bytes", in: joinUser(`{"name":"Ada","userId":` + q(strings.Repeat("u", 129)) + `}`), code: bad},
		{name: "join userId number", in: joinUser(`{"name":"Ada","userId":17}`), code: bad},
		{name: "join color over 64 bytes", in: joinUser(`{"name":"Ada","color":` + q(ascii65) + `}`), code: bad},

		// join-session: presence
		{name: "join presence partial", in: join(`{"sessionId":"s1","presence":"partial"}`), code: bad},
		{name: "join presence empty", in: join(`{"sessionId":"s1","presence":""}`), code: bad},
		{name: "join presence capitalised", in: join(`{"sessionId":"s1","presence":"Diff"}`), code: bad},
		{name: "join presence bool", in: join(`{"sessionId":"s1","presence":true}`), code: bad},

		// join-session: recover
		{name: "join recover missing epoch", in: join(`{"sessionId":"s1","recover":{"offset":3}}`), code: bad},
		{name: "join recover missing offset", in: join(`{"sessionId":"s1","recover":{"epoch":"e1"}}`), code: bad},
		{name: "join recover empty", in: join(`{"sessionId":"s1","recover":{}}`), code: bad},
		{name: "join recover negative offset", in: join(`{"sessionId":"s1","recover":{"epoch":"e1","offset":-1}}`), code: bad},
		{name: "join recover fractional offset", in: join(`{"sessionId":"s1","recover":{"epoch":"e1","offset":1.5}}`), code: bad},
		{name: "join recover string offset", in: join(`{"sessionId":"s1","recover":{"epoch":"e1","offset":"3"}}`), code: bad},
		{name: "join recover number epoch", in: join(`{"sessionId":"s1","recover":{"epoch":1,"offset":3}}`), code: bad},
		{name: "join recover offset overflows", in: join(`{"sessionId":"s1","recover":{"epoch":"e1","offset":1e400}}`), code: bad},
		{name: "join recover offset over 2^53", in: join(`{"sessionId":"s1","recover":{"epoch":"e1","offset":1e17}}`), code: bad},
		{name: "join recover not an object", in: join(`{"sessionId":"s1","recover":[1,2]}`), code: bad},
		{name: "join invalid after valid sessionId echoes ref", in: `{"type":"join-session","ref":"j2","data":{"sessionId":"s1","presence":"x"}}`, code: bad, ref: "j2", typ: protocol.TypeJoinSession},

		// cursor-update
		{name: "cursor data missing", in: `{"type":"cursor-update","ref":"c0"}`, code: bad, ref: "c0", typ: protocol.TypeCursorUpdate},
		{name: "cursor empty data", in: cursor(`{}`), code: bad},
		{name: "cursor line missing", in: cursor(`{"column":4}`), code: bad},
		{name: "cursor column missing", in: cursor(`{"line":4}`), code: bad},
		{name: "cursor line null", in: cursor(`{"line":null,"column":4}`), code: bad},
		{name: "cursor line negative", in: cursor(`{"line":-1,"column":4}`), code: bad},
		{name: "cursor column negative", in: cursor(`{"line":1,"column":-4}`), code: bad},
		{name: "cursor line fractional", in: cursor(`{"line":1.5,"column":4}`), code: bad},
		{name: "cursor column fractional", in: cursor(`{"line":1,"column":0.001}`), code: bad},
		{name: "cursor line over 10,000,000", in: cursor(`{"line":10000001,"column":4}`), code: bad},
		{name: "cursor column over 10,000,000", in: cursor(`{"line":1,"column":10000001}`), code: bad},
		{name: "cursor line huge", in: cursor(`{"line":1e300,"column":4}`), code: bad},
		{name: "cursor line overflows float64", in: cursor(`{"line":1e400,"column":4}`), code: bad},
		{name: "cursor line string", in: cursor(`{"line":"1","column":4}`), code: bad},
		{name: "cursor column string", in: cursor(`{"line":1,"column":"4"}`), code: bad},
		{name: "cursor line bool", in: cursor(`{"line":true,"column":4}`), code: bad},
		{name: "cursor file over 256 bytes", in: cursor(`{"line":1,"column":4,"file":` + q(file257) + `}`), code: bad},
		{name: "cursor file number", in: cursor(`{"line":1,"column":4,"file":3}`), code: bad},
		{name: "cursor selection missing start", in: cursor(`{"line":1,"column":4,"selection":{"end":{"line":1,"column":2}}}`), code: bad},
		{name: "cursor selection missing end", in: cursor(`{"line":1,"column":4,"selection":{"start":{"line":1,"column":2}}}`), code: bad},
		{name: "cursor selection empty", in: cursor(`{"line":1,"column":4,"selection":{}}`), code: bad},
		{name: "cursor selection not an object", in: cursor(`{"line":1,"column":4,"selection":"1:2-3:4"}`), code: bad},
		{name: "cursor selection start line missing", in: cursor(`{"line":1,"column":4,"selection":{"start":{"column":2},"end":{"line":1,"column":2}}}`), code: bad},
		{name: "cursor selection end column negative", in: cursor(`{"line":1,"column":4,"selection":{"start":{"line":1,"column":2},"end":{"line":1,"column":-2}}}`), code: bad},
		{name: "cursor selection start fractional", in: cursor(`{"line":1,"column":4,"selection":{"start":{"line":0.5,"column":2},"end":{"line":1,"column":2}}}`), code: bad},
		{name: "cursor selection end over max", in: cursor(`{"line":1,"column":4,"selection":{"start":{"line":1,"column":2},"end":{"line":10000001,"column":2}}}`), code: bad},
		{name: "cursor selection end string", in: cursor(`{"line":1,"column":4,"selection":{"start":{"line":1,"column":2},"end":{"line":"1","column":2}}}`), code: bad},

		// activity-status
		{name: "activity data missing", in: `{"type":"activity-status"}`, code: bad, typ: protocol.TypeActivityStatus},
		{name: "activity isActive missing", in: `{"type":"activity-status","ref":"a1","data":{}}`, code: bad, ref: "a1"},
		{name: "activity isActive null", in: `{"type":"activity-status","data":{"isActive":null}}`, code: bad},
		{name: "activity isActive string", in: `{"type":"activity-status","data":{"isActive":"true"}}`, code: bad},
		{name: "activity isActive number", in: `{"type":"activity-status","data":{"isActive":1}}`, code: bad},

		// broadcast
		{name: "broadcast data missing", in: `{"type":"broadcast","ref":"b0"}`, code: bad, ref: "b0", typ: protocol.TypeBroadcast},
		{name: "broadcast event missing", in: bcast(`{"payload":1}`), code: bad},
		{name: "broadcast event null", in: bcast(`{"event":null}`), code: bad},
		{name: "broadcast event empty", in: bcast(`{"event":""}`), code: bad},
		{name: "broadcast event 65 chars", in: bcast(`{"event":` + q(ascii65) + `}`), code: bad},
		{name: "broadcast event 65 runes", in: bcast(`{"event":` + q(runes65) + `}`), code: bad},
		{name: "broadcast event number", in: bcast(`{"event":1}`), code: bad},
		{name: "broadcast to empty", in: bcast(`{"event":"e","to":""}`), code: bad},
		{name: "broadcast to number", in: bcast(`{"event":"e","to":1}`), code: bad},
		{name: "broadcast to list", in: bcast(`{"event":"e","to":["u1"]}`), code: bad},
		{name: "broadcast to over 128 bytes", in: bcast(`{"event":"e","to":` + q(strings.Repeat("u", 129)) + `}`), code: bad},
		{name: "broadcast invalid payload JSON", in: bcast(`{"event":"e","payload":}`), code: bad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := protocol.Decode([]byte(tt.in))
			if err == nil {
				t.Fatalf("Decode(%s) = %+v, want error %s", tt.in, got, tt.code)
			}
			var pe *protocol.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is %T, want *protocol.Error", err, err)
			}
			if pe.Code != tt.code {
				t.Errorf("Code = %q (%s), want %q", pe.Code, pe.Message, tt.code)
			}
			if pe.Message == "" {
				t.Error("Message is empty")
			}
			if got.Ref != tt.ref {
				t.Errorf("Ref = %q, want %q", got.Ref, tt.ref)
			}
			if tt.typ != "" && got.Type != tt.typ {
				t.Errorf("Type = %q, want %q", got.Type, tt.typ)
			}
			if got.Payload != nil {
				t.Errorf("Payload = %#v, want nil on error", got.Payload)
			}
			if len(got.Ref) > protocol.MaxRefBytes {
				t.Errorf("Ref is %d bytes, over %d", len(got.Ref), protocol.MaxRefBytes)
			}
		})
	}
}

// TestDecodeDoesNotAlias checks that raw payloads survive the reuse of the
// frame's buffer, as a WebSocket reader may do.
func TestDecodeDoesNotAlias(t *testing.T) {
	tests := []struct {
		name string
		in   string
		raw  func(any) []byte
		want string
	}{
		{
			name: "ping",
			in:   `{"type":"ping","data":{"t":1}}`,
			raw:  func(p any) []byte { return p.(protocol.Ping) },
			want: `{"t":1}`,
		},
		{
			name: "broadcast payload",
			in:   `{"type":"broadcast","data":{"event":"e","payload":{"a":"b"}}}`,
			raw:  func(p any) []byte { return p.(*protocol.Broadcast).Payload },
			want: `{"a":"b"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := []byte(tt.in)
			m, err := protocol.Decode(buf)
			if err != nil {
				t.Fatal(err)
			}
			for i := range buf {
				buf[i] = 'X'
			}
			if got := string(tt.raw(m.Payload)); got != tt.want {
				t.Errorf("payload after reuse of the buffer = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestValidSessionID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"s", true},
		{"AZaz09._:-", true},
		{sid64, true},
		{"", false},
		{sid65, false},
		{"a b", false},
		{"a/b", false},
		{"é", false},
		{"a\x00", false},
		{"a+b", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%.20q", tt.id), func(t *testing.T) {
			if got := protocol.ValidSessionID(tt.id); got != tt.want {
				t.Errorf("ValidSessionID(%q) = %v, want %v", tt.id, got, tt.want)
			}
		})
	}
}

func TestEncode(t *testing.T) {
	sel := &protocol.Selection{Start: protocol.Position{Line: 1, Column: 2}, End: protocol.Position{Line: 3, Column: 4}}
	tests := []struct {
		name string
		typ  string
		ref  string
		data any
		want string // the exact encoding
	}{
		{
			name: "cursor-moved without ref",
			typ:  protocol.TypeCursorMoved,
			data: protocol.CursorMoved{UserID: "u1", Cursor: protocol.Cursor{Line: 12, Column: 4}},
			want: `{"type":"cursor-moved","data":{"userId":"u1","cursor":{"line":12,"column":4}}}`,
		},
		{
			name: "cursor-moved with file and selection",
			typ:  protocol.TypeCursorMoved,
			data: protocol.CursorMoved{UserID: "u1", Cursor: protocol.Cursor{Line: 3, Column: 4, File: "a.go", Selection: sel}},
			want: `{"type":"cursor-moved","data":{"userId":"u1","cursor":{"line":3,"column":4,"file":"a.go","selection":{"start":{"line":1,"column":2},"end":{"line":3,"column":4}}}}}`,
		},
		{
			name: "ack with ref",
			typ:  protocol.TypeAck,
			ref:  "7",
			data: protocol.Ack{Offset: 3},
			want: `{"type":"ack","data":{"offset":3},"ref":"7"}`,
		},
		{
			name: "nil data left out",
			typ:  protocol.TypeSessionLeft,
			ref:  "r",
			want: `{"type":"session-left","ref":"r"}`,
		},
		{
			name: "empty ping echoed as an empty object",
			typ:  protocol.TypePong,
			data: protocol.Ping(nil),
			want: `{"type":"pong","data":{}}`,
		},
		{
			name: "ping data echoed",
			typ:  protocol.TypePong,
			ref:  "p",
			data: protocol.Ping(`{"t":1}`),
			want: `{"type":"pong","data":{"t":1},"ref":"p"}`,
		},
		{
			name: "user-left in diff presence has no participants",
			typ:  protocol.TypeUserLeft,
			data: protocol.UserLeft{UserID: "u1", User: protocol.Participant{UserID: "u1", Name: "A", Role: protocol.RoleLearner}},
			want: `{"type":"user-left","data":{"userId":"u1","user":{"userId":"u1","name":"A","role":"learner","isActive":false,"cursor":null,"joinedAt":"0001-01-01T00:00:00Z"}}}`,
		},
		{
			name: "user-left in full presence keeps an empty list",
			typ:  protocol.TypeUserLeft,
			data: protocol.UserLeft{UserID: "u1", User: protocol.Participant{UserID: "u1"}, Participants: &[]protocol.Participant{}},
			want: `{"type":"user-left","data":{"userId":"u1","user":{"userId":"u1","name":"","role":"","isActive":false,"cursor":null,"joinedAt":"0001-01-01T00:00:00Z"},"participants":[]}}`,
		},
		{
			name: "broadcast event keeps its raw payload",
			typ:  protocol.TypeBroadcast,
			data: protocol.BroadcastEvent{Event: "e", From: protocol.FromServer, Payload: json.RawMessage(`{"x":[1,null]}`), Offset: 9, Ts: 1700000000000},
			want: `{"type":"broadcast","data":{"event":"e","from":"server","payload":{"x":[1,null]},"offset":9,"ts":1700000000000}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := protocol.Encode(tt.typ, tt.ref, tt.data)
			if err != nil {
				t.Fatalf("Encode error = %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("Encode =\n%s\nwant\n%s", got, tt.want)
			}
			var env protocol.Envelope
			if err := json.Unmarshal(got, &env); err != nil {
				t.Fatalf("the encoding is not JSON: %v", err)
			}
			if env.Type != tt.typ || env.Ref != tt.ref {
				t.Errorf("round trip type, ref = %q, %q; want %q, %q", env.Type, env.Ref, tt.typ, tt.ref)
			}
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(got, &raw); err != nil {
				t.Fatal(err)
			}
			if _, ok := raw["ref"]; ok != (tt.ref != "") {
				t.Errorf("ref present = %v, want %v", ok, tt.ref != "")
			}
		})
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	joined := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	tests := []struct {
		name string
		typ  string
		data any
		into func() any // a pointer to a new value of data's type
	}{
		{
			name: "session-joined",
			typ:  protocol.TypeSessionJoined,
			data: &protocol.SessionJoined{
				SessionID: "s1", SelfID: "u1", Epoch: "e1", Offset: 12, Recovered: true,
				Participants: []protocol.Participant{
					{UserID: "u1", Name: "Ada", Role: protocol.RoleInstructor, Color: "#f00", IsActive: true, JoinedAt: joined},
					{UserID: "u2", Name: "Bo", Role: protocol.RoleLearner, Cursor: &protocol.Cursor{Line: 1, Column: 2, File: "f"}, JoinedAt: joined.Add(time.Second)},
				},
			},
			into: func() any { return new(protocol.SessionJoined) },
		},
		{
			name: "user-joined",
			typ:  protocol.TypeUserJoined,
			data: &protocol.UserJoined{User: protocol.Participant{UserID: "u3", Name: "Cy", Role: protocol.RoleLearner, IsActive: true, JoinedAt: joined}},
			into: func() any { return new(protocol.UserJoined) },
		},
		{
			name: "user-activity-changed",
			typ:  protocol.TypeUserActivityChanged,
			data: &protocol.UserActivityChanged{UserID: "u1", IsActive: false},
			into: func() any { return new(protocol.UserActivityChanged) },
		},
		{
			name: "error",
			typ:  protocol.TypeError,
			data: &protocol.ErrorPayload{Code: protocol.CodeSessionFull, Message: "full"},
			into: func() any { return new(protocol.ErrorPayload) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := protocol.Encode(tt.typ, "", tt.data)
			if err != nil {
				t.Fatal(err)
			}
			var env protocol.Envelope
			if err := json.Unmarshal(b, &env); err != nil {
				t.Fatal(err)
			}
			if env.Type != tt.typ {
				t.Errorf("Type = %q, want %q", env.Type, tt.typ)
			}
			if bytes.Contains(b, []byte(`"ref"`)) {
				t.Errorf("empty ref not left out: %s", b)
			}
			got := tt.into()
			if err := json.Unmarshal(env.Data, got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.data) {
				t.Errorf("round trip = %+v, want %+v", got, tt.data)
			}
		})
	}
}

func TestEncodeUnencodable(t *testing.T) {
	_, err := protocol.Encode(protocol.TypeAck, "", map[string]any{"c": make(chan int)})
	if err == nil {
		t.Fatal("Encode of a channel succeeded")
	}
	if !strings.Contains(err.Error(), protocol.TypeAck) {
		t.Errorf("error %q does not name the type", err)
	}
}

func TestEncodeError(t *testing.T) {
	tests := []struct {
		name string
		ref  string
		err  error
		want protocol.ErrorPayload
	}{
		{
			name: "protocol error with ref",
			ref:  "7",
			err:  protocol.Errorf(protocol.CodeNotInSession, "cursor-update needs a joined session"),
			want: protocol.ErrorPayload{Code: protocol.CodeNotInSession, Message: "cursor-update needs a joined session"},
		},
		{
			name: "protocol error without ref",
			err:  &protocol.Error{Code: protocol.CodeRateLimited, Message: "slow down"},
			want: protocol.ErrorPayload{Code: protocol.CodeRateLimited, Message: "slow down"},
		},
		{
			name: "other error does not leak its text",
			ref:  "8",
			err:  errors.New("dial redis 10.0.0.7:6379: password secret-hunter2 rejected"),
			want: protocol.ErrorPayload{Code: protocol.CodeInternal, Message: "internal error"},
		},
		{
			name: "nil error is internal",
			err:  nil,
			want: protocol.ErrorPayload{Code: protocol.CodeInternal, Message: "internal error"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := protocol.EncodeError(tt.ref, tt.err)
			var env protocol.Envelope
			if err := json.Unmarshal(b, &env); err != nil {
				t.Fatalf("EncodeError wrote %s: %v", b, err)
			}
			if env.Type != protocol.TypeError {
				t.Errorf("Type = %q, want %q", env.Type, protocol.TypeError)
			}
			if env.Ref != tt.ref {
				t.Errorf("Ref = %q, want %q", env.Ref, tt.ref)
			}
			var got protocol.ErrorPayload
			if err := json.Unmarshal(env.Data, &got); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("payload = %+v, want %+v", got, tt.want)
			}
			if tt.err != nil && got.Code == protocol.CodeInternal && strings.Contains(string(b), "secret") {
				t.Errorf("internal error leaks its text: %s", b)
			}
		})
	}
}

func TestError(t *testing.T) {
	err := protocol.Errorf(protocol.CodeBadRequest, "data.%s is required", "line")
	if err.Code != protocol.CodeBadRequest || err.Message != "data.line is required" {
		t.Errorf("Errorf = %+v", err)
	}
	if got, want := err.Error(), "bad_request: data.line is required"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestStatusCodeFinal(t *testing.T) {
	tests := []struct {
		code  protocol.StatusCode
		value int // the number on the wire
		final bool
	}{
		{protocol.CloseNormal, 1000, true},
		{protocol.CloseGoingAway, 1001, false},
		{protocol.CloseUnsupported, 1003, true},
		{protocol.CloseAbnormal, 1006, false},
		{protocol.ClosePolicy, 1008, true},
		{protocol.CloseTooBig, 1009, false},
		{protocol.CloseInternal, 1011, false},
		{protocol.CloseSlowConsumer, 1013, false},
		{protocol.CloseTokenExpired, 4001, true},
		{protocol.CloseRemovedByAPI, 4003, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.value), func(t *testing.T) {
			if int(tt.code) != tt.value {
				t.Errorf("constant = %d, want %d", int(tt.code), tt.value)
			}
			if got := protocol.StatusCode(tt.value).Final(); got != tt.final {
				t.Errorf("StatusCode(%d).Final() = %v, want %v", tt.value, got, tt.final)
			}
		})
	}
}

// Encode does not HTML-escape (finding 3 of issue 13: a payload of '<'
// grew six times): a broadcast of '<', '>' and '&' keeps its size, in a
// payload, an event and a name, and it round-trips.
func TestEncodeKeepsSize(t *testing.T) {
	payload := strings.Repeat("<>&", 1000)
	m, err := protocol.Decode([]byte(`{"type":"broadcast","data":{"event":"<b>","payload":"` + payload + `"}}`))
	if err != nil {
		t.Fatal(err)
	}
	b := m.Payload.(*protocol.Broadcast)
	out, err := protocol.Encode(protocol.TypeBroadcast, "", protocol.BroadcastEvent{Event: b.Event, From: "a&b", Payload: b.Payload})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), `\u003c`) || strings.Contains(string(out), `\u0026`) || len(out) > len(payload)+100 {
		t.Errorf("encoded to %d bytes for a payload of %d: %.80s…", len(out), len(payload), out)
	}
	var ev protocol.BroadcastEvent
	if err := json.Unmarshal(out, &struct {
		Data *protocol.BroadcastEvent `json:"data"`
	}{&ev}); err != nil || ev.Event != "<b>" || ev.From != "a&b" || string(ev.Payload) != `"`+payload+`"` {
		t.Errorf("round trip: %+v, %v", ev, err)
	}
	// Two encodings share no bytes (Marshal's buffers are pooled).
	again, _ := protocol.Encode(protocol.TypeAck, "", protocol.Ack{Offset: 1})
	if !strings.Contains(string(out), payload) || string(again) != `{"type":"ack","data":{"offset":1}}` {
		t.Errorf("encodings interfere: %.40s… / %s", out, again)
	}
}
