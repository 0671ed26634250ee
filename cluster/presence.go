package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// PresenceOptions configures a Presence. The zero value (or nil) takes every
// default. Every node of a cluster must use the same options.
type PresenceOptions struct {
	// KeyPrefix starts the name of every key (default "sessionhub:").
	KeyPrefix string
	// KeyTTL is how long a session's presence keys, and a node's index of
	// its connections, live after their last write or Refresh (default
	// 1h), so that abandoned sessions and nodes do not stay forever.
	KeyTTL time.Duration
}

// MemberState is one participant of a session as Members lists it.
type MemberState struct {
	UserID string
	// Member is the bytes stored by the Attach (or Republish) that made the
	// user a participant.
	Member []byte
	// JoinedAt is when the user became a participant (ms precision).
	JoinedAt time.Time
	// Conns is the user's connection count over every node; Nodes holds it
	// per node (nodes with none are absent).
	Conns int
	Nodes map[string]int
	// LeaveAt is when a user with no connection left leaves for good (its
	// leave grace ends); zero while it has connections.
	LeaveAt time.Time
}

// ExpiredMember is a user whose leave grace ended, with its stored member.
type ExpiredMember struct {
	UserID string
	Member []byte
}

// SessionMember is a user of a session, with its stored member.
type SessionMember struct {
	Session string
	UserID  string
	Member  []byte
}

// NodeConns is one user's connections on one node, for Republish: their
// count, the member to store if Redis has none, and when the user joined
// (zero: now).
type NodeConns struct {
	Count    int
	Member   []byte
	JoinedAt time.Time
}

// Presence is who is in each session cluster-wide, kept in Redis so that
// every node of a cluster shows one participant list: the cluster
// counterpart of session.Session's Join, Detach, Remove and Expire. A user
// is one participant however many connections it has on however many nodes
// (the two-tabs rule); when its last connection goes it stays listed for the
// leave grace, and a return within the grace, through any node, keeps its
// place and stored member.
//
// Per session it keeps, under "<prefix>p:{<session>}:" (the hash tag keeps
// them in one Redis Cluster slot): "members" (hash user → member bytes),
// "joined" (sorted set user → joinedAt ms, which orders the list),
// "conns" (hash "user\x00node" → count), "total" (hash user → count over
// every node), "leaving" (sorted set user → leaveAt ms) and "state" (hash
// user → live state). Per node, "<prefix>pnode:<node>" (set of
// "session\x00user") indexes the connections the node holds, for DropNode.
// Session keys live KeyTTL after their session's last write; a node's
// index lives KeyTTL after that node's last write or Refresh: a node must
// call Refresh (or Republish) at least every KeyTTL, say every heartbeat,
// or the keys of a quiet session expire under its participants.
//
// Every method is one Lua script or one transaction, so it is atomic in
// Redis whatever the other nodes do at the same time. Attach, Detach and
// Remove write a node's index besides the session's keys, and DropNode,
// Republish and Refresh go through the keys of every session a node holds:
// these scripts touch keys of several slots (some named inside the script),
// so Presence needs a single Redis (or one shard), not Redis Cluster.
//
// Times are passed in (now) and stored in ms; grace deadlines are the
// callers' clocks, so nodes should keep their clocks in step. Session IDs,
// user IDs and node IDs must not be empty nor hold a NUL byte. A Presence
// starts no goroutines and holds nothing but its options; it is safe for
// concurrent use. Its errors wrap the client's.
type Presence struct {
	rdb    redis.UniversalClient
	prefix string
	ttl    time.Duration
}

// NewPresence returns a Presence on rdb with opts (nil: the defaults). It
// does not talk to Redis.
func NewPresence(rdb redis.UniversalClient, opts *PresenceOptions) *Presence {
	p := &Presence{rdb: rdb, prefix: "sessionhub:", ttl: time.Hour}
	if opts != nil {
		if opts.KeyPrefix != "" {
			p.prefix = opts.KeyPrefix
		}
		if opts.KeyTTL > 0 {
			p.ttl = opts.KeyTTL
		}
	}
	return p
}

// sessionKeys are the session's members, joined, conns, total, leaving and
// state keys, in the order presenceLua's skeys gives them.
func (p *Presence) sessionKeys(session string) []string {
	base := p.prefix + "p:{" + session + "}:"
	return []string{base + "members", base + "joined", base + "conns", base + "total", base + "leaving", base + "state"}
}

func (p *Presence) nodeKey(node string) string { return p.prefix + "pnode:" + node }

// ErrInvalidID is wrapped by the error of an operation given an ID that
// cannot be stored (empty, or with a NUL byte, which the keys and fields use
// as a separator). It is the caller's input error: Redis was not asked, and
// says nothing about whether Redis is reachable.
var ErrInvalidID = errors.New("cluster: invalid ID")

// checkIDs rejects empty IDs and IDs with a NUL byte, which the keys and
// fields use as a separator.
func checkIDs(ids ...string) error {
	for _, id := range ids {
		if id == "" || strings.IndexByte(id, 0) >= 0 {
			return fmt.Errorf("%w %q (empty or with a NUL byte)", ErrInvalidID, id)
		}
	}
	return nil
}

// leaveAt is the ms deadline of a grace starting at now, or 0 for none.
func leaveAt(grace time.Duration, now time.Time) int64 {
	if grace <= 0 {
		return 0
	}
	return now.Add(grace).UnixMilli()
}

// presenceLua holds the helpers every presence script starts with. k is a
// session's keys: members, joined, conns, total, leaving, state.
const presenceLua = `
local function skeys(prefix, session)
  local b = prefix .. 'p:{' .. session .. '}:'
  return {b .. 'members', b .. 'joined', b .. 'conns', b .. 'total', b .. 'leaving', b .. 'state'}
end
local function msarg(x)
  return string.format('%.0f', x)
end
local function touch(k, ttl)
  for i = 1, 6 do
    redis.call('PEXPIRE', k[i], ttl)
  end
end
local function forget(k, user)
  redis.call('HDEL', k[1], user)
  redis.call('ZREM', k[2], user)
  redis.call('HDEL', k[4], user)
  redis.call('ZREM', k[5], user)
  redis.call('HDEL', k[6], user)
end
-- lose takes n connections away from user's total. When none is left, the
-- user leaves at once (lose returns its member) if leaveAt is 0, or else
-- is marked leaving until leaveAt. It returns false otherwise.
local function lose(k, user, n, leaveAt)
  local t = redis.call('HINCRBY', k[4], user, -n)
  if t > 0 then
    return false
  end
  redis.call('HDEL', k[4], user)
  local m = redis.call('HGET', k[1], user)
  if not m or leaveAt <= 0 then
    forget(k, user)
    return m
  end
  redis.call('ZADD', k[5], msarg(leaveAt), user)
  return false
end
-- push appends the triple s, u, m (session, user, member) to list t.
local function push(t, s, u, m)
  table.insert(t, s)
  table.insert(t, u)
  table.insert(t, m)
end
-- dropEntry takes away every connection node holds for entry
-- ("session\0user"), like lose. It returns the session, the user and, when
-- the user left at once, its member; nil when the node held none.
local function dropEntry(prefix, node, entry, leaveAt, ttl)
  local i = string.find(entry, '\0', 1, true)
  if not i then
    return nil
  end
  local s = string.sub(entry, 1, i - 1)
  local u = string.sub(entry, i + 1)
  local k = skeys(prefix, s)
  local f = u .. '\0' .. node
  local c = tonumber(redis.call('HGET', k[3], f) or '0')
  if c <= 0 then
    return nil
  end
  redis.call('HDEL', k[3], f)
  local m = lose(k, u, c, leaveAt)
  touch(k, ttl)
  return s, u, m
end
`

// attachScript: KEYS the session's keys and the node's index; ARGV user,
// conns field, index entry, member, now ms, ttl ms. Returns {first, member}.
var attachScript = redis.NewScript(presenceLua + `
local k = {KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]}
local user = ARGV[1]
local m = redis.call('HGET', k[1], user)
local first = 0
if not m then
  m = ARGV[4]
  first = 1
  redis.call('HSET', k[1], user, m)
  redis.call('ZADD', k[2], ARGV[5], user)
end
redis.call('HINCRBY', k[3], ARGV[2], 1)
redis.call('HINCRBY', k[4], user, 1)
redis.call('ZREM', k[5], user)
redis.call('SADD', KEYS[7], ARGV[3])
redis.call('PEXPIRE', KEYS[7], ARGV[6])
touch(k, ARGV[6])
return {first, m}
`)

// Attach records one connection of userID on node at now. first is true
// when the user was in no node's list before, not even in its leave grace:
// the caller announces user-joined, and member (the participant as the hub
// stores it, opaque bytes) is stored with JoinedAt now. Otherwise (another
// tab, on any node, or a return within the grace, which it cancels) the
// stored member is kept, with its original JoinedAt. stored is the member
// Redis holds after the call.
func (p *Presence) Attach(ctx context.Context, session, userID, node string, member []byte, now time.Time) (stored []byte, first bool, err error) {
	if err := checkIDs(session, userID, node); err != nil {
		return nil, false, err
	}
	keys := append(p.sessionKeys(session), p.nodeKey(node))
	res, err := attachScript.Run(ctx, p.rdb, keys, userID, userID+"\x00"+node, session+"\x00"+userID,
		member, now.UnixMilli(), millis(p.ttl)).Slice()
	if err != nil {
		return nil, false, fmt.Errorf("cluster: attach %q to session %q: %w", userID, session, err)
	}
	if len(res) != 2 {
		return nil, false, fmt.Errorf("cluster: attach %q to session %q: unexpected reply %v", userID, session, res)
	}
	m, _ := res[1].(string)
	return []byte(m), res[0] == int64(1), nil
}

// detachScript: KEYS the session's keys and the node's index; ARGV user,
// conns field, index entry, leaveAt ms (0: none), ttl ms. Returns 1 when
// the user left, 0 otherwise, -1 when node held no connection of it.
var detachScript = redis.NewScript(presenceLua + `
local k = {KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]}
local c = tonumber(redis.call('HGET', k[3], ARGV[2]) or '0')
if c <= 0 then
  return -1
end
if c == 1 then
  redis.call('HDEL', k[3], ARGV[2])
  redis.call('SREM', KEYS[7], ARGV[3])
else
  redis.call('HINCRBY', k[3], ARGV[2], -1)
end
local m = lose(k, ARGV[1], 1, tonumber(ARGV[4]))
redis.call('PEXPIRE', KEYS[7], ARGV[5])
touch(k, ARGV[5])
if m then
  return 1
end
return 0
`)

// Detach removes one connection of userID on node at now. When it was the
// user's last on any node, the user is removed at once if grace is 0 (left
// is true: the caller announces user-left), or else marked leaving until
// now+grace (left is false; Expire removes it then, unless it comes back).
// Detaching a connection node does not hold (none recorded, for example
// after Redis lost it) does nothing.
func (p *Presence) Detach(ctx context.Context, session, userID, node string, grace time.Duration, now time.Time) (left bool, err error) {
	if err := checkIDs(session, userID, node); err != nil {
		return false, err
	}
	keys := append(p.sessionKeys(session), p.nodeKey(node))
	n, err := detachScript.Run(ctx, p.rdb, keys, userID, userID+"\x00"+node, session+"\x00"+userID,
		leaveAt(grace, now), millis(p.ttl)).Int64()
	if err != nil {
		return false, fmt.Errorf("cluster: detach %q from session %q: %w", userID, session, err)
	}
	return n == 1, nil
}

// removeScript: KEYS the session's keys; ARGV prefix, session, user, ttl
// ms. Returns 1 when the user was there.
var removeScript = redis.NewScript(presenceLua + `
local k = {KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]}
local user = ARGV[3]
if redis.call('HEXISTS', k[1], user) == 0 then
  return 0
end
local head = user .. '\0'
local fields = redis.call('HKEYS', k[3])
for _, f in ipairs(fields) do
  if string.sub(f, 1, #head) == head then
    redis.call('HDEL', k[3], f)
    redis.call('SREM', ARGV[1] .. 'pnode:' .. string.sub(f, #head + 1), ARGV[2] .. '\0' .. user)
  end
end
forget(k, user)
touch(k, ARGV[4])
return 1
`)

// Remove takes userID out of the session at once, whatever its connections
// on whichever nodes (the server API's removal), and reports whether it was
// there. The caller announces user-left; the nodes holding its connections
// close them, and their later Detaches do nothing.
func (p *Presence) Remove(ctx context.Context, session, userID string) (bool, error) {
	if err := checkIDs(session, userID); err != nil {
		return false, err
	}
	n, err := removeScript.Run(ctx, p.rdb, p.sessionKeys(session), p.prefix, session, userID, millis(p.ttl)).Int64()
	if err != nil {
		return false, fmt.Errorf("cluster: remove %q from session %q: %w", userID, session, err)
	}
	return n == 1, nil
}

// expireScript: KEYS the session's keys; ARGV now ms. Returns {user,
// member, …} of the users removed.
var expireScript = redis.NewScript(presenceLua + `
local k = {KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]}
local out = {}
local us = redis.call('ZRANGEBYSCORE', k[5], '-inf', ARGV[1])
for _, u in ipairs(us) do
  if tonumber(redis.call('HGET', k[4], u) or '0') > 0 then
    redis.call('ZREM', k[5], u)
  else
    local m = redis.call('HGET', k[1], u)
    forget(k, u)
    if m then
      table.insert(out, u)
      table.insert(out, m)
    end
  end
end
return out
`)

// Expire removes the users of session whose leave grace ended by now and
// returns them with their stored members, in leaveAt order. Each one is
// returned to exactly one caller, however many nodes call Expire at the
// same time: that caller announces user-left.
func (p *Presence) Expire(ctx context.Context, session string, now time.Time) ([]ExpiredMember, error) {
	if err := checkIDs(session); err != nil {
		return nil, err
	}
	res, err := expireScript.Run(ctx, p.rdb, p.sessionKeys(session), now.UnixMilli()).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("cluster: expire session %q: %w", session, err)
	}
	var out []ExpiredMember
	for i := 0; i+1 < len(res); i += 2 {
		out = append(out, ExpiredMember{UserID: res[i], Member: []byte(res[i+1])})
	}
	return out, nil
}

// dropNodeScript: KEYS the node's index; ARGV prefix, node, leaveAt ms (0:
// none), ttl ms. Returns {sessions, {session, user, member, …}}.
var dropNodeScript = redis.NewScript(presenceLua + `
local sessions, seen, removed = {}, {}, {}
for _, e in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local s, u, m = dropEntry(ARGV[1], ARGV[2], e, tonumber(ARGV[3]), ARGV[4])
  if s then
    if not seen[s] then
      seen[s] = true
      table.insert(sessions, s)
    end
    if m then
      push(removed, s, u, m)
    end
  end
end
redis.call('DEL', KEYS[1])
return {sessions, removed}
`)

// DropNode takes away every connection node held, in every session: for a
// node found dead, or one that left cleanly. A user left with no
// connection starts its leave grace (until now+grace), or with grace 0 is
// removed at once and returned in removed (the caller announces user-left
// for those); users with connections on other nodes stay, with those.
// sessions are the sessions that changed, sorted. It is idempotent: the
// node's index goes with the first call, so a second one, from any node,
// does nothing; any surviving node may call it when Nodes reports the node
// dead. A node that was thought dead but is not gets its connections back
// with its next Republish.
func (p *Presence) DropNode(ctx context.Context, node string, grace time.Duration, now time.Time) (sessions []string, removed []SessionMember, err error) {
	if err := checkIDs(node); err != nil {
		return nil, nil, err
	}
	res, err := dropNodeScript.Run(ctx, p.rdb, []string{p.nodeKey(node)}, p.prefix, node, leaveAt(grace, now), millis(p.ttl)).Slice()
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: drop node %q: %w", node, err)
	}
	if len(res) != 2 {
		return nil, nil, fmt.Errorf("cluster: drop node %q: unexpected reply %v", node, res)
	}
	sessions = strs(res[0])
	slices.Sort(sessions)
	return sessions, triples(res[1]), nil
}

// republishScript: KEYS the node's index; ARGV prefix, node, leaveAt ms (0:
// none), ttl ms, then session, user, count, member, joinedAt ms for each
// connection. Returns {{session, user, member, …} firsts, {…} removed}.
var republishScript = redis.NewScript(presenceLua + `
local prefix, node, ttl = ARGV[1], ARGV[2], ARGV[4]
local old = redis.call('SMEMBERS', KEYS[1])
local seen, firsts, removed = {}, {}, {}
for i = 5, #ARGV - 4, 5 do
  local s, u, n, m, j = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3], ARGV[i + 4]
  local k = skeys(prefix, s)
  local f = u .. '\0' .. node
  local e = s .. '\0' .. u
  seen[e] = true
  local prev = tonumber(redis.call('HGET', k[3], f) or '0')
  redis.call('HSET', k[3], f, n)
  redis.call('HINCRBY', k[4], u, n - prev)
  local cur = redis.call('HGET', k[1], u)
  if not cur then
    redis.call('HSET', k[1], u, m)
    redis.call('ZADD', k[2], j, u)
    push(firsts, s, u, m)
  elseif cur == '' and m ~= '' then
    redis.call('HSET', k[1], u, m)
  end
  redis.call('ZREM', k[5], u)
  redis.call('SADD', KEYS[1], e)
  touch(k, ttl)
end
for _, e in ipairs(old) do
  if not seen[e] then
    local s, u, m = dropEntry(prefix, node, e, tonumber(ARGV[3]), ttl)
    redis.call('SREM', KEYS[1], e)
    if m then
      push(removed, s, u, m)
    end
  end
end
redis.call('PEXPIRE', KEYS[1], ttl)
return {firsts, removed}
`)

// Republish makes Redis hold exactly the connections node holds, given as
// counts per session and user: after a Redis outage or restart, or at any
// time to repair drift. It is idempotent: it sets the node's counts to the
// given ones rather than adding to them. A user Redis does not list (it
// lost it) gets its member and JoinedAt (zero: now) back and is returned
// in firsts, once cluster-wide: a user another node republished first is
// not returned again; the caller announces user-joined for them. A
// returning user's leave grace is cancelled. Connections Redis records for
// node that are not given (or have a Count of 0) are taken away as
// DropNode does, with grace: users removed at once are returned in
// removed (the caller announces user-left).
//
// It also refreshes the keys of every session given, like Refresh.
func (p *Presence) Republish(ctx context.Context, node string, conns map[string]map[string]NodeConns, grace time.Duration, now time.Time) (firsts, removed []SessionMember, err error) {
	if err := checkIDs(node); err != nil {
		return nil, nil, err
	}
	args := []any{p.prefix, node, leaveAt(grace, now), millis(p.ttl)}
	for _, session := range slices.Sorted(maps.Keys(conns)) {
		users := conns[session]
		for _, user := range slices.Sorted(maps.Keys(users)) {
			c := users[user]
			if c.Count <= 0 {
				continue
			}
			if checkIDs(session, user) != nil {
				continue // never stored: one bad ID must not keep the others from Redis
			}
			j := c.JoinedAt
			if j.IsZero() {
				j = now
			}
			args = append(args, session, user, c.Count, c.Member, j.UnixMilli())
		}
	}
	res, err := republishScript.Run(ctx, p.rdb, []string{p.nodeKey(node)}, args...).Slice()
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: republish node %q: %w", node, err)
	}
	if len(res) != 2 {
		return nil, nil, fmt.Errorf("cluster: republish node %q: unexpected reply %v", node, res)
	}
	return triples(res[0]), triples(res[1]), nil
}

// Members lists the session's participants, present or in their leave
// grace, ordered by JoinedAt then UserID (bytewise), each with its
// connection counts and LeaveAt. It reads one consistent snapshot.
func (p *Presence) Members(ctx context.Context, session string) ([]MemberState, error) {
	if err := checkIDs(session); err != nil {
		return nil, err
	}
	k := p.sessionKeys(session)
	var (
		joined  *redis.ZSliceCmd
		members *redis.MapStringStringCmd
		conns   *redis.MapStringStringCmd
		leaving *redis.ZSliceCmd
	)
	_, err := p.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		members = pipe.HGetAll(ctx, k[0])
		joined = pipe.ZRangeWithScores(ctx, k[1], 0, -1)
		conns = pipe.HGetAll(ctx, k[2])
		leaving = pipe.ZRangeWithScores(ctx, k[4], 0, -1)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: members of session %q: %w", session, err)
	}
	leave := make(map[string]int64, len(leaving.Val()))
	for _, z := range leaving.Val() {
		leave[z.Member.(string)] = int64(z.Score)
	}
	perNode := make(map[string]map[string]int)
	for f, v := range conns.Val() {
		user, node, ok := strings.Cut(f, "\x00")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n <= 0 {
			continue
		}
		if perNode[user] == nil {
			perNode[user] = make(map[string]int)
		}
		perNode[user][node] = n
	}
	ms := members.Val()
	out := make([]MemberState, 0, len(joined.Val()))
	for _, z := range joined.Val() {
		user := z.Member.(string)
		m, ok := ms[user]
		if !ok {
			continue
		}
		st := MemberState{UserID: user, Member: []byte(m), JoinedAt: time.UnixMilli(int64(z.Score)), Nodes: perNode[user]}
		for _, n := range st.Nodes {
			st.Conns += n
		}
		if st.Conns == 0 {
			if at, ok := leave[user]; ok {
				st.LeaveAt = time.UnixMilli(at)
			}
		}
		out = append(out, st)
	}
	return out, nil
}

// setStateScript: KEYS the session's keys; ARGV user, state, ttl ms.
var setStateScript = redis.NewScript(presenceLua + `
local k = {KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]}
if redis.call('HEXISTS', k[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', k[6], ARGV[1], ARGV[2])
touch(k, ARGV[3])
return 1
`)

// SetState stores userID's live state (opaque bytes: cursor, activity) so
// that a node whose client joins later can build session-joined. It does
// nothing when the user is not a participant (state goes with the user
// when it leaves).
func (p *Presence) SetState(ctx context.Context, session, userID string, state []byte) error {
	if err := checkIDs(session, userID); err != nil {
		return err
	}
	if err := setStateScript.Run(ctx, p.rdb, p.sessionKeys(session), userID, state, millis(p.ttl)).Err(); err != nil {
		return fmt.Errorf("cluster: state of %q in session %q: %w", userID, session, err)
	}
	return nil
}

// State returns the live state of every participant of session that has
// one, by userID.
func (p *Presence) State(ctx context.Context, session string) (map[string][]byte, error) {
	if err := checkIDs(session); err != nil {
		return nil, err
	}
	m, err := p.rdb.HGetAll(ctx, p.sessionKeys(session)[5]).Result()
	if err != nil {
		return nil, fmt.Errorf("cluster: state of session %q: %w", session, err)
	}
	out := make(map[string][]byte, len(m))
	for u, s := range m {
		out[u] = []byte(s)
	}
	return out, nil
}

// strs reads a script's array of strings.
func strs(v any) []string {
	a, _ := v.([]any)
	out := make([]string, 0, len(a))
	for _, x := range a {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// triples reads a script's flat array {session, user, member, …}.
func triples(v any) []SessionMember {
	s := strs(v)
	var out []SessionMember
	for i := 0; i+2 < len(s); i += 3 {
		out = append(out, SessionMember{Session: s[i], UserID: s[i+1], Member: []byte(s[i+2])})
	}
	return out
}
