package hub_test

// The server API (contract: HTTP) over a live hub: the routes' answers and
// their JSON shapes, a server broadcast's delivery and offset, removing a
// user (4003 to each of its connections, user-left at once), the API key,
// and the API being off without one.

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/protocol"
)

const apiKey = "api-test-key-0123456789"

// apiDo sends an API request with key as its Bearer token (none if empty)
// and returns the status, the Content-Type and the body.
func apiDo(t testing.TB, s *server, method, path, key string, body []byte) (int, string, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, s.ts.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

// apiAnswer is apiDo that checks the status and that the answer is JSON,
// and returns its body.
func apiAnswer(t testing.TB, s *server, method, path, key string, body []byte, want int) []byte {
	t.Helper()
	status, ct, b := apiDo(t, s, method, path, key, body)
	if status != want {
		t.Fatalf("%s %s = %d %s, want %d", method, path, status, b, want)
	}
	if !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	return b
}

// decodeStrict decodes the JSON b into v, refusing fields v does not have.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// apiJSON is apiDo that checks the status and decodes a JSON answer into v.
func apiJSON(t testing.TB, s *server, method, path string, body []byte, want int, v any) {
	t.Helper()
	b := apiAnswer(t, s, method, path, apiKey, body, want)
	if v != nil {
		if err := decodeStrict(b, v); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}

// apiErr is the error body of the API.
type apiErr struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// apiExpectError checks that a request gets want with a JSON error body
// {"error": {"code", "message"}} and returns the code.
func apiExpectError(t testing.TB, s *server, method, path, key string, body []byte, want int) string {
	t.Helper()
	b := apiAnswer(t, s, method, path, key, body, want)
	var e apiErr
	if err := decodeStrict(b, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Errorf("%s %s: error body %s, want {\"error\":{\"code\",\"message\"}} (%v)", method, path, b, err)
	}
	return e.Error.Code
}

type apiSessionsList struct {
	Sessions []struct {
		SessionID    string `json:"sessionId"`
		Participants int    `json:"participants"`
	} `json:"sessions"`
}

type apiSessionInfo struct {
	SessionID    string                 `json:"sessionId"`
	Participants []protocol.Participant `json:"participants"`
}

// GET /api/sessions lists the sessions with their counts; GET
// /api/sessions/{id} one session's participants, or 404.
func TestAPISessions(t *testing.T) {
	s := startServer(t, &hub.Options{APIKey: apiKey})

	var list apiSessionsList
	apiJSON(t, s, "GET", "/api/sessions", nil, http.StatusOK, &list)
	if list.Sessions == nil || len(list.Sessions) != 0 {
		t.Errorf("no sessions: got %+v, want an empty list", list)
	}

	alice, bob, bob2, carol := dial(t, s, nil), dial(t, s, nil), dial(t, s, nil), dial(t, s, nil)
	alice.join("s1", "alice", "Alice", protocol.RoleInstructor)
	bob.join("s1", "bob", "Bob", "")
	bob2.join("s1", "bob", "Bob", "") // a second tab: one participant
	carol.join("s2", "carol", "Carol", "")

	apiJSON(t, s, "GET", "/api/sessions", nil, http.StatusOK, &list)
	got := map[string]int{}
	for _, e := range list.Sessions {
		got[e.SessionID] = e.Participants
	}
	if len(got) != 2 || got["s1"] != 2 || got["s2"] != 1 {
		t.Errorf("sessions = %+v, want s1: 2, s2: 1", list.Sessions)
	}

	var one apiSessionInfo
	apiJSON(t, s, "GET", "/api/sessions/s1", nil, http.StatusOK, &one)
	if one.SessionID != "s1" || !sameIDs(one.Participants, "alice", "bob") {
		t.Errorf("s1 = %+v, want alice and bob", one)
	}
	if p := one.Participants[0]; p.Name != "Alice" || p.Role != protocol.RoleInstructor || !p.IsActive || p.JoinedAt.IsZero() {
		t.Errorf("alice = %+v", p)
	}
	if code := apiExpectError(t, s, "GET", "/api/sessions/nope", apiKey, nil, http.StatusNotFound); code != "not_found" {
		t.Errorf("code %q, want not_found", code)
	}
}

// POST /api/sessions/{id}/broadcast delivers {event, payload} from
// "server" to everyone in the session with the session's next offset.
func TestAPIBroadcast(t *testing.T) {
	s := startServer(t, &hub.Options{APIKey: apiKey, MaxMessageBytes: 1024})
	alice, bob := dial(t, s, nil), dial(t, s, nil)
	alice.join("b1", "alice", "Alice", protocol.RoleInstructor)
	bob.join("b1", "bob", "Bob", "")
	alice.send(protocol.TypeBroadcast, map[string]any{"event": "first", "to": "learners"}, "a1")
	var ack protocol.Ack
	alice.skipUntil(protocol.TypeAck, &ack)
	bob.skipUntil(protocol.TypeBroadcast, nil)

	var res struct {
		Offset int64 `json:"offset"`
	}
	apiJSON(t, s, "POST", "/api/sessions/b1/broadcast", []byte(`{"event":"announce","payload":{"text":"hi","n":[1,2]}}`),
		http.StatusAccepted, &res)
	if res.Offset != ack.Offset+1 {
		t.Errorf("offset %d, want %d", res.Offset, ack.Offset+1)
	}
	for _, p := range []*peer{alice, bob} {
		var ev protocol.BroadcastEvent
		p.skipUntil(protocol.TypeBroadcast, &ev)
		if ev.Event != "announce" || ev.From != protocol.FromServer || ev.Offset != res.Offset ||
			!jsonEqual(ev.Payload, []byte(`{"text":"hi","n":[1,2]}`)) || ev.Ts == 0 {
			t.Errorf("broadcast %+v (payload %s)", ev, ev.Payload)
		}
	}
	// The next client broadcast gets the next offset.
	bob.send(protocol.TypeBroadcast, map[string]any{"event": "after"}, "b")
	var ack2 protocol.Ack
	bob.skipUntil(protocol.TypeAck, &ack2)
	var ev protocol.BroadcastEvent
	alice.skipUntil(protocol.TypeBroadcast, &ev)
	if ack2.Offset != res.Offset+1 || ev.Offset != res.Offset+1 || ev.From != "bob" {
		t.Errorf("next broadcast: ack %d, event %+v; want offset %d", ack2.Offset, ev, res.Offset+1)
	}
	// A payload may be left out.
	apiJSON(t, s, "POST", "/api/sessions/b1/broadcast", []byte(`{"event":"bare"}`), http.StatusAccepted, &res)
	for _, p := range []*peer{alice, bob} {
		p.skipUntil(protocol.TypeBroadcast, &ev)
		if ev.Event != "bare" || string(ev.Payload) != "null" || ev.Offset != res.Offset {
			t.Errorf("bare broadcast %+v payload %s", ev, ev.Payload)
		}
	}

	// Refusals.
	apiExpectError(t, s, "POST", "/api/sessions/none/broadcast", apiKey, []byte(`{"event":"x"}`), http.StatusNotFound)
	for _, bad := range []string{``, `not json`, `[]`, `"event"`, `{"event":1}`, `{"payload":{}}`, `{"event":""}`,
		`{"event":"` + strings.Repeat("e", 65) + `"}`, `{"event":"x","payload":}`} {
		if code := apiExpectError(t, s, "POST", "/api/sessions/b1/broadcast", apiKey, []byte(bad), http.StatusBadRequest); code != "bad_request" {
			t.Errorf("%q: code %q, want bad_request", bad, code)
		}
	}
	huge := []byte(`{"event":"big","payload":"` + strings.Repeat("x", 4096) + `"}`)
	apiExpectError(t, s, "POST", "/api/sessions/b1/broadcast", apiKey, huge, http.StatusRequestEntityTooLarge)
	// None of the refused ones was delivered or took an offset.
	for _, p := range []*peer{alice, bob} {
		p.quiet("after refused API broadcasts", protocol.TypeBroadcast)
	}
	bob.send(protocol.TypeBroadcast, map[string]any{"event": "last"}, "l")
	bob.skipUntil(protocol.TypeAck, &ack2)
	if ack2.Offset != res.Offset+1 {
		t.Errorf("offset after refusals = %d, want %d", ack2.Offset, res.Offset+1)
	}
}

// DELETE /api/sessions/{id}/participants/{userId} closes each of that
// user's connections with 4003; the others see it leave at once, without
// the leave grace.
func TestAPIRemove(t *testing.T) {
	s := startServer(t, &hub.Options{APIKey: apiKey, LeaveGrace: 30 * time.Second})
	tab1, tab2, bob, carol := dial(t, s, nil), dial(t, s, nil), dial(t, s, nil), dial(t, s, nil)
	tab1.join("r1", "alice", "Alice", "")
	tab2.join("r1", "alice", "Alice", "")
	bob.join("r1", "bob", "Bob", "")
	carol.join("r2", "alice", "Alice", "") // the same user in another session stays
	bob.sync()

	start := time.Now()
	status, _, body := apiDo(t, s, "DELETE", "/api/sessions/r1/participants/alice", apiKey, nil)
	if status != http.StatusNoContent || len(body) != 0 {
		t.Fatalf("DELETE = %d %q, want 204 with no body", status, body)
	}
	for i, p := range []*peer{tab1, tab2} {
		if code := p.closed(); code != websocket.StatusCode(protocol.CloseRemovedByAPI) {
			t.Errorf("tab %d closed with %v, want 4003", i+1, code)
		}
	}
	// At once: within the wait of skipUntilMatch, far under the 30 s grace
	// that a removal must not wait for (however busy the machine).
	m := bob.skipUntilMatch("user-left of alice", isUserLeft("alice"))
	t.Logf("user-left %v after the DELETE", time.Since(start))
	var ul protocol.UserLeft
	decode(t, m, &ul)
	if ul.Participants == nil || !sameIDs(*ul.Participants, "bob") {
		t.Errorf("user-left participants %+v, want bob", ul.Participants)
	}
	bob.quiet("after the removal", protocol.TypeUserLeft, protocol.TypeUserJoined)

	var one apiSessionInfo
	apiJSON(t, s, "GET", "/api/sessions/r1", nil, http.StatusOK, &one)
	if !sameIDs(one.Participants, "bob") {
		t.Errorf("r1 = %v, want bob", ids(one.Participants))
	}
	apiJSON(t, s, "GET", "/api/sessions/r2", nil, http.StatusOK, &one)
	if !sameIDs(one.Participants, "alice") {
		t.Errorf("r2 = %v, want alice", ids(one.Participants))
	}
	carol.sync() // its connection was not touched

	apiExpectError(t, s, "DELETE", "/api/sessions/r1/participants/alice", apiKey, nil, http.StatusNotFound)
	apiExpectError(t, s, "DELETE", "/api/sessions/nope/participants/bob", apiKey, nil, http.StatusNotFound)
}

// apiRoutes is one request per API route.
var apiRoutes = []struct{ method, path, body string }{
	{"GET", "/api/sessions", ""},
	{"GET", "/api/sessions/k1", ""},
	{"POST", "/api/sessions/k1/broadcast", `{"event":"x"}`},
	{"DELETE", "/api/sessions/k1/participants/u1", ""},
}

// A missing or wrong key gets 401 with a JSON error, on every route, and
// does nothing.
func TestAPIAuth(t *testing.T) {
	s := startServer(t, &hub.Options{APIKey: apiKey})
	u := dial(t, s, nil)
	u.join("k1", "u1", "U1", "")
	for _, r := range apiRoutes {
		var body []byte
		if r.body != "" {
			body = []byte(r.body)
		}
		for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer wrong", "Bearer " + apiKey[:len(apiKey)-1],
			"Bearer " + apiKey + "x", "Basic " + apiKey, apiKey, "Bearer  " + apiKey} {
			req, err := http.NewRequest(r.method, s.ts.URL+r.path, bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var e apiErr
			if resp.StatusCode != http.StatusUnauthorized || json.Unmarshal(b, &e) != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Errorf("%s %s with %q: %d %s, want 401 with an error body", r.method, r.path, auth, resp.StatusCode, b)
			}
			if strings.Contains(string(b), apiKey[:8]) {
				t.Errorf("%s %s: the answer quotes the key: %s", r.method, r.path, b)
			}
		}
	}
	u.quiet("after unauthorized API calls", protocol.TypeBroadcast)
	var one apiSessionInfo
	apiJSON(t, s, "GET", "/api/sessions/k1", nil, http.StatusOK, &one)
	if !sameIDs(one.Participants, "u1") {
		t.Errorf("k1 = %v, want u1", ids(one.Participants))
	}
	// The scheme is case-insensitive.
	status, _, _ := apiDo(t, s, "GET", "/api/sessions", "", nil)
	if status != http.StatusUnauthorized {
		t.Errorf("no key: %d", status)
	}
	req, _ := http.NewRequest("GET", s.ts.URL+"/api/sessions", nil)
	req.Header.Set("Authorization", "bearer "+apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("lower-case bearer: %d, want 200", resp.StatusCode)
	}
}

// Without an API key every /api route answers 404, with or without a key.
func TestAPIOff(t *testing.T) {
	s := startServer(t, nil)
	u := dial(t, s, nil)
	u.join("k1", "u1", "U1", "")
	for _, r := range apiRoutes {
		for _, key := range []string{"", apiKey} {
			var body []byte
			if r.body != "" {
				body = []byte(r.body)
			}
			if status, _, b := apiDo(t, s, r.method, r.path, key, body); status != http.StatusNotFound {
				t.Errorf("%s %s (key %q) = %d %s, want 404", r.method, r.path, key, status, b)
			}
		}
	}
	u.quiet("with the API off", protocol.TypeBroadcast)
	u.sync()
}

// A body with data after its JSON object is refused, and an unknown route
// under /api answers with the JSON error shape.
func TestAPIStrictness(t *testing.T) {
	s := startServer(t, &hub.Options{APIKey: apiKey})
	p := dial(t, s, nil)
	p.join("strict", "u1", "U1", "")
	if code := apiExpectError(t, s, "POST", "/api/sessions/strict/broadcast", apiKey,
		[]byte(`{"event":"x"} junk`), 400); code != "bad_request" {
		t.Errorf("trailing data: code %q, want bad_request", code)
	}
	if code := apiExpectError(t, s, "GET", "/api/nothing/here", apiKey, nil, 404); code != "not_found" {
		t.Errorf("unknown route: code %q, want not_found", code)
	}
	apiExpectError(t, s, "GET", "/api/nothing/here", "", nil, 401)
	// The refused broadcast used no offset.
	var ok struct {
		Offset int64 `json:"offset"`
	}
	apiJSON(t, s, "POST", "/api/sessions/strict/broadcast", []byte(`{"event":"x"}`), 202, &ok)
	if ok.Offset != 1 {
		t.Errorf("offset = %d, want 1", ok.Offset)
	}
}
