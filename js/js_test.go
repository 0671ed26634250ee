package js_test

// These tests drive the JavaScript side from `go test ./...`: they check that
// hub/web/hub.js and hub/web/hub.d.ts (what hubd embeds and serves) are the
// build of packages/client as committed, and they run the workspace's suite
// (`npm test`: the React package against a real hubd, the browser client and
// the example app in real Chromium, the packed tarballs in a fresh folder).
//
// They need Node.js and the workspace's node_modules (`npm ci` in js/).
// Without them the tests are skipped, except under CI=true, where they fail:
// CI must not pass by skipping them.

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// requireWorkspace skips (or, under CI=true, fails) the test when node or
// the installed workspace is missing.
func requireWorkspace(t *testing.T) {
	t.Helper()
	missing := func(what string) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s (CI=true: the JavaScript tests must run; .ci/run runs npm ci in js/)", what)
		}
		t.Skipf("%s; run `npm ci` in js/ to run the JavaScript tests", what)
	}
	if _, err := exec.LookPath("node"); err != nil {
		missing("node is not installed")
	}
	if _, err := os.Stat(filepath.Join("node_modules", "typescript", "bin", "tsc")); err != nil {
		missing("js/node_modules is missing")
	}
}

// TestServedClientIsTheBuild builds packages/client into a temporary folder
// and compares the result with hub/web/hub.js and hub/web/hub.d.ts: one
// source, never two copies that drift. `npm run web` in js/ updates them.
func TestServedClientIsTheBuild(t *testing.T) {
	requireWorkspace(t)
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join("node_modules", "typescript", "bin", "tsc"),
		"-p", filepath.Join("packages", "client", "tsconfig.json"), "--outDir", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tsc: %v\n%s", err, b)
	}
	for built, served := range map[string]string{"index.js": "hub.js", "index.d.ts": "hub.d.ts"} {
		fresh, err := os.ReadFile(filepath.Join(out, built))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(filepath.Join("..", "hub", "web", served))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fresh, committed) {
			t.Errorf("hub/web/%s differs from a fresh build of js/packages/client (%s): run `npm run web` in js/ and commit it", served, built)
		}
	}
}

// TestJSSuite runs `npm test` in js/ (build, then vitest) against a hubd
// built here, and fails when the suite fails.
func TestJSSuite(t *testing.T) {
	requireWorkspace(t)
	hubd := filepath.Join(t.TempDir(), "hubd")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", hubd, "../cmd/hubd")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/hubd: %v\n%s", err, b)
	}
	cmd := exec.CommandContext(ctx, "npm", "test")
	cmd.Env = append(os.Environ(), "SESSIONHUB_HUBD="+hubd, "FORCE_COLOR=0", "NO_COLOR=1")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	t.Logf("npm test:\n%s", out.String())
	if err != nil {
		t.Fatalf("npm test in js/: %v", err)
	}
}
