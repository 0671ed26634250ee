//go:build race

package hub

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestIdleConnectionStackFits2KiB (stack_internal_test.go) needs a build
// without the race detector, whose larger stack guard gives every
// goroutine 4 KiB: under -race this test runs it in such a build, so that
// the one test command (go test -race ./...) runs it too.
func TestIdleConnectionStackFits2KiB(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the package's tests without -race")
	}
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		t.Skipf("no go command next to this test's toolchain: %v", err)
	}
	cmd := exec.Command(gobin, "test", "-count=1", "-v", "-run", "^TestIdleConnectionStackFits2KiB$", ".")
	cmd.Env = append(os.Environ(), "GOFLAGS="+withoutRace(os.Getenv("GOFLAGS")))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestIdleConnectionStackFits2KiB") {
		t.Fatalf("%v did not run the test:\n%s", cmd.Args, out)
	}
}

// withoutRace is flags (GOFLAGS) without -race.
func withoutRace(flags string) string {
	var kept []string
	for _, f := range strings.Fields(flags) {
		if f != "-race" && f != "--race" && f != "-race=true" {
			kept = append(kept, f)
		}
	}
	return strings.Join(kept, " ")
}
