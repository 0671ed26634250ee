package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// summary is hubload's result; --json prints it as is.
type summary struct {
	Config struct {
		URLs              []string `json:"urls"`
		Sessions          int      `json:"sessions"`
		ClientsPerSession int      `json:"clientsPerSession"`
		CursorRate        float64  `json:"cursorRate"`
		BroadcastRate     float64  `json:"broadcastRate"`
		WarmupSeconds     float64  `json:"warmupSeconds"`
		DurationSeconds   float64  `json:"durationSeconds"`
		Ramp              float64  `json:"ramp"`
		SourceAddrs       int      `json:"sourceAddrs"`
		Presence          string   `json:"presence"`
		Batch             bool     `json:"batch"`
		Idle              bool     `json:"idle"`
		Token             bool     `json:"token"`
	} `json:"config"`
	Interrupted    bool    `json:"interrupted"`
	ConnectSeconds float64 `json:"connectSeconds"`
	Connect        struct {
		Attempted int64   `json:"attempted"`
		OK        int64   `json:"ok"`
		Failed    int64   `json:"failed"`
		P50Ms     float64 `json:"p50Ms"`
		P99Ms     float64 `json:"p99Ms"`
		MaxMs     float64 `json:"maxMs"`
	} `json:"connect"`
	Window struct {
		Seconds           float64 `json:"seconds"`
		Sent              int64   `json:"sent"`
		SentPerSec        float64 `json:"sentPerSec"`
		Received          int64   `json:"received"`
		ReceivedPerSec    float64 `json:"receivedPerSec"`
		Frames            int64   `json:"frames"`
		CursorSent        int64   `json:"cursorSent"`
		CursorReceived    int64   `json:"cursorReceived"`
		DeliveredPerSec   float64 `json:"deliveredPerSec"`
		BroadcastsSent    int64   `json:"broadcastsSent"`
		BroadcastsRecv    int64   `json:"broadcastsReceived"`
		Expected          int64   `json:"expected"`
		Delivered         int64   `json:"delivered"`
		DeliveryRatio     float64 `json:"deliveryRatio"`
		UntimedCursorRecv int64   `json:"untimedCursorReceived,omitempty"`
	} `json:"window"`
	Latency struct {
		Count  int64   `json:"count"`
		P50Us  int64   `json:"p50Us"`
		P90Us  int64   `json:"p90Us"`
		P99Us  int64   `json:"p99Us"`
		P999Us int64   `json:"p999Us"`
		MaxUs  int64   `json:"maxUs"`
		MeanUs float64 `json:"meanUs"`
	} `json:"latency"`
	Errors     map[string]int64 `json:"errors"`
	CloseCodes map[string]int64 `json:"closeCodes"`
	Hubload    struct {
		CPUSeconds          float64 `json:"cpuSeconds"`
		CPUUsPerReceived    float64 `json:"cpuUsPerReceived"`
		CPUUsPerSentOrRecvd float64 `json:"cpuUsPerMessage"`
		RSSKiB              int64   `json:"rssKiB"`
	} `json:"hubload"`
	Server *serverStats `json:"server,omitempty"`
}

// serverStats is what /proc says of the server over the window.
type serverStats struct {
	PID                  int     `json:"pid"`
	RSSBeforeKiB         int64   `json:"rssBeforeKiB"` // before hubload connected
	RSSStartKiB          int64   `json:"rssStartKiB"`  // at the window's start
	RSSEndKiB            int64   `json:"rssEndKiB"`    // at its end
	RSSPerConnBytes      float64 `json:"rssPerConnBytes"`
	CPUSeconds           float64 `json:"cpuSeconds"` // over the window
	CPUUsPerDelivered    float64 `json:"cpuUsPerDelivered"`
	CPUSecondsPerMillion float64 `json:"cpuSecondsPerMillion"`
	Error                string  `json:"error,omitempty"`
}

func (s *summary) setConfig(c *config) {
	k := &s.Config
	k.URLs, k.Sessions, k.ClientsPerSession = c.urls, c.sessions, c.clients
	k.CursorRate, k.BroadcastRate = c.cursorRate, c.broadcastRate
	if c.idle {
		k.CursorRate, k.BroadcastRate = 0, 0
	}
	k.WarmupSeconds, k.DurationSeconds = c.warmup.Seconds(), c.duration.Seconds()
	k.Ramp, k.SourceAddrs = c.ramp, len(c.sourceAddrs)
	k.Presence, k.Batch, k.Idle, k.Token = string(c.presence), c.batch, c.idle, c.jwtSecret != ""
}

func ms(us int64) float64 { return float64(us) / 1000 }

func per(n int64, d float64) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d
}

// fill writes the load's figures into s: n1 and n2 are the counters at the
// window's start and end, cpu hubload's CPU time over it.
func (l *load) fill(s *summary, n1, n2 snapshot, win time.Duration, cpu time.Duration) {
	s.Connect.OK, s.Connect.Failed = l.connOK.Load(), l.connBad.Load()
	s.Connect.Attempted = s.Connect.OK + s.Connect.Failed
	l.connMu.Lock()
	s.Connect.P50Ms = ms(l.connect.ValueAtQuantile(50))
	s.Connect.P99Ms = ms(l.connect.ValueAtQuantile(99))
	s.Connect.MaxMs = ms(l.connect.Max())
	l.connMu.Unlock()

	w := &s.Window
	sec := win.Seconds()
	w.Seconds = sec
	w.Sent = n2.sent - n1.sent
	w.Received = n2.received - n1.received
	w.Frames = n2.frames - n1.frames
	w.CursorSent = n2.cursorSent - n1.cursorSent
	w.CursorReceived = n2.cursorRecv - n1.cursorRecv
	w.BroadcastsSent = n2.bcastSent - n1.bcastSent
	w.BroadcastsRecv = n2.bcastRecv - n1.bcastRecv
	w.SentPerSec, w.ReceivedPerSec, w.DeliveredPerSec = per(w.Sent, sec), per(w.Received, sec), per(w.CursorReceived, sec)
	w.Expected, w.Delivered = l.n.windowExpect.Load(), l.n.windowDeliver.Load()
	if w.Expected > 0 {
		w.DeliveryRatio = float64(w.Delivered) / float64(w.Expected)
	}
	w.UntimedCursorRecv = l.n.late.Load()

	h := l.mergedLatency()
	lt := &s.Latency
	lt.Count = h.TotalCount()
	lt.P50Us, lt.P90Us, lt.P99Us = h.ValueAtQuantile(50), h.ValueAtQuantile(90), h.ValueAtQuantile(99)
	lt.P999Us, lt.MaxUs, lt.MeanUs = h.ValueAtQuantile(99.9), h.Max(), h.Mean()

	l.errMu.Lock()
	s.Errors, s.CloseCodes = maps.Clone(l.errors), maps.Clone(l.closes)
	l.errMu.Unlock()

	s.Hubload.CPUSeconds = cpu.Seconds()
	if w.Received > 0 {
		s.Hubload.CPUUsPerReceived = float64(cpu.Microseconds()) / float64(w.Received)
	}
	if w.Received+w.Sent > 0 {
		s.Hubload.CPUUsPerSentOrRecvd = float64(cpu.Microseconds()) / float64(w.Received+w.Sent)
	}
	s.Hubload.RSSKiB = readProc(os.Getpid()).rssKiB
}

func (s *summary) setServer(pid int, before, start, end procStat, conns int64) {
	st := &serverStats{PID: pid, RSSBeforeKiB: before.rssKiB, RSSStartKiB: start.rssKiB, RSSEndKiB: end.rssKiB}
	s.Server = st
	for _, p := range []procStat{before, start, end} {
		if p.err != nil {
			st.Error = p.err.Error()
			return
		}
	}
	if conns > 0 {
		st.RSSPerConnBytes = float64(end.rssKiB-before.rssKiB) * 1024 / float64(conns)
	}
	st.CPUSeconds = (end.cpu - start.cpu).Seconds()
	if n := s.Window.Received; n > 0 {
		st.CPUUsPerDelivered = st.CPUSeconds * 1e6 / float64(n)
		st.CPUSecondsPerMillion = st.CPUSeconds * 1e6 / float64(n)
	}
}

func (s *summary) writeJSON(w io.Writer) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func countsText(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+strconv.FormatInt(m[k], 10))
	}
	return strings.Join(parts, " ")
}

func (s *summary) writeText(w io.Writer) error {
	c := &s.Config
	b := &strings.Builder{}
	fmt.Fprintf(b, "hubload: %d sessions × %d clients, cursor %g/s, broadcast %g/s per client, presence %s, batch %t, idle %t\n",
		c.Sessions, c.ClientsPerSession, c.CursorRate, c.BroadcastRate, c.Presence, c.Batch, c.Idle)
	if s.Interrupted {
		fmt.Fprintf(b, "  INTERRUPTED before the end: figures cover what ran\n")
	}
	fmt.Fprintf(b, "connect:   %d/%d ok, %d failed in %.2fs; p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
		s.Connect.OK, s.Connect.Attempted, s.Connect.Failed, s.ConnectSeconds, s.Connect.P50Ms, s.Connect.P99Ms, s.Connect.MaxMs)
	win := &s.Window
	fmt.Fprintf(b, "window:    %.1fs; sent %d (%.0f/s), received %d (%.0f/s) in %d frames\n",
		win.Seconds, win.Sent, win.SentPerSec, win.Received, win.ReceivedPerSec, win.Frames)
	fmt.Fprintf(b, "cursor:    delivered %.0f/s; ratio %.5f (%d of %d expected)\n",
		win.DeliveredPerSec, win.DeliveryRatio, win.Delivered, win.Expected)
	if win.BroadcastsSent > 0 {
		fmt.Fprintf(b, "broadcast: sent %d, received %d\n", win.BroadcastsSent, win.BroadcastsRecv)
	}
	lt := &s.Latency
	fmt.Fprintf(b, "latency:   p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms (n=%d)\n",
		ms(lt.P50Us), ms(lt.P90Us), ms(lt.P99Us), ms(lt.P999Us), ms(lt.MaxUs), lt.Count)
	fmt.Fprintf(b, "errors:    %s\n", countsText(s.Errors))
	fmt.Fprintf(b, "closes:    %s\n", countsText(s.CloseCodes))
	fmt.Fprintf(b, "hubload:   CPU %.2fs, %.2f µs per received message, RSS %d KiB\n",
		s.Hubload.CPUSeconds, s.Hubload.CPUUsPerReceived, s.Hubload.RSSKiB)
	if st := s.Server; st != nil {
		if st.Error != "" {
			fmt.Fprintf(b, "server:    pid %d: %s\n", st.PID, st.Error)
		} else {
			fmt.Fprintf(b, "server:    pid %d: RSS %d KiB before, %d KiB at start, %d KiB at end (%.0f B per connection); CPU %.2fs, %.2f µs per delivered message, %.1f s per million\n",
				st.PID, st.RSSBeforeKiB, st.RSSStartKiB, st.RSSEndKiB, st.RSSPerConnBytes, st.CPUSeconds, st.CPUUsPerDelivered, st.CPUSecondsPerMillion)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// progress prints one line a second to the load's progress writer.
type progress struct {
	l     *load
	start time.Time
	mu    sync.Mutex
	phase string
}

func newProgress(l *load, start time.Time) *progress { return &progress{l: l, start: start} }

func (p *progress) setPhase(s string) {
	p.mu.Lock()
	p.phase = s
	p.mu.Unlock()
}

func (p *progress) loop(stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	prev := p.l.snapshot()
	prevT := time.Now()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			cur := p.l.snapshot()
			d := now.Sub(prevT).Seconds()
			var h *hdrhistogram.Histogram
			if p.l.winStart.Load() != 0 {
				h = p.l.mergedLatency()
			}
			p99 := "-"
			if h != nil && h.TotalCount() > 0 {
				p99 = fmt.Sprintf("%.2fms", ms(h.ValueAtQuantile(99)))
			}
			p.mu.Lock()
			phase := p.phase
			p.mu.Unlock()
			fmt.Fprintf(p.l.progress, "%5.0fs %-7s conns %d (failed %d)  sent/s %.0f  recv/s %.0f  p99 %s\n",
				now.Sub(p.start).Seconds(), phase, p.l.conns.Load(), p.l.connBad.Load(),
				per(cur.sent-prev.sent, d), per(cur.received-prev.received, d), p99)
			prev, prevT = cur, now
		}
	}
}
