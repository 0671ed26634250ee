package hub

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sessionhub/sessionhub/internal/wstest"
)

// A client may send its first frame in the same packet as its upgrade
// request: the bytes net/http read ahead are carried over to the small
// buffer the connection keeps.
func TestFirstFrameBehindTheUpgradeRequest(t *testing.T) {
	_, ts, _ := serveInternal(t, nil, false)
	// A payload longer than the read buffer a connection keeps (512 bytes,
	// wsfast), so that the carried-over bytes do not fit it.
	ping := fmt.Sprintf(`{"type":"ping","ref":"early","data":{"pad":%q}}`, strings.Repeat("p", 700))
	_, br := rawUpgrade(t, ts, wstest.MaskedText([]byte(ping)))
	op, payload := readServerFrame(t, br)
	if op != 0x81 || !strings.Contains(string(payload), `"type":"pong"`) || !strings.Contains(string(payload), `"ref":"early"`) {
		t.Fatalf("reply: %x %s", op, payload)
	}
}

// rawUpgrade opens a WebSocket to ts by hand, sending extra right behind the
// upgrade request, and returns the connection and a reader past the 101.
func rawUpgrade(t *testing.T, ts *httptest.Server, extra []byte) (net.Conn, *bufio.Reader) {
	t.Helper()
	tcp, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tcp.Close() })
	tcp.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET /ws HTTP/1.1\r\nHost: " + ts.Listener.Addr().String() + "\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	if _, err := tcp.Write(append([]byte(req), extra...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(tcp)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %s", resp.Status)
	}
	return tcp, br
}

// readServerFrame reads one unmasked frame from the server: its first byte
// and payload.
func readServerFrame(t *testing.T, br *bufio.Reader) (byte, []byte) {
	t.Helper()
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		t.Fatal(err)
	}
	n := int(hdr[1] & 0x7f)
	if n == 126 {
		var ext [2]byte
		if _, err := io.ReadFull(br, ext[:]); err != nil {
			t.Fatal(err)
		}
		n = int(binary.BigEndian.Uint16(ext[:]))
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(br, payload); err != nil {
		t.Fatal(err)
	}
	return hdr[0], payload
}

// Pongs in any shape a client may send them (whole, split across writes,
// with the largest payload, right before a message in the same write)
// leave the stream intact: the next ping message gets its pong. A pong
// that breaks the protocol (unmasked, or longer than a control frame may
// be) is the library's to refuse: the connection ends (close 1002, or
// dropped), and the message behind it gets no answer.
func TestPongShapes(t *testing.T) {
	_, ts, _ := serveInternal(t, nil, false)
	const (
		pongOp            = 0x8A // final pong, RFC 6455 §5.2
		maxControlPayload = 125  // §5.5
	)
	ping := wstest.MaskedText([]byte(`{"type":"ping","ref":"after"}`))
	big := wstest.MaskedFrame(pongOp, bytes.Repeat([]byte{'x'}, maxControlPayload))
	tests := []struct {
		name   string
		writes [][]byte
	}{
		{"whole", [][]byte{wstest.MaskedFrame(pongOp, nil), ping}},
		{"split after one byte", [][]byte{big[:1], big[1:], ping}},
		{"split in the mask", [][]byte{big[:4], big[4:], ping}},
		{"split in the payload", [][]byte{big[:60], big[60:], ping}},
		{"largest, with a message behind", [][]byte{append(append([]byte{}, big...), ping...)}},
		{"three in a row", [][]byte{bytes.Repeat(wstest.MaskedFrame(pongOp, []byte("p")), 3), ping}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tcp, br := rawUpgrade(t, ts, nil)
			for _, w := range tt.writes {
				if _, err := tcp.Write(w); err != nil {
					t.Fatal(err)
				}
				time.Sleep(5 * time.Millisecond) // let each write arrive on its own
			}
			op, payload := readServerFrame(t, br)
			if op != 0x81 || !strings.Contains(string(payload), `"type":"pong"`) || !strings.Contains(string(payload), `"ref":"after"`) {
				t.Fatalf("reply: %x %s", op, payload)
			}
		})
	}
	bad := []struct {
		name  string
		frame []byte
	}{
		{"unmasked", []byte{pongOp, 1, 'p'}},
		{"too long for a control frame", append([]byte{pongOp, 0x80 | 126, 0, 126, 1, 2, 3, 4}, make([]byte, 126)...)},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			tcp, br := rawUpgrade(t, ts, nil)
			if _, err := tcp.Write(append(append([]byte{}, tt.frame...), ping...)); err != nil {
				t.Fatal(err)
			}
			var hdr [2]byte
			if _, err := io.ReadFull(br, hdr[:]); err == io.EOF {
				return // dropped
			} else if err != nil {
				t.Fatal(err)
			}
			if hdr[0] != 0x88 {
				t.Fatalf("reply %x, want a close or the end of the connection", hdr[0])
			}
			code := make([]byte, hdr[1]&0x7f)
			if _, err := io.ReadFull(br, code); err != nil || len(code) < 2 || binary.BigEndian.Uint16(code) != 1002 {
				t.Fatalf("close % x (%v), want 1002", code, err)
			}
		})
	}
}
