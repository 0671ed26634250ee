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

// A userId or sub with NUL (finding 2: a node then acted as if Redis were
// down, paused and republished in a loop) is refused in a three-node
// cluster, and the cluster keeps converging: no Redis operation fails, the
// lists and broadcasts cross nodes after every attempt.
func TestHardeningClusterNUL(t *testing.T) {
	rs := redistest.Start(t)
	var nodes []*server
	for i := range 3 {
		nodes = append(nodes, startNode(t, rs, fmt.Sprintf("h%d", i+1), &hub.Options{LeaveGrace: -1, JWTSecret: auSecret}))
	}
	tok := func(sub string) string { return auToken(t, auClaims(sub, "N-"+sub, "", nil, time.Hour)) }
	var ps []*peer
	for i, n := range nodes {
		p := auDial(t, n, tok(fmt.Sprintf("u%d", i+1)))
		p.join("nul", "", "", "")
		ps = append(ps, p)
	}
	for _, p := range ps {
		p.collect()
	}
	exp := time.Now().Add(time.Hour).Unix()
	for round := range 3 {
		// The attacker, on the first node: a sub with NUL gets 401, a
		// userId with NUL (ignored in token mode) bad_request: not a
		// NUL from the token, and not Redis's error either.
		nulTok := auRawToken(t, fmt.Sprintf(`{"sub":"x\u0000y","name":"M","exp":%d}`, exp))
		auRefused(t, nodes[0].url, auOpts(nulTok), http.StatusUnauthorized, nulTok)
		m := auDial(t, nodes[0], tok(fmt.Sprintf("m%d", round)))
		m.sendRaw([]byte(`{"type":"join-session","data":{"sessionId":"nul\u0000","userInfo":{"name":"M"}},"ref":"m"}`))
		m.expectError(protocol.CodeInvalidSessionID, "m")
		m.sendRaw([]byte(`{"type":"join-session","data":{"sessionId":"nul","userInfo":{"userId":"x\u0000y","name":"M"}},"ref":"m"}`))
		m.expectError(protocol.CodeBadRequest, "m")

		// The cluster converges: a broadcast from each node reaches the
		// two others with one offset sequence.
		for i, from := range ps {
			ref := fmt.Sprintf("b%d-%d", round, i)
			from.send(protocol.TypeBroadcast, map[string]any{"event": "e"}, ref)
			var ack protocol.Ack
			from.skipUntil(protocol.TypeAck, &ack)
			for j, to := range ps {
				if j == i {
					continue
				}
				var ev protocol.BroadcastEvent
				to.skipUntil(protocol.TypeBroadcast, &ev)
				if ev.Offset != ack.Offset {
					t.Fatalf("round %d: node %d got offset %d from node %d, acked %d", round, j+1, ev.Offset, i+1, ack.Offset)
				}
			}
		}
		m.ws.CloseNow()
	}
	// A join on the first node reaches the list of the others.
	late := auDial(t, nodes[0], tok("late"))
	late.join("nul", "", "", "")
	for _, p := range ps[1:] {
		var uj protocol.UserJoined
		p.skipUntil(protocol.TypeUserJoined, &uj)
		if uj.User.UserID != "late" {
			t.Errorf("user-joined %+v", uj.User)
		}
	}
	for i, n := range nodes {
		for _, op := range []string{"join", "republish", "publish", "broadcast"} {
			if v, _ := metric(t, n, `sessionhub_cluster_redis_errors_total{op="`+op+`"}`); v != 0 {
				t.Errorf("node %d: %v failed %s operations", i+1, v, op)
			}
		}
		if v := mustMetric(t, n, "sessionhub_cluster_up"); v != 1 {
			t.Errorf("node %d: cluster_up %v", i+1, v)
		}
	}
}
