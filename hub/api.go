package hub

import (
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
func (h *Hub) apiRoutes(mux *http.ServeMux) {
	if h.opts.APIKey == "" {
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

// apiAuth checks the API key in constant time.
func (h *Hub) apiAuth(next http.HandlerFunc) http.Handler {
	want := []byte(h.opts.APIKey)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	var list []protocol.Participant
	found := false
	if h.cl != nil {
		ctx, cancel := context.WithTimeout(r.Context(), apiRedisTimeout)
		defer cancel()
		var err error
		if list, err = h.cl.participants(ctx, id); err != nil {
			apiRedisError(w, err)
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
	var body struct {
		Event   *string         `json:"event"`
		Payload json.RawMessage `json:"payload"`
	}
	r.Body = http.MaxBytesReader(w, r.Body, h.opts.MaxMessageBytes)
	dec := json.NewDecoder(r.Body)
	err := dec.Decode(&body)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errors.New("data after the JSON object")
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			apiError(w, http.StatusRequestEntityTooLarge, "bad_request", "body over the message limit")
			return
		}
		apiError(w, http.StatusBadRequest, "bad_request", "body must be a JSON object {event, payload}")
		return
	}
	if body.Event == nil || *body.Event == "" || utf8.RuneCountInString(*body.Event) > protocol.MaxEventChars {
		apiError(w, http.StatusBadRequest, "bad_request", "event must be 1 to 64 characters")
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
			apiRedisError(w, rerr)
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
	found := false
	if h.cl != nil {
		ctx, cancel := context.WithTimeout(r.Context(), apiRedisTimeout)
		defer cancel()
		var err error
		if found, err = h.cl.remove(ctx, id, user); err != nil {
			apiRedisError(w, err)
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

// apiRedisError answers a request that needed Redis when Redis failed.
func apiRedisError(w http.ResponseWriter, err error) {
	apiError(w, http.StatusServiceUnavailable, "unavailable", "the cluster's Redis did not answer: "+err.Error())
}

func apiJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func apiError(w http.ResponseWriter, status int, code, message string) {
	apiJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": message}})
}
