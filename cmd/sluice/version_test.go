package main

import (
	"encoding/json"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionOf(t *testing.T) {
	t.Parallel()
	platform := runtime.GOOS + "/" + runtime.GOARCH
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want versionInfo
	}{
		{"no build information", nil, false, versionInfo{Version: "(devel)", GoVersion: runtime.Version(), Platform: platform}},
		{"release from a clean checkout", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/sluicehq/sluice", Version: "v1.2.0"},
			Settings: []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "446570c1cad4d796aabd3e450d3657d70b51583a"},
				{Key: "vcs.time", Value: "2026-12-06T23:51:12Z"}, {Key: "vcs.modified", Value: "false"}, {Key: "-trimpath", Value: "true"}}}, true,
			versionInfo{Version: "v1.2.0", Revision: "446570c1cad4d796aabd3e450d3657d70b51583a", Time: "2026-12-06T23:51:12Z", GoVersion: "go1.26.8", Platform: platform}},
		{"modified checkout", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261206235112-446570c1cad4+dirty"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "446570c1"}, {Key: "vcs.modified", Value: "true"}}}, true,
			versionInfo{Version: "v0.0.0-20261206235112-446570c1cad4+dirty", Revision: "446570c1", Modified: true, GoVersion: "go1.26.8", Platform: platform}},
		{"built without VCS information", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, true,
			versionInfo{Version: "(devel)", GoVersion: "go1.26.8", Platform: platform}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := versionOf(tc.bi, tc.ok); got != tc.want {
				t.Errorf("versionOf = %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// The JSON of sluice version is for scripts: its keys are a promise.
func TestVersionCommand(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runCLI("version", "-o", "json")
	if code != exitOK {
		t.Fatalf("version -o json: exit %d, stderr %q", code, stderr)
	}
	var fields map[string]any
	if err := json.Unmarshal([]byte(stdout), &fields); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	for _, k := range []string{"version", "modified", "goVersion", "platform"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("version JSON lacks %q: %s", k, stdout)
		}
	}
	for k := range fields {
		switch k {
		case "version", "revision", "time", "modified", "goVersion", "platform":
		default:
			t.Errorf("version JSON has unexpected key %q", k)
		}
	}
	if fields["goVersion"] != runtime.Version() {
		t.Errorf("goVersion %v, want %s", fields["goVersion"], runtime.Version())
	}

	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"version"}, exitOK, "sluice "},
		{[]string{"--version"}, exitOK, "sluice "},
		{[]string{"version", "-o", "yaml"}, exitUsage, ""},
		{[]string{"version", "extra"}, exitUsage, ""},
	} {
		code, stdout, stderr := runCLI(tc.args...)
		if code != tc.code || !strings.HasPrefix(stdout, tc.out) {
			t.Errorf("sluice %v: exit %d, stdout %q, stderr %q; want exit %d, stdout starting %q", tc.args, code, stdout, stderr, tc.code, tc.out)
		}
		if code == exitOK && !strings.Contains(stdout, readVersion().Version) {
			t.Errorf("sluice %v: %q lacks the version %q", tc.args, stdout, readVersion().Version)
		}
	}
}
