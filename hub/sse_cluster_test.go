package hub_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/internal/redistest"
	"github.com/sessionhub/sessionhub/protocol"
)

// In a cluster a stream's sends may reach any node (no sticky sessions):
// a learner's stream on node 1 with its sends posted to nodes 2 and 3 in
// turn takes part in order; a send for a stream that no node holds is 404,
// and in token mode another user's token is refused by the holding node.
func TestSSEClusterSendsReachAnyNode(t *testing.T) {
	rs := redistest.Start(t)
	secret := []byte("0123456789abcdef0123456789abcdef")
	opts := func() *hub.Options { return &hub.Options{JWTSecret: secret, MessageRate: 1e4, MessageBurst: 1e4} }
	n1 := startNode(t, rs, "n1", opts())
	n2 := startNode(t, rs, "n2", opts())
	n3 := startNode(t, rs, "n3", opts())
	tok := func(sub string) string {
		tk, err := hub.NewToken(secret, hub.Claims{Name: sub, RegisteredClaims: jwtClaims(sub, time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}

	teacher := dial(t, n3, auOpts(tok("teacher")))
	teacher.join("class", "", "", "")
	st := sseDial(t, n1.ts.URL, tok("learner"))
	// The join itself goes through node 2.
	st.sendTo(n2.ts.URL, protocol.TypeJoinSession, protocol.JoinSession{SessionID: "class"}, "j")
	var sj protocol.SessionJoined
	st.expect(protocol.TypeSessionJoined, &sj)
	if len(sj.Participants) != 2 {
		t.Fatalf("session-joined %+v", sj)
	}
	teacher.expect(protocol.TypeUserJoined, nil)

	const n = 40
	for i := range n {
		via := []string{n2.ts.URL, n3.ts.URL}[i%2]
		st.sendTo(via, protocol.TypeBroadcast, map[string]any{"event": "step", "payload": i}, fmt.Sprint(i))
	}
	for i := range n {
		var bc protocol.BroadcastEvent
		teacher.expect(protocol.TypeBroadcast, &bc)
		if string(bc.Payload) != fmt.Sprint(i) || bc.From != "learner" {
			t.Fatalf("broadcast %d: %+v", i, bc)
		}
		if m := st.expect(protocol.TypeAck, nil); m.Ref != fmt.Sprint(i) {
			t.Fatalf("ack %d has ref %q", i, m.Ref)
		}
	}
	st.sendTo(n3.ts.URL, protocol.TypeCursorUpdate, protocol.Cursor{Line: 9, Column: 9}, "")
	var cm protocol.CursorMoved
	teacher.expect(protocol.TypeCursorMoved, &cm)
	if cm.UserID != "learner" || cm.Cursor.Line != 9 {
		t.Fatalf("cursor-moved %+v", cm)
	}

	ping := sendBody(st.stream, []byte(`{"type":"ping"}`))
	if code := postSend(t, n2.ts.URL, tok("mallory"), "application/json", ping); code != http.StatusForbidden {
		t.Errorf("another user's send through node 2: %d, want 403", code)
	}
	for _, id := range []string{guess(st.stream), st.stream + "x", "nope.bm9wZQ"} {
		if code := postSend(t, n2.ts.URL, tok("learner"), "application/json", sendBody(id, []byte(`{"type":"ping"}`))); code != http.StatusNotFound {
			t.Errorf("send for stream %q through node 2: %d, want 404", id, code)
		}
	}
	if v := mustMetric(t, n2, `sessionhub_sse_sends_total{status="202",where="forwarded"}`); v < n/2 {
		t.Errorf("node 2 forwarded %v sends, want at least %d", v, n/2)
	}
}
