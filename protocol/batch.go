package protocol

import (
	"bytes"
	"iter"
)

// SplitBatch yields the messages of one server frame. A frame sent under
// BatchSubprotocol holds one or more JSON messages separated by '\n'; a
// frame without the subprotocol holds one, which SplitBatch yields as it is.
// Empty and blank lines are skipped. The yielded slices alias frame: copy
// one to keep it after the frame's buffer is reused.
func SplitBatch(frame []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for len(frame) > 0 {
			msg := frame
			if i := bytes.IndexByte(frame, '\n'); i >= 0 {
				msg, frame = frame[:i], frame[i+1:]
			} else {
				frame = nil
			}
			if len(bytes.TrimSpace(msg)) == 0 {
				continue
			}
			if !yield(msg) {
				return
			}
		}
	}
}
