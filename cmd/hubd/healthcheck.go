package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// healthcheck is `hubd healthcheck`, the container image's HEALTHCHECK (the
// image has no curl): it asks the hubd listening on --addr (by default
// HUB_ADDR, else PORT, else :8080, as the server reads them) for /healthz,
// or /readyz with --ready, and returns nil on 200.
func healthcheck(args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("hubd healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "the server's listen address (default: $HUB_ADDR, else :$PORT, else :8080)")
	ready := fs.Bool("ready", false, "check /readyz (accepting clients) instead of /healthz (alive)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	a := *addr
	switch {
	case a != "":
	case getenv("HUB_ADDR") != "":
		a = getenv("HUB_ADDR")
	case getenv("PORT") != "":
		a = ":" + getenv("PORT")
	default:
		a = ":8080"
	}
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("address %q: %w", a, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1" // listening on every address: ask on loopback
	}
	route := "/healthz"
	if *ready {
		route = "/readyz"
	}
	url := "http://" + net.JoinHostPort(host, port) + route
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
