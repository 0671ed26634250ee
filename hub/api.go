package hub

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
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
// {"error": {"code", "message"}}.
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
	var list []protocol.Participant
	found := false
	if h.cl != nil {
		ctx, cancel := context.WithTimeout(r.Context(), apiRedisTimeout)
		defer cancel()
		var err error
		if list, err = h.cl.participants(ctx, id); err != nil {
			h.apiRedisError(w, r, err)
			return
		}
		found = len(list) > 0
	} else if !h.apiCall(w, func() {
		if rm := h.rooms[id]; rm != nil {
			found, list = true, rm.s.Wire()
		}
	}) {
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
	var (
		off   int64
		found bool
	)
	if h.cl != nil {
		ctx, cancel := context.WithTimeout(r.Context(), apiRedisTimeout)
		defer cancel()
		var rerr error
		if off, found, rerr = h.cl.broadcast(ctx, id, b, time.Now()); rerr != nil {
			h.apiRedisError(w, r, rerr)
			return
		}
	} else if !h.apiCall(w, func() {
		if rm := h.rooms[id]; rm != nil {
			found = true
			off, err = h.publishLocal(rm, protocol.FromServer, nil, b, time.Now())
		}
	}) {
		return
	}
	switch {
	case !found:
		apiError(w, http.StatusNotFound, "not_found", "no session "+id)
	case err != nil:
		apiError(w, http.StatusBadRequest, "bad_request", "payload is not valid JSON")
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
	found := false
	if h.cl != nil {
		ctx, cancel := context.WithTimeout(r.Context(), apiRedisTimeout)
		defer cancel()
		var err error
		if found, err = h.cl.remove(ctx, id, user); err != nil {
			h.apiRedisError(w, r, err)
			return
		}
	}
	if !h.apiCall(w, func() { found = h.remove(id, user, time.Now()) || found }) {
		return
	}
	if !found {
		apiError(w, http.StatusNotFound, "not_found", "no user "+user+" in session "+id)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// apiRedisTimeout bounds the Redis work of one API request in a cluster.
const apiRedisTimeout = 5 * time.Second

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
