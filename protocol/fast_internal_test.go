package protocol

import (
	"reflect"
	"strings"
	"testing"
)

// The fast way decodes exactly what the general way decodes, for every
// input it accepts, and accepts the plain cursor update.
func FuzzDecodeCursorFast(f *testing.F) {
	for _, s := range []string{
		`{"type":"cursor-update","data":{"line":12,"column":4}}`,
		`{"type":"cursor-update","data":{"line":0,"column":0}}`,
		`{"type":"cursor-update","data":{"line":10000000,"column":9999999}}`,
		`{"type":"cursor-update","data":{"line":10000001,"column":1}}`,
		`{"type":"cursor-update","data":{"line":012,"column":1}}`,
		`{"type":"cursor-update","data":{"line":1.0,"column":1}}`,
		`{"type":"cursor-update","data":{"line":1e3,"column":1}}`,
		`{"type":"cursor-update","data":{"line":-1,"column":1}}`,
		`{"type":"cursor-update","data":{"line":1,"column":2}}x`,
		`{"type":"cursor-update","data":{"line":1,"column":2,"file":"a.go"}}`,
		`{"type":"cursor-update","data":{"line":1,"column":2},"ref":"7"}`,
		`{"type":"cursor-update","data":{"line":1,"column":2,"file":"t/1795655661225"}}`,
		`{"type":"cursor-update","data":{"line":1,"column":2,"file":"a\"b"}}`,
		`{"type":"cursor-update","data":{"line":1,"column":2,"file":"\u00e9"}}`,
		`{"type":"cursor-update","data":{"line":1,"column":2,"file":"é"}}`,
		"{\"type\":\"cursor-update\",\"data\":{\"line\":1,\"column\":2,\"file\":\"\xff\"}}",
		"{\"type\":\"cursor-update\",\"data\":{\"line\":1,\"column\":2,\"file\":\"a\tb\"}}",
		`{"type":"cursor-update","data":{"line":1,"column":2,"file":""}}`,
		`{"type":"cursor-update","data":{"line":1,"column":2,"file":"x","file":"y"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := decodeCursorFast(b)
		if !ok {
			return
		}
		slow, err := decode(b)
		if err != nil || !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: fast %+v, general %+v, %v", b, fast, slow, err)
		}
	})
}

func TestDecodeCursorFast(t *testing.T) {
	tests := []struct {
		in   string
		want *Cursor // nil: not the fast way
	}{
		{`{"type":"cursor-update","data":{"line":12,"column":4}}`, &Cursor{Line: 12, Column: 4}},
		{`{"type":"cursor-update","data":{"line":0,"column":10000000}}`, &Cursor{Line: 0, Column: 10_000_000}},
		{`{"type":"cursor-update","data":{"line":10000001,"column":1}}`, nil},
		{`{"type":"cursor-update","data":{"line":100000000,"column":1}}`, nil},
		{`{"type":"cursor-update","data":{"line":012,"column":1}}`, nil},
		{`{"type":"cursor-update","data":{"line":1.5,"column":1}}`, nil},
		{`{"type":"cursor-update","data":{"line":1E2,"column":1}}`, nil},
		{`{"type":"cursor-update","data":{"line":,"column":1}}`, nil},
		{`{"type":"cursor-update","data":{"line":1,"column":2}}}`, nil},
		{`{"type":"cursor-update","data":{"line":1,"column":2,"file":"a"}}`, &Cursor{Line: 1, Column: 2, File: "a"}},
		{`{"type":"cursor-update","data":{"line":1,"column":2,"file":"src/é.go"}}`, &Cursor{Line: 1, Column: 2, File: "src/é.go"}},
		{`{"type":"cursor-update","data":{"line":1,"column":2,"file":""}}`, &Cursor{Line: 1, Column: 2}},
		{`{"type":"cursor-update","data":{"line":1,"column":2,"file":"a\"b"}}`, nil},
		{`{"type":"cursor-update","data":{"line":1,"column":2,"file":"a\\b"}}`, nil},
		{"{\"type\":\"cursor-update\",\"data\":{\"line\":1,\"column\":2,\"file\":\"\xff\"}}", nil},
		{`{"type":"cursor-update","data":{"line":1,"column":2,"file":"x","file":"y"}}`, nil},
		{`{"type":"cursor-update","data":{"line":1,"column":2,"file":"` + strings.Repeat("a", MaxFileBytes+1) + `"}}`, nil},
		{`{"type":"cursor-update","data":{"line":1,"column":2,"file":"a"},"ref":"1"}`, nil},
		{`{"type":"cursor-update","data":{"column":2,"line":1}}`, nil},
	}
	for _, tt := range tests {
		m, ok := decodeCursorFast([]byte(tt.in))
		if got := ok; got != (tt.want != nil) {
			t.Errorf("%s: fast way %v, want %v", tt.in, got, tt.want != nil)
			continue
		}
		if ok && (m.Type != TypeCursorUpdate || m.Ref != "" || !reflect.DeepEqual(m.Payload, tt.want)) {
			t.Errorf("%s: got %+v, want %+v", tt.in, m, tt.want)
		}
		// Whichever way, Decode's answer is the general way's.
		got, gotErr := Decode([]byte(tt.in))
		want, wantErr := decode([]byte(tt.in))
		if !reflect.DeepEqual(got, want) || (gotErr == nil) != (wantErr == nil) {
			t.Errorf("%s: Decode %+v, %v; general %+v, %v", tt.in, got, gotErr, want, wantErr)
		}
	}
}

// BenchmarkDecodeGeneralPlainCursor is BenchmarkDecodePlainCursor's frame
// the general way, for comparison.
func BenchmarkDecodeGeneralPlainCursor(b *testing.B) {
	frame := []byte(`{"type":"cursor-update","data":{"line":120,"column":17}}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decode(frame); err != nil {
			b.Fatal(err)
		}
	}
}
