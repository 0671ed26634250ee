package hub

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/sessionhub/sessionhub/internal/wstest"
)

// WebSocket pings count against the message rate (finding 6: 390 k pings
// in 5 s cost 4.8 s of CPU and 46.5 MB of pongs, with no limit): pings over
// the rate get no pong, and a flood ends in 1008 like any flood. Over a raw
// socket, so that the client writes pings as fast as it can.
func TestPingFloodEndsIn1008(t *testing.T) {
	_, ts, _ := serveInternal(t, &Options{MessageRate: 1, MessageBurst: 2, AbuseWindow: 300 * time.Millisecond}, false)
	tcp, br := rawUpgrade(t, ts, nil)
	stop := make(chan struct{})
	wrote := make(chan int, 1)
	go func() {
		n := 0
		defer func() { wrote <- n }()
		ping := wstest.MaskedFrame(0x89, []byte("p"))
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := tcp.Write(ping); err != nil {
				return
			}
			n++
		}
	}()
	pongs := 0
	for {
		op, payload := readServerFrame(t, br)
		if op == 0x8a {
			pongs++
			continue
		}
		if op != 0x88 {
			continue
		}
		close(stop)
		pings := <-wrote
		if len(payload) < 2 || binary.BigEndian.Uint16(payload) != 1008 {
			t.Fatalf("close frame %x, want 1008", payload)
		}
		if pongs >= pings || pongs > 10 {
			t.Errorf("%d pongs for %d pings at 1 per second", pongs, pings)
		}
		return
	}
}
