package cluster_test

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sessionhub/sessionhub/cluster"
	"github.com/sessionhub/sessionhub/internal/redistest"
)

func TestLogSync(t *testing.T) {
	srv := redistest.Start(t)
	l := cluster.NewLog(node(t, srv), nil)
	ctx := ctxT(t)

	// A fresh session starts at the floor.
	e1, off, err := l.Sync(ctx, "s", 7, keyTTL)
	if err != nil || e1 == "" || off != 7 {
		t.Fatalf("Sync fresh = %q, %d, %v; want an epoch at 7", e1, off, err)
	}
	appendN(t, l, "s", e1, 2) // offsets 8, 9
	// A lower floor changes nothing; a higher one raises the offset.
	if e, off, err := l.Sync(ctx, "s", 3, keyTTL); e != e1 || off != 9 || err != nil {
		t.Fatalf("Sync(3) = %q, %d, %v; want %q, 9", e, off, err, e1)
	}
	if e, off, err := l.Sync(ctx, "s", 20, keyTTL); e != e1 || off != 20 || err != nil {
		t.Fatalf("Sync(20) = %q, %d, %v; want %q, 20", e, off, err, e1)
	}
	appendN(t, l, "s", e1, 1) // 21
	// The events between 9 and 20 were never stored: a recovery from
	// before the floor is not complete, one from it is.
	for _, tc := range []struct {
		from int64
		want bool
		n    int
	}{{8, false, 0}, {9, false, 0}, {19, false, 0}, {20, true, 1}, {21, true, 0}} {
		es, ok, err := l.Since(ctx, "s", e1, tc.from)
		if err != nil || ok != tc.want || len(es) != tc.n {
			t.Errorf("Since(%d) = %d events, %v, %v; want %d, %v", tc.from, len(es), ok, err, tc.n, tc.want)
		}
	}
	// Redis lost the session: a new epoch starting at the floor.
	srv.Restart()
	e2, off, err := l.Sync(ctx, "s", 21, keyTTL)
	if err != nil || e2 == e1 || off != 21 {
		t.Fatalf("Sync after restart = %q, %d, %v; want a new epoch at 21", e2, off, err)
	}
}

// pub is the Published of a broadcast-like event: {"n":<offset>,"p":"<p>"}
// published as "b<offset>|" + event.
func pub(ch, p string) cluster.Published {
	return cluster.Published{
		Head:    []byte(`{"n":`),
		Tail:    []byte(`,"p":"` + p + `"}`),
		Channel: ch,
		PubHead: append(append([]byte(nil), cluster.NoOrigin...), 'b'),
		PubMid:  []byte("|"),
	}
}

func TestLogAppendPublishOrder(t *testing.T) {
	srv := redistest.Start(t)
	a := newBus(t, srv, "A", cluster.BusOptions{})
	b := newBus(t, srv, "B", cluster.BusOptions{})
	a.Subscribe("s")
	b.Subscribe("s")
	waitSubscribers(t, srv, a.Channel("s"), 2)
	la, lb := cluster.NewLog(node(t, srv), nil), cluster.NewLog(node(t, srv), nil)
	ctx := ctxT(t)
	epoch, err := la.Epoch(ctx, "s", keyTTL)
	if err != nil {
		t.Fatal(err)
	}

	// Two nodes append concurrently; both subscribers, the appenders
	// included, get every event once in offset order.
	const per = 100
	var wg sync.WaitGroup
	for i, l := range []*cluster.Log{la, lb} {
		wg.Go(func() {
			for j := range per {
				p := fmt.Sprintf("%d-%d", i, j)
				off, data, err := l.AppendPublish(ctx, "s", epoch, "all", pub(a.Channel("s"), p), keyTTL)
				if want := fmt.Sprintf(`{"n":%d,"p":"%s"}`, off, p); err != nil || string(data) != want {
					t.Errorf("AppendPublish = %d, %q, %v; want %q", off, data, err, want)
				}
			}
		})
	}
	wg.Wait()
	for _, bus := range []*cluster.Bus{a, b} {
		for want := int64(1); want <= 2*per; want++ {
			m := receive(t, bus, 5*time.Second)
			head, event, ok := strings.Cut(string(m.Data), "|")
			off, _ := strconv.ParseInt(strings.TrimPrefix(head, "b"), 10, 64)
			if !ok || m.Node != "" || off != want || !strings.HasPrefix(event, fmt.Sprintf(`{"n":%d,`, want)) {
				t.Fatalf("message %q from %q; want offset %d from no node", m.Data, m.Node, want)
			}
		}
	}
	// The stream holds the same bytes.
	es, ok, err := la.Since(ctx, "s", epoch, 2*per-1)
	if err != nil || !ok || len(es) != 1 || !strings.HasPrefix(string(es[0].Data), fmt.Sprintf(`{"n":%d,`, 2*per)) {
		t.Fatalf("Since = %v, %v, %v", es, ok, err)
	}
	// Another epoch: nothing stored, nothing published.
	if _, _, err := la.AppendPublish(ctx, "s", "other", "all", pub(a.Channel("s"), "x"), keyTTL); !errors.Is(err, cluster.ErrEpochChanged) {
		t.Fatalf("AppendPublish with another epoch: %v; want ErrEpochChanged", err)
	}
	select {
	case m := <-b.Messages():
		t.Fatalf("unexpected message %q", m.Data)
	case <-time.After(50 * time.Millisecond): // nothing was published
	}
}

func TestLogTail(t *testing.T) {
	srv := redistest.Start(t)
	l := cluster.NewLog(node(t, srv), nil)
	ctx := ctxT(t)
	epoch, _, err := l.Sync(ctx, "s", 0, keyTTL)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, "s", epoch, 2)                              // 1, 2
	if _, _, err := l.Sync(ctx, "s", 5, keyTTL); err != nil { // 3..5 never stored
		t.Fatal(err)
	}
	appendN(t, l, "s", epoch, 2) // 6, 7
	for _, tc := range []struct {
		from  int64
		max   int
		want  []int64
		valid bool
	}{
		{0, 100, []int64{1, 2, 6, 7}, true},
		{2, 100, []int64{6, 7}, true}, // Since(2) is incomplete; Tail gives what there is
		{5, 100, []int64{6, 7}, true},
		{0, 1, []int64{7}, true},
		{7, 100, nil, true},
	} {
		es, latest, ok, err := l.Tail(ctx, "s", epoch, tc.from, tc.max)
		if err != nil || ok != tc.valid || latest != 7 || !slices.Equal(offsets(es), tc.want) {
			t.Errorf("Tail(%d, %d) = %v, %d, %v, %v; want %v, 7, %v", tc.from, tc.max, offsets(es), latest, ok, err, tc.want, tc.valid)
		}
	}
	if es, _, ok, err := l.Tail(ctx, "s", "other", 0, 100); ok || err != nil || es != nil {
		t.Errorf("Tail of another epoch = %v, %v, %v", es, ok, err)
	}
	if _, latest, ok, err := l.Tail(ctx, "fresh", "", 0, 100); ok || err != nil || latest != 0 {
		t.Errorf("Tail of an unknown session = %d, %v, %v; want not ok", latest, ok, err)
	}
}
