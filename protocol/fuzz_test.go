package protocol_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/sessionhub/sessionhub/protocol"
)

// seedDir holds the seed corpus of FuzzDecode: one client message per .json
// file, valid and invalid. It sits at the repository root, where Go does not
// look by itself, so FuzzDecode adds its files.
const seedDir = "../testdata/fuzz/decode"

// contractCodes are the error codes of the contract.
var contractCodes = map[protocol.Code]bool{
	protocol.CodeBadRequest:       true,
	protocol.CodeUnknownType:      true,
	protocol.CodeInvalidSessionID: true,
	protocol.CodeNotInSession:     true,
	protocol.CodeForbidden:        true,
	protocol.CodeSessionFull:      true,
	protocol.CodeRateLimited:      true,
	protocol.CodeInternal:         true,
}

func FuzzDecode(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join(seedDir, "*.json"))
	if err != nil {
		f.Fatal(err)
	}
	if len(seeds) == 0 {
		f.Fatalf("no seed files in %s", seedDir)
	}
	for _, name := range seeds {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := protocol.Decode(in)
		// A frame that is not UTF-8 is refused as such (the hub closes
		// with 1007), except a fast-way cursor update, which is ASCII.
		if !utf8.Valid(in) && err == nil {
			t.Fatalf("accepted %q, which is not UTF-8", in)
		}
		if err == protocol.ErrInvalidUTF8 && utf8.Valid(bytes.TrimSpace(in)) {
			t.Fatalf("%q is UTF-8, refused as not", in)
		}
		if err == nil {
			checkIdentifiers(t, in, m.Payload)
		}
		if len(m.Ref) > protocol.MaxRefBytes {
			t.Fatalf("Ref is %d bytes, over %d", len(m.Ref), protocol.MaxRefBytes)
		}
		if err != nil {
			var pe *protocol.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is %T, want *protocol.Error", err, err)
			}
			if !contractCodes[pe.Code] {
				t.Fatalf("error code %q is not one of the contract's", pe.Code)
			}
			if m.Payload != nil {
				t.Fatalf("Payload %#v on error", m.Payload)
			}
			return
		}
		b, err := protocol.Encode(m.Type, m.Ref, m.Payload)
		if err != nil {
			t.Fatalf("Encode of decoded %s: %v", m.Type, err)
		}
		m2, err := protocol.Decode(b)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%q))) = %s: %v", in, b, err)
		}
		if m2.Type != m.Type || m2.Ref != m.Ref {
			t.Fatalf("round trip type, ref = %q, %q; want %q, %q", m2.Type, m2.Ref, m.Type, m.Ref)
		}
		switch m.Payload.(type) {
		case protocol.Ping, *protocol.Broadcast:
			// Raw JSON comes back compacted; compare it as JSON.
			if !sameJSON(t, m.Payload, m2.Payload) {
				t.Fatalf("round trip payload = %s, want %s", mustJSON(t, m2.Payload), mustJSON(t, m.Payload))
			}
		default:
			if !reflect.DeepEqual(m2.Payload, m.Payload) {
				t.Fatalf("round trip payload = %#v, want %#v", m2.Payload, m.Payload)
			}
		}
	})
}

// checkIdentifiers fails t if an identifier of payload (decoded from in)
// holds a control character or is not UTF-8.
func checkIdentifiers(t *testing.T, in []byte, payload any) {
	t.Helper()
	var ids []string
	switch p := payload.(type) {
	case *protocol.JoinSession:
		ids = []string{p.SessionID, p.UserInfo.UserID, p.UserInfo.Name, p.UserInfo.Color}
		if p.Recover != nil {
			ids = append(ids, p.Recover.Epoch)
		}
	case *protocol.Cursor:
		ids = []string{p.File}
	case *protocol.Broadcast:
		ids = []string{p.Event, p.To}
		if !utf8.Valid(p.Payload) {
			t.Fatalf("%q: payload %q is not UTF-8", in, p.Payload)
		}
	case protocol.Ping:
		if !utf8.Valid(p) {
			t.Fatalf("%q: ping data %q is not UTF-8", in, []byte(p))
		}
	}
	for _, id := range ids {
		if !protocol.ValidText(id) {
			t.Fatalf("%q: identifier %q holds a control character or is not UTF-8", in, id)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameJSON reports whether a and b marshal to the same JSON value.
func sameJSON(t *testing.T, a, b any) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(mustJSON(t, a), &va); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(mustJSON(t, b), &vb); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(va, vb)
}
