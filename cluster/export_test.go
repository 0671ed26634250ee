package cluster

// Test-only helpers: the hub uses Sync, AppendPublish and Republish; these
// smaller operations let the tests check the log's and the presence's
// properties one at a time.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Epoch returns the session's epoch. When the session has none (it never
// had one, its keys expired, or Redis lost them) it creates a fresh one, a
// UUID, and the session starts again at offset 0 with no history; nodes
// racing to create it all get the one that won. It keeps the session's keys
// alive: they expire after keyTTL (the session TTL plus the history TTL) in
// which neither Epoch nor Append was called for the session.
func (l *Log) Epoch(ctx context.Context, session string, keyTTL time.Duration) (string, error) {
	epoch, _, err := l.Sync(ctx, session, 0, keyTTL)
	return epoch, err
}

// Append stores data, one encoded event, with its audience to, as the
// session's next event: atomically, it checks that the session's epoch is
// epoch, gives the event the next offset (1, 2, 3, … with no gap and no
// repeat across every node), stores it with the Redis time, trims the
// session's history to Size events and TTL of age, and keeps the session's
// keys alive for keyTTL. It returns the event's offset.
//
// When the session's epoch is not epoch (or it has none) nothing is stored
// and the error wraps ErrEpochChanged. On any other error the event may or
// may not have been stored (for example when the connection broke after
// Redis ran the script); a client that retries such commands (go-redis does
// on some network errors, see Options.MaxRetries) may store it twice, under
// two offsets.
func (l *Log) Append(ctx context.Context, session, epoch string, to string, data []byte, keyTTL time.Duration) (offset int64, err error) {
	if err := checkKeyTTL(keyTTL); err != nil {
		return 0, err
	}
	res, err := appendScript.Run(ctx, l.rdb, l.keys(session),
		epoch, to, data, l.size, millis(l.ttl), millis(keyTTL), "", "", "", "", "0", l.maxBytes).Slice()
	if err != nil {
		return 0, fmt.Errorf("cluster: append to session %q: %w", session, err)
	}
	if len(res) != 2 {
		return 0, fmt.Errorf("cluster: append to session %q: unexpected reply %v", session, res)
	}
	off, _ := res[0].(int64)
	stored, _ := res[1].(string)
	if off == 0 || stored != epoch {
		if stored == "" {
			return 0, fmt.Errorf("%w: session %q has no epoch (was %q)", ErrEpochChanged, session, epoch)
		}
		return 0, fmt.Errorf("%w: session %q has epoch %q, not %q", ErrEpochChanged, session, stored, epoch)
	}
	return off, nil
}

// Offset returns the session's latest offset: 0 before its first event,
// and 0 when Redis holds nothing of it. It does not tell which epoch the
// offset belongs to.
func (l *Log) Offset(ctx context.Context, session string) (int64, error) {
	off, err := l.rdb.HGet(ctx, l.keys(session)[0], "offset").Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("cluster: offset of session %q: %w", session, err)
	}
	return off, nil
}

// refreshScript: KEYS the node's index; ARGV prefix, ttl ms.
var refreshScript = redis.NewScript(presenceLua + `
local seen = {}
for _, e in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local i = string.find(e, '\0', 1, true)
  if i then
    local s = string.sub(e, 1, i - 1)
    if not seen[s] then
      seen[s] = true
      touch(skeys(ARGV[1], s), ARGV[2])
    end
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 0
`)

// Refresh keeps alive, for another KeyTTL, node's index and the keys of
// every session where node holds a connection. A node calls it (or
// Republish) periodically, say every heartbeat.
func (p *Presence) Refresh(ctx context.Context, node string) error {
	if err := checkIDs(node); err != nil {
		return err
	}
	if err := refreshScript.Run(ctx, p.rdb, []string{p.nodeKey(node)}, p.prefix, millis(p.ttl)).Err(); err != nil {
		return fmt.Errorf("cluster: refresh node %q: %w", node, err)
	}
	return nil
}
