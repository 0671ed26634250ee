package cluster_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionhub/sessionhub/cluster"
	"github.com/sessionhub/sessionhub/internal/redistest"
)

// client returns a client of its own on the server, as a separate node
// would have, closed when the test ends.
func client(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), DialTimeout: time.Second})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// testLogger logs to the test.
func testLogger(t *testing.T, name string) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("who", name)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func newBus(t *testing.T, srv *redistest.Server, node string, opts cluster.BusOptions) *cluster.Bus {
	t.Helper()
	opts.NodeID = node
	opts.Logger = testLogger(t, node)
	b := cluster.NewBus(client(t, srv), &opts)
	t.Cleanup(func() { b.Close() })
	return b
}

// waitFor polls cond (a state with no channel to wait on) until it holds,
// failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond) // polling
	}
}

// subscribedBus is a bus of node on srv (newBus) subscribed to session, once
// Redis counts it as the channel's only subscriber.
func subscribedBus(t *testing.T, srv *redistest.Server, node, session string, o cluster.BusOptions) *cluster.Bus {
	t.Helper()
	b := newBus(t, srv, node, o)
	b.Subscribe(session)
	waitSubscribers(t, srv, "sessionhub:s:"+session, 1)
	return b
}

// waitSubscribers waits until channel has n subscribers in Redis.
func waitSubscribers(t *testing.T, srv *redistest.Server, channel string, n int64) {
	t.Helper()
	rdb := client(t, srv)
	waitFor(t, 5*time.Second, fmt.Sprintf("%d subscribers on %s", n, channel), func() bool {
		m, err := rdb.PubSubNumSub(context.Background(), channel).Result()
		return err == nil && m[channel] == n
	})
}

// receive returns the next message, failing the test after d.
func receive(t *testing.T, b *cluster.Bus, d time.Duration) cluster.Message {
	t.Helper()
	select {
	case m := <-b.Messages():
		return m
	case <-time.After(d):
		t.Fatalf("no message within %v", d)
		return cluster.Message{}
	}
}

func payload(i int) []byte {
	// Binary, with zero bytes and invalid UTF-8, of varying length.
	return append([]byte{0, 0xff, byte(i), byte(i >> 8), '\n'}, bytes.Repeat([]byte{byte(i)}, i%300)...)
}

func TestBusDeliversInOrderToOtherNodesOnly(t *testing.T) {
	srv := redistest.Start(t)
	a := newBus(t, srv, "A", cluster.BusOptions{})
	b := newBus(t, srv, "B", cluster.BusOptions{})
	a.Subscribe("s1")
	b.Subscribe("s1")
	b.Subscribe("s1") // idempotent
	waitSubscribers(t, srv, "sessionhub:s:s1", 2)

	const n = 1000
	for i := range n {
		if !a.Publish("s1", payload(i)) {
			t.Fatalf("publish %d refused", i)
		}
	}
	for i := range n {
		m := receive(t, b, 5*time.Second)
		if m.Session != "s1" || m.Node != "A" || !bytes.Equal(m.Data, payload(i)) {
			t.Fatalf("message %d = %q from %q on %q; want %q from A on s1", i, m.Data, m.Node, m.Session, payload(i))
		}
	}
	// B answers after it got all of A's; had A received its own messages,
	// they would come before B's on A's connection.
	b.Publish("s1", []byte("end"))
	if m := receive(t, a, 5*time.Second); m.Node != "B" || string(m.Data) != "end" {
		t.Fatalf("A received %q from %q; want only B's end", m.Data, m.Node)
	}
	// A publisher counts a batch once Redis answered, which can be after
	// the subscribers got it.
	waitFor(t, 5*time.Second, "stats", func() bool {
		return a.Stats() == cluster.BusStats{Published: n, Received: 1} &&
			b.Stats() == cluster.BusStats{Published: 1, Received: n}
	})
}

func TestBusUnsubscribedSessionsAreNotDelivered(t *testing.T) {
	srv := redistest.Start(t)
	a := newBus(t, srv, "A", cluster.BusOptions{})
	b := newBus(t, srv, "B", cluster.BusOptions{})
	b.Subscribe("s1")
	b.Subscribe("s3")
	waitSubscribers(t, srv, "sessionhub:s:s3", 1)
	b.Unsubscribe("s3")
	waitSubscribers(t, srv, "sessionhub:s:s3", 0)
	waitSubscribers(t, srv, "sessionhub:s:s1", 1)

	// A publishes in this order: had B received s2 or s3, it would come
	// before the marker.
	a.Publish("s2", []byte("never subscribed"))
	a.Publish("s3", []byte("unsubscribed"))
	a.Publish("s1", []byte("marker"))
	if m := receive(t, b, 5*time.Second); m.Session != "s1" || string(m.Data) != "marker" {
		t.Fatalf("B received %q on %q; want the marker on s1", m.Data, m.Session)
	}
}

func TestBusSlowReaderDropsAndCounts(t *testing.T) {
	srv := redistest.Start(t)
	a := newBus(t, srv, "A", cluster.BusOptions{})
	b := subscribedBus(t, srv, "B", "s1", cluster.BusOptions{Inbox: 4})
	for i := range 100 {
		a.Publish("s1", payload(i))
	}
	waitFor(t, 5*time.Second, "B counts all 100", func() bool {
		s := b.Stats()
		return s.Received+s.InboxDropped == 100
	})
	if s := b.Stats(); s.Received != 4 || s.InboxDropped != 96 {
		t.Fatalf("B stats = %+v; want 4 received, 96 dropped", s)
	}
	for i := range 4 {
		if m := receive(t, b, time.Second); !bytes.Equal(m.Data, payload(i)) {
			t.Fatalf("message %d = %q", i, m.Data)
		}
	}
}

func TestBusQueueFullDropsWithoutBlocking(t *testing.T) {
	srv := redistest.Start(t)
	a := newBus(t, srv, "A", cluster.BusOptions{Queue: 1})
	total := 0
	refused := 0
	for refused == 0 { // the publisher empties the queue concurrently
		for range 1000 {
			total++
			if !a.Publish("s1", []byte("x")) {
				refused++
			}
		}
	}
	waitFor(t, 5*time.Second, "every message counted", func() bool {
		s := a.Stats()
		return s.Published+s.Dropped == uint64(total)
	})
	if s := a.Stats(); s.Dropped < uint64(refused) {
		t.Fatalf("stats = %+v; want at least %d dropped", s, refused)
	}
}

func TestBusRedisOutage(t *testing.T) {
	srv := redistest.Start(t)
	a := newBus(t, srv, "A", cluster.BusOptions{Queue: 1024})
	b := subscribedBus(t, srv, "B", "s1", cluster.BusOptions{})
	a.Publish("s1", []byte("before"))
	if m := receive(t, b, 5*time.Second); string(m.Data) != "before" {
		t.Fatalf("got %q", m.Data)
	}
	// A counts it once Redis answered, which can be after B got it.
	waitFor(t, 5*time.Second, "A counts its message", func() bool { return a.Stats().Published == 1 })
	before := a.Stats()

	srv.Stop()
	// Nothing blocks while Redis is down: not Publish, not (un)subscribing.
	start := time.Now()
	const n = 10000
	for i := range n {
		a.Publish("s1", []byte(fmt.Sprint("down ", i)))
	}
	b.Subscribe("s2")
	b.Unsubscribe("s2")
	// A publish that waited for Redis would wait for a dial timeout each
	// time: 10 000 of them would take hours, not the 10 s allowed to a busy
	// machine.
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("%d publishes took %v with Redis down", n, d)
	}
	waitFor(t, 10*time.Second, "every message of the outage dropped and counted", func() bool {
		s := a.Stats()
		return s.Published+s.Dropped == before.Published+before.Dropped+n
	})
	if s := a.Stats(); s.Published != before.Published {
		t.Fatalf("published %d while Redis was down", s.Published-before.Published)
	}

	srv.Restart()
	// B subscribes again by itself: probe until one arrives.
	probe := time.NewTicker(20 * time.Millisecond)
	defer probe.Stop()
	deadline := time.After(15 * time.Second)
	a.Publish("s1", []byte("probe"))
wait:
	for {
		select {
		case m := <-b.Messages():
			if string(m.Data) != "probe" {
				t.Fatalf("got %q after the restart; want a probe", m.Data)
			}
			break wait
		case <-probe.C:
			a.Publish("s1", []byte("probe"))
		case <-deadline:
			t.Fatalf("no message through Redis within 15s of its restart; stats A %+v B %+v", a.Stats(), b.Stats())
		}
	}
	probe.Stop()
	for i := range 100 {
		a.Publish("s1", payload(i))
	}
	for i := 0; i < 100; {
		m := receive(t, b, 5*time.Second)
		if string(m.Data) == "probe" {
			continue // sent before the batch
		}
		if !bytes.Equal(m.Data, payload(i)) {
			t.Fatalf("after the restart message %d = %q; want %q", i, m.Data, payload(i))
		}
		i++
	}
}

func TestBusClose(t *testing.T) {
	srv := redistest.Start(t)
	a := subscribedBus(t, srv, "A", "s1", cluster.BusOptions{})
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if a.Publish("s1", []byte("late")) {
		t.Fatal("Publish after Close queued")
	}
	// Closing the PubSub closed its connection: Redis forgets the
	// subscriber. (Leaked goroutines fail TestMain.)
	waitSubscribers(t, srv, "sessionhub:s:s1", 0)
}

func TestBusCloseFlushesQueue(t *testing.T) {
	srv := redistest.Start(t)
	b := subscribedBus(t, srv, "B", "s1", cluster.BusOptions{})
	a := cluster.NewBus(client(t, srv), &cluster.BusOptions{NodeID: "A", Logger: testLogger(t, "A")})
	for i := range 500 {
		a.Publish("s1", payload(i))
	}
	a.Close()
	if s := a.Stats(); s.Published != 500 {
		t.Fatalf("A stats after Close = %+v; want 500 published", s)
	}
	for i := range 500 {
		if m := receive(t, b, 5*time.Second); !bytes.Equal(m.Data, payload(i)) {
			t.Fatalf("message %d = %q", i, m.Data)
		}
	}
}

// What is queued for a session when the publisher sends goes out packed:
// fewer PUBLISH than messages, each session's in order, and a malformed
// packed message is dropped whole.
func TestBusPacksQueuedMessages(t *testing.T) {
	srv := redistest.Start(t)
	a := newBus(t, srv, "A", cluster.BusOptions{})
	b := newBus(t, srv, "B", cluster.BusOptions{})
	for _, s := range []string{"s1", "s2"} {
		b.Subscribe(s)
		waitSubscribers(t, srv, "sessionhub:s:"+s, 1)
	}
	rdb := client(t, srv)
	ctx := context.Background()
	rdb.ConfigResetStat(ctx)

	const n = 2000
	for i := range n {
		a.Publish([]string{"s1", "s2"}[i%2], payload(i))
	}
	next := map[string]int{"s1": 0, "s2": 1}
	for range n {
		m := receive(t, b, 5*time.Second)
		if i := next[m.Session]; !bytes.Equal(m.Data, payload(i)) || m.Node != "A" {
			t.Fatalf("%s: got %q from %q, want %q", m.Session, m.Data, m.Node, payload(i))
		}
		next[m.Session] += 2
	}
	stats, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var calls int
	for _, line := range strings.Split(stats, "\n") {
		if strings.HasPrefix(line, "cmdstat_publish:") {
			fmt.Sscanf(strings.TrimPrefix(line, "cmdstat_publish:"), "calls=%d", &calls)
		}
	}
	if calls == 0 || calls >= n {
		t.Errorf("%d PUBLISH for %d messages: not packed", calls, n)
	}
	t.Logf("%d messages in %d PUBLISH", n, calls)

	// A packed message whose lengths run past its end: dropped, and the
	// bus goes on.
	rdb.Publish(ctx, "sessionhub:s:s1", []byte{2, 1, 'X', 5, 'a', 'b'})
	a.Publish("s1", []byte("after"))
	if m := receive(t, b, 5*time.Second); string(m.Data) != "after" {
		t.Fatalf("got %q after a malformed packed message", m.Data)
	}
}

// publishCalls returns how many PUBLISH Redis has run since its stats were
// last reset.
func publishCalls(t *testing.T, rdb *redis.Client) int {
	t.Helper()
	stats, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	for _, line := range strings.Split(stats, "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_publish:"); ok {
			fmt.Sscanf(rest, "calls=%d", &calls)
		}
	}
	return calls
}

// With a Linger, the publisher holds what it took until the linger ends,
// the batch is full or the bus closes, and sends it all in one pipeline:
// one PUBLISH per session, in order. (A linger of an hour: the test never
// waits for it.)
func TestBusLinger(t *testing.T) {
	srv := redistest.Start(t)
	b := subscribedBus(t, srv, "B", "s1", cluster.BusOptions{})
	rdb := client(t, srv)
	ctx := context.Background()

	t.Run("held until the batch is full", func(t *testing.T) {
		a := newBus(t, srv, "A", cluster.BusOptions{Linger: time.Hour})
		rdb.ConfigResetStat(ctx)
		a.Publish("s1", payload(0))
		// A marker published (and so delivered) after A's first message:
		// it reaches B first, since A holds its message.
		marker := append(append([]byte(nil), cluster.NoOrigin...), "marker"...)
		if err := rdb.Publish(ctx, "sessionhub:s:s1", marker).Err(); err != nil {
			t.Fatal(err)
		}
		if m := receive(t, b, 5*time.Second); string(m.Data) != "marker" || m.Node != "" {
			t.Fatalf("B got %q from %q first; want the marker: A held nothing back", m.Data, m.Node)
		}
		if s := a.Stats(); s.Published != 0 {
			t.Fatalf("A published %d before the linger ended", s.Published)
		}
		// The rest of a batch (256 messages): it leaves at once.
		for i := 1; i < 256; i++ {
			a.Publish("s1", payload(i))
		}
		for i := range 256 {
			if m := receive(t, b, 5*time.Second); !bytes.Equal(m.Data, payload(i)) || m.Node != "A" {
				t.Fatalf("message %d = %q from %q, want %q from A", i, m.Data, m.Node, payload(i))
			}
		}
		if n := publishCalls(t, rdb); n != 2 { // the marker's and A's packed one
			t.Fatalf("%d PUBLISH; want 2: the marker's and one for A's 256 messages", n)
		}
	})
	t.Run("sent when the bus closes", func(t *testing.T) {
		a := cluster.NewBus(client(t, srv), &cluster.BusOptions{NodeID: "A", Linger: time.Hour, Logger: testLogger(t, "A")})
		for i := range 3 {
			a.Publish([]string{"s1", "s2"}[i%2], payload(i))
		}
		a.Close() // does not wait for the linger
		if s := a.Stats(); s.Published != 3 {
			t.Fatalf("A stats after Close = %+v; want 3 published", s)
		}
		for _, i := range []int{0, 2} { // B is not subscribed to s2
			if m := receive(t, b, 5*time.Second); !bytes.Equal(m.Data, payload(i)) {
				t.Fatalf("got %q, want %q", m.Data, payload(i))
			}
		}
	})
}

// The messages of a packed message are each the receiver's: appending to
// one leaves the next as it was. A packed message with a bad length is
// dropped whole, the messages before the bad length included.
func TestBusPackedMessagesAreSeparate(t *testing.T) {
	srv := redistest.Start(t)
	b := subscribedBus(t, srv, "B", "s1", cluster.BusOptions{})
	rdb := client(t, srv)
	ctx := context.Background()
	pub := func(p []byte) {
		t.Helper()
		if err := rdb.Publish(ctx, "sessionhub:s:s1", p).Err(); err != nil {
			t.Fatal(err)
		}
	}

	pub([]byte{2, 1, 'X', 1, 'a', 5, 'b', 'c'}) // "a", then 5 bytes of 2
	pub([]byte{2, 1, 'X', 1, 'a', 2, 'b', 'c', 0, 1, 'd'})
	first := receive(t, b, 5*time.Second)
	second := receive(t, b, 5*time.Second)
	third := receive(t, b, 5*time.Second)
	for i, m := range []cluster.Message{first, second, third} {
		if want := []string{"a", "bc", ""}[i]; string(m.Data) != want || m.Node != "X" || m.Session != "s1" {
			t.Fatalf("message %d = %q from %q on %q; want %q from X on s1 (the malformed one dropped whole)", i, m.Data, m.Node, m.Session, want)
		}
	}
	if grown := append(first.Data, "ZZ"...); string(grown) != "aZZ" || string(second.Data) != "bc" {
		t.Fatalf("appending to the first message gave %q and changed the second to %q", grown, second.Data)
	}
	if grown := append(second.Data, 'Z'); string(grown) != "bcZ" {
		t.Fatalf("appending to the second message gave %q", grown)
	}
	if fourth := receive(t, b, 5*time.Second); string(fourth.Data) != "d" {
		t.Fatalf("fourth message %q after appending to the second, want d", fourth.Data)
	}
}
