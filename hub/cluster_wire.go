package hub

// This file holds what a cluster's nodes agree on: the constants, the
// frames that cross the bus, and how a participant and a broadcast are
// encoded for Redis. Its functions are pure (no state): the run loop
// (cluster_loop.go), the broker (broker.go) and the server API
// (cluster_api.go) call them, each on its own goroutine.
//
// What crosses the bus, encoded once by the node that made it (see
// busFrame):
//
//	'c' cursor-moved, 'a' user-activity-changed: the event's envelope, which
//	    every node hands to its members as it is;
//	'j' user-joined, 'l' user-left: the participant as Redis stores it;
//	'r' removed by the server API: the nodes holding the user close its
//	    connections with 4003;
//	'b' broadcast: published by Redis itself in the script that gives it
//	    its offset (cluster.Log.AppendPublish), so every node, the sender's
//	    included, gets a session's broadcasts in offset order.

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/sessionhub/sessionhub/cluster"
	"github.com/sessionhub/sessionhub/protocol"
	"github.com/sessionhub/sessionhub/session"
)

const (
	// clusterMisses is the number of heartbeats a node's key outlives its
	// last beat: a node that stops is found dead within clusterMisses+1
	// heartbeats, the contract's 3.
	clusterMisses = 2
	// brokerQueue bounds the requests waiting for the broker. When Redis
	// is slow enough to fill it, requests are dropped (counted) and the
	// next heartbeat's repair makes up for them.
	brokerQueue = 8192
	// fillHold bounds the broadcasts a session holds back while a gap in
	// its offsets is being filled from the log.
	fillHold = 1024
	// republishEvery is how many heartbeats pass between two republishes
	// of a node's connections when nothing asked for one sooner: a repair
	// of drift and what keeps the presence keys alive.
	republishEvery = 12
)

// Kinds of bus messages.
const (
	kindCursor    = 'c'
	kindActivity  = 'a'
	kindJoined    = 'j'
	kindLeft      = 'l'
	kindRemoved   = 'r'
	kindBroadcast = 'b'
)

// errRedisDown is the result of an operation the broker did not try
// because Redis is known to be unreachable.
var errRedisDown = errors.New("hub: redis is unreachable")

// isInputError reports whether err is the caller's input error, not
// Redis's.
func isInputError(err error) bool { return errors.Is(err, cluster.ErrInvalidID) }

// isScriptError reports whether err is an answer from Redis (which is
// up), not a failure to reach it.
func isScriptError(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

// memberState is a participant's live state as Redis keeps it, for the
// session-joined of a node that had not seen the user move.
type memberState struct {
	IsActive bool             `json:"isActive"`
	Cursor   *protocol.Cursor `json:"cursor"`
}

// encodeMember is a participant as Redis stores it and 'j'/'l' carry it.
func encodeMember(p *session.Participant) []byte {
	b, _ := json.Marshal(p.Wire()) // a Participant always encodes
	return b
}

// decodeMember is the inverse of encodeMember.
func decodeMember(b []byte) (session.Participant, error) {
	var w protocol.Participant
	if err := json.Unmarshal(b, &w); err != nil || w.UserID == "" {
		return session.Participant{}, errors.New("hub: malformed cluster member")
	}
	return session.Participant{
		UserID: w.UserID, Name: w.Name, Role: w.Role, Color: w.Color,
		JoinedAt: w.JoinedAt, Active: w.IsActive, Cursor: w.Cursor,
	}, nil
}

// busFrame is a bus message: its kind, the userId it is about (one byte
// of length, then the bytes; a userId is at most protocol.MaxUserIDBytes),
// then body.
func busFrame(kind byte, userID string, body []byte) []byte {
	f := make([]byte, 0, 2+len(userID)+len(body))
	f = append(f, kind, byte(len(userID)))
	f = append(f, userID...)
	return append(f, body...)
}

// parseFrame splits a bus message; ok is false when it is malformed.
func parseFrame(data []byte) (kind byte, userID string, body []byte, ok bool) {
	if len(data) < 2 || len(data) < 2+int(data[1]) {
		return 0, "", nil, false
	}
	n := int(data[1])
	return data[0], string(data[2 : 2+n]), data[2+n:], true
}

// broadcastParts encodes a broadcast around its offset: its bytes are
// head, the offset, tail.
func broadcastParts(ev protocol.BroadcastEvent) (head, tail []byte, err error) {
	const mark = 9007199254740991 // no real offset; the largest exact float
	ev.Offset = mark
	b, err := protocol.Encode(protocol.TypeBroadcast, "", ev)
	if err != nil {
		return nil, nil, err
	}
	m := strconv.AppendInt([]byte(`"offset":`), mark, 10)
	i := bytes.LastIndex(b, m)
	if i < 0 {
		return nil, nil, errors.New("hub: broadcast encoding has no offset")
	}
	i += len(m) - len(strconv.FormatInt(mark, 10))
	return b[:i], b[i+len(strconv.FormatInt(mark, 10)):], nil
}

// published is what AppendPublish needs for a broadcast to of session id
// (on bus) whose bytes are head, offset, tail: the bus message 'b', the
// offset, ':', then to and skip (each after a byte of length), then the
// event.
func published(bus *cluster.Bus, id, to, skip string, head, tail []byte) cluster.Published {
	mid := make([]byte, 0, 3+len(to)+len(skip))
	mid = append(mid, ':', byte(len(to)))
	mid = append(mid, to...)
	mid = append(mid, byte(len(skip)))
	mid = append(mid, skip...)
	return cluster.Published{
		Head: head, Tail: tail, Channel: bus.Channel(id),
		PubHead: append(append([]byte(nil), cluster.NoOrigin...), kindBroadcast), PubMid: mid,
	}
}

// defaultNodeID names a node when Options.NodeID is empty: its host name
// and 8 random hex digits.
func defaultNodeID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "node"
	}
	if len(host) > 64 {
		host = host[:64]
	}
	return host + "-" + strings.ReplaceAll(uuid.NewString(), "-", "")[:8]
}
