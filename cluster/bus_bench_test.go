package cluster_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionhub/sessionhub/cluster"
	"github.com/sessionhub/sessionhub/internal/redistest"
)

// BenchmarkBus sends events from node A to node B through a real Redis,
// both subscribed to the sessions (as nodes serving them are: A gets its
// own events back from Redis and drops them). Besides ns, B and allocs per
// op (every goroutine of the process: both buses and go-redis), it reports
// the CPU of this process (cpu-µs/op, getrusage) and of redis-server
// (redis-µs/op, INFO cpu) per op.
//
//   - one: an op is one event, published once the previous one arrived: a
//     publisher wake-up, a PUBLISH and a read on each node per event, as
//     on a node whose events are spaced out.
//   - burst: an op is 16 events on 4 sessions published at once, as a busy
//     node's queue holds them.
//   - paced: an op is one event, published every 500 µs (2 000 a second)
//     whether or not the previous one arrived, with the Linger a hub gives
//     the bus under --write-delay 0 and 20ms. Run it with a fixed count
//     (-benchtime 4000x): its ns/op is the pace's.
func BenchmarkBus(b *testing.B) {
	srv := redistest.Start(b)
	sessions := []string{"s0", "s1", "s2", "s3"}
	setup := func(b *testing.B, linger time.Duration) (a, r *cluster.Bus, rdb *redis.Client) {
		rdb = redis.NewClient(&redis.Options{Addr: srv.Addr()})
		b.Cleanup(func() { rdb.Close() })
		bus := func(node string, linger time.Duration) *cluster.Bus {
			c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
			x := cluster.NewBus(c, &cluster.BusOptions{NodeID: node, Linger: linger})
			b.Cleanup(func() { x.Close(); c.Close() })
			for _, s := range sessions {
				x.Subscribe(s)
			}
			return x
		}
		a, r = bus("A", linger), bus("B", 0)
		for _, s := range sessions {
			ch := "sessionhub:s:" + s
			for {
				m, err := rdb.PubSubNumSub(context.Background(), ch).Result()
				if err == nil && m[ch] == 2 {
					break
				}
				time.Sleep(time.Millisecond) // polling Redis for the subscriptions
			}
		}
		return a, r, rdb
	}
	event := []byte(`c` + "\x05alice" + `{"type":"cursor-moved","data":{"userId":"alice","cursor":{"line":12,"column":4,"file":"t/1764900000000000000"}}}`)
	wait := func(b *testing.B, r *cluster.Bus) {
		select {
		case <-r.Messages():
		case <-time.After(10 * time.Second):
			b.Fatal("no message within 10s")
		}
	}

	b.Run("one", func(b *testing.B) {
		a, r, rdb := setup(b, 0)
		m := startCPU(b, rdb)
		n := 0
		for ; b.Loop(); n++ {
			a.Publish(sessions[n%len(sessions)], event)
			wait(b, r)
		}
		m.report(b, n)
	})
	b.Run("burst", func(b *testing.B) {
		a, r, rdb := setup(b, 0)
		m := startCPU(b, rdb)
		n := 0
		for ; b.Loop(); n++ {
			for i := range 16 {
				a.Publish(sessions[i%len(sessions)], event)
			}
			for range 16 {
				wait(b, r)
			}
		}
		m.report(b, n)
	})
	for _, linger := range []time.Duration{0, 5 * time.Millisecond} {
		b.Run("paced/linger="+linger.String(), func(b *testing.B) {
			a, r, rdb := setup(b, linger)
			tick := time.NewTicker(500 * time.Microsecond)
			defer tick.Stop()
			m := startCPU(b, rdb)
			n, got := 0, 0
			for ; b.Loop(); n++ {
				<-tick.C
				a.Publish(sessions[n%len(sessions)], event)
			drain:
				for {
					select {
					case <-r.Messages():
						got++
					default:
						break drain
					}
				}
			}
			for ; got < n; got++ {
				wait(b, r)
			}
			m.report(b, n)
		})
	}
}

// cpuMeter measures this process's CPU and redis-server's over a
// benchmark's loop.
type cpuMeter struct {
	rdb          *redis.Client
	self, redis0 time.Duration
}

func startCPU(b *testing.B, rdb *redis.Client) *cpuMeter {
	b.Helper()
	return &cpuMeter{rdb: rdb, self: selfCPU(b), redis0: redisCPU(b, rdb)}
}

func (m *cpuMeter) report(b *testing.B, ops int) {
	b.Helper()
	self, red := selfCPU(b)-m.self, redisCPU(b, m.rdb)-m.redis0
	b.ReportMetric(float64(self.Microseconds())/float64(ops), "cpu-µs/op")
	b.ReportMetric(float64(red.Microseconds())/float64(ops), "redis-µs/op")
}

func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// redisCPU is redis-server's user and system CPU so far (INFO cpu).
func redisCPU(b *testing.B, rdb *redis.Client) time.Duration {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for _, line := range strings.Split(info, "\n") {
		for _, k := range []string{"used_cpu_sys:", "used_cpu_user:"} {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), k); ok {
				s, err := strconv.ParseFloat(v, 64)
				if err != nil {
					b.Fatal(fmt.Errorf("INFO cpu %q: %w", line, err))
				}
				total += time.Duration(s * float64(time.Second))
			}
		}
	}
	return total
}
