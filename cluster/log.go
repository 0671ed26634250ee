package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// ErrEpochChanged is returned (wrapped) by Log.Append when the session's
// epoch in Redis is not the one the caller named: the session's history was
// lost (Redis restarted or flushed, or the session's keys expired) or
// replaced, and the caller must take the new epoch from Log.Epoch. Nothing
// was appended.
var ErrEpochChanged = errors.New("cluster: session epoch changed")

// LogOptions configures a Log. The zero value (or nil) takes every default.
// Every node of a cluster must use the same options, since they all trim the
// same streams.
type LogOptions struct {
	// Size is the number of events kept per session (default 1000).
	Size int
	// TTL is how long an event is kept after it was appended, by the Redis
	// clock (default 10m).
	TTL time.Duration
	// MaxBytes bounds the bytes of the events kept per session, oldest
	// first (default 0: no bound besides Size).
	MaxBytes int
	// KeyPrefix starts the name of every key the Log uses (default
	// "sessionhub:").
	KeyPrefix string
}

// Event is one event of a session's log: its offset, the time Redis stored
// it, its audience (protocol.ToAll, ToInstructors, ToLearners or a userId)
// and its bytes exactly as they were appended.
type Event struct {
	Offset int64
	To     string
	Data   []byte
	At     time.Time
}

// Log is the shared broadcast log of every session, kept in Redis so that
// every node of a cluster gives a session the same epoch, the same offsets
// and the same history: the cluster counterpart of session.History plus a
// session's Epoch and Offset.
//
// Per session it keeps two keys, "<prefix>log:{<session>}:meta" (a hash:
// the epoch, the latest offset and the time of the latest event) and
// "<prefix>log:{<session>}:events" (a Redis Stream of the kept events, whose
// IDs are "<ms>-<offset>"); the hash tag keeps both in one Redis Cluster
// slot. Each method is one Lua script or one command, so it is atomic in
// Redis: concurrent Appends from any number of nodes get contiguous
// offsets, each once, in the order Redis ran them.
//
// Nothing survives a Redis restart without persistence: the keys are gone,
// Append fails with ErrEpochChanged, and the next Epoch call starts the
// session again with a fresh epoch at offset 0. Redis 6.2 or later is
// needed (XTRIM MINID).
//
// A Log starts no goroutines and holds no state of its own besides its
// options; it is safe for concurrent use. Its methods honour ctx as far as
// the client does (deadlines bound a blocked read only with the client's
// ContextTimeoutEnabled; otherwise its ReadTimeout applies). Their errors
// wrap the client's.
type Log struct {
	rdb      redis.UniversalClient
	size     int
	ttl      time.Duration
	maxBytes int
	prefix   string
}

// NewLog returns a Log on rdb with opts (nil: the defaults). It does not
// talk to Redis.
func NewLog(rdb redis.UniversalClient, opts *LogOptions) *Log {
	l := &Log{rdb: rdb, size: 1000, ttl: 10 * time.Minute, prefix: "sessionhub:"}
	if opts != nil {
		if opts.Size > 0 {
			l.size = opts.Size
		}
		if opts.TTL > 0 {
			l.ttl = opts.TTL
		}
		if opts.KeyPrefix != "" {
			l.prefix = opts.KeyPrefix
		}
		l.maxBytes = max(opts.MaxBytes, 0)
	}
	return l
}

// keys are the session's meta hash and event stream.
func (l *Log) keys(session string) []string {
	base := l.prefix + "log:{" + session + "}:"
	return []string{base + "meta", base + "events"}
}

// millis is d in whole milliseconds, at least 1.
func millis(d time.Duration) int64 {
	return max(1, int64((d+time.Millisecond-1)/time.Millisecond))
}

func checkKeyTTL(keyTTL time.Duration) error {
	if keyTTL <= 0 {
		return fmt.Errorf("cluster: keyTTL must be positive, not %v", keyTTL)
	}
	return nil
}

// trimLua drops a session's oldest events (KEYS meta and events) while
// there are more than size, the oldest is older than minid ms, or their
// bytes (the meta's "bytes", kept by the scripts that add and drop
// events) are over maxb (0: no bound); it stores the bytes kept.
const trimLua = `
local function trim(meta, events, minid, size, maxb)
  local bytes = tonumber(redis.call('HGET', meta, 'bytes') or '0')
  local n = redis.call('XLEN', events)
  while n > 0 do
    local first = redis.call('XRANGE', events, '-', '+', 'COUNT', 1)
    if #first == 0 then
      break
    end
    local id = first[1][1]
    local ms = tonumber(string.match(id, '^%d+'))
    if n <= size and ms >= minid and (maxb <= 0 or bytes <= maxb) then
      break
    end
    local f = first[1][2]
    for i = 1, #f, 2 do
      if f[i] == 'd' then
        bytes = bytes - #f[i + 1]
      end
    end
    redis.call('XDEL', events, id)
    n = n - 1
  end
  if n == 0 or bytes < 0 then
    bytes = 0
  end
  redis.call('HSET', meta, 'bytes', string.format('%.0f', bytes))
end
`

// sinceScript returns {1, events} when the session's epoch is ARGV[1] and
// its stream still holds every event after offset ARGV[2] (events: the
// last ones, newest first, as XREVRANGE gives them), {1} when there is no
// event after it, and {0} otherwise. It first drops the events older than
// ARGV[3] ms, so an event past its TTL is neither returned nor counted as
// kept. ARGV[4] and ARGV[5] are the Log's size and byte bound (trimLua).
var sinceScript = redis.NewScript(trimLua + `
local m = redis.call('HMGET', KEYS[1], 'epoch', 'offset')
if m[1] ~= ARGV[1] then
  return {0}
end
local cur = tonumber(m[2] or '0')
local off = tonumber(ARGV[2])
if off < 0 or off > cur then
  return {0}
end
if off == cur then
  return {1}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('EXISTS', KEYS[2]) == 1 then
  trim(KEYS[1], KEYS[2], now - tonumber(ARGV[3]) + 1, tonumber(ARGV[4]), tonumber(ARGV[5]))
end
local n = cur - off
if redis.call('XLEN', KEYS[2]) < n then
  return {0}
end
local es = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', n)
if #es < n then
  return {0}
end
return {1, es}
`)

// Since returns the session's events after offset, in offset order, and
// whether they are all the events after it in epoch. It reports false, with
// no events, when epoch is not the session's, when offset is negative or
// beyond the session's latest, or when an event after offset was already
// trimmed (by Size or TTL), whoever it was addressed to: the same rule as
// session.History.Since and the single-node hub. An offset equal to the
// session's latest gives no events and true. Since drops the events past
// their TTL (a write) but does not keep the session's keys alive; the
// events returned are the Log's own copies.
func (l *Log) Since(ctx context.Context, session, epoch string, offset int64) ([]Event, bool, error) {
	res, err := sinceScript.Run(ctx, l.rdb, l.keys(session), epoch, offset, millis(l.ttl), l.size, l.maxBytes).Slice()
	if err != nil {
		return nil, false, fmt.Errorf("cluster: history of session %q: %w", session, err)
	}
	if len(res) == 0 || res[0] != int64(1) {
		return nil, false, nil
	}
	if len(res) == 1 {
		return nil, true, nil
	}
	raw, ok := res[1].([]any)
	if !ok {
		return nil, false, fmt.Errorf("cluster: history of session %q: unexpected reply %T", session, res[1])
	}
	events := make([]Event, len(raw))
	for i, r := range raw {
		e, err := parseEntry(r)
		if err != nil {
			return nil, false, fmt.Errorf("cluster: history of session %q: %w", session, err)
		}
		// XREVRANGE gives the newest first; the offsets must be the
		// contiguous run ending at the session's, down to offset+1.
		j := len(raw) - 1 - i
		if e.Offset != offset+1+int64(j) {
			return nil, false, nil
		}
		events[j] = e
	}
	return events, true, nil
}

// parseEntry decodes one stream entry, [id, [field, value, …]].
func parseEntry(r any) (Event, error) {
	pair, ok := r.([]any)
	if !ok || len(pair) != 2 {
		return Event{}, fmt.Errorf("malformed stream entry %v", r)
	}
	id, _ := pair[0].(string)
	msPart, offPart, ok := strings.Cut(id, "-")
	ms, err1 := strconv.ParseInt(msPart, 10, 64)
	off, err2 := strconv.ParseInt(offPart, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return Event{}, fmt.Errorf("malformed stream entry ID %q", id)
	}
	e := Event{Offset: off, At: time.UnixMilli(ms)}
	fields, _ := pair[1].([]any)
	for k := 0; k+1 < len(fields); k += 2 {
		name, _ := fields[k].(string)
		value, _ := fields[k+1].(string)
		switch name {
		case "t":
			e.To = value
		case "d":
			e.Data = []byte(value)
		}
	}
	return e, nil
}

// syncScript returns the session's epoch and offset, {epoch, offset},
// starting the session afresh (ARGV[1] as its epoch, no events) when it has
// none, raises its offset to at least ARGV[3] (the floor; a fresh epoch
// starts there), and refreshes the keys' TTL (ARGV[2] ms).
var syncScript = redis.NewScript(`
local e = redis.call('HGET', KEYS[1], 'epoch')
if not e then
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', ARGV[1])
  e = ARGV[1]
end
local off = tonumber(redis.call('HGET', KEYS[1], 'offset') or '0')
local floor = tonumber(ARGV[3])
if floor > off then
  off = floor
  redis.call('HSET', KEYS[1], 'offset', string.format('%.0f', off))
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {e, off}
`)

// Sync is Epoch that also returns the session's latest offset, after
// raising it to floor when it was lower: a node that gave offsets of its
// own to events Redis never saw (while it could not reach Redis) passes
// the highest, so that the session's offsets never go backwards for the
// clients that saw them. The events in between are not in the history, so
// a recovery from before floor reports false. A fresh epoch starts at
// floor.
func (l *Log) Sync(ctx context.Context, session string, floor int64, keyTTL time.Duration) (epoch string, offset int64, err error) {
	if err := checkKeyTTL(keyTTL); err != nil {
		return "", 0, err
	}
	res, err := syncScript.Run(ctx, l.rdb, l.keys(session), uuid.NewString(), millis(keyTTL), max(floor, 0)).Slice()
	if err != nil {
		return "", 0, fmt.Errorf("cluster: sync of session %q: %w", session, err)
	}
	if len(res) != 2 {
		return "", 0, fmt.Errorf("cluster: sync of session %q: unexpected reply %v", session, res)
	}
	epoch, _ = res[0].(string)
	offset, _ = res[1].(int64)
	return epoch, offset, nil
}

// appendScript appends an event with audience ARGV[2] when the session's
// epoch is ARGV[1]: it takes the next offset, adds the event with ID
// "<ms>-<offset>" (ms: the Redis time, never below the previous event's,
// so IDs keep increasing), trims the stream to ARGV[4] events, to those
// younger than ARGV[5] ms and to ARGV[12] bytes (trimLua), and refreshes
// the keys' TTL (ARGV[6] ms). The
// event is ARGV[3], or with ARGV[11] = "1" ARGV[3] .. offset .. ARGV[7];
// with a channel ARGV[8] it is also published there as ARGV[9] .. offset
// .. ARGV[10] .. event. It returns {offset, epoch}, or {0, stored epoch or
// ""} when the epoch is not ARGV[1].
var appendScript = redis.NewScript(trimLua + `
local m = redis.call('HMGET', KEYS[1], 'epoch', 'ms')
if m[1] ~= ARGV[1] then
  return {0, m[1] or ''}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms = math.max(now, tonumber(m[2] or '0'))
local off = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local msid = string.format('%.0f', ms)
local offs = string.format('%.0f', off)
local data = ARGV[3]
if ARGV[11] == '1' then
  data = ARGV[3] .. offs .. ARGV[7]
end
redis.call('HSET', KEYS[1], 'ms', msid)
redis.call('XADD', KEYS[2], msid .. '-' .. offs, 't', ARGV[2], 'd', data)
redis.call('HINCRBY', KEYS[1], 'bytes', #data)
trim(KEYS[1], KEYS[2], now - tonumber(ARGV[5]) + 1, tonumber(ARGV[4]), tonumber(ARGV[12]))
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
if ARGV[8] ~= '' then
  redis.call('PUBLISH', ARGV[8], ARGV[9] .. offs .. ARGV[10] .. data)
end
return {off, ARGV[1]}
`)

// Published is an event for AppendPublish: its bytes are Head, the
// decimal offset, Tail; and what the channel receives is PubHead, the
// offset, PubMid, then the event's bytes.
type Published struct {
	Head, Tail      []byte
	Channel         string
	PubHead, PubMid []byte
}

// AppendPublish is Append for an event whose bytes hold its own offset
// (e.Head + offset + e.Tail), which it also publishes on e.Channel in the
// same script, so that every subscriber gets a session's events in offset
// order whichever nodes appended them. It returns the offset and the
// event's bytes.
func (l *Log) AppendPublish(ctx context.Context, session, epoch, to string, e Published, keyTTL time.Duration) (offset int64, data []byte, err error) {
	if err := checkKeyTTL(keyTTL); err != nil {
		return 0, nil, err
	}
	res, err := appendScript.Run(ctx, l.rdb, l.keys(session),
		epoch, to, e.Head, l.size, millis(l.ttl), millis(keyTTL), e.Tail, e.Channel, e.PubHead, e.PubMid, "1", l.maxBytes).Slice()
	if err != nil {
		return 0, nil, fmt.Errorf("cluster: append to session %q: %w", session, err)
	}
	if len(res) != 2 {
		return 0, nil, fmt.Errorf("cluster: append to session %q: unexpected reply %v", session, res)
	}
	off, _ := res[0].(int64)
	stored, _ := res[1].(string)
	if off == 0 || stored != epoch {
		return 0, nil, fmt.Errorf("%w: session %q has epoch %q, not %q", ErrEpochChanged, session, stored, epoch)
	}
	data = make([]byte, 0, len(e.Head)+20+len(e.Tail))
	data = append(data, e.Head...)
	data = strconv.AppendInt(data, off, 10)
	data = append(data, e.Tail...)
	return off, data, nil
}

// tailScript returns {offset} and the newest min(offset - ARGV[2], ARGV[3])
// entries (newest first) when the session's epoch is ARGV[1], else {-1}.
var tailScript = redis.NewScript(`
local m = redis.call('HMGET', KEYS[1], 'epoch', 'offset')
if m[1] ~= ARGV[1] then
  return {-1}
end
local cur = tonumber(m[2] or '0')
local n = math.min(cur - tonumber(ARGV[2]), tonumber(ARGV[3]))
if n <= 0 then
  return {cur}
end
return {cur, redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', n)}
`)

// Tail returns the events of the session kept after offset, in offset
// order, at most max of them (the newest), with the session's latest
// offset; unlike Since it gives what there is even when some events after
// offset are missing (trimmed, or skipped by Sync's floor). ok is false
// when epoch is not the session's.
func (l *Log) Tail(ctx context.Context, session, epoch string, offset int64, max int) (events []Event, latest int64, ok bool, err error) {
	res, err := tailScript.Run(ctx, l.rdb, l.keys(session), epoch, offset, max).Slice()
	if err != nil {
		return nil, 0, false, fmt.Errorf("cluster: tail of session %q: %w", session, err)
	}
	if len(res) == 0 {
		return nil, 0, false, fmt.Errorf("cluster: tail of session %q: empty reply", session)
	}
	latest, _ = res[0].(int64)
	if latest < 0 {
		return nil, 0, false, nil
	}
	if len(res) == 1 {
		return nil, latest, true, nil
	}
	raw, _ := res[1].([]any)
	for i := len(raw) - 1; i >= 0; i-- {
		e, err := parseEntry(raw[i])
		if err != nil {
			return nil, 0, false, fmt.Errorf("cluster: tail of session %q: %w", session, err)
		}
		if e.Offset > offset {
			events = append(events, e)
		}
	}
	return events, latest, true, nil
}
