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
		// Join: from join-session sent to session-joined read.
		JoinP50Ms float64 `json:"joinP50Ms"`
		JoinP99Ms float64 `json:"joinP99Ms"`
		JoinMaxMs float64 `json:"joinMaxMs"`
	} `json:"connect"`
	Window struct {
		Seconds           float64 `json:"seconds"`
		Sent              int64   `json:"sent"`
		SentPerSec        float64 `json:"sentPerSec"`
		Received          int64   `json:"received"`
		ReceivedPerSec    float64 `json:"receivedPerSec"`
		Frames            int64   `json:"frames"`
		MessagesPerFrame  float64 `json:"messagesPerFrame"`
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
	// Server is the first --server-pid's process, as when the flag took
	// one; Servers is every --server-pid's in the order given (Server is
	// Servers[0]), and ServerTotal their sum.
	Server      *serverStats   `json:"server,omitempty"`
	Servers     []*serverStats `json:"servers,omitempty"`
	ServerTotal *serverTotal   `json:"serverTotal,omitempty"`
}

// serverStats is what /proc says of one server process over the window.
// Its figures per connection and per delivered message divide by every
// connection and every message of the load: with several nodes, each
// node's share of the whole, which add up to the total's.
type serverStats struct {
	PID             int     `json:"pid"`
	Name            string  `json:"name,omitempty"` // command name from /proc/PID/stat
	RSSBeforeKiB    int64   `json:"rssBeforeKiB"`   // before hubload connected
	RSSStartKiB     int64   `json:"rssStartKiB"`    // at the window's start
	RSSEndKiB       int64   `json:"rssEndKiB"`      // at its end
	RSSPerConnBytes float64 `json:"rssPerConnBytes"`
	CPUSeconds      float64 `json:"cpuSeconds"` // over the window
	// CPUBeforeWindowSeconds is its CPU from before hubload connected to
	// the window's start: the connect phase (a join storm with --ramp 0)
	// and the warm-up.
	CPUBeforeWindowSeconds float64 `json:"cpuBeforeWindowSeconds"`
	CPUPercent             float64 `json:"cpuPercent"` // of one core, over the window
	CPUUsPerDelivered      float64 `json:"cpuUsPerDelivered"`
	CPUSecondsPerMillion   float64 `json:"cpuSecondsPerMillion"`
	Error                  string  `json:"error,omitempty"`
}

// serverTotal is the sum over the server processes that could be read
// from start to end; the others are left out and named in Error.
type serverTotal struct {
	Processes            int     `json:"processes"` // summed
	RSSBeforeKiB         int64   `json:"rssBeforeKiB"`
	RSSStartKiB          int64   `json:"rssStartKiB"`
	RSSEndKiB            int64   `json:"rssEndKiB"`
	RSSPerConnBytes      float64 `json:"rssPerConnBytes"`
	CPUSeconds           float64 `json:"cpuSeconds"`
	CPUPercent           float64 `json:"cpuPercent"` // of one core: over 100 when they use more than one
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
	s.Connect.JoinP50Ms = ms(l.join.ValueAtQuantile(50))
	s.Connect.JoinP99Ms = ms(l.join.ValueAtQuantile(99))
	s.Connect.JoinMaxMs = ms(l.join.Max())
	l.connMu.Unlock()

	w := &s.Window
	sec := win.Seconds()
	w.Seconds = sec
	w.Sent = n2.sent - n1.sent
	w.Received = n2.received - n1.received
	w.Frames = n2.frames - n1.frames
	if w.Frames > 0 {
		w.MessagesPerFrame = float64(w.Received) / float64(w.Frames)
	}
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

// setServers fills Server, Servers and ServerTotal from the readings of
// pids before hubload connected, at the window's start and at its end
// (each slice in the order of pids); conns is the connections made. Call
// it after fill, which sets the window.
func (s *summary) setServers(pids []int, before, start, end []procStat, conns int64) {
	if len(pids) == 0 {
		return
	}
	t := &serverTotal{}
	var cpu time.Duration
	var left []string
	s.Servers = make([]*serverStats, len(pids))
	for i, pid := range pids {
		st := &serverStats{PID: pid, RSSBeforeKiB: before[i].rssKiB, RSSStartKiB: start[i].rssKiB, RSSEndKiB: end[i].rssKiB}
		s.Servers[i] = st
		for _, p := range []procStat{before[i], start[i], end[i]} {
			if st.Name == "" {
				st.Name = p.name
			}
			if p.err != nil && st.Error == "" {
				st.Error = p.err.Error()
			}
		}
		if st.Error != "" {
			left = append(left, fmt.Sprintf("pid %d: %s", pid, st.Error))
			continue
		}
		d := end[i].cpu - start[i].cpu
		st.CPUBeforeWindowSeconds = (start[i].cpu - before[i].cpu).Seconds()
		st.RSSPerConnBytes = perConn(st.RSSEndKiB-st.RSSBeforeKiB, conns)
		st.CPUSeconds, st.CPUPercent, st.CPUUsPerDelivered = s.cpuFigures(d)
		st.CPUSecondsPerMillion = st.CPUUsPerDelivered

		t.Processes++
		t.RSSBeforeKiB += st.RSSBeforeKiB
		t.RSSStartKiB += st.RSSStartKiB
		t.RSSEndKiB += st.RSSEndKiB
		cpu += d
	}
	s.Server = s.Servers[0]
	t.RSSPerConnBytes = perConn(t.RSSEndKiB-t.RSSBeforeKiB, conns)
	t.CPUSeconds, t.CPUPercent, t.CPUUsPerDelivered = s.cpuFigures(cpu)
	t.CPUSecondsPerMillion = t.CPUUsPerDelivered
	if len(left) > 0 {
		t.Error = "left out: " + strings.Join(left, "; ")
	}
	s.ServerTotal = t
}

// perConn is an RSS growth in KiB over conns connections, in bytes each.
func perConn(kib, conns int64) float64 {
	if conns <= 0 {
		return 0
	}
	return float64(kib) * 1024 / float64(conns)
}

// cpuFigures gives CPU time d spent over the window in seconds, as a
// percentage of one core, and in µs per message hubload received in the
// window (which is also seconds per million).
func (s *summary) cpuFigures(d time.Duration) (sec, pct, usPer float64) {
	sec = d.Seconds()
	if w := s.Window.Seconds; w > 0 {
		pct = sec / w * 100
	}
	if n := s.Window.Received; n > 0 {
		usPer = sec * 1e6 / float64(n)
	}
	return sec, pct, usPer
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
	fmt.Fprintf(b, "connect:   %d/%d ok, %d failed in %.2fs; p50 %.2f ms, p99 %.2f ms, max %.2f ms; join p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
		s.Connect.OK, s.Connect.Attempted, s.Connect.Failed, s.ConnectSeconds, s.Connect.P50Ms, s.Connect.P99Ms, s.Connect.MaxMs,
		s.Connect.JoinP50Ms, s.Connect.JoinP99Ms, s.Connect.JoinMaxMs)
	win := &s.Window
	fmt.Fprintf(b, "window:    %.1fs; sent %d (%.0f/s), received %d (%.0f/s) in %d frames (%.2f messages per frame)\n",
		win.Seconds, win.Sent, win.SentPerSec, win.Received, win.ReceivedPerSec, win.Frames, win.MessagesPerFrame)
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
	switch {
	case len(s.Servers) > 1:
		// One line per process, named and with its share of a core, then
		// their total.
		for _, st := range s.Servers {
			if st.Error != "" {
				fmt.Fprintf(b, "server:    pid %d (%s): %s\n", st.PID, st.Name, st.Error)
				continue
			}
			fmt.Fprintf(b, "server:    pid %d (%s): RSS %d KiB before, %d KiB at start, %d KiB at end (%.0f B per connection); CPU %.2fs (%.1f %% of a core), %.2f µs per delivered message, %.1f s per million\n",
				st.PID, st.Name, st.RSSBeforeKiB, st.RSSStartKiB, st.RSSEndKiB, st.RSSPerConnBytes, st.CPUSeconds, st.CPUPercent, st.CPUUsPerDelivered, st.CPUSecondsPerMillion)
		}
		t := s.ServerTotal
		fmt.Fprintf(b, "servers:   total of %d of %d processes: RSS %d KiB before, %d KiB at start, %d KiB at end (%.0f B per connection); CPU %.2fs (%.1f %% of a core), %.2f µs per delivered message, %.1f s per million\n",
			t.Processes, len(s.Servers), t.RSSBeforeKiB, t.RSSStartKiB, t.RSSEndKiB, t.RSSPerConnBytes, t.CPUSeconds, t.CPUPercent, t.CPUUsPerDelivered, t.CPUSecondsPerMillion)
		if t.Error != "" {
			fmt.Fprintf(b, "servers:   %s\n", t.Error)
		}
	case s.Server != nil:
		// One process: the line hubload has always printed.
		if st := s.Server; st.Error != "" {
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
