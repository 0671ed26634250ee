package hub_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionhub/sessionhub/protocol"
)

// ssePeer is a raw SSE client: GET /sse read by a goroutine into msgs, its
// sends POSTed to /sse/send.
type ssePeer struct {
	inbox
	base   string // http://host:port of the node that holds the stream
	token  string // sent on every request in token mode
	resp   *http.Response
	stream string        // the streamId of the open event
	closed chan sseClose // the close event, if any, then closed
	pings  atomic.Int64
	hold   atomic.Bool // stop reading the stream (a client that does not read)
	ctx    context.Context
	cancel context.CancelFunc
}

// sseClose is a stream's close event.
type sseClose struct {
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

// sseGet opens GET /sse on base with hdr and returns the response (the
// caller closes its body).
func sseGet(t testing.TB, ctx context.Context, base string, hdr http.Header) *http.Response {
	t.Helper()
	return sseGetWith(t, ctx, http.DefaultClient, base, hdr)
}

func sseGetWith(t testing.TB, ctx context.Context, client *http.Client, base string, hdr http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/sse", nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET /sse: %v", err)
	}
	return resp
}

// sseDial opens a stream on base (http://…) and waits for its open event;
// it ends with the test.
func sseDial(t testing.TB, base, token string) *ssePeer {
	t.Helper()
	return sseDialWith(t, http.DefaultClient, base, token)
}

// sseDialWith is sseDial through client.
func sseDialWith(t testing.TB, client *http.Client, base, token string) *ssePeer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var hdr http.Header
	if token != "" {
		hdr = http.Header{"Authorization": {"Bearer " + token}}
	}
	resp := sseGetWith(t, ctx, client, base, hdr)
	if resp.StatusCode != http.StatusOK {
		cancel()
		resp.Body.Close()
		t.Fatalf("GET /sse: %s", resp.Status)
	}
	p := &ssePeer{inbox: inbox{t: t, msgs: make(chan protocol.Envelope, 100000), ended: func() string { return "stream ended" }},
		base: base, token: token, resp: resp, ctx: ctx, cancel: cancel, closed: make(chan sseClose, 1)}
	opened := make(chan string, 1)
	go p.readLoop(opened)
	t.Cleanup(p.drop)
	select {
	case p.stream = <-opened:
	case <-time.After(wait):
		t.Fatal("no open event within the deadline")
	}
	return p
}

// drop ends the stream from the client's side, as a lost network does.
func (p *ssePeer) drop() {
	p.cancel()
	p.resp.Body.Close()
}

// readLoop parses the event stream.
func (p *ssePeer) readLoop(opened chan<- string) {
	defer close(p.msgs)
	defer close(p.closed)
	sc := bufio.NewScanner(p.resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var event string
	var data []string
	for sc.Scan() {
		if p.hold.Load() {
			<-p.ctx.Done()
			return
		}
		line := sc.Text()
		switch {
		case line == "" && data == nil:
			event = "" // a comment's end: nothing to dispatch
		case line == "":
			d := strings.Join(data, "\n")
			switch event {
			case "open":
				var o struct{ StreamID, Send string }
				if err := json.Unmarshal([]byte(d), &o); err != nil || o.Send != "/sse/send" {
					p.t.Errorf("open event %q", d)
				}
				opened <- o.StreamID
			case "message":
				var env protocol.Envelope
				if err := json.Unmarshal([]byte(d), &env); err != nil {
					p.t.Errorf("message event with invalid JSON %q: %v", d, err)
				} else {
					p.msgs <- env
				}
			case "close":
				var c sseClose
				json.Unmarshal([]byte(d), &c)
				p.closed <- c
			default:
				p.t.Errorf("unknown event %q", event)
			}
			event, data = "", nil
		case strings.HasPrefix(line, ":"):
			p.pings.Add(1)
		case strings.HasPrefix(line, "event: "):
			event = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[len("data: "):])
		default:
			p.t.Errorf("unexpected line %q", line)
		}
	}
}

// post POSTs body to /sse/send of base with the peer's token and returns
// the status.
func (p *ssePeer) post(base string, body []byte) int {
	p.t.Helper()
	return postSend(p.t, base, p.token, "application/json", body)
}

// postSend POSTs body to base's /sse/send.
func postSend(t testing.TB, base, token, contentType string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/sse/send", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /sse/send: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// sendBody is a send of raw envelopes for stream.
func sendBody(stream string, envs ...[]byte) []byte {
	raw := make([]json.RawMessage, len(envs))
	for i, e := range envs {
		raw[i] = e
	}
	b, _ := json.Marshal(map[string]any{"streamId": stream, "messages": raw})
	return b
}

// sendTo sends one message through base (another node of a cluster, or
// the stream's) and fails unless it is answered 202.
func (p *ssePeer) sendTo(base, typ string, data any, ref string) {
	p.t.Helper()
	b, err := protocol.Encode(typ, ref, data)
	if err != nil {
		p.t.Fatal(err)
	}
	if code := p.post(base, sendBody(p.stream, b)); code != http.StatusAccepted {
		p.t.Fatalf("send %s: %d, want 202", typ, code)
	}
}

func (p *ssePeer) send(typ string, data any, ref string) {
	p.t.Helper()
	p.sendTo(p.base, typ, data, ref)
}

// join joins a session and returns session-joined.
func (p *ssePeer) join(sessionID, userID, name string, rec *protocol.Recover) protocol.SessionJoined {
	p.t.Helper()
	p.send(protocol.TypeJoinSession, protocol.JoinSession{SessionID: sessionID,
		UserInfo: protocol.UserInfo{UserID: userID, Name: name}, Recover: rec}, "j")
	var sj protocol.SessionJoined
	p.expect(protocol.TypeSessionJoined, &sj)
	return sj
}

// closeEvent waits for the stream's end and returns its close event (code
// 0 when it ended without one).
func (p *ssePeer) closeEvent() sseClose {
	p.t.Helper()
	deadline := time.After(wait + 10*time.Second)
	for {
		select {
		case <-p.msgs:
		case c, ok := <-p.closed:
			if ok {
				for range p.closed {
				}
			}
			return c
		case <-deadline:
			p.t.Fatal("stream still open after the deadline")
		}
	}
}
