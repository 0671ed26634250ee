package hub_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/protocol"
)

// openAPIDoc is the OpenAPI 3.1 description of hubd's HTTP routes.
const openAPIDoc = "../api/openapi.yaml"

// textDecoder reads a body as a string, for the content types kin-openapi
// has no decoder for.
func textDecoder(r io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	b, err := io.ReadAll(r)
	return string(b), err
}

func init() {
	for _, ct := range []string{"text/javascript", "application/typescript", "text/html", "text/event-stream"} {
		openapi3filter.RegisterBodyDecoder(ct, textDecoder)
	}
}

// Real requests to a real hub, each answer validated against
// api/openapi.yaml: its status must be one the document lists for the
// operation, its headers and body must match the schema. Every operation
// of the document is exercised.
func TestOpenAPI(t *testing.T) {
	ctx := context.Background()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(openAPIDoc)
	if err != nil {
		t.Fatal(err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Errorf("openapi %s, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(ctx); err != nil {
		t.Fatalf("the document is not valid OpenAPI: %v", err)
	}

	const key = "openapi-test-key"
	s := startServer(t, &hub.Options{APIKey: key, AllowedOrigins: []string{"app.example.com"}})
	doc.Servers = openapi3.Servers{{URL: s.ts.URL}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}

	// A session with two participants, one with a cursor.
	a := dial(t, s, nil)
	a.join("class", "alice", "Alice", protocol.RoleInstructor)
	b := dial(t, s, nil)
	b.join("class", "bob", "Bob", protocol.RoleLearner)
	a.expect(protocol.TypeUserJoined, nil)
	b.send(protocol.TypeCursorUpdate, protocol.Cursor{Line: 3, Column: 4}, "")
	a.expect(protocol.TypeCursorMoved, nil)

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	hubJS, _ := http.Get(s.ts.URL + "/hub.js") // for its ETag
	hubJS.Body.Close()
	etag := hubJS.Header.Get("ETag")

	auth := "Bearer " + key
	tests := []struct {
		name         string
		method, path string
		header       []string
		body         string
		status       int
	}{
		{"healthz", "GET", "/healthz", nil, "", 200},
		{"readyz", "GET", "/readyz", nil, "", 200},
		{"metrics", "GET", "/metrics", nil, "", 200},
		{"demo page", "GET", "/", nil, "", 200},
		{"hub.js", "GET", "/hub.js", nil, "", 200},
		{"hub.js revalidated", "GET", "/hub.js", []string{"If-None-Match", etag}, "", 304},
		{"hub.d.ts", "GET", "/hub.d.ts", nil, "", 200},
		{"ws without an upgrade", "GET", "/ws", nil, "", 426},
		{"ws, a malformed handshake", "GET", "/ws", []string{"Connection", "Upgrade", "Upgrade", "websocket",
			"Sec-WebSocket-Version", "13"}, "", 400},
		{"ws from a foreign origin", "GET", "/ws", []string{"Origin", "https://evil.example", "Connection", "Upgrade",
			"Upgrade", "websocket", "Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}, "", 403},
		{"sse", "GET", "/sse", nil, "", 200},
		{"sse from a foreign origin", "GET", "/sse", []string{"Origin", "https://evil.example"}, "", 403},
		{"sse send", "POST", "/sse/send", []string{"Content-Type", "application/json"},
			`{"streamId":"{stream}","messages":[{"type":"ping","ref":"p1"}]}`, 202},
		{"sse send as text/plain", "POST", "/sse/send", []string{"Content-Type", "text/plain"},
			`{"streamId":"{stream}","messages":[{"type":"ping","ref":"p2"}]}`, 202},
		{"sse send, no such stream", "POST", "/sse/send", []string{"Content-Type", "application/json"},
			`{"streamId":"nope","messages":[{"type":"ping"}]}`, 404},
		{"sse send, bad body", "POST", "/sse/send", []string{"Content-Type", "application/json"},
			`{"streamId":"{stream}","messages":[]}`, 400},
		{"sse send, another type", "POST", "/sse/send", []string{"Content-Type", "application/xml"}, `<x/>`, 415},
		{"sse send, foreign origin", "POST", "/sse/send", []string{"Content-Type", "application/json", "Origin", "https://evil.example"},
			`{"streamId":"{stream}","messages":[{"type":"ping"}]}`, 403},
		{"sse send preflight", "OPTIONS", "/sse/send", []string{"Origin", "https://app.example.com",
			"Access-Control-Request-Method", "POST"}, "", 204},
		{"sse send close", "POST", "/sse/send", []string{"Content-Type", "application/json"},
			`{"streamId":"{stream}","close":1000}`, 202},
		{"sessions without a key", "GET", "/api/sessions", nil, "", 401},
		{"sessions with a wrong key", "GET", "/api/sessions", []string{"Authorization", "Bearer nope"}, "", 401},
		{"sessions", "GET", "/api/sessions", []string{"Authorization", auth}, "", 200},
		{"session", "GET", "/api/sessions/class", []string{"Authorization", auth}, "", 200},
		{"no session", "GET", "/api/sessions/none", []string{"Authorization", auth}, "", 404},
		{"broadcast", "POST", "/api/sessions/class/broadcast", []string{"Authorization", auth, "Content-Type", "application/json"},
			`{"event":"notice","payload":{"text":"hi"}}`, 202},
		{"broadcast without payload", "POST", "/api/sessions/class/broadcast", []string{"Authorization", auth, "Content-Type", "application/json"},
			`{"event":"ping"}`, 202},
		{"broadcast, bad body", "POST", "/api/sessions/class/broadcast", []string{"Authorization", auth, "Content-Type", "application/json"},
			`{"event":""}`, 400},
		{"broadcast, too large", "POST", "/api/sessions/class/broadcast", []string{"Authorization", auth, "Content-Type", "application/json"},
			`{"event":"big","payload":"` + strings.Repeat("x", 20000) + `"}`, 413},
		{"broadcast, no session", "POST", "/api/sessions/none/broadcast", []string{"Authorization", auth, "Content-Type", "application/json"},
			`{"event":"x"}`, 404},
		{"broadcast without a key", "POST", "/api/sessions/class/broadcast", []string{"Content-Type", "application/json"},
			`{"event":"x"}`, 401},
		{"remove", "DELETE", "/api/sessions/class/participants/bob", []string{"Authorization", auth}, "", 204},
		{"remove again", "DELETE", "/api/sessions/class/participants/bob", []string{"Authorization", auth}, "", 404},
		{"remove without a key", "DELETE", "/api/sessions/class/participants/alice", nil, "", 401},
	}
	exercised := map[string]bool{}
	stream := "" // the id of the stream GET /sse opened
	outer := t
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := strings.ReplaceAll(tt.body, "{stream}", stream)
			req, err := http.NewRequest(tt.method, s.ts.URL+tt.path, strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i+1 < len(tt.header); i += 2 {
				req.Header.Set(tt.header[i], tt.header[i+1])
			}
			route, params, err := router.FindRoute(req)
			if err != nil {
				t.Fatalf("%s %s is not in the document: %v", tt.method, tt.path, err)
			}
			exercised[route.Operation.OperationID] = true
			opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true,
				AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}
			in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
			if tt.status < 400 && tt.status != 0 {
				// The requests meant to succeed must be valid ones.
				vreq := req.Clone(ctx)
				vreq.Body = io.NopCloser(strings.NewReader(body))
				vin := *in
				vin.Request = vreq
				if err := openapi3filter.ValidateRequest(ctx, &vin); err != nil {
					t.Errorf("the request does not match the document: %v", err)
				}
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var got []byte
			if resp.Header.Get("Content-Type") == "text/event-stream" {
				// A stream does not end: its first event is the answer.
				br := bufio.NewReader(resp.Body)
				got, err = br.ReadBytes('}')
				if err == nil {
					var rest [2]byte
					_, err = io.ReadFull(br, rest[:])
					got = append(got, rest[:]...)
				}
				var open struct{ StreamID string }
				if err == nil {
					err = json.Unmarshal(got[bytes.IndexByte(got, '{'):bytes.LastIndexByte(got, '}')+1], &open)
				}
				stream = open.StreamID
				outer.Cleanup(func() { resp.Body.Close() }) // the sends below use it
			} else {
				got, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, got, tt.status)
			}
			out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode,
				Header: resp.Header, Options: opts}
			out.SetBodyBytes(got)
			if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
				t.Errorf("the answer (%d, %q) does not match the document: %v", resp.StatusCode, truncate(got), err)
			}
			if resp.StatusCode == http.StatusNotModified && resp.Header.Get("ETag") == "" {
				t.Error("304 without its ETag")
			}
		})
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if !exercised[op.OperationID] {
				t.Errorf("%s %s (%s) is never exercised", method, path, op.OperationID)
			}
		}
	}
}

func truncate(b []byte) string {
	if len(b) > 200 {
		return string(bytes.ToValidUTF8(b[:200], nil)) + "…"
	}
	return string(b)
}
