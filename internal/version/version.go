// Package version says which build of sessionhub is running: the module
// version and VCS revision that the Go toolchain stamps into the binary
// (runtime/debug.ReadBuildInfo), unless a release sets them with -ldflags:
//
//	go build -ldflags "-X github.com/sessionhub/sessionhub/internal/version.Version=0.1.0 \
//	    -X github.com/sessionhub/sessionhub/internal/version.Revision=$(git rev-parse HEAD)" ./cmd/hubd
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
)

// Version and Revision are set at release with -ldflags -X; empty, they
// are read from the build information.
var (
	Version  string
	Revision string
)

// Info is the build's identity.
type Info struct {
	// Version is the module version ("v0.1.0", or "(devel)" for a build
	// from a checkout), or what -ldflags set.
	Version string
	// Revision is the VCS revision, with "+dirty" when the checkout had
	// changes, or "unknown" when the build recorded none (go build
	// -buildvcs=false, or a build outside a checkout).
	Revision string
	// GoVersion is the Go toolchain that built the binary.
	GoVersion string
}

// Get returns the build's identity, computed once.
func Get() Info { return get() }

var get = sync.OnceValue(func() Info { return read(debug.ReadBuildInfo) })

// read resolves Info from the -ldflags variables and then the build
// information that readBuild returns.
func read(readBuild func() (*debug.BuildInfo, bool)) Info {
	i := Info{Version: Version, Revision: Revision, GoVersion: runtime.Version()}
	bi, ok := readBuild()
	if ok {
		if bi.GoVersion != "" {
			i.GoVersion = bi.GoVersion
		}
		if i.Version == "" {
			i.Version = bi.Main.Version
		}
		if i.Revision == "" {
			var rev string
			var dirty bool
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					dirty = s.Value == "true"
				}
			}
			if rev != "" && dirty {
				rev += "+dirty"
			}
			i.Revision = rev
		}
	}
	if i.Version == "" {
		i.Version = "(devel)"
	}
	if i.Revision == "" {
		i.Revision = "unknown"
	}
	return i
}

// String is the line hubd --version prints: "hubd <version> (<revision>,
// <go version>)".
func (i Info) String() string {
	return fmt.Sprintf("hubd %s (%s, %s)", i.Version, i.Revision, i.GoVersion)
}
