// Package cluster holds the Redis side of a multi-node sessionhub: the
// primitives through which several hubd processes share sessions. Log keeps
// each session's epoch, offsets and broadcast history (Redis Streams); Bus
// carries session events between nodes (pub/sub, one channel per session);
// Presence keeps the cluster-wide participants with per-node connection
// counts and leave graces; Nodes runs the heartbeats that find dead nodes.
// The hub's broker (hub/cluster.go) puts them together.
package cluster
