package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNoNode is Relay.Call's error when no node by that name listens.
var ErrNoNode = errors.New("cluster: no such node")

// RelayOptions configures a Relay. NodeID is required.
type RelayOptions struct {
	// NodeID names this node: requests for it come on its channel, and
	// answers to its requests too. It must be unique in the cluster, 1 to
	// 255 bytes.
	NodeID string
	// KeyPrefix starts the name of every channel. Defaults to
	// "sessionhub:".
	KeyPrefix string
	// Logger receives the relay's warnings. Defaults to slog.Default().
	Logger *slog.Logger
}

// Relay carries requests from one node to another by name, and their
// answers back, over Redis pub/sub: each node subscribes to a channel of
// its own, "<KeyPrefix>n:<NodeID>". It is for what must reach the one node
// that holds something (an SSE stream whose sends reach another node), with
// no sticky sessions.
//
// A request is handled on a goroutine of its own by the handler given to
// NewRelay; its answer goes back to the caller of Call. Pub/sub does not
// store: a request published while its node is not subscribed (dead, or
// reconnecting) is lost, which Call reports as ErrNoNode when Redis says
// nobody received it, and as the context's error when the answer does not
// come. A Relay is safe for concurrent use.
type Relay struct {
	rdb    redis.UniversalClient
	node   string
	prefix string
	log    *slog.Logger
	handle func(ctx context.Context, req []byte) []byte

	ps     *redis.PubSub
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	next    atomic.Uint64
	mu      sync.Mutex
	waiting map[uint64]chan []byte
}

const (
	relayRequest = 'q'
	relayAnswer  = 'a'
	// relaySubscribe bounds how long NewRelay waits for its subscription.
	relaySubscribe = 2 * time.Second
	// relayPublishAnswer bounds the publishing of an answer.
	relayPublishAnswer = 2 * time.Second
)

// NewRelay starts a Relay on rdb whose requests handle answers; handle
// runs on a goroutine per request, with a context that ends at Close. It
// waits (briefly) for its subscription, so that requests sent to it once
// it returns arrive. It panics if opts has no valid NodeID.
func NewRelay(rdb redis.UniversalClient, opts *RelayOptions, handle func(ctx context.Context, req []byte) []byte) *Relay {
	if opts == nil || opts.NodeID == "" || len(opts.NodeID) > 255 {
		panic("cluster: NewRelay needs a NodeID of 1 to 255 bytes")
	}
	r := &Relay{rdb: rdb, node: opts.NodeID, prefix: opts.KeyPrefix, log: opts.Logger, handle: handle,
		waiting: make(map[uint64]chan []byte)}
	if r.prefix == "" {
		r.prefix = "sessionhub:"
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	r.log = r.log.With("component", "cluster-relay", "node", r.node)
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.ps = rdb.Subscribe(r.ctx, r.channel(r.node))
	// The first reply is the subscription's confirmation; without Redis,
	// go on: PubSub subscribes when it connects.
	ctx, cancel := context.WithTimeout(r.ctx, relaySubscribe)
	if _, err := r.ps.Receive(ctx); err != nil {
		r.log.Warn("cluster relay: not subscribed yet", "err", err)
	}
	cancel()
	r.wg.Add(1)
	go r.read()
	return r
}

func (r *Relay) channel(node string) string { return r.prefix + "n:" + node }

// Call sends req to node and returns its answer. It fails with ErrNoNode
// when no node by that name is subscribed, and with ctx's error when the
// answer does not come in time.
func (r *Relay) Call(ctx context.Context, node string, req []byte) ([]byte, error) {
	id := r.next.Add(1)
	ch := make(chan []byte, 1)
	r.mu.Lock()
	r.waiting[id] = ch
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.waiting, id)
		r.mu.Unlock()
	}()
	n, err := r.rdb.Publish(ctx, r.channel(node), relayFrame(relayRequest, id, r.node, req)).Result()
	if err != nil {
		return nil, fmt.Errorf("cluster: relay to %q: %w", node, err)
	}
	if n == 0 {
		return nil, ErrNoNode
	}
	select {
	case a := <-ch:
		return a, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("cluster: relay to %q: %w", node, ctx.Err())
	}
}

// Close stops the relay and waits for its goroutines, the handlers
// included. Call fails afterwards. It does not close the Redis client.
func (r *Relay) Close() error {
	r.cancel()
	err := r.ps.Close()
	r.wg.Wait()
	return err
}

// relayFrame is a message on a node's channel: its kind, the request id
// (uvarint), the sender's name (a byte of length, then the name), then the
// body.
func relayFrame(kind byte, id uint64, from string, body []byte) []byte {
	f := make([]byte, 0, 2+binary.MaxVarintLen64+len(from)+len(body))
	f = append(f, kind)
	f = binary.AppendUvarint(f, id)
	f = append(f, byte(len(from)))
	f = append(f, from...)
	return append(f, body...)
}

func parseRelayFrame(m string) (kind byte, id uint64, from string, body []byte, ok bool) {
	if len(m) < 3 {
		return 0, 0, "", nil, false
	}
	kind = m[0]
	id, k := binary.Uvarint([]byte(m[1:min(len(m), 1+binary.MaxVarintLen64)]))
	if k <= 0 || len(m) < 1+k+1 {
		return 0, 0, "", nil, false
	}
	rest := m[1+k:]
	n := int(rest[0])
	if len(rest) < 1+n {
		return 0, 0, "", nil, false
	}
	return kind, id, rest[1 : 1+n], []byte(rest[1+n:]), true
}

// read is the goroutine that receives the node's channel.
func (r *Relay) read() {
	defer r.wg.Done()
	for {
		msg, err := r.ps.Receive(r.ctx)
		if r.ctx.Err() != nil {
			return
		}
		if err != nil {
			// PubSub reconnects and resubscribes by itself.
			select {
			case <-time.After(50 * time.Millisecond):
			case <-r.ctx.Done():
				return
			}
			continue
		}
		m, ok := msg.(*redis.Message)
		if !ok {
			continue
		}
		kind, id, from, body, ok := parseRelayFrame(m.Payload)
		switch {
		case !ok:
			r.log.Warn("cluster relay: dropping a malformed message")
		case kind == relayAnswer:
			r.mu.Lock()
			ch := r.waiting[id]
			r.mu.Unlock()
			if ch != nil {
				select {
				case ch <- body:
				default: // a second answer: never sent
				}
			}
		case kind == relayRequest:
			r.wg.Add(1)
			go r.serve(id, from, body)
		}
	}
}

// serve handles one request and publishes its answer.
func (r *Relay) serve(id uint64, from string, body []byte) {
	defer r.wg.Done()
	a := r.handle(r.ctx, body)
	ctx, cancel := context.WithTimeout(r.ctx, relayPublishAnswer)
	defer cancel()
	if err := r.rdb.Publish(ctx, r.channel(from), relayFrame(relayAnswer, id, r.node, a)).Err(); err != nil {
		r.log.Warn("cluster relay: answer lost", "to", from, "err", err)
	}
}
