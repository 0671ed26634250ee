package hub

// This file is the hub's Prometheus metrics. Counters and histograms are
// updated from any goroutine (the run loop, readers, writers, the broker);
// the gauges that read hub state (queueDepth, readiness, cluster) are read
// on the goroutine of a /metrics scrape, through atomics and the short lock
// of the connection set (h.mu), never the run loop.

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sessionhub/sessionhub/cluster"
	"github.com/sessionhub/sessionhub/internal/version"
	"github.com/sessionhub/sessionhub/protocol"
)

// metrics are the hub's Prometheus metrics, in a registry of its own so
// that several hubs can live in one process (tests).
type metrics struct {
	reg *prometheus.Registry

	connections     prometheus.Gauge
	byTransport     *prometheus.GaugeVec
	sseSends        *prometheus.CounterVec
	sessions        prometheus.Gauge
	participants    prometheus.Gauge
	messagesIn      *prometheus.CounterVec
	messagesOut     *prometheus.CounterVec
	cursorCoalesced prometheus.Counter
	rateLimited     prometheus.Counter
	slowConsumers   prometheus.Counter
	dropped         *prometheus.CounterVec
	closes          *prometheus.CounterVec
	refused         prometheus.Counter
	batchedFrames   prometheus.Counter
	loopLatency     prometheus.Histogram
	historyEvents   prometheus.Gauge
	historyBytes    prometheus.Gauge
	replayed        prometheus.Counter

	// The platform's analytics (contract v1.1).
	upgrades            *prometheus.CounterVec
	joins               *prometheus.CounterVec
	delivery            prometheus.Histogram
	sessionDuration     prometheus.Histogram
	participantDuration prometheus.Histogram

	// Cluster only (registered by cluster).
	clusterErrors  *prometheus.CounterVec
	clusterDropped *prometheus.CounterVec
	clusterFilled  prometheus.Counter

	// Resolved once: the per-message paths do no label lookups.
	inByType         map[string]prometheus.Counter
	outByType        map[string]prometheus.Counter
	droppedGone      prometheus.Counter
	droppedQueued    prometheus.Counter
	upgradesByResult map[string]prometheus.Counter
	joinsByKind      map[string]prometheus.Counter
}

// Upgrade results (sessionhub_upgrades_total's label result): accepted, or
// why the upgrade was refused.
const (
	upgradeAccepted     = "accepted"
	upgradeOrigin       = "origin"        // the Origin is not allowed (403)
	upgradeUnauthorized = "unauthorized"  // token mode: no valid token (401)
	upgradeLimit        = "limit"         // --max-connections (503) or --max-connections-per-ip (429)
	upgradeShutdown     = "shutting_down" // the hub is shutting down (503)
	upgradeBadRequest   = "bad_request"   // not a valid WebSocket handshake
)

var upgradeResults = []string{upgradeAccepted, upgradeOrigin, upgradeUnauthorized, upgradeLimit, upgradeShutdown, upgradeBadRequest}

// Join kinds (sessionhub_joins_total's label kind). A join that asked to
// recover is recovered or not_recovered; one that did not is new (the
// user's first connection to the session) or rejoin (the user was still a
// participant: another tab, a reconnect within the leave grace, or the same
// join again).
const (
	joinNew          = "new"
	joinRejoin       = "rejoin"
	joinRecovered    = "recovered"
	joinNotRecovered = "not_recovered"
)

var joinKinds = []string{joinNew, joinRejoin, joinRecovered, joinNotRecovered}

// durationBuckets are the buckets of the session and participant
// durations: 1 s to about 9 hours (a class lasts minutes to hours).
var durationBuckets = prometheus.ExponentialBuckets(1, 2, 16)

var inTypes = []string{protocol.TypeJoinSession, protocol.TypeLeaveSession, protocol.TypeCursorUpdate,
	protocol.TypeActivityStatus, protocol.TypeBroadcast, protocol.TypePing, protocol.TypeRefreshToken, "invalid"}

var outTypes = []string{protocol.TypeSessionJoined, protocol.TypeSessionLeft, protocol.TypeUserJoined,
	protocol.TypeUserLeft, protocol.TypeCursorMoved, protocol.TypeUserActivityChanged, protocol.TypeBroadcast,
	protocol.TypeAck, protocol.TypePong, protocol.TypeError, protocol.TypeTokenRefreshed}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sessionhub_connections", Help: "Open connections: WebSockets and SSE streams."}),
		byTransport: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sessionhub_transport_connections", Help: "Open connections by transport (websocket, sse)."}, []string{"transport"}),
		sseSends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionhub_sse_sends_total", Help: "POST /sse/send requests by answer (the HTTP status) and where the stream was (local, forwarded to another node)."}, []string{"status", "where"}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sessionhub_sessions", Help: "Sessions held, empty ones within their TTL included."}),
		participants: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sessionhub_participants", Help: "Participants in all sessions, those in their leave grace included."}),
		messagesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionhub_messages_in_total", Help: "Client messages read, by type (invalid: failed to decode)."}, []string{"type"}),
		messagesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionhub_messages_out_total", Help: "Server messages queued for delivery, by type, one per recipient."}, []string{"type"}),
		cursorCoalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessionhub_cursor_updates_coalesced_total", Help: "Cursor updates replaced by a later one while waiting for the cursor rate."}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessionhub_rate_limited_total", Help: "Messages refused with rate_limited."}),
		slowConsumers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessionhub_slow_consumer_closes_total", Help: "Connections closed with 1013 because their send queue was full."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionhub_dropped_messages_total", Help: "Messages not queued, by reason (queue_full, conn_gone)."}, []string{"reason"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionhub_server_closes_total", Help: "Connections the server closed, by reason."}, []string{"reason"}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessionhub_upgrades_refused_total", Help: "WebSocket upgrades refused (shutting down, connection limits, token, origin, bad request)."}),
		batchedFrames: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessionhub_batched_frames_total", Help: "Frames that carried more than one message (sessionhub.batch)."}),
		loopLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sessionhub_hub_loop_latency_seconds",
			Help:    "Time from a message's read to its handling by the hub loop.",
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 12)}),
		historyEvents: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sessionhub_history_events", Help: "Broadcasts kept for recovery in all sessions (updated by the sweep)."}),
		historyBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sessionhub_history_bytes", Help: "Encoded size of the broadcasts kept for recovery (updated by the sweep)."}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessionhub_replayed_messages_total", Help: "Broadcasts replayed to recovering clients."}),
		clusterErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionhub_cluster_redis_errors_total", Help: "Redis operations that failed, by operation (cluster only)."}, []string{"op"}),
		clusterDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionhub_cluster_dropped_total", Help: "Cluster operations or messages dropped, by reason: broker_queue_full, bus_queue_full, malformed (cluster only)."}, []string{"reason"}),
		clusterFilled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sessionhub_cluster_gap_filled_total", Help: "Broadcasts the bus missed that a node read from the session's log instead (cluster only)."}),
		upgrades: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionhub_upgrades_total", Help: "WebSocket upgrades, by result: accepted, or why refused (origin, unauthorized, limit, shutting_down, bad_request)."}, []string{"result"}),
		joins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sessionhub_joins_total", Help: "Successful joins, by kind: new, rejoin (already a participant), recovered, not_recovered (asked to recover)."}, []string{"kind"}),
		delivery: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sessionhub_delivery_seconds",
			Help:    "Time from an event entering the hub to the frame that carries it being written, sampled once per frame written.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16)}),
		sessionDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sessionhub_session_duration_seconds",
			Help:    "Time from a session's creation on this node to its removal (TTL expiry; in a cluster, the node letting go of it).",
			Buckets: durationBuckets}),
		participantDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sessionhub_participant_duration_seconds",
			Help:    "Time from a user's join to its leave (in a cluster, counted once, by the node that ends it).",
			Buckets: durationBuckets}),
		inByType:         map[string]prometheus.Counter{},
		outByType:        map[string]prometheus.Counter{},
		upgradesByResult: map[string]prometheus.Counter{},
		joinsByKind:      map[string]prometheus.Counter{},
	}
	v := version.Get()
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sessionhub_build_info", Help: "Always 1; the labels say which build runs.",
		ConstLabels: prometheus.Labels{"version": v.Version, "revision": v.Revision, "goversion": v.GoVersion}})
	buildInfo.Set(1)
	m.reg.MustRegister(buildInfo, m.upgrades, m.joins, m.delivery, m.sessionDuration, m.participantDuration)
	for _, r := range upgradeResults {
		m.upgradesByResult[r] = m.upgrades.WithLabelValues(r)
	}
	for _, k := range joinKinds {
		m.joinsByKind[k] = m.joins.WithLabelValues(k)
	}
	// Present at 0 from the start, for alerts and dashboards.
	for _, r := range closeLabels {
		m.closes.WithLabelValues(r)
	}
	m.reg.MustRegister(m.connections, m.byTransport, m.sseSends, m.sessions, m.participants, m.messagesIn, m.messagesOut,
		m.cursorCoalesced, m.rateLimited, m.slowConsumers, m.dropped, m.closes, m.refused, m.batchedFrames,
		m.loopLatency, m.historyEvents, m.historyBytes, m.replayed, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, t := range []string{"websocket", "sse"} {
		m.byTransport.WithLabelValues(t)
	}
	for _, where := range []string{"local", "forwarded", "relayed"} {
		for _, status := range []string{"202", "400", "403", "404", "413"} {
			m.sseSends.WithLabelValues(status, where)
		}
	}
	m.droppedGone = m.dropped.WithLabelValues("conn_gone")
	m.droppedQueued = m.dropped.WithLabelValues("queue_full")
	for _, t := range inTypes {
		m.inByType[t] = m.messagesIn.WithLabelValues(t)
	}
	for _, t := range outTypes {
		m.outByType[t] = m.messagesOut.WithLabelValues(t)
	}
	return m
}

func (m *metrics) in(typ string) { m.inByType[typ].Inc() }

// participantLeft counts the leave of a participant that joined at joined
// (unknown: zero, not counted).
func (m *metrics) participantLeft(joined, now time.Time) {
	if !joined.IsZero() {
		m.participantDuration.Observe(now.Sub(joined).Seconds())
	}
}

// upgrade counts an upgrade's result (upgradeAccepted, …); a refusal counts
// in sessionhub_upgrades_refused_total too.
func (m *metrics) upgrade(result string) {
	if c := m.upgradesByResult[result]; c != nil {
		c.Inc()
	} else {
		m.upgrades.WithLabelValues(result).Inc() // a result added without its constant
	}
	if result != upgradeAccepted {
		m.refused.Inc()
	}
}

// joined counts a successful join: rec tells whether it asked to recover
// and recovered whether it did; isNew whether the user was new to the
// session.
func (m *metrics) joined(rec, recovered, isNew bool) {
	k := joinRejoin
	switch {
	case rec && recovered:
		k = joinRecovered
	case rec:
		k = joinNotRecovered
	case isNew:
		k = joinNew
	}
	m.joinsByKind[k].Inc()
}

// opened and closed count a connection of the named transport.
func (m *metrics) opened(transport string) {
	m.connections.Inc()
	m.byTransport.WithLabelValues(transport).Inc()
}

func (m *metrics) closed(transport string) {
	m.connections.Dec()
	m.byTransport.WithLabelValues(transport).Dec()
}

func (m *metrics) out(typ string, n int) {
	if n > 0 {
		m.outByType[typ].Add(float64(n))
	}
}

// cluster registers the metrics of a cluster node.
func (m *metrics) cluster(b *broker) {
	bus := func(f func(s cluster.BusStats) uint64) func() float64 {
		return func() float64 { return float64(f(b.bus.Stats())) }
	}
	m.reg.MustRegister(m.clusterErrors, m.clusterDropped, m.clusterFilled,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sessionhub_cluster_up", Help: "1 while the node's last heartbeat reached Redis, else 0."},
			func() float64 {
				if b.nodes.Healthy() {
					return 1
				}
				return 0
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sessionhub_cluster_bus_published_total", Help: "Messages this node published to the other nodes that Redis accepted."},
			bus(func(s cluster.BusStats) uint64 { return s.Published })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sessionhub_cluster_bus_received_total", Help: "Messages received from the other nodes (broadcasts included)."},
			bus(func(s cluster.BusStats) uint64 { return s.Received })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "sessionhub_cluster_bus_dropped_total", Help: "Bus messages dropped: not published (queue full, Redis unreachable) or not read in time."},
			bus(func(s cluster.BusStats) uint64 { return s.Dropped + s.InboxDropped })),
	)
	for _, r := range []string{"broker_queue_full", "bus_queue_full", "malformed"} {
		m.clusterDropped.WithLabelValues(r)
	}
	for _, op := range []string{"join", "detach", "broadcast", "republish", "load", "expire", "drop_node", "fill", "state", "publish"} {
		m.clusterErrors.WithLabelValues(op)
	}
}

// readiness registers sessionhub_ready: what /readyz says, as a metric for
// alerts (1 while it would answer 200).
func (m *metrics) readiness(h *Hub) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "sessionhub_ready", Help: "1 while /readyz answers 200 (accepting, and in a cluster reaching Redis), else 0."},
		func() float64 {
			if h.notReady() != "" {
				return 0
			}
			return 1
		}))
}

// queueDepth registers the send-queue gauges, read at scrape time from the
// connections that h tracks.
func (m *metrics) queueDepth(h *Hub) {
	depths := func() (sum, most int) {
		h.mu.Lock()
		defer h.mu.Unlock()
		for c := range h.conns {
			n := len(c.send) + int(c.queued.Load())
			sum += n
			most = max(most, n)
		}
		return sum, most
	}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sessionhub_send_queue_messages", Help: "Messages waiting in all send queues."},
			func() float64 { sum, _ := depths(); return float64(sum) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sessionhub_send_queue_max_depth", Help: "The fullest send queue's length."},
			func() float64 { _, most := depths(); return float64(most) }),
	)
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}
