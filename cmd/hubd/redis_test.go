package main

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionhub/sessionhub/internal/rawsock"
	"github.com/sessionhub/sessionhub/internal/redistest"
)

// hubd's Redis connections are wrapped (internal/rawsock), and commands and
// pub/sub work over them.
func TestRedisConnectionsAreWrapped(t *testing.T) {
	rs := redistest.Start(t)
	c, err := parse([]string{"--redis-url", rs.URL()}, env(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := c.redisOpts.Dialer(ctx, "tcp", rs.Addr())
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if got := rawsock.Wrapped(conn); got != rawsock.Enabled {
		t.Fatalf("a connection from hubd's Redis dialer wrapped: %v, want %v", got, rawsock.Enabled)
	}

	rdb := redis.NewClient(c.redisOpts)
	defer rdb.Close()
	sub := rdb.Subscribe(ctx, "wrapped")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}
	if err := rdb.Publish(ctx, "wrapped", "hello").Err(); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.ReceiveMessage(ctx)
	if err != nil || msg.Payload != "hello" {
		t.Fatalf("the subscriber got %v, %v; want the published message", msg, err)
	}
}
