package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// NodesOptions configures Nodes. NodeID is required.
type NodesOptions struct {
	// NodeID names this node; it must be unique in the cluster.
	NodeID string
	// Heartbeat is how often the node proves it is alive (default 5s).
	Heartbeat time.Duration
	// Misses is the number of heartbeats a node may miss before it counts
	// as dead (default 3): its key lives Heartbeat×Misses.
	Misses int
	// KeyPrefix starts the name of every key (default "sessionhub:").
	KeyPrefix string
	// Logger receives state changes and warnings (default slog.Default()).
	Logger *slog.Logger
}

// Nodes keeps this node registered in Redis and watches the others.
//
// Every Heartbeat it SETs "<KeyPrefix>node:<id>" with a time to live of
// Heartbeat×Misses, records itself in the sorted set "<KeyPrefix>nodes"
// (score: the time of its last beat, in ms of its own clock), and checks the
// key of every node of that set. A node whose key has expired has missed
// Misses heartbeats: it is reported on Dead, at the latest one heartbeat
// later, so (Misses+1)×Heartbeat after its last beat. A node that leaves
// cleanly (Leave) deletes its key and entry and publishes its id on
// "<KeyPrefix>nodes:left", and the others report it at once.
//
// When Redis may have lost the registrations (this node could not reach it,
// or found its own key gone: Redis restarted or was flushed), a missing key
// proves nothing until the other nodes have had Heartbeat×Misses to register
// again; only then are those still missing reported. Entries of the set
// older than ten key lifetimes (at least a minute) are removed.
//
// Nodes reports what its node sees: every Nodes value reports each dead
// node once (again only if it comes back and dies again).
type Nodes struct {
	rdb      redis.UniversalClient
	id       string
	beat     time.Duration
	ttl      time.Duration
	key      string // this node's key
	keys     string // prefix of every node's key
	set      string // the sorted set of nodes
	leftChan string
	log      *slog.Logger

	healthy  atomic.Bool
	healthMu sync.Mutex
	health   chan bool
	dead     chan string
	lost     chan struct{}
	deadWake chan struct{}
	sub      *subscriber

	failed      bool // owned by run: the last heartbeat failed
	lastFailLog atomic.Int64

	mu         sync.Mutex
	epoch      time.Time            // since when this node's view of Redis is whole
	known      map[string]time.Time // other nodes: when last seen alive
	reported   map[string]time.Time // reported dead: when
	pending    []string             // to send on dead
	pendingSet map[string]bool

	ctx         context.Context
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	stopBeats   chan struct{}
	beatsOnce   sync.Once
	beatStopped chan struct{}
	closeOnce   sync.Once
}

// beatResult is what one heartbeat found.
type beatResult struct {
	at         time.Time
	err        error
	ownMissing bool            // this node's key was gone before the beat
	members    map[string]bool // the set's members (not this node)
	alive      map[string]bool // every node checked: whether its key exists
}

// NewNodes registers the node and starts its heartbeat. It panics without
// a NodeID.
func NewNodes(rdb redis.UniversalClient, opts *NodesOptions) *Nodes {
	if opts == nil || opts.NodeID == "" {
		panic("cluster: NewNodes needs a NodeID")
	}
	prefix := opts.KeyPrefix
	if prefix == "" {
		prefix = "sessionhub:"
	}
	beat := opts.Heartbeat
	if beat <= 0 {
		beat = 5 * time.Second
	}
	n := &Nodes{
		rdb:         rdb,
		id:          opts.NodeID,
		beat:        beat,
		ttl:         beat * time.Duration(positive(opts.Misses, 3)),
		keys:        prefix + "node:",
		set:         prefix + "nodes",
		leftChan:    prefix + "nodes:left",
		log:         opts.Logger,
		health:      make(chan bool, 1),
		dead:        make(chan string, 64),
		lost:        make(chan struct{}, 1),
		deadWake:    make(chan struct{}, 1),
		known:       make(map[string]time.Time),
		reported:    make(map[string]time.Time),
		pendingSet:  make(map[string]bool),
		stopBeats:   make(chan struct{}),
		beatStopped: make(chan struct{}),
	}
	n.key = n.keys + n.id
	if n.log == nil {
		n.log = slog.Default()
	}
	n.log = n.log.With("component", "cluster-nodes", "node", n.id)
	n.failed = true // the first beat starts the view of Redis
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.sub = newSubscriber(rdb, n.log, min(beat, busCheck), n.handle)
	n.sub.set(n.leftChan, true)
	n.wg.Add(2)
	go n.run()
	go n.forward()
	return n
}

// Healthy reports whether the last heartbeat reached Redis, in time. It
// turns false at the first heartbeat that fails or takes more than half a
// heartbeat, so within about one heartbeat of an outage; and after Leave.
func (n *Nodes) Healthy() bool { return n.healthy.Load() }

// Health delivers Healthy's value on every change. It holds only the latest
// one: a reader that falls behind sees the current state, not every flip.
// It starts false; the first heartbeat that succeeds sends true.
func (n *Nodes) Health() <-chan bool { return n.health }

// Lost signals each time a heartbeat reaches Redis after this node could
// not reach it, or finds this node's key gone (Redis restarted, was
// flushed, or this is the first beat): Redis may have lost what the node
// and the others wrote, and they should write it again. It holds one
// signal: a reader that falls behind sees one for several.
func (n *Nodes) Lost() <-chan struct{} { return n.lost }

// Dead delivers the id of every other node found dead: its key expired, or
// it left. Each is sent once; ids wait for a slow reader (without limit but
// each at most once), never blocking the heartbeat. Close does not close it.
func (n *Nodes) Dead() <-chan string { return n.dead }

// Leave says goodbye: it stops the heartbeat, deletes this node's key and
// entry, and publishes its id so that the other nodes report it on Dead at
// once. Healthy is false afterwards. Close should follow.
func (n *Nodes) Leave(ctx context.Context) error {
	n.beatsOnce.Do(func() { close(n.stopBeats) })
	select {
	case <-n.beatStopped:
	case <-ctx.Done():
		return ctx.Err()
	}
	n.setHealthy(false)
	pipe := n.rdb.Pipeline()
	pipe.Del(ctx, n.key)
	pipe.ZRem(ctx, n.set, n.id)
	pipe.Publish(ctx, n.leftChan, n.id)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("cluster: leave: %w", err)
	}
	n.log.Info("cluster: node left the cluster")
	return nil
}

// Close stops the heartbeat (without a goodbye: the others find this node
// dead when its key expires) and waits for its goroutines.
func (n *Nodes) Close() error {
	n.closeOnce.Do(func() {
		n.cancel()
		n.wg.Wait()
		n.sub.close()
	})
	return nil
}

// setHealthy sets Healthy and reports whether it changed.
func (n *Nodes) setHealthy(ok bool) bool {
	n.healthMu.Lock()
	defer n.healthMu.Unlock()
	if n.healthy.Swap(ok) == ok {
		return false
	}
	select {
	case <-n.health:
	default:
	}
	n.health <- ok
	return true
}

// run is the heartbeat goroutine: it starts a beat every Heartbeat, one at
// a time, on its own goroutine so that a beat stuck on Redis is noticed.
func (n *Nodes) run() {
	defer n.wg.Done()
	defer close(n.beatStopped)
	results := make(chan beatResult, 1)
	inflight := false
	overdue := time.NewTimer(time.Hour)
	overdue.Stop()
	start := func() {
		inflight = true
		overdue.Reset(n.beat / 2)
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			results <- n.beatOnce()
		}()
	}
	start()
	t := time.NewTicker(n.beat)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			if inflight {
				<-results
			}
			return
		case <-n.stopBeats:
			if inflight {
				<-results
			}
			return
		case <-overdue.C:
			if inflight && n.setHealthy(false) {
				n.log.Warn("cluster: heartbeat late, Redis does not answer", "after", n.beat/2)
			}
		case <-t.C:
			if !inflight {
				start()
			}
		case r := <-results:
			inflight = false
			overdue.Stop()
			n.observe(r)
		}
	}
}

// beatOnce refreshes this node's registration and checks the others.
func (n *Nodes) beatOnce() beatResult {
	r := beatResult{at: time.Now()}
	ctx, cancel := context.WithTimeout(n.ctx, n.beat)
	defer cancel()
	ms := r.at.UnixMilli()
	gc := ms - max(10*n.ttl, time.Minute).Milliseconds()
	pipe := n.rdb.Pipeline()
	prev := pipe.SetArgs(ctx, n.key, ms, redis.SetArgs{TTL: n.ttl, Get: true})
	pipe.ZAdd(ctx, n.set, redis.Z{Score: float64(ms), Member: n.id})
	pipe.ZRemRangeByScore(ctx, n.set, "-inf", "("+strconv.FormatInt(gc, 10))
	members := pipe.ZRange(ctx, n.set, 0, -1)
	pipe.Exec(ctx)
	for _, c := range []redis.Cmder{prev, members} {
		if err := c.Err(); err != nil && !errors.Is(err, redis.Nil) {
			r.err = err
			return r
		}
	}
	r.ownMissing = errors.Is(prev.Err(), redis.Nil)

	// Check the members and the nodes known before, which Redis may have
	// lost.
	r.members = make(map[string]bool)
	var ids []string
	for _, id := range members.Val() {
		if id != n.id {
			r.members[id] = true
			ids = append(ids, id)
		}
	}
	n.mu.Lock()
	for id := range n.known {
		if !r.members[id] {
			ids = append(ids, id)
		}
	}
	n.mu.Unlock()
	if len(ids) == 0 {
		return r
	}
	pipe = n.rdb.Pipeline()
	exists := make([]*redis.IntCmd, len(ids))
	for i, id := range ids {
		exists[i] = pipe.Exists(ctx, n.keys+id)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		r.err = err
		return r
	}
	r.alive = make(map[string]bool, len(ids))
	for i, id := range ids {
		r.alive[id] = exists[i].Val() > 0
	}
	return r
}

// observe takes a heartbeat's result on run.
func (n *Nodes) observe(r beatResult) {
	if r.err != nil {
		if n.setHealthy(false) || logDue(&n.lastFailLog, busLogEvery) {
			n.log.Warn("cluster: heartbeat failed, Redis unreachable", "err", r.err)
		}
		n.failed = true
		return
	}
	n.mu.Lock()
	if n.failed || r.ownMissing {
		// Redis may have lost the other nodes' registrations as well as
		// ours: give them a key lifetime to come back.
		n.epoch = r.at
		n.failed = false
		select {
		case n.lost <- struct{}{}:
		default: // one signal pending is enough
		}
	}
	for id, alive := range r.alive {
		if t, ok := n.reported[id]; ok && (!alive || t.After(r.at)) {
			continue // reported already (maybe after this beat read its key)
		}
		if alive {
			n.known[id] = r.at
			delete(n.reported, id)
			continue
		}
		seen, ok := n.known[id]
		if ok && !seen.Before(n.epoch) || r.at.Sub(n.epoch) >= n.ttl {
			n.reportLocked(id, r.at)
		}
	}
	for id, t := range n.reported {
		if !r.members[id] && r.at.Sub(t) > n.ttl {
			delete(n.reported, id)
		}
	}
	n.mu.Unlock()
	if n.setHealthy(true) {
		n.log.Info("cluster: heartbeat reached Redis, node registered")
	}
}

// handle takes a "left" notice on the subscriber's goroutine.
func (n *Nodes) handle(channel, id string) {
	if channel != n.leftChan || id == n.id {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.reported[id]; !ok {
		n.reportLocked(id, time.Now())
	}
}

// reportLocked queues id for Dead.
func (n *Nodes) reportLocked(id string, at time.Time) {
	n.reported[id] = at
	delete(n.known, id)
	if !n.pendingSet[id] {
		n.pendingSet[id] = true
		n.pending = append(n.pending, id)
	}
	select {
	case n.deadWake <- struct{}{}:
	default:
	}
	n.log.Info("cluster: node dead", "dead", id)
}

// forward is the goroutine that sends pending ids on dead.
func (n *Nodes) forward() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.deadWake:
		}
		for {
			n.mu.Lock()
			if len(n.pending) == 0 {
				n.pending = nil
				n.mu.Unlock()
				break
			}
			id := n.pending[0]
			n.pending = n.pending[1:]
			delete(n.pendingSet, id)
			n.mu.Unlock()
			select {
			case n.dead <- id:
			case <-n.ctx.Done():
				return
			}
		}
	}
}
