package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// procStat is a process's resident set and CPU time, from /proc.
type procStat struct {
	name   string // the command name, as /proc/PID/stat has it (≤ 15 bytes)
	rssKiB int64
	cpu    time.Duration // user + system
	err    error
}

// readProc reads /proc/PID/status (VmRSS) and /proc/PID/stat (utime, stime).
func readProc(pid int) procStat {
	var p procStat
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		p.err = err
		return p
	}
	for line := range bytes.Lines(status) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := bytes.Fields(rest)
			if len(f) > 0 {
				p.rssKiB, _ = strconv.ParseInt(string(f[0]), 10, 64)
			}
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		p.err = err
		return p
	}
	// The command name may hold spaces and parentheses: it runs from the
	// first '(' to the last ')', and the fields count from after that.
	i := bytes.LastIndexByte(stat, ')')
	j := bytes.IndexByte(stat, '(')
	if i < 0 || j < 0 || j > i {
		p.err = fmt.Errorf("/proc/%d/stat: no command name", pid)
		return p
	}
	p.name = string(stat[j+1 : i])
	f := bytes.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		p.err = fmt.Errorf("/proc/%d/stat: too few fields", pid)
		return p
	}
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		p.err = fmt.Errorf("/proc/%d/stat: bad utime or stime", pid)
		return p
	}
	p.cpu = time.Duration(ut+st) * time.Second / clockTicks
	return p
}

// readProcs reads every process of pids, in order.
func readProcs(pids []int) []procStat {
	if len(pids) == 0 {
		return nil
	}
	ps := make([]procStat, len(pids))
	for i, pid := range pids {
		ps[i] = readProc(pid)
	}
	return ps
}
