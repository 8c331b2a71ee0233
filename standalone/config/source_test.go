package config

import (
	"strings"
	"testing"

	"github.com/sluicehq/sluice/gitsync"
)

func TestGitLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml string
		want       gitsync.FetchLimits
		err        string
	}{
		{"unset takes the defaults later", "", gitsync.FetchLimits{}, ""},
		{"set", "  limits: {maxPackBytes: 1048576, maxBlobBytes: 65536, maxFiles: 100}\n",
			gitsync.FetchLimits{MaxPackBytes: 1 << 20, MaxBlobBytes: 64 << 10, MaxFiles: 100}, ""},
		{"negative", "  limits: {maxPackBytes: -1, maxFiles: -2}\n", gitsync.FetchLimits{},
			"git.limits.maxPackBytes: -1: must not be negative"},
		{"unknown key", "  limits: {maxPackSize: 1}\n", gitsync.FetchLimits{}, "maxPackSize"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Parse([]byte("git:\n  url: https://git.example.com/r.git\n" + tt.yaml))
			if err == nil {
				var src gitsync.Source
				src, err = c.Git.Source()
				if err == nil && src.FetchLimits != tt.want {
					t.Errorf("limits %+v, want %+v", src.FetchLimits, tt.want)
				}
			}
			switch {
			case tt.err == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Errorf("error %v, want one with %q", err, tt.err)
			}
			if tt.name == "negative" && !strings.Contains(err.Error(), "git.limits.maxFiles: -2") {
				t.Errorf("error %v does not name git.limits.maxFiles", err)
			}
		})
	}
}
