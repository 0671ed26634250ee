package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// BusOptions configures a Bus. NodeID is required.
type BusOptions struct {
	// NodeID names this node in the header of every message it publishes,
	// so that it can drop its own messages when Redis hands them back. It
	// must be unique in the cluster, not empty, and at most 255 bytes.
	NodeID string
	// KeyPrefix starts the name of every channel (default "sessionhub:").
	KeyPrefix string
	// Queue is the number of outgoing messages waiting for Redis before
	// Publish drops them (default 4096).
	Queue int
	// Inbox is the number of incoming messages waiting in Messages before
	// the bus drops them (default 4096).
	Inbox int
	// Logger receives the bus's warnings (default slog.Default()).
	Logger *slog.Logger
	// Linger is how long the publisher may hold the first message it takes
	// from the queue so that the messages queued meanwhile share its write
	// to Redis (one pipeline, one PUBLISH per session), and Redis's write to
	// each other node: fewer wake-ups and system calls on every node for
	// the same events, for at most Linger of extra latency. A batch leaves
	// early when it is full. Messages keep their order. A hub sets it from
	// hub.Options.BusLinger (hubd's --bus-linger), a share of its write
	// delay. Defaults to 0: every message is written as soon as the
	// publisher wakes.
	Linger time.Duration
}

// Message is what another node published on a session.
type Message struct {
	Session string // the session, as passed to Publish
	Node    string // the NodeID of the node that published it
	Data    []byte // the bytes as passed to Publish; the receiver owns them
}

// BusStats are a Bus's counters since NewBus.
type BusStats struct {
	// Published counts the messages Redis accepted.
	Published uint64
	// Dropped counts the messages Publish took or refused that were not
	// published: the queue was full, Redis was unreachable, or the bus was
	// closed.
	Dropped uint64
	// Received counts the messages from other nodes put on Messages.
	Received uint64
	// InboxDropped counts the messages from other nodes dropped because
	// Messages was full (its reader was too slow).
	InboxDropped uint64
}

// Bus carries session events between the nodes of a cluster over Redis
// pub/sub: one channel per session, "<KeyPrefix>s:<session>", which a node
// subscribes to only while it wants the session's events.
//
// Its methods never block on Redis: Subscribe and Unsubscribe record what
// the node wants and return, a goroutine applies it; Publish puts the
// message on a bounded queue that a goroutine sends to Redis in order
// (pipelined in batches on one connection, after at most
// BusOptions.Linger), so that the messages of one node arrive at every
// other node in the order it published them.
//
// Failure handling:
//   - While Redis is unreachable, the publisher drops what it cannot send
//     and what Publish queues meanwhile, counting it in Stats().Dropped,
//     trying again at most every second: nothing is buffered without bound
//     and nothing stale is replayed when Redis returns.
//   - The subscriber remembers the sessions it wants. When its connection
//     breaks (go-redis's PubSub reconnects by itself and subscribes again to
//     every channel it holds) or stops answering its pings (then the bus
//     drops the PubSub and subscribes a new one to every wanted session),
//     the subscriptions come back with no call from the caller. Messages
//     published while a node was not subscribed are lost to it: pub/sub
//     has no history.
//   - Incoming messages wait on a bounded channel (Messages). When its
//     reader falls behind and it is full, new messages are dropped and
//     counted in Stats().InboxDropped, so that a slow reader never stalls
//     the Redis connection.
//
// A Bus is safe for concurrent use.
type Bus struct {
	rdb    redis.UniversalClient
	node   string
	prefix string // KeyPrefix + "s:"
	header []byte // the header of every message this node publishes
	log    *slog.Logger

	queue  chan busOut
	inbox  chan Message
	sub    *subscriber
	linger time.Duration

	// Owned by the publisher (publish, then flush): its buffer and the
	// grouping of a batch by session (see send).
	arena  []byte
	groups busGroups
	pipe   redis.Pipeliner

	// Owned by the subscriber's reading goroutine (handle): the names of
	// the nodes heard from, so that a message does not copy its origin.
	nodes map[string]string

	published, dropped, received, inboxDropped atomic.Uint64
	lastFullLog, lastInboxLog                  atomic.Int64

	closed    atomic.Bool
	quit      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// busOut is a message waiting to be published.
type busOut struct {
	session string
	data    []byte
}

const (
	// busVersion is the first byte of every message on the bus: its
	// format, then one byte of origin length, the origin and the data.
	busVersion = 1
	// busPacked is the first byte of a message that packs several of one
	// session: one byte of origin length, the origin, then each one's
	// length (a uvarint) and data. The publisher packs what is queued for
	// a session when it sends, so that a busy session costs Redis one
	// PUBLISH per batch, not one per message.
	busPacked = 2
	// busMaxBatch bounds the messages sent in one pipeline.
	busMaxBatch = 256
	// busCheck is how often the subscriber pings an idle connection; three
	// times that with no answer and it subscribes afresh.
	busCheck = time.Second
	// busRetry bounds the pause between attempts while Redis is down.
	busRetry = time.Second
	// busSend bounds one attempt to publish a batch, retries and dials
	// included (as far as the client honours the context).
	busSend = 2 * time.Second
	// busFlush bounds how long Close spends publishing what is queued.
	busFlush = 2 * time.Second
	// busLogEvery bounds how often a repeated warning is logged.
	busLogEvery = 10 * time.Second
	// busNodes bounds the node names handle remembers.
	busNodes = 1024
	// busScan is the largest batch that send groups by session with a
	// scan of the groups so far rather than a map.
	busScan = 16
)

// NewBus starts a Bus on rdb. It panics if opts has no valid NodeID.
func NewBus(rdb redis.UniversalClient, opts *BusOptions) *Bus {
	if opts == nil || opts.NodeID == "" || len(opts.NodeID) > 255 {
		panic("cluster: NewBus needs a NodeID of 1 to 255 bytes")
	}
	b := &Bus{
		rdb:    rdb,
		node:   opts.NodeID,
		log:    opts.Logger,
		linger: max(opts.Linger, 0),
		quit:   make(chan struct{}),
		nodes:  make(map[string]string),
	}
	prefix := opts.KeyPrefix
	if prefix == "" {
		prefix = "sessionhub:"
	}
	b.prefix = prefix + "s:"
	if b.log == nil {
		b.log = slog.Default()
	}
	b.log = b.log.With("component", "cluster-bus", "node", b.node)
	b.header = append([]byte{busVersion, byte(len(b.node))}, b.node...)
	b.queue = make(chan busOut, positive(opts.Queue, 4096))
	b.inbox = make(chan Message, positive(opts.Inbox, 4096))
	b.pipe = rdb.Pipeline()
	b.sub = newSubscriber(rdb, b.log, busCheck, b.handle)
	b.wg.Add(1)
	go b.publish()
	return b
}

func positive(n, def int) int {
	if n > 0 {
		return n
	}
	return def
}

// Subscribe makes the node receive the session's messages from now on,
// and again after every reconnection, until Unsubscribe. It does not wait
// for Redis: the first messages after the call may be missed, since the
// subscription takes a round trip. Calling it again changes nothing.
func (b *Bus) Subscribe(session string) { b.sub.set(b.prefix+session, true) }

// Channel is the Redis channel of the session's messages, for a script
// that publishes on it (see Log.AppendPublish).
func (b *Bus) Channel(session string) string { return b.prefix + session }

// NoOrigin is the header of a message that names no node: published on a
// session's Channel after it, its data reaches every subscribed node, the
// publisher's included, with an empty Message.Node.
var NoOrigin = []byte{busVersion, 0}

// Unsubscribe stops the session's messages. Those already received and
// not yet on Messages are dropped. It does not wait for Redis.
func (b *Bus) Unsubscribe(session string) { b.sub.set(b.prefix+session, false) }

// Publish queues data for the other nodes subscribed to the session and
// reports whether it was queued; it never blocks. data is sent as it is
// (behind a small header naming this node) and must not change afterwards.
// When the queue is full, or the bus is closed, the message is dropped,
// counted, and Publish returns false. A queued message can still be
// dropped (and counted) when Redis is unreachable.
func (b *Bus) Publish(session string, data []byte) bool {
	if b.closed.Load() {
		b.dropped.Add(1)
		return false
	}
	select {
	case b.queue <- busOut{session, data}:
		return true
	default:
		b.dropped.Add(1)
		if logDue(&b.lastFullLog, busLogEvery) {
			b.log.Warn("cluster bus: publish queue full, dropping messages", "queue", cap(b.queue))
		}
		return false
	}
}

// PublishNow publishes data for the other nodes subscribed to the session
// at once, on the caller's goroutine, and returns when Redis took it (or
// failed to): for a message that must reach Redis before whatever the
// caller sends it next, on any connection (Publish's queue gives order only
// among the messages it carries). It is counted like Publish's.
func (b *Bus) PublishNow(ctx context.Context, session string, data []byte) error {
	if b.closed.Load() {
		b.dropped.Add(1)
		return errors.New("cluster: bus closed")
	}
	msg := make([]byte, 0, len(b.header)+len(data))
	msg = append(append(msg, b.header...), data...)
	if err := b.rdb.Publish(ctx, b.prefix+session, msg).Err(); err != nil {
		b.dropped.Add(1)
		return fmt.Errorf("cluster: publish on session %q: %w", session, err)
	}
	b.published.Add(1)
	return nil
}

// Messages delivers what other nodes published on the sessions this node
// is subscribed to, in the order each of them published it. A node never
// receives its own messages. The channel is bounded (BusOptions.Inbox):
// read it promptly, since what does not fit is dropped. Close does not
// close it.
func (b *Bus) Messages() <-chan Message { return b.inbox }

// Stats returns the bus's counters.
func (b *Bus) Stats() BusStats {
	return BusStats{
		Published:    b.published.Load(),
		Dropped:      b.dropped.Load(),
		Received:     b.received.Load(),
		InboxDropped: b.inboxDropped.Load(),
	}
}

// Close stops the bus and waits for its goroutines. It first tries to
// publish what is still queued (for at most a couple of seconds, and not
// at all when Redis is known to be down), then unsubscribes. Publish
// after Close drops. Close does not close the Redis client.
func (b *Bus) Close() error {
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		close(b.quit)
		b.wg.Wait()
		b.sub.close()
	})
	return nil
}

// handle takes a message from the subscriber's goroutine. The node's own
// messages, which Redis hands back to it as to every subscriber, are
// dropped first, before any lookup or copy.
func (b *Bus) handle(channel, payload string) {
	if len(payload) < 2 || payload[0] != busVersion && payload[0] != busPacked || len(payload) < 2+int(payload[1]) {
		b.malformed(channel)
		return
	}
	n := int(payload[1])
	node := payload[2 : 2+n]
	if node == b.node {
		return
	}
	session, ok := strings.CutPrefix(channel, b.prefix)
	if !ok || !b.sub.wants(channel) {
		return
	}
	node = b.nodeName(node)
	if payload[0] == busVersion {
		b.receive(Message{Session: session, Node: node, Data: []byte(payload[2+n:])})
		return
	}
	// One copy for the whole packed message; each one's Data is a slice of
	// it whose capacity ends where its bytes do, so that appending to one
	// never reaches the next.
	body := payload[2+n:]
	for rest := body; len(rest) > 0; {
		size, k := binary.Uvarint([]byte(rest[:min(len(rest), binary.MaxVarintLen64)]))
		if k <= 0 || size > uint64(len(rest)-k) {
			b.malformed(channel)
			return
		}
		rest = rest[k+int(size):]
	}
	all := []byte(body)
	for rest := all; len(rest) > 0; {
		size, k := binary.Uvarint(rest)
		end := k + int(size)
		b.receive(Message{Session: session, Node: node, Data: rest[k:end:end]})
		rest = rest[end:]
	}
}

// nodeName returns node as a string of its own, not a slice of the
// payload it came in (which the message would keep alive): the same
// string every time for a node.
func (b *Bus) nodeName(node string) string {
	if name, ok := b.nodes[node]; ok {
		return name
	}
	if len(b.nodes) >= busNodes {
		clear(b.nodes)
	}
	name := strings.Clone(node)
	b.nodes[name] = name
	return name
}

func (b *Bus) malformed(channel string) {
	if logDue(&b.lastInboxLog, busLogEvery) {
		b.log.Warn("cluster bus: dropping a malformed message", "channel", channel)
	}
}

// receive puts msg on the inbox, or drops it when the inbox is full.
func (b *Bus) receive(msg Message) {
	select {
	case b.inbox <- msg:
		b.received.Add(1)
	default:
		b.inboxDropped.Add(1)
		if logDue(&b.lastInboxLog, busLogEvery) {
			b.log.Warn("cluster bus: inbox full, dropping incoming messages", "inbox", cap(b.inbox))
		}
	}
}

// publish is the goroutine that sends the queue to Redis.
func (b *Bus) publish() {
	defer b.wg.Done()
	batch := make([]busOut, 0, busMaxBatch)
	var (
		down    bool
		retryAt time.Time
		backoff time.Duration
		lost    uint64 // dropped since Redis went down
	)
	var linger *time.Timer
	if b.linger > 0 {
		linger = time.NewTimer(b.linger)
		linger.Stop()
		defer linger.Stop()
	}
	for {
		batch = batch[:0]
		select {
		case m := <-b.queue:
			batch = append(batch, m)
		case <-b.quit:
			b.flush(down, batch)
			return
		}
		if linger != nil && !down {
			batch = b.gather(batch, linger)
		}
	fill:
		for len(batch) < busMaxBatch {
			select {
			case m := <-b.queue:
				batch = append(batch, m)
			default:
				break fill
			}
		}
		if down && time.Now().Before(retryAt) {
			b.dropped.Add(uint64(len(batch)))
			lost += uint64(len(batch))
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), busSend)
		sent, err := b.send(ctx, batch)
		cancel()
		b.published.Add(uint64(sent))
		b.dropped.Add(uint64(len(batch) - sent))
		lost += uint64(len(batch) - sent)
		switch {
		case err != nil && !down:
			down, backoff = true, 50*time.Millisecond
			retryAt = time.Now().Add(backoff)
			b.log.Warn("cluster bus: cannot publish, dropping messages until Redis answers", "err", err)
		case err != nil:
			backoff = min(2*backoff, busRetry)
			retryAt = time.Now().Add(backoff)
		case down:
			down = false
			b.log.Info("cluster bus: publishing again", "dropped", lost)
			lost = 0
		default:
			lost = 0
		}
	}
}

// gather adds to batch what is queued within the linger (timer, stopped
// and drained), until the batch is full or the bus closes; the publisher
// calls it after it took batch's first message.
func (b *Bus) gather(batch []busOut, timer *time.Timer) []busOut {
	timer.Reset(b.linger)
	defer timer.Stop()
	for len(batch) < busMaxBatch {
		select {
		case m := <-b.queue:
			batch = append(batch, m)
		case <-timer.C:
			return batch
		case <-b.quit:
			return batch // sent now; flush takes the rest
		}
	}
	return batch
}

// flush publishes, on Close, what remains in the queue after batch.
func (b *Bus) flush(down bool, batch []busOut) {
	for {
		select {
		case m := <-b.queue:
			batch = append(batch, m)
			continue
		default:
		}
		break
	}
	if len(batch) == 0 {
		return
	}
	sent := 0
	if !down {
		ctx, cancel := context.WithTimeout(context.Background(), busFlush)
		for i := 0; i < len(batch); i += busMaxBatch {
			n, err := b.send(ctx, batch[i:min(i+busMaxBatch, len(batch))])
			sent += n
			if err != nil {
				break
			}
		}
		cancel()
	}
	b.published.Add(uint64(sent))
	b.dropped.Add(uint64(len(batch) - sent))
}

// send publishes batch in one pipeline and returns how many Redis took.
// The messages of one session in a batch go out as one packed PUBLISH
// (busPacked), in the order they were queued; a session with one message
// gets a plain one. Only the publisher calls it (publish, then flush): it
// reuses the publisher's buffer, grouping and pipeline, so that a batch
// allocates nothing of its own beyond what go-redis does per command.
func (b *Bus) send(ctx context.Context, batch []busOut) (int, error) {
	size := 0
	for _, m := range batch {
		size += len(b.header) + binary.MaxVarintLen32 + len(m.data)
	}
	if cap(b.arena) < size || cap(b.arena) > 1<<20 && size <= 1<<20 {
		b.arena = make([]byte, 0, size)
	}
	arena := b.arena[:0]
	g := &b.groups
	g.group(batch)
	pipe := b.pipe
	for k, i := range g.first {
		start := len(arena)
		if g.count[k] == 1 {
			arena = append(arena, b.header...)
			arena = append(arena, batch[i].data...)
		} else {
			arena = append(arena, busPacked)
			arena = append(arena, b.header[1:]...)
			for ; i >= 0; i = g.next[i] {
				arena = binary.AppendUvarint(arena, uint64(len(batch[i].data)))
				arena = append(arena, batch[i].data...)
			}
		}
		pipe.Publish(ctx, b.prefix+batch[g.first[k]].session, arena[start:len(arena):len(arena)])
	}
	cmds, err := pipe.Exec(ctx)
	if err == nil {
		return len(batch), nil
	}
	sent := 0
	for k, c := range cmds {
		if c.Err() == nil {
			sent += g.count[k]
		}
	}
	return sent, err
}

// busGroups groups a batch by session, each group in the batch's order,
// the groups in the order of their first message; its slices are reused
// from batch to batch.
type busGroups struct {
	first []int // per group: the index of its first message
	last  []int // per group: the index of its last message
	count []int // per group: its messages
	next  []int // per message: the index of its group's next, or -1
	index map[string]int
}

func (g *busGroups) group(batch []busOut) {
	g.first, g.last, g.count = g.first[:0], g.last[:0], g.count[:0]
	g.next = g.next[:0]
	if len(batch) > busScan {
		// Rebuilt rather than cleared: clearing a map costs its largest
		// size ever, and most batches take the scan.
		g.index = make(map[string]int, len(batch))
	}
	for i, m := range batch {
		g.next = append(g.next, -1)
		k := -1
		if len(batch) > busScan {
			if j, ok := g.index[m.session]; ok {
				k = j
			} else {
				g.index[m.session] = len(g.first)
			}
		} else {
			for j, f := range g.first {
				if batch[f].session == m.session {
					k = j
					break
				}
			}
		}
		if k < 0 {
			g.first = append(g.first, i)
			g.last = append(g.last, i)
			g.count = append(g.count, 1)
			continue
		}
		g.next[g.last[k]] = i
		g.last[k] = i
		g.count[k]++
	}
	g.index = nil
}

// logDue reports whether at least d has passed since the last time it
// returned true for last, and then notes now.
func logDue(last *atomic.Int64, d time.Duration) bool {
	now := time.Now().UnixNano()
	prev := last.Load()
	return now-prev >= int64(d) && last.CompareAndSwap(prev, now)
}

// subscriber holds one go-redis PubSub subscribed to the channels its
// owner wants, and hands every message it receives to handle, on its
// reading goroutine. A second goroutine applies changes of the wanted
// channels, pings the connection when it is idle and, when the connection
// stops answering (half-open TCP), replaces the PubSub with a fresh one.
//
// go-redis's PubSub already reconnects after a read or write error, and
// subscribes the new connection to every channel it was asked for, even
// those asked for while Redis was down; the subscriber relies on that.
type subscriber struct {
	rdb    redis.UniversalClient
	log    *slog.Logger
	check  time.Duration
	handle func(channel, payload string)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{}

	mu     sync.Mutex
	ps     *redis.PubSub
	want   map[string]struct{}
	dirty  bool // want changed since the last apply
	closed bool

	// Owned by control: the channels ps holds, and those whose SUBSCRIBE
	// failed.
	have, retry map[string]struct{}

	lastRead atomic.Int64 // unix ns of the last reply read
	lastErr  atomic.Int64 // unix ns of the last failed read
}

func newSubscriber(rdb redis.UniversalClient, log *slog.Logger, check time.Duration, handle func(channel, payload string)) *subscriber {
	s := &subscriber{
		rdb:    rdb,
		log:    log,
		check:  check,
		handle: handle,
		wake:   make(chan struct{}, 1),
		want:   make(map[string]struct{}),
		have:   make(map[string]struct{}),
		retry:  make(map[string]struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.ps = rdb.Subscribe(s.ctx) // no channels: it does not connect yet
	s.lastRead.Store(time.Now().UnixNano())
	s.wg.Add(2)
	go s.read()
	go s.control()
	return s
}

// set records whether the channel is wanted; it never blocks.
func (s *subscriber) set(channel string, on bool) {
	s.mu.Lock()
	_, had := s.want[channel]
	if on && !had {
		s.want[channel] = struct{}{}
		s.dirty = true
	} else if !on && had {
		delete(s.want, channel)
		s.dirty = true
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscriber) wants(channel string) bool {
	s.mu.Lock()
	_, ok := s.want[channel]
	s.mu.Unlock()
	return ok
}

func (s *subscriber) current() *redis.PubSub {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ps
}

func (s *subscriber) close() {
	s.cancel()
	s.mu.Lock()
	s.closed = true
	ps := s.ps
	s.mu.Unlock()
	ps.Close() // unblocks the reader
	s.wg.Wait()
}

// read is the goroutine that receives from the PubSub.
func (s *subscriber) read() {
	defer s.wg.Done()
	var (
		backoff time.Duration
		down    bool
		timer   = time.NewTimer(time.Hour)
	)
	timer.Stop()
	for {
		ps := s.current()
		msg, err := ps.Receive(s.ctx)
		if s.ctx.Err() != nil {
			return
		}
		if err != nil {
			s.lastErr.Store(time.Now().UnixNano())
			if errors.Is(err, redis.ErrClosed) && ps != s.current() {
				continue // replaced by control
			}
			if !down {
				down = true
				s.log.Warn("cluster: pub/sub connection lost, reconnecting", "err", err)
			}
			backoff = min(max(2*backoff, 10*time.Millisecond), s.check)
			timer.Reset(backoff)
			select {
			case <-timer.C:
			case <-s.ctx.Done():
				return
			}
			continue
		}
		s.lastRead.Store(time.Now().UnixNano())
		backoff = 0
		if down {
			down = false
			s.log.Info("cluster: pub/sub connection back, subscriptions restored")
		}
		if m, ok := msg.(*redis.Message); ok {
			s.handle(m.Channel, m.Payload)
		}
	}
}

// control is the goroutine that applies subscription changes and watches
// the connection.
func (s *subscriber) control() {
	defer s.wg.Done()
	t := time.NewTicker(s.check)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.wake:
			s.apply()
		case <-t.C:
			s.apply()
			now := time.Now().UnixNano()
			idle := time.Duration(now - s.lastRead.Load())
			failing := time.Duration(now-s.lastErr.Load()) < 3*s.check
			switch {
			case idle > 3*s.check && !failing:
				s.log.Warn("cluster: pub/sub connection does not answer, subscribing afresh", "idle", idle)
				s.renew()
			case idle >= s.check:
				ps := s.current()
				ps.Ping(s.ctx) // an error shows in read
			}
		}
	}
}

// apply subscribes and unsubscribes the PubSub to match want. It may wait
// for Redis (a dial), which is why it runs on control.
func (s *subscriber) apply() {
	s.mu.Lock()
	if (!s.dirty && len(s.retry) == 0) || s.closed {
		s.mu.Unlock()
		return
	}
	s.dirty = false
	var add, del []string
	for c := range s.want {
		_, had := s.have[c]
		_, again := s.retry[c]
		if !had || again {
			add = append(add, c)
		}
	}
	for c := range s.have {
		if _, ok := s.want[c]; !ok {
			del = append(del, c)
		}
	}
	ps := s.ps
	s.mu.Unlock()

	// PubSub remembers the channels it is asked for even when the command
	// fails, and subscribes them on its next connection. But when a write
	// fails and PubSub reconnects at once, the new connection misses them,
	// so a failed SUBSCRIBE is sent again on the next tick (twice is
	// harmless).
	clear(s.retry)
	if len(add) > 0 {
		err := ps.Subscribe(s.ctx, add...)
		for _, c := range add {
			s.have[c] = struct{}{}
			if err != nil {
				s.retry[c] = struct{}{}
			}
		}
	}
	if len(del) > 0 {
		ps.Unsubscribe(s.ctx, del...) // forgotten by PubSub even if it fails
		for _, c := range del {
			delete(s.have, c)
		}
	}
}

// renew replaces the PubSub with a new one, subscribed to every wanted
// channel.
func (s *subscriber) renew() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	old := s.ps
	s.ps = s.rdb.Subscribe(s.ctx)
	clear(s.have)
	clear(s.retry)
	s.dirty = true
	s.lastRead.Store(time.Now().UnixNano())
	s.mu.Unlock()
	old.Close()
	s.apply()
}
