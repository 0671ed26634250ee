package hub

// This file is the fallback transport (contract v1.2): a connection whose
// server messages come as Server-Sent Events (GET /sse) and whose client
// messages come in POSTs (POST /sse/send). A stream is a conn like a
// WebSocket's, with an sseTransport: the same send queue, writer, pings,
// rate limits and lifetimes.
//
// Goroutines: ServeSSE runs the stream's serving goroutine (net/http's
// handler goroutine, which must stay until the response ends) and reads
// nothing: it waits for the stream to end. The writer writes the events to
// the ResponseWriter while the handler waits. ServeSSESend runs on the
// POST's goroutine and hands the envelopes to the stream's conn.handle, one
// send at a time per stream (sendMu), as a WebSocket's reader would.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sessionhub/sessionhub/protocol"
)

const (
	// MaxSendMessages is the most envelopes one POST /sse/send may carry.
	MaxSendMessages = 32

	// sendOverhead is what a send's body may hold besides its envelopes:
	// the streamId, the keys, commas and whitespace.
	sendOverhead = 4 << 10

	// streamIDBytes is the random part of a stream id: 144 bits.
	streamIDBytes = 18

	// ssePath is where a stream's client POSTs its messages.
	ssePath = "/sse/send"
)

// sseTransport is an SSE stream: the writer writes its events to w (under
// wmu), its sends come in POSTs (ServeSSESend, under sendMu), and mu guards
// ended.
type sseTransport struct {
	id string
	w  http.ResponseWriter
	rc *http.ResponseController

	clientGone <-chan struct{} // the request's context: the client went away
	bye        chan struct{}   // closed by a send with close 1000
	byeOnce    sync.Once
	dropped    chan struct{} // closed by drop
	dropOnce   sync.Once

	// sendMu makes a stream's sends take turns: the reader's state of the
	// conn (rate limiters, cursor gate) is the sender's while it holds it.
	sendMu sync.Mutex
	// wmu is held by every write to w: the writer's, and ServeSSE's open
	// event, which is written once the stream can be found (a send may
	// follow it at once).
	wmu sync.Mutex

	mu    sync.Mutex
	ended bool // the handler is returning: w may no longer be used
}

func (*sseTransport) name() string { return "sse" }

// read waits for the stream to end: the client goes away, closes it with
// a send, or the server closes or drops it. Messages come in sends.
func (s *sseTransport) read(_ context.Context, c *conn) readEnd {
	select {
	case <-s.bye:
		return readEnd{end: true, clean: true, code: protocol.CloseNormal, why: "client closed"}
	case <-c.closing:
		return c.serverEnd()
	case <-s.clientGone:
		return readEnd{end: true, code: protocol.CloseAbnormal, why: "stream ended"}
	case <-s.dropped:
		return readEnd{end: true, code: protocol.CloseAbnormal, why: "connection lost"}
	}
}

// write sends first and what else is queued, one event each, in one
// write and one flush.
func (s *sseTransport) write(c *conn, first []byte) error {
	bp := framePool.Get().(*[]byte)
	b := appendEvent((*bp)[:0], "message", first)
	for n := len(c.send); n > 0; n-- {
		b = appendEvent(b, "message", <-c.send)
	}
	err := s.flush(b)
	if cap(b) <= maxPooledFrame {
		*bp = b
		framePool.Put(bp)
	}
	return err
}

// ssePing is the stream's ping: a comment, which EventSource ignores.
var ssePing = []byte(": ping\n\n")

// ping writes a comment; once it went through, the stream is alive (there
// is no pong to wait for): writes that stall for the ping timeout drop it.
func (s *sseTransport) ping(c *conn) error {
	if err := s.flush(ssePing); err != nil {
		return err
	}
	c.pong()
	return nil
}

// close sends the close event, within closeWait.
func (s *sseTransport) close(_ *conn, why closeReason) {
	data, _ := json.Marshal(struct {
		Code   protocol.StatusCode `json:"code"`
		Reason string              `json:"reason"`
	}{why.code, why.text})
	s.mu.Lock()
	if !s.ended {
		s.rc.SetWriteDeadline(time.Now().Add(closeWait))
	}
	s.mu.Unlock()
	s.flush(appendEvent(nil, "close", data))
}

// drop unblocks a stuck writer (a write deadline in the past) and ends
// read.
func (s *sseTransport) drop(*conn) {
	s.mu.Lock()
	if !s.ended {
		s.rc.SetWriteDeadline(time.Now())
	}
	s.mu.Unlock()
	s.dropOnce.Do(func() { close(s.dropped) })
}

// flush writes b and flushes it to the client.
func (s *sseTransport) flush(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.flushLocked(b)
}

// flushLocked is flush for a caller that holds wmu.
func (s *sseTransport) flushLocked(b []byte) error {
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	return s.rc.Flush()
}

// end records that the handler returns: drop no longer touches w.
func (s *sseTransport) end() {
	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
}

// appendEvent appends an SSE event of type typ whose data is msg (JSON).
// A line break in msg (JSON whitespace) starts a new data line, which the
// client joins back with '\n'.
func appendEvent(b []byte, typ string, msg []byte) []byte {
	b = append(b, "event: "...)
	b = append(b, typ...)
	b = append(b, "\ndata: "...)
	for {
		i := bytes.IndexAny(msg, "\r\n")
		if i < 0 {
			break
		}
		b = append(b, msg[:i]...)
		b = append(b, "\ndata: "...)
		msg = msg[i+1:]
	}
	b = append(b, msg...)
	return append(b, '\n', '\n')
}

// newStreamID returns an unguessable stream id (streamIDBytes random
// bytes) and, in a cluster, the node that holds the stream after a dot, so
// that a send reaching another node finds it.
func (h *Hub) newStreamID() string {
	var r [streamIDBytes]byte
	rand.Read(r[:])
	id := base64.RawURLEncoding.EncodeToString(r[:])
	if h.relay != nil {
		id += "." + base64.RawURLEncoding.EncodeToString([]byte(h.opts.NodeID))
	}
	return id
}

// streamNode returns the node named in a stream id, if any.
func streamNode(id string) (string, bool) {
	_, enc, ok := strings.Cut(id, ".")
	if !ok {
		return "", false
	}
	node, err := base64.RawURLEncoding.DecodeString(enc)
	return string(node), err == nil && len(node) > 0
}

// originAllowed applies the contract's origin rule (as the WebSocket
// upgrade does) to a request: no Origin (not a browser), the same host, or
// a host matching Options.AllowedOrigins. cross is the Origin to name in
// CORS answers (empty when none is needed).
func (h *Hub) originAllowed(r *http.Request) (cross string, ok bool) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return "", true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return "", false
	}
	if strings.EqualFold(r.Host, u.Host) {
		return origin, true
	}
	for _, pattern := range h.opts.AllowedOrigins {
		target := u.Host
		if strings.Contains(pattern, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if m, err := path.Match(strings.ToLower(pattern), strings.ToLower(target)); err == nil && m {
			return origin, true
		}
	}
	return "", false
}

// cors sets the CORS answer for an allowed cross-origin request.
func cors(w http.ResponseWriter, origin string) {
	w.Header().Add("Vary", "Origin")
	if origin != "" {
		w.Header().Set("Access-Control-Allow-Origin", origin)
	}
}

// ServeSSE opens an SSE stream (contract v1.2) and serves it until it
// ends, on the request's goroutine. It refuses as ServeWS does, with the
// same statuses: 503 or 429 at the connection limits (streams count as
// connections), 401 without a valid token in token mode (Bearer or
// ?token=), 403 for a refused Origin. The first event is "open" with the
// stream's id and the path of its sends; then each server message is a
// "message" event, every Options.PingInterval a ": ping" comment, and a
// close the server decides is a "close" event with the code and reason.
func (h *Hub) ServeSSE(w http.ResponseWriter, r *http.Request) {
	ip, id, ok := h.admitRequest(w, r, "sse")
	if !ok {
		return
	}
	origin, ok := h.originAllowed(r)
	if !ok {
		h.release(ip)
		h.metrics.upgrade(upgradeOrigin)
		h.logRefusal(r.RemoteAddr, http.StatusForbidden, "origin not allowed", "transport", "sse", "origin", r.Header.Get("Origin"))
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	s := &sseTransport{
		id:         h.newStreamID(),
		w:          w,
		rc:         http.NewResponseController(w),
		clientGone: r.Context().Done(),
		bye:        make(chan struct{}),
		dropped:    make(chan struct{}),
	}
	defer s.end()
	c := h.newConn(s, r.RemoteAddr, false)
	c.admitted(ip, id)

	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	cors(w, origin)
	s.rc.SetWriteDeadline(time.Time{}) // a server's WriteTimeout would end the stream
	open, _ := json.Marshal(map[string]string{"streamId": s.id, "send": ssePath})
	// The stream is tracked (and can be found by its sends) before the
	// client learns its id; nothing else writes before the open event.
	s.wmu.Lock()
	if !h.track(c) {
		s.wmu.Unlock()
		s.close(c, closeShutdown)
		h.release(ip)
		return
	}
	defer h.untrack(c)
	// Counted (sessionhub_transport_connections) before the client can
	// use the stream: a client that joined at once would otherwise see a
	// gauge without its stream.
	h.accepted(c)
	err := s.flushLocked(appendEvent(nil, "open", open))
	s.wmu.Unlock()
	if err != nil {
		s.drop(c) // served all the same: a writer may have started meanwhile
	}
	h.serve(c)
}

// sendRequest is the body of POST /sse/send.
type sendRequest struct {
	StreamID string            `json:"streamId"`
	Messages []json.RawMessage `json:"messages"`
	Close    *int              `json:"close"`
}

// sendError is an answer to a send other than 202.
type sendError struct {
	status int
	code   string
	msg    string
}

// ServeSSESend takes the client messages of a stream (contract v1.2): a
// JSON body {streamId, messages: [1 to MaxSendMessages envelopes]} or
// {streamId, close: 1000}, as application/json or text/plain. It answers
// 202 once the stream's connection took the messages (their replies come
// on the stream), 400 for a body of another shape or not UTF-8, 404 for no
// such stream, 403 for a refused Origin or, in token mode, a send without
// a valid token of the stream's sub, 413 for an envelope over
// Options.MaxMessageBytes or a larger body, 415 for another content type.
// In a cluster, a stream another node holds gets the messages through
// Redis, and the answer once that node took them.
func (h *Hub) ServeSSESend(w http.ResponseWriter, r *http.Request) {
	origin, ok := h.originAllowed(r)
	if !ok {
		h.sendAnswer(w, "local", &sendError{http.StatusForbidden, "forbidden", "origin not allowed"})
		return
	}
	cors(w, origin)
	req, serr := h.readSend(w, r)
	if serr != nil {
		h.sendAnswer(w, "local", serr)
		return
	}
	sub := ""
	id, err := h.requestToken(r)
	if err != nil {
		h.sendAnswer(w, "local", &sendError{http.StatusForbidden, "forbidden", err.Error()})
		return
	}
	if id != nil {
		sub = id.userID
	}
	where := "local"
	c := h.stream(req.StreamID)
	if c == nil {
		if node, ok := streamNode(req.StreamID); h.relay != nil && ok && node != h.opts.NodeID {
			where = "forwarded"
			h.sendAnswer(w, where, h.forwardSend(r.Context(), node, sub, req))
			return
		}
		h.sendAnswer(w, where, &sendError{http.StatusNotFound, "not_found", "no such stream"})
		return
	}
	h.sendAnswer(w, where, c.takeSend(sub, req))
}

// readSend reads and checks a send's body.
func (h *Hub) readSend(w http.ResponseWriter, r *http.Request) (*sendRequest, *sendError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" && mt != "text/plain" {
		return nil, &sendError{http.StatusUnsupportedMediaType, "bad_request", "Content-Type must be application/json or text/plain"}
	}
	limit := MaxSendMessages*h.opts.MaxMessageBytes + sendOverhead
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return nil, &sendError{http.StatusRequestEntityTooLarge, "too_large", "body over " + strconv.FormatInt(limit, 10) + " bytes"}
		}
		return nil, &sendError{http.StatusBadRequest, "bad_request", "could not read the body"}
	}
	if !utf8.Valid(body) {
		return nil, &sendError{http.StatusBadRequest, "bad_request", "the body is not valid UTF-8"}
	}
	var req sendRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, &sendError{http.StatusBadRequest, "bad_request", "the body must be {streamId, messages: [...]}"}
	}
	switch {
	case req.StreamID == "" || len(req.StreamID) > 512:
		return nil, &sendError{http.StatusBadRequest, "bad_request", "streamId is required"}
	case req.Close != nil && (*req.Close != int(protocol.CloseNormal) || len(req.Messages) > 0):
		return nil, &sendError{http.StatusBadRequest, "bad_request", "close must be 1000, with no messages"}
	case req.Close == nil && (len(req.Messages) == 0 || len(req.Messages) > MaxSendMessages):
		return nil, &sendError{http.StatusBadRequest, "bad_request", "messages must hold 1 to " + strconv.Itoa(MaxSendMessages) + " envelopes"}
	}
	for _, m := range req.Messages {
		if int64(len(m)) > h.opts.MaxMessageBytes {
			return nil, &sendError{http.StatusRequestEntityTooLarge, "too_large", "an envelope is over " + strconv.FormatInt(h.opts.MaxMessageBytes, 10) + " bytes"}
		}
	}
	return &req, nil
}

// sendAnswer writes a send's answer and counts it.
func (h *Hub) sendAnswer(w http.ResponseWriter, where string, e *sendError) {
	status := http.StatusAccepted
	if e != nil {
		status = e.status
	}
	h.metrics.sseSends.WithLabelValues(strconv.Itoa(status), where).Inc()
	if e == nil {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	apiError(w, e.status, e.code, e.msg)
}

// stream returns the stream with id on this node, or nil.
func (h *Hub) stream(id string) *conn {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.streams[id]
}

// takeSend hands a send's messages to c, a stream of this node, in order,
// as its reader would hand a WebSocket's frames; sub is the send's token's
// (token mode). A close ends the stream cleanly.
func (c *conn) takeSend(sub string, req *sendRequest) *sendError {
	s := c.tr.(*sseTransport)
	if c.tokenUser != sub {
		return &sendError{http.StatusForbidden, "forbidden", "the token is not the stream's"}
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if req.Close != nil {
		s.byeOnce.Do(func() { close(s.bye) })
		return nil
	}
	for _, m := range req.Messages {
		if !c.handle(m) {
			break // closed: the stream says why
		}
	}
	return nil
}

// sendPreflight answers a CORS preflight of a send from an allowed origin
// (a send as text/plain needs none).
func (h *Hub) sendPreflight(w http.ResponseWriter, r *http.Request) {
	origin, ok := h.originAllowed(r)
	if !ok {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	cors(w, origin)
	hd := w.Header()
	hd.Set("Access-Control-Allow-Methods", "POST")
	hd.Set("Access-Control-Allow-Headers", "Content-Type, Authorization")
	hd.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

// requestToken verifies the token of r in token mode (nil, nil in open
// mode), as the WebSocket upgrade does.
func (h *Hub) requestToken(r *http.Request) (*identity, error) {
	if h.tokens == nil {
		return nil, nil
	}
	return authenticate(r, h.tokens, time.Now())
}
