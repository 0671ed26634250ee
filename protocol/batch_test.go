package protocol_test

import (
	"slices"
	"testing"

	"github.com/sessionhub/sessionhub/protocol"
)

func TestSplitBatch(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		want  []string
	}{
		{"empty", "", nil},
		{"one message", `{"type":"pong"}`, []string{`{"type":"pong"}`}},
		{"two messages", "{\"a\":1}\n{\"b\":2}", []string{`{"a":1}`, `{"b":2}`}},
		{"trailing newline", "{\"a\":1}\n", []string{`{"a":1}`}},
		{"blank lines skipped", "\n{\"a\":1}\n \r\n\n{\"b\":2}\n", []string{`{"a":1}`, `{"b":2}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for m := range protocol.SplitBatch([]byte(tt.frame)) {
				got = append(got, string(m))
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("SplitBatch(%q) = %q; want %q", tt.frame, got, tt.want)
			}
		})
	}
	// Stopping early stops the split.
	n := 0
	for range protocol.SplitBatch([]byte("a\nb\nc")) {
		n++
		break
	}
	if n != 1 {
		t.Fatalf("break after the first message: %d yielded", n)
	}
}
