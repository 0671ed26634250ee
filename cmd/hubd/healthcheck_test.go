package main

import (
	"io"
	"net"
	"testing"
)

// hubd healthcheck answers for a real hubd, found as the server finds its
// address, and fails for a port nobody listens on.
func TestHealthcheck(t *testing.T) {
	p := startHubProc(t, "n1")
	_, port, err := net.SplitHostPort(p.addr)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	tests := []struct {
		name string
		args []string
		env  []string
		ok   bool
	}{
		{"--addr", []string{"--addr", p.addr}, nil, true},
		{"--ready", []string{"--addr", p.addr, "--ready"}, nil, true},
		{"HUB_ADDR on every address", nil, []string{"HUB_ADDR", ":" + port}, true},
		{"PORT", nil, []string{"PORT", port}, true},
		{"flag wins over HUB_ADDR", []string{"--addr", p.addr}, []string{"HUB_ADDR", closed}, true},
		{"nobody listening", []string{"--addr", closed}, nil, false},
		{"not found", []string{"--addr", "127.0.0.1:0"}, nil, false},
		{"bad address", []string{"--addr", "nonsense"}, nil, false},
		{"stray argument", []string{"--addr", p.addr, "extra"}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := healthcheck(tt.args, env(tt.env...), io.Discard)
			if (err == nil) != tt.ok {
				t.Errorf("healthcheck(%v, %v) = %v, want ok %v", tt.args, tt.env, err, tt.ok)
			}
		})
	}
}
