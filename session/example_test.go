package session_test

import (
	"fmt"
	"time"

	"github.com/sessionhub/sessionhub/protocol"
	"github.com/sessionhub/sessionhub/session"
)

// Two tabs of one user are one participant. When the last one closes, the
// participant stays for the leave grace (a reload comes back as the same
// participant); Expire removes it once the grace has ended.
func ExampleSession_Detach() {
	start := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	const grace = 30 * time.Second
	s := session.New("intro-go", "epoch-1", start)
	ann := protocol.UserInfo{UserID: "ann", Name: "Ann"}

	s.Join(ann, start)
	_, isNew := s.Join(ann, start.Add(time.Second)) // a second tab
	fmt.Println("second tab new:", isNew, "participants:", s.Len(), "connections:", s.Get("ann").Conns)

	s.Detach("ann", start.Add(2*time.Second), grace)
	_, left := s.Detach("ann", start.Add(3*time.Second), grace)
	fmt.Println("left at once:", left, "leaves after:", s.Get("ann").LeaveAt.Sub(start))

	fmt.Println("expired before the grace ends:", len(s.Expire(start.Add(32*time.Second))))
	gone := s.Expire(start.Add(33 * time.Second))
	fmt.Println("expired:", gone[0].UserID, "participants:", s.Len())
	// Output:
	// second tab new: false participants: 1 connections: 2
	// left at once: false leaves after: 33s
	// expired before the grace ends: 0
	// expired: ann participants: 0
}

// The idle sweep makes a participant silent for idleAfter inactive; its next
// message of its own makes it active again.
func ExampleSession_Idle() {
	start := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	const idleAfter = 5 * time.Minute
	s := session.New("intro-go", "epoch-1", start)
	s.Join(protocol.UserInfo{UserID: "ann", Name: "Ann"}, start)
	s.Join(protocol.UserInfo{UserID: "bob", Name: "Bob"}, start)
	s.Touch("bob", start.Add(4*time.Minute))

	for _, p := range s.Idle(start.Add(idleAfter), idleAfter) {
		fmt.Println(p.UserID, "is idle")
	}
	woke := s.Touch("ann", start.Add(6*time.Minute))
	fmt.Println("ann woke:", woke, "active:", s.Get("ann").Active)
	// Output:
	// ann is idle
	// ann woke: true active: true
}

// A history of Size 3 keeps the latest three events. A recovery from an
// offset whose next events are all kept is complete; from an older offset
// it is not, and Since returns nothing.
func ExampleHistory_Since() {
	start := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	h := session.History{Size: 3, TTL: time.Minute}
	for off := int64(1); off <= 5; off++ {
		h.Append(session.Event{Offset: off, At: start, To: protocol.ToAll, Data: []byte(`{}`)}, start)
	}
	for _, from := range []int64{3, 2, 1} {
		evs, complete := h.Since(from)
		var offs []int64
		for _, e := range evs {
			offs = append(offs, e.Offset)
		}
		fmt.Printf("since %d: %v complete %v\n", from, offs, complete)
	}
	// Output:
	// since 3: [4 5] complete true
	// since 2: [3 4 5] complete true
	// since 1: [] complete false
}
