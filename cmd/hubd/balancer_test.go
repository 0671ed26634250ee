package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/sessionhub/sessionhub/client"
	"github.com/sessionhub/sessionhub/protocol"
)

// haproxyConfig is the load balancer's configuration of compose.yaml.
const haproxyConfig = "../../deploy/haproxy/haproxy.cfg"

// startHAProxy runs HAProxy with the repository's configuration in front of
// nodes, and returns its address once it routes to them.
func startHAProxy(t *testing.T, nodes []*hubProc) string {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("haproxy is not installed (CI installs it: apt-get install haproxy)")
		}
		t.Skip("haproxy is not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // HAProxy binds it next
	lb := &hubProc{id: "haproxy", addr: addr, done: make(chan struct{})}
	lb.cmd = exec.Command(bin, "-db", "-f", haproxyConfig)
	lb.cmd.Env = append(hubdEnviron(), "SESSIONHUB_BIND="+addr,
		"HUBD_1="+nodes[0].addr, "HUBD_2="+nodes[1].addr, "HUBD_3="+nodes[2].addr)
	lb.cmd.Stdout, lb.cmd.Stderr = &lb.log, &lb.log
	if err := lb.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		lb.err = lb.cmd.Wait()
		close(lb.done)
	}()
	t.Cleanup(func() {
		lb.kill()
		<-lb.done
		if t.Failed() {
			t.Logf("log of haproxy (%s):\n%s", lb.exit(), lb.log.String())
		}
	})
	// Through HAProxy, /readyz answers 200 once it routes to a node.
	lb.waitReadyz(t, http.StatusOK, time.Now().Add(10*time.Second))
	return addr
}

// The compose file's wiring, run as processes: a client joins through the
// balancer, its node is killed, and it reconnects through the balancer to
// another node and recovers what was sent meanwhile (nothing sticky).
func TestBalancerFailover(t *testing.T) {
	cl := startCluster(t, clHeartbeat)
	lb := startHAProxy(t, cl.nodes)
	const sid = "through-the-balancer"

	ctx, cancel := context.WithTimeout(context.Background(), clWait)
	defer cancel()
	c, err := client.Dial(ctx, "ws://"+lb+"/ws", &client.Options{
		ConnectTimeout: clWait,
		Reconnect:      &client.ReconnectPolicy{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond, MaxAttempts: 40},
	})
	if err != nil {
		t.Fatalf("dial through haproxy: %v", err)
	}
	a := newPeer(t, &hubProc{id: "haproxy", addr: lb}, learner("a"))
	a.c = c
	go func() {
		defer close(a.done)
		for e := range c.Events() {
			a.add(rec{at: time.Now(), ev: e})
		}
	}()
	t.Cleanup(func() {
		c.Close()
		<-a.done
	})
	a.join(sid, nil)

	// Which node did HAProxy pick? The one that counts a connection.
	var home *hubProc
	deadline := time.Now().Add(clWait)
	for home == nil {
		for _, n := range cl.nodes {
			if scrape(t, n)["sessionhub_connections"] == 1 {
				home = n
			}
		}
		if home == nil && time.Now().After(deadline) {
			t.Fatal("no node counts the balanced connection")
		}
		time.Sleep(20 * time.Millisecond) // polling /metrics
	}
	var other *hubProc
	for _, n := range cl.nodes {
		if n != home {
			other = n
			break
		}
	}
	b := rawPeer(t, other, protocol.UserInfo{UserID: "b", Name: "Teacher", Role: protocol.RoleInstructor})
	b.join(sid, nil)
	first := b.broadcast("before", map[string]int{"i": 0}, "")
	waitEvent(a, time.Now().Add(clWait), "the first broadcast", broadcastAt(first))

	home.kill()
	<-home.done
	killed := time.Now()
	missed := b.broadcast("meanwhile", map[string]int{"i": 1}, "")

	// The client reconnects through HAProxy (to a live node: the dead one
	// refuses, and HAProxy redispatches) and recovers.
	r := waitEvent(a, time.Now().Add(3*clWait), "the rejoin after the node died", func(e *client.Rejoined) bool { return true })
	if rj := r.ev.(*client.Rejoined); !rj.Recovered {
		t.Errorf("rejoined through haproxy with recovered false (epoch %s, offset %d)", rj.Epoch, rj.Offset)
	}
	waitEvent(a, time.Now().Add(clWait), "the broadcast sent while it was away", broadcastAt(missed))
	if n := count(since(a.snapshot(), killed), broadcastAt(missed)); n != 1 {
		t.Errorf("the missed broadcast arrived %d times, want once", n)
	}
	after := b.broadcast("after", map[string]int{"i": 2}, "")
	waitEvent(a, time.Now().Add(clWait), "a broadcast after the rejoin", broadcastAt(after))
}
