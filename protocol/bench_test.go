package protocol_test

import (
	"testing"

	"github.com/sessionhub/sessionhub/protocol"
)

// cursorFrame is a cursor-update as a client sends it, selection included.
var cursorFrame = []byte(`{"type":"cursor-update","data":{"line":120,"column":17,"file":"src/main.go",` +
	`"selection":{"start":{"line":120,"column":4},"end":{"line":121,"column":9}}},"ref":"42"}`)

// BenchmarkDecode decodes one cursor-update frame: what a connection's
// reader does for every frame it reads.
func BenchmarkDecode(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(cursorFrame)))
	for b.Loop() {
		m, err := protocol.Decode(cursorFrame)
		if err != nil || m.Type != protocol.TypeCursorUpdate {
			b.Fatalf("Decode = %+v, %v", m, err)
		}
	}
}

// BenchmarkDecodePlainCursor decodes the plain cursor update (line and
// column only) that takes Decode's fast way.
func BenchmarkDecodePlainCursor(b *testing.B) {
	frame := []byte(`{"type":"cursor-update","data":{"line":120,"column":17}}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		m, err := protocol.Decode(frame)
		if err != nil || m.Type != protocol.TypeCursorUpdate {
			b.Fatalf("Decode = %+v, %v", m, err)
		}
	}
}

// BenchmarkEncodeCursorMoved encodes one cursor-moved event: what the run
// loop does once per cursor update, whatever the room's size.
func BenchmarkEncodeCursorMoved(b *testing.B) {
	ev := protocol.CursorMoved{UserID: "6f1c2d3e-4b5a-4978-8a6b-1c2d3e4f5a6b", Cursor: protocol.Cursor{
		Line: 120, Column: 17, File: "src/main.go",
		Selection: &protocol.Selection{
			Start: protocol.Position{Line: 120, Column: 4},
			End:   protocol.Position{Line: 121, Column: 9},
		},
	}}
	b.ReportAllocs()
	var n int
	for b.Loop() {
		out, err := protocol.Encode(protocol.TypeCursorMoved, "", ev)
		if err != nil {
			b.Fatal(err)
		}
		n = len(out)
	}
	b.SetBytes(int64(n))
}
