package client_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/sessionhub/sessionhub/client"
	"github.com/sessionhub/sessionhub/hub"
	"github.com/sessionhub/sessionhub/protocol"
)

// Two clients join a session of an in-process hub; one moves its cursor
// and the other sees it.
func ExampleDial() {
	h := hub.New(&hub.Options{Logger: discardLogger()})
	ts := httptest.NewServer(h.Handler())
	defer ts.Close()
	defer h.Shutdown(context.Background())
	url := "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"

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
	h := hub.New(&hub.Options{Logger: discardLogger()})
	ts := httptest.NewServer(h.Handler())
	defer ts.Close()
	defer h.Shutdown(context.Background())
	url := "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"

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
