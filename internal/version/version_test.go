package version

import (
	"runtime/debug"
	"testing"
)

func TestRead(t *testing.T) {
	build := func(version string, settings ...debug.BuildSetting) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Version: version}, Settings: settings}, true
		}
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	tests := []struct {
		name         string
		ldVer, ldRev string
		readBuild    func() (*debug.BuildInfo, bool)
		want         Info
	}{
		{"module version and revision", "", "", build("v0.1.0",
			debug.BuildSetting{Key: "vcs.revision", Value: "abc123"}, debug.BuildSetting{Key: "vcs.modified", Value: "false"}),
			Info{"v0.1.0", "abc123", "go1.99"}},
		{"dirty checkout", "", "", build("(devel)",
			debug.BuildSetting{Key: "vcs.revision", Value: "abc123"}, debug.BuildSetting{Key: "vcs.modified", Value: "true"}),
			Info{"(devel)", "abc123+dirty", "go1.99"}},
		{"no vcs stamp", "", "", build("(devel)"), Info{"(devel)", "unknown", "go1.99"}},
		{"ldflags win", "0.2.0", "def456", build("v0.1.0", debug.BuildSetting{Key: "vcs.revision", Value: "abc123"}),
			Info{"0.2.0", "def456", "go1.99"}},
		{"no build info", "", "", none, Info{"(devel)", "unknown", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			Version, Revision = tt.ldVer, tt.ldRev
			defer func() { Version, Revision = "", "" }()
			got := read(tt.readBuild)
			if tt.want.GoVersion == "" {
				tt.want.GoVersion = got.GoVersion // runtime.Version()
			}
			if got != tt.want {
				t.Errorf("read = %+v, want %+v", got, tt.want)
			}
		})
	}
	if s := (Info{"0.1.0", "abc", "go1.99"}).String(); s != "hubd 0.1.0 (abc, go1.99)" {
		t.Errorf("String = %q", s)
	}
}
