package wsfast

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const libPath = "github.com/coder/websocket"

// The package relies on how coder/websocket behaves at CheckedVersion (the
// package doc lists what): a go.mod that requires another version, or
// replaces it, fails here until someone re-checks.
func TestCheckedVersion(t *testing.T) {
	const recheck = "package wsfast relies on how github.com/coder/websocket behaves, " +
		"not on its API, and was checked against " + CheckedVersion + ". Re-check the points " +
		"the package doc (hub/internal/wsfast/doc.go) lists, in the new version's accept.go, " +
		"hijack.go, read.go, write.go and close.go; run go test -race ./hub/... (the hub's " +
		"TestPongShapes, TestFirstFrameBehindTheUpgradeRequest, TestIdleReaderWaitsShallow and " +
		"TestPongsOverTLS guard it too); then set CheckedVersion."
	// go.mod, not runtime/debug.ReadBuildInfo: a test binary's build info
	// lists no dependencies.
	version, replaced := goModRequire(t)
	if version != CheckedVersion {
		t.Fatalf("go.mod requires %s %s: %s", libPath, version, recheck)
	}
	if replaced != "" {
		t.Fatalf("go.mod replaces %s (%s): %s", libPath, replaced, recheck)
	}
}

// goModRequire finds the module's go.mod above the working directory and
// returns the version it requires of coder/websocket, and the right-hand
// side of a replace directive for it ("" for none).
func goModRequire(t *testing.T) (version, replaced string) {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	block := "" // the verb of the ( block the scan is in
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "//")
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0:
			continue
		case len(fields) == 2 && fields[1] == "(":
			block = fields[0]
			continue
		case fields[0] == ")":
			block = ""
			continue
		}
		verb := block
		if verb == "" {
			verb, fields = fields[0], fields[1:]
		}
		if len(fields) < 2 || fields[0] != libPath {
			continue
		}
		switch verb {
		case "require":
			version = fields[1]
		case "replace":
			_, rhs, _ := strings.Cut(line, "=>")
			replaced = strings.TrimSpace(rhs)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if version == "" {
		t.Fatalf("%s requires no %s", filepath.Join(dir, "go.mod"), libPath)
	}
	return version, replaced
}
