package session

import "time"

// Event is one app event (broadcast) kept in a session's history: its
// offset, when it was published, whom it was addressed to, and its encoded
// server message, shared with the live fan-out.
type Event struct {
	Offset int64
	At     time.Time
	To     string // protocol.ToAll, ToInstructors, ToLearners or a userId
	Data   []byte
}

// History keeps a session's latest events, at most Size of them and none
// older than TTL, in offset order. Like Session it is plain data: its owner
// calls every method and passes the time in. The zero value keeps nothing;
// set Size and TTL.
type History struct {
	Size int
	TTL  time.Duration

	events []Event // events[head:] are kept, oldest first
	head   int
	bytes  int
	// lost is the highest offset no longer kept (0 while nothing was
	// dropped): a recovery from an offset below it cannot be complete.
	lost int64
}

// Append keeps e, the session's newest event, and drops what falls out of
// Size and TTL.
func (h *History) Append(e Event, now time.Time) {
	h.events = append(h.events, e)
	h.bytes += len(e.Data)
	h.Trim(now)
}

// Trim drops the events beyond Size or older than TTL at now.
func (h *History) Trim(now time.Time) {
	for n := len(h.events) - h.head; n > 0; n-- {
		e := &h.events[h.head]
		if n <= h.Size && now.Sub(e.At) < h.TTL {
			break
		}
		h.lost = e.Offset
		h.bytes -= len(e.Data)
		*e = Event{}
		h.head++
	}
	h.compact()
}

// compact moves the kept events to the front once the dropped front is as
// large as what is kept, so the backing array stays within twice Size.
func (h *History) compact() {
	if h.head > 0 && h.head >= len(h.events)-h.head {
		n := copy(h.events, h.events[h.head:])
		clear(h.events[n:])
		h.events = h.events[:n]
		h.head = 0
	}
}

// Since returns the kept events after offset, oldest first, and whether
// they are all the events after it (false when some were dropped). The
// slice is the history's own: read it, do not keep it.
func (h *History) Since(offset int64) ([]Event, bool) {
	if offset < h.lost {
		return nil, false
	}
	kept := h.events[h.head:]
	// Offsets are increasing: find the first after offset.
	lo, hi := 0, len(kept)
	for lo < hi {
		mid := (lo + hi) / 2
		if kept[mid].Offset <= offset {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return kept[lo:], true
}

// Forget drops the kept events up to offset through and makes a recovery
// from below it incomplete: for a history that starts (again) at through,
// such as a node's copy of a cluster session's history, which holds only
// what reached the node.
func (h *History) Forget(through int64) {
	h.lost = max(h.lost, through)
	for h.head < len(h.events) && h.events[h.head].Offset <= through {
		h.bytes -= len(h.events[h.head].Data)
		h.events[h.head] = Event{}
		h.head++
	}
	h.compact()
}

// Len is the number of events kept, and Bytes their encoded size.
func (h *History) Len() int   { return len(h.events) - h.head }
func (h *History) Bytes() int { return h.bytes }
