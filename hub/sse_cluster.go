package hub

// This file carries, in a cluster, the sends of a stream that reach
// another node than the one holding it (no sticky sessions): that node
// hands them over through Redis (cluster.Relay) and answers the POST with
// the holder's answer. Its functions run on the POST's goroutine (forwardSend)
// and on the relay's goroutine per request (relayed).

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/sessionhub/sessionhub/cluster"
)

// relayWait bounds how long a forwarded send waits for the node that holds
// its stream.
const relayWait = 5 * time.Second

// relayedSend is a send handed to the node that holds its stream, with the
// sub of its token (token mode), which the receiving node verified.
type relayedSend struct {
	Sub string `json:"sub,omitempty"`
	sendRequest
}

// relayedAnswer is that node's answer.
type relayedAnswer struct {
	Status  int    `json:"status"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// forwardSend hands a send for a stream of node to that node, and returns
// its answer: 404 when no such node listens (the stream cannot be there),
// 503 when it did not answer in time.
func (h *Hub) forwardSend(ctx context.Context, node, sub string, req *sendRequest) *sendError {
	body, err := json.Marshal(relayedSend{Sub: sub, sendRequest: *req})
	if err != nil {
		return &sendError{http.StatusInternalServerError, "internal", "could not encode the send"}
	}
	ctx, cancel := context.WithTimeout(ctx, relayWait)
	defer cancel()
	raw, err := h.relay.Call(ctx, node, body)
	switch {
	case errors.Is(err, cluster.ErrNoNode):
		return &sendError{http.StatusNotFound, "not_found", "no such stream"}
	case err != nil:
		h.log.Warn("sse send not relayed", "node", node, "err", err)
		return &sendError{http.StatusServiceUnavailable, "internal", "the stream's node did not answer"}
	}
	var a relayedAnswer
	if json.Unmarshal(raw, &a) != nil || a.Status == 0 {
		return &sendError{http.StatusBadGateway, "internal", "the stream's node answered garbage"}
	}
	if a.Status == http.StatusAccepted {
		return nil
	}
	return &sendError{a.Status, a.Code, a.Message}
}

// relayed takes a send another node forwarded for one of this node's
// streams, and answers with the status it would have had here.
func (h *Hub) relayed(_ context.Context, body []byte) []byte {
	var req relayedSend
	a := relayedAnswer{Status: http.StatusAccepted}
	var serr *sendError
	if json.Unmarshal(body, &req) != nil {
		serr = &sendError{http.StatusBadRequest, "bad_request", "malformed relayed send"}
	} else if c := h.stream(req.StreamID); c == nil {
		serr = &sendError{http.StatusNotFound, "not_found", "no such stream"}
	} else {
		serr = c.takeSend(req.Sub, &req.sendRequest)
	}
	if serr != nil {
		a = relayedAnswer{serr.status, serr.code, serr.msg}
	}
	h.metrics.sseSends.WithLabelValues(strconv.Itoa(a.Status), "relayed").Inc()
	b, _ := json.Marshal(a)
	return b
}
