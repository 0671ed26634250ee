package session

import "time"

// Event is one app event (broadcast) kept in a session's history: its
// offset, when it was published, whom it was addressed to, and its encoded
// server message, shared with the live fan-out.
type Event struct {
	Offset int64     // the session's broadcast offset, increasing from 1
	At     time.Time // when it was published: what TTL is measured from
	To     string    // protocol.ToAll, ToInstructors, ToLearners or a userId
	Data   []byte    // the encoded broadcast event; its length counts for MaxBytes and the Budget
}

// History keeps a session's latest events, at most Size of them, none
// older than TTL and, with MaxBytes, at most MaxBytes of encoded events, in
// offset order; with a Budget it also gives up its oldest events when the
// histories that share the budget hold more than its Max. Like Session it is
// plain data: its owner calls every method and passes the time in (the
// owner of a shared Budget owns every history that shares it). The zero
// value keeps nothing; set Size and TTL.
type History struct {
	Size int           // the most events kept
	TTL  time.Duration // how long an event is kept after its At
	// MaxBytes bounds the encoded size of the kept events (the oldest go
	// first); 0 means no bound.
	MaxBytes int
	// Budget, when not nil, is shared with other histories. Set it before
	// the first Append and do not change it.
	Budget *Budget

	events []Event // events[head:] are kept, oldest first
	head   int
	bytes  int
	// lost is the highest offset no longer kept (0 while nothing was
	// dropped): a recovery from an offset below it cannot be complete.
	lost int64
}

// Append keeps e, the session's newest event, and drops what falls out of
// Size, TTL, MaxBytes and the Budget.
func (h *History) Append(e Event, now time.Time) {
	h.events = append(h.events, e)
	h.addBytes(len(e.Data))
	if b := h.Budget; b != nil {
		b.queue = append(b.queue, budgetEntry{h, e.Offset})
	}
	h.Trim(now)
	if b := h.Budget; b != nil {
		b.enforce()
	}
}

// addBytes adds n (maybe negative) to the kept size, and to the Budget's.
func (h *History) addBytes(n int) {
	h.bytes += n
	if h.Budget != nil {
		h.Budget.used += n
	}
}

// Trim drops the events beyond Size, older than TTL at now, or past
// MaxBytes, oldest first.
func (h *History) Trim(now time.Time) {
	for n := len(h.events) - h.head; n > 0; n-- {
		e := &h.events[h.head]
		if n <= h.Size && now.Sub(e.At) < h.TTL && (h.MaxBytes <= 0 || h.bytes <= h.MaxBytes) {
			break
		}
		h.dropOldest()
	}
	h.compact()
}

// dropOldest drops the oldest kept event (there is one): a recovery that
// needs it is no longer complete.
func (h *History) dropOldest() {
	e := &h.events[h.head]
	h.lost = e.Offset
	h.addBytes(-len(e.Data))
	*e = Event{}
	h.head++
}

// Clear drops every kept event, giving their bytes back to the Budget: for
// a history that goes away with its session.
func (h *History) Clear() {
	for h.head < len(h.events) {
		h.dropOldest()
	}
	h.compact()
}

// oldestIs reports whether the oldest kept event has offset.
func (h *History) oldestIs(offset int64) bool {
	return h.head < len(h.events) && h.events[h.head].Offset == offset
}

// Budget is a byte budget shared by histories (a process's sessions): when
// their kept events together exceed Max bytes, the oldest events of all of
// them, in the order they were appended, go first. It is plain data, owned
// by the owner of the histories that share it. Max 0 means no bound.
type Budget struct {
	Max int // bytes of kept events, all sharing histories together; 0: no bound

	used  int
	queue []budgetEntry // appended events, oldest first, from head on
	head  int
}

// budgetEntry is an event appended to h; it may since have been dropped by
// h itself (Size, TTL, MaxBytes, Clear).
type budgetEntry struct {
	h      *History
	offset int64
}

// Used is the encoded size of the events the sharing histories keep.
func (b *Budget) Used() int { return b.used }

// enforce drops the oldest events while the budget is exceeded, and the
// entries of events their history dropped by itself from the front.
func (b *Budget) enforce() {
	for b.head < len(b.queue) {
		e := b.queue[b.head]
		live := e.h.oldestIs(e.offset)
		if live && (b.Max <= 0 || b.used <= b.Max) {
			break
		}
		if live {
			// Every event appended before it is gone: it is its
			// history's oldest.
			e.h.dropOldest()
			e.h.compact()
		}
		b.queue[b.head] = budgetEntry{}
		b.head++
	}
	b.queue, b.head = compactFront(b.queue, b.head)
}

// compact moves the kept events to the front once the dropped front is as
// large as what is kept, so the backing array stays within twice Size.
func (h *History) compact() {
	h.events, h.head = compactFront(h.events, h.head)
}

// compactFront moves s[head:], what a queue keeps, to the front of s once
// the dropped s[:head] is as large as it, clearing what it moved from; it
// returns the queue and its new head.
func compactFront[T any](s []T, head int) ([]T, int) {
	if head == 0 || head < len(s)-head {
		return s, head
	}
	n := copy(s, s[head:])
	clear(s[n:])
	return s[:n], 0
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
	lost := max(h.lost, through)
	for h.head < len(h.events) && h.events[h.head].Offset <= through {
		h.dropOldest()
	}
	h.lost = lost
	h.compact()
}

// Len is the number of events kept.
func (h *History) Len() int { return len(h.events) - h.head }

// Bytes is the encoded size of the events kept (the sum of their Data).
func (h *History) Bytes() int { return h.bytes }
