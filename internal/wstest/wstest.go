// Package wstest builds raw WebSocket frames as a client sends them, for
// the tests that write bytes to a connection themselves: the hub's (the
// fast path behind the upgrade, pings, floods) and hub/internal/wsfast's
// rather than each keeping its own copy.
package wstest

import "encoding/binary"

// MaskedFrame is p as a client's frame with first byte b0 (FIN, opcode),
// masked with a fixed key (RFC 6455 §5.3). p may be at most 65 535 bytes.
func MaskedFrame(b0 byte, p []byte) []byte {
	key := [4]byte{1, 2, 3, 4}
	f := []byte{b0}
	switch {
	case len(p) < 126:
		f = append(f, 0x80|byte(len(p)))
	default:
		f = append(f, 0x80|126)
		f = binary.BigEndian.AppendUint16(f, uint16(len(p)))
	}
	f = append(f, key[:]...)
	for i, b := range p {
		f = append(f, b^key[i%4])
	}
	return f
}

// MaskedText is p as a client's final text frame, masked.
func MaskedText(p []byte) []byte { return MaskedFrame(0x81, p) }
