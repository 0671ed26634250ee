package hub

// This file runs on the goroutines of the server API's requests; the
// closures it hands to Hub.call (apiSessions, localDirectory) run on the
// run loop, which call waits for.

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sessionhub/sessionhub/protocol"
)

// The server API, for the platform's back end. Every route needs
// Authorization: Bearer <Options.APIKey>; without a configured key the
// routes are not registered (404). Answers are JSON, read from the hub's
// state through its run loop (no locks on its maps); errors carry
// {"error": {"code", "message"}}. The sessions are read and changed
// through directory: this node's run loop, or Redis in a cluster.
//
// A key shorter than MinAPIKeyBytes leaves the API off (New logs why).
func (h *Hub) apiRoutes(mux *http.ServeMux) {
	if len(h.opts.APIKey) < MinAPIKeyBytes {
		return
	}
	mux.Handle("GET /api/sessions", h.apiAuth(h.apiSessions))
	mux.Handle("GET /api/sessions/{id}", h.apiAuth(h.apiSession))
	mux.Handle("POST /api/sessions/{id}/broadcast", h.apiAuth(h.apiBroadcast))
	mux.Handle("DELETE /api/sessions/{id}/participants/{userId}", h.apiAuth(h.apiRemove))
	mux.Handle("/api/", h.apiAuth(func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusNotFound, "not_found", "no route "+r.Method+" "+r.URL.Path)
	}))
}

// MinAPIKeyBytes is the shortest Options.APIKey the hub takes.
const MinAPIKeyBytes = 16

// apiStatus records the status of an API answer for its log line.
type apiStatus struct {
	http.ResponseWriter
	status int
}

func (w *apiStatus) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *apiStatus) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// apiAuth checks the API key in constant time, and logs every call: its
// method, path, status and remote address, never the key.
func (h *Hub) apiAuth(next http.HandlerFunc) http.Handler {
	want := []byte(h.opts.APIKey)
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w := &apiStatus{ResponseWriter: rw}
		defer func() {
			h.log.Info("api", "method", r.Method, "path", r.URL.EscapedPath(), "status", w.status,
				"remote", r.RemoteAddr, "duration", time.Since(start).Round(time.Microsecond))
		}()
		scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(key), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sessionhub"`)
			apiError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong API key")
			return
		}
		next(w, r)
	})
}

// directory is where the server API reads and changes sessions: this
// node's run loop on a single node (localDirectory), Redis in a cluster
// (redisDirectory, cluster_api.go), so that every node answers for the
// whole cluster. Its methods run on the API's goroutines. An error is
// errStopping when the hub has stopped, errBadPayload for a broadcast
// that cannot be encoded on a single node, else Redis's.
type directory interface {
	// participants lists session id's participants; found is false when
	// it has none.
	participants(ctx context.Context, id string) (list []protocol.Participant, found bool, err error)
	// broadcast sends a server broadcast to session id and returns its
	// offset; found is false when the session has no participant.
	broadcast(ctx context.Context, id string, b *protocol.Broadcast) (off int64, found bool, err error)
	// remove takes userID out of session id at once (its connections
	// closed with 4003); found is false when the user was not there.
	remove(ctx context.Context, id, userID string) (found bool, err error)
}

var (
	// errStopping: the hub has stopped, and its run loop answers no more.
	errStopping = errors.New("hub: the hub is stopping")
	// errBadPayload: a broadcast's payload could not be encoded.
	errBadPayload = errors.New("hub: payload is not valid JSON")
)

// localDirectory is a single node's directory: its run loop's rooms, read
// and changed through Hub.call.
type localDirectory struct{ h *Hub }

var _ directory = localDirectory{}

func (d localDirectory) participants(_ context.Context, id string) (list []protocol.Participant, found bool, err error) {
	if !d.h.call(func() {
		if rm := d.h.rooms[id]; rm != nil {
			found, list = true, rm.s.Wire()
		}
	}) {
		return nil, false, errStopping
	}
	return list, found, nil
}

func (d localDirectory) broadcast(_ context.Context, id string, b *protocol.Broadcast) (off int64, found bool, err error) {
	if !d.h.call(func() {
		if rm := d.h.rooms[id]; rm != nil {
			found = true
			off, err = d.h.publishLocal(rm, protocol.FromServer, nil, b, time.Now())
		}
	}) {
		return 0, false, errStopping
	}
	if err != nil {
		err = fmt.Errorf("%w: %w", errBadPayload, err)
	}
	return off, found, err
}

func (d localDirectory) remove(_ context.Context, id, userID string) (found bool, err error) {
	if !d.h.call(func() { found = d.h.remove(id, userID, time.Now(), true) }) {
		return false, errStopping
	}
	return found, nil
}

// apiFailed answers a request whose directory call failed: 503 when the
// hub is stopping, else 503 for Redis (apiRedisError).
func (h *Hub) apiFailed(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errStopping) {
		apiError(w, http.StatusServiceUnavailable, "unavailable", "the hub is stopping")
		return
	}
	h.apiRedisError(w, r, err)
}

// apiCall runs f on the hub's run loop; if the hub has stopped it answers
// 503 and reports false.
func (h *Hub) apiCall(w http.ResponseWriter, f func()) bool {
	if h.call(f) {
		return true
	}
	apiError(w, http.StatusServiceUnavailable, "unavailable", "the hub is stopping")
	return false
}

func (h *Hub) apiSessions(w http.ResponseWriter, _ *http.Request) {
	type entry struct {
		SessionID    string `json:"sessionId"`
		Participants int    `json:"participants"`
	}
	list := []entry{}
	if !h.apiCall(w, func() {
		for id, r := range h.rooms {
			list = append(list, entry{id, r.s.Len()})
		}
	}) {
		return
	}
	slices.SortFunc(list, func(a, b entry) int { return strings.Compare(a.SessionID, b.SessionID) })
	apiJSON(w, http.StatusOK, map[string]any{"sessions": list})
}

func (h *Hub) apiSession(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !protocol.ValidSessionID(id) {
		apiError(w, http.StatusNotFound, "not_found", "no such session")
		return
	}
	list, found, err := h.directory.participants(r.Context(), id)
	if err != nil {
		h.apiFailed(w, r, err)
		return
	}
	if !found {
		apiError(w, http.StatusNotFound, "not_found", "no session "+id)
		return
	}
	apiJSON(w, http.StatusOK, map[string]any{"sessionId": id, "participants": list})
}

func (h *Hub) apiBroadcast(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !protocol.ValidSessionID(id) {
		apiError(w, http.StatusNotFound, "not_found", "no such session")
		return
	}
	var body struct {
		Event   *string         `json:"event"`
		Payload json.RawMessage `json:"payload"`
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.opts.MaxMessageBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			apiError(w, http.StatusRequestEntityTooLarge, "bad_request", "body over the message limit")
			return
		}
		apiError(w, http.StatusBadRequest, "bad_request", "body could not be read")
		return
	}
	if !utf8.Valid(raw) {
		// Browsers fail a connection on a frame that is not UTF-8.
		apiError(w, http.StatusBadRequest, "bad_request", "body is not valid UTF-8")
		return
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	err = dec.Decode(&body)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errors.New("data after the JSON object")
	}
	if err != nil {
		apiError(w, http.StatusBadRequest, "bad_request", "body must be a JSON object {event, payload}")
		return
	}
	if body.Event == nil || *body.Event == "" || utf8.RuneCountInString(*body.Event) > protocol.MaxEventChars || !protocol.ValidText(*body.Event) {
		apiError(w, http.StatusBadRequest, "bad_request", "event must be 1 to 64 characters, no control character")
		return
	}
	if body.Payload == nil {
		body.Payload = json.RawMessage("null")
	}
	b := &protocol.Broadcast{Event: *body.Event, Payload: body.Payload, To: protocol.ToAll}
	off, found, err := h.directory.broadcast(r.Context(), id, b)
	switch {
	case errors.Is(err, errBadPayload):
		apiError(w, http.StatusBadRequest, "bad_request", "payload is not valid JSON")
	case err != nil:
		h.apiFailed(w, r, err)
	case !found:
		apiError(w, http.StatusNotFound, "not_found", "no session "+id)
	default:
		apiJSON(w, http.StatusAccepted, map[string]int64{"offset": off})
	}
}

// apiRemove disconnects a user from a session: its connections there are
// closed with 4003 and it leaves at once, with user-left to the others.
func (h *Hub) apiRemove(w http.ResponseWriter, r *http.Request) {
	id, user := r.PathValue("id"), r.PathValue("userId")
	if !protocol.ValidSessionID(id) || user == "" || len(user) > protocol.MaxUserIDBytes || !protocol.ValidText(user) {
		// No such session or user can exist: nothing to ask Redis.
		apiError(w, http.StatusNotFound, "not_found", "no such user in such a session")
		return
	}
	found, err := h.directory.remove(r.Context(), id, user)
	if err != nil {
		h.apiFailed(w, r, err)
		return
	}
	if !found {
		apiError(w, http.StatusNotFound, "not_found", "no user "+user+" in session "+id)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// apiRedisError answers a request that needed Redis when Redis failed:
// 503 with a fixed message (a backend's error text stays in the log).
func (h *Hub) apiRedisError(w http.ResponseWriter, r *http.Request, err error) {
	h.log.Warn("api: redis failed", "method", r.Method, "path", r.URL.EscapedPath(), "err", err)
	apiError(w, http.StatusServiceUnavailable, "unavailable", "the cluster's Redis did not answer")
}

func apiJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func apiError(w http.ResponseWriter, status int, code, message string) {
	apiJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": message}})
}
