package client_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionhub/sessionhub/client"
	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/protocol"
)

// Two clients join a session of an in-process hub; one moves its cursor
// and the other sees it.
func ExampleDial() {
	url, stop := exampleHub(hub.Options{})
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ann, err := client.Dial(ctx, url, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ann.Close()
	bob, err := client.Dial(ctx, url, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer bob.Close()

	if _, err := ann.Join(ctx, "intro-go", protocol.UserInfo{UserID: "ann", Name: "Ann", Role: protocol.RoleInstructor}); err != nil {
		fmt.Println(err)
		return
	}
	joined, err := bob.Join(ctx, "intro-go", protocol.UserInfo{UserID: "bob", Name: "Bob"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("bob joined; participants:", len(joined.Participants))

	ann.UpdateCursor(ctx, protocol.Cursor{Line: 3, Column: 7, File: "main.go"})
	for ev := range bob.Events() {
		if m, ok := ev.(*client.CursorMoved); ok {
			fmt.Printf("%s is at %s:%d:%d\n", m.UserID, m.Cursor.File, m.Cursor.Line, m.Cursor.Column)
			break
		}
	}
	// Output:
	// bob joined; participants: 2
	// ann is at main.go:3:7
}

// A program reads the events of its client in a loop of its own until the
// channel is closed.
func ExampleClient_Events() {
	url, stop := exampleHub(hub.Options{})
	defer stop()

	c, err := client.Dial(context.Background(), url, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range c.Events() {
			switch ev := ev.(type) {
			case *client.StateChange:
				fmt.Println("state:", ev.From, "->", ev.To)
			case *client.SessionJoined:
				fmt.Println("joined", ev.SessionID, "as", ev.SelfID)
			}
		}
	}()
	c.Join(context.Background(), "demo", protocol.UserInfo{UserID: "u1", Name: "U"})
	c.Close()
	<-done
	// Output:
	// state: connecting -> connected
	// joined demo as u1
	// state: connected -> closed
}

// The token comes from a function, called for every connection attempt
// (and every refresh), so that a reconnect never sends an expired token.
// Here it signs a token itself; a real application asks its backend.
func ExampleOptions_tokenFunc() {
	secret := []byte("example-secret-of-at-least-32-bytes!")
	url, stop := exampleHub(hub.Options{JWTSecret: secret})
	defer stop()

	calls := 0
	getToken := func(ctx context.Context) (string, error) {
		calls++
		return hub.NewToken(secret, hub.Claims{
			RegisteredClaims: jwt.RegisteredClaims{Subject: "ada", ExpiresAt: jwt.NewNumericDate(time.Now().Add(5 * time.Minute))},
			Name:             "Ada"})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, &client.Options{TokenFunc: getToken})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	joined, err := c.Join(ctx, "intro-go", protocol.UserInfo{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("joined as", joined.SelfID, "after", calls, "token call")
	// Output:
	// joined as ada after 1 token call
}

// A client on a network that may silently forget connections (mobile,
// NAT): it pings after 10 s without traffic and gives the hub 5 s to
// answer; it retries forever, starting again from the shortest delay once
// a connection has stayed up for 30 s.
func ExampleOptions_heartbeat() {
	url, stop := exampleHub(hub.Options{})
	defer stop()

	c, err := client.Dial(context.Background(), url, &client.Options{
		HeartbeatInterval: 10 * time.Second,
		HeartbeatTimeout:  5 * time.Second,
		Reconnect:         &client.ReconnectPolicy{MaxAttempts: 0, ResetAfter: 30 * time.Second},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	fmt.Println(c.State())
	// Output:
	// connected
}

// The client keeps the participant list itself: Join asks for diff
// presence (cheap for the hub) and the events carry the whole list anyway.
func ExampleClient_Participants() {
	url, stop := exampleHub(hub.Options{})
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ann, err := client.Dial(ctx, url, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ann.Close()
	bob, err := client.Dial(ctx, url, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer bob.Close()
	ann.Join(ctx, "intro-go", protocol.UserInfo{UserID: "ann", Name: "Ann"})
	bob.Join(ctx, "intro-go", protocol.UserInfo{UserID: "bob", Name: "Bob"})
	for ev := range ann.Events() {
		if j, ok := ev.(*client.UserJoined); ok {
			fmt.Println(j.User.Name, "joined; the event lists", len(j.Participants))
			break
		}
	}
	for _, p := range ann.Participants() {
		fmt.Println(p.Name, p.Role)
	}
	// Output:
	// Bob joined; the event lists 2
	// Ann learner
	// Bob learner
}

// exampleHub starts an in-process hub with opts (its Logger discarded)
// behind an httptest server, and returns the hub's WebSocket URL and a stop
// that shuts the hub down and closes the server.
func exampleHub(opts hub.Options) (url string, stop func()) {
	opts.Logger = discardLogger()
	h := hub.New(&opts)
	ts := httptest.NewServer(h.Handler())
	return wsURL(ts) + "/ws", func() {
		h.Shutdown(context.Background())
		ts.Close()
	}
}
