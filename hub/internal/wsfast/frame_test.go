package wsfast

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// frameSizes are payload sizes in each header form of RFC 6455 §5.2
// (7-bit, 16-bit and 64-bit length), at their edges.
var frameSizes = []int{0, 1, 125, 126, 127, 65535, 65536, 70000}

// readBackFrames serves one WebSocket whose server writes, with write on
// the hijacked connection, a text frame of n bytes of 'a'+i for the i-th
// of frameSizes, then closes with the largest control frame the library
// writes through its small buffer; and checks that the library's client
// reads them back whole, in order, then the close.
func readBackFrames(t *testing.T, write func(nc net.Conn) error) {
	t.Helper()
	wrote := make(chan error, 1)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hw := &Hijacker{ResponseWriter: w}
		ws, err := websocket.Accept(hw, r, nil)
		if err != nil {
			wrote <- err
			return
		}
		defer ws.CloseNow()
		if err := write(hw.Conn()); err != nil {
			wrote <- err
			return
		}
		// The largest control frame, through the library's small buffer.
		wrote <- ws.Close(websocket.StatusNormalClosure, strings.Repeat("r", 123))
	}))
	t.Cleanup(ts.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws := dialOne(ctx, t, ts)
	ws.SetReadLimit(1 << 20)
	for i, n := range frameSizes {
		typ, got, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("frame %d (%d bytes): %v", i, n, err)
		}
		if want := payload(i); typ != websocket.MessageText || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: got %v of %d bytes, want text of %d", i, typ, len(got), n)
		}
	}
	_, _, err := ws.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusNormalClosure {
		t.Fatalf("after the frames: %v, want a close 1000", err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}

// payload is the i-th frame's payload in readBackFrames.
func payload(i int) []byte { return bytes.Repeat([]byte{'a' + byte(i)}, frameSizes[i]) }

// The hub's own frames, each header form, are read back whole by the
// WebSocket library, in order with a control frame the library writes on
// the same connection.
func TestFinishFrameIsReadByTheLibrary(t *testing.T) {
	readBackFrames(t, func(nc net.Conn) error {
		for i := range frameSizes {
			frame := append(ReserveHeader(nil), payload(i)...)
			if _, err := nc.Write(FinishFrame(frame)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Frames appended in a row (a writer's queued frames) leave in one Write
// and are read back as as many messages.
func TestAppendFrameIsReadByTheLibrary(t *testing.T) {
	readBackFrames(t, func(nc net.Conn) error {
		var b []byte
		for i := range frameSizes {
			b = AppendFrame(b, payload(i))
		}
		_, err := nc.Write(b)
		return err
	})
}

func TestFinishFrameHeader(t *testing.T) {
	tests := []struct {
		n    int
		want []byte
	}{
		{0, []byte{0x81, 0}},
		{125, []byte{0x81, 125}},
		{126, []byte{0x81, 126, 0, 126}},
		{65535, []byte{0x81, 126, 0xff, 0xff}},
		{65536, []byte{0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
	}
	for _, tt := range tests {
		frame := FinishFrame(append(ReserveHeader(nil), make([]byte, tt.n)...))
		if got := frame[:len(frame)-tt.n]; !bytes.Equal(got, tt.want) {
			t.Errorf("header for %d bytes = % x, want % x", tt.n, got, tt.want)
		}
		// The same frame, appended whole.
		if got := AppendFrame(nil, make([]byte, tt.n)); !bytes.Equal(got, frame) {
			t.Errorf("AppendFrame of %d bytes = % x…, want % x…", tt.n, got[:min(len(got), 10)], frame[:min(len(frame), 10)])
		}
	}
}

func TestPongLen(t *testing.T) {
	tests := []struct {
		name string
		head []byte
		want int
	}{
		{"empty pong", []byte{0x8A, 0x80}, 6},
		{"largest pong", []byte{0x8A, 0x80 | 125}, 131},
		{"one byte", []byte{0x8A}, 0},
		{"unmasked", []byte{0x8A, 1}, 0},
		{"not final", []byte{0x0A, 0x80}, 0},
		{"too long for a control frame", []byte{0x8A, 0x80 | 126}, 0},
		{"a ping", []byte{0x89, 0x80}, 0},
		{"a text frame", []byte{0x81, 0x85}, 0},
	}
	for _, tt := range tests {
		if got := pongLen(tt.head); got != tt.want {
			t.Errorf("%s: pongLen(% x) = %d, want %d", tt.name, tt.head, got, tt.want)
		}
	}
}
