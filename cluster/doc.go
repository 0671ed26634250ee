// Package cluster holds the Redis side of a multi-node sessionhub: the
// primitives through which several hubd processes share sessions. It is
// built piece by piece (issue 7); the hub does not use it yet, and hubd
// refuses --redis-url until it does.
package cluster
