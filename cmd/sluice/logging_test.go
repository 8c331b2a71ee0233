package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestLogFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, format, level string
		wantErr             string
		// want: what each logged line must show, in order
		want []string
	}{
		{name: "text at info", format: "text", level: "info",
			want: []string{`level=INFO msg="sluice run started" logger=runner http=127.0.0.1:8080`, `level=ERROR msg="push failed" logger=runner err="connection refused"`}},
		{name: "text at debug", format: "text", level: "debug",
			want: []string{`level=INFO msg="sluice run started"`, `level=DEBUG msg="checked the mirror"`, `level=ERROR msg="push failed"`}},
		{name: "text at error", format: "TEXT", level: "Error", want: []string{`level=ERROR msg="push failed"`}},
		{name: "json at info", format: "json", level: "info",
			want: []string{`{"level":"INFO","msg":"sluice run started","logger":"runner","http":"127.0.0.1:8080"}`, `{"level":"ERROR","msg":"push failed","logger":"runner","err":"connection refused"}`}},
		{name: "json at debug", format: "json", level: "debug",
			want: []string{`{"level":"INFO","msg":"sluice run started","logger":"runner","http":"127.0.0.1:8080"}`, `{"level":"DEBUG","msg":"checked the mirror","logger":"runner"}`, `{"level":"ERROR","msg":"push failed","logger":"runner","err":"connection refused"}`}},
		{name: "json at warn", format: "json", level: "warn", want: []string{`{"level":"ERROR","msg":"push failed","logger":"runner","err":"connection refused"}`}},
		{name: "unknown format", format: "logfmt", level: "info", wantErr: `--log-format "logfmt": must be text or json`},
		{name: "unknown level", format: "json", level: "verbose", wantErr: `--log-level "verbose": must be debug, info, warn or error`},
		{name: "slog-only level", format: "json", level: "info+2", wantErr: `--log-level "info+2"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out strings.Builder
			f := logFlags{format: tc.format, level: tc.level}
			log, err := f.logger(&out)
			if tc.wantErr != "" {
				var ue usageError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("logger() error %v; want a usage error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			log = log.WithName("runner")
			log.Info("sluice run started", "http", "127.0.0.1:8080")
			log.V(1).Info("checked the mirror")
			log.Error(errors.New("connection refused"), "push failed")
			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("%d lines, want %d:\n%s", len(lines), len(tc.want), out.String())
			}
			for i, l := range lines {
				if strings.EqualFold(tc.format, "json") {
					var m map[string]any
					if err := json.Unmarshal([]byte(l), &m); err != nil {
						t.Fatalf("line %d is not JSON: %v: %s", i, err, l)
					}
					if _, ok := m["time"]; !ok {
						t.Errorf("line %d has no time: %s", i, l)
					}
					// The time varies; compare the rest.
					delete(m, "time")
					b, _ := json.Marshal(m)
					l = string(b)
					var want map[string]any
					if err := json.Unmarshal([]byte(tc.want[i]), &want); err != nil {
						t.Fatal(err)
					}
					wb, _ := json.Marshal(want)
					if l != string(wb) {
						t.Errorf("line %d = %s\nwant %s", i, l, wb)
					}
					continue
				}
				if !strings.HasPrefix(l, "time=") || !strings.Contains(l, tc.want[i]) {
					t.Errorf("line %d = %q; want time=... %s", i, l, tc.want[i])
				}
			}
		})
	}
}

// run and controller refuse a bad --log-format or --log-level before
// doing anything else.
func TestLogFlagsRefused(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"run", "--insecure-no-auth", "--git-url", "file:///nowhere", "--log-format", "xml"},
		{"run", "--insecure-no-auth", "--git-url", "file:///nowhere", "--log-level", "trace"},
		{"controller", "--log-format", "xml"},
		{"controller", "--log-level", "trace"},
	} {
		code, _, stderr := runCLI(args...)
		if code != exitUsage || !strings.Contains(stderr, "--log-") || !strings.Contains(stderr, "must be") {
			t.Errorf("sluice %v: exit %d, stderr %q; want exit 2 naming the flag and its values", args, code, stderr)
		}
	}
}
