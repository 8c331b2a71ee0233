package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/rollout/validation"
)

// sluice validate fails on what would otherwise fail mid-rollout: a query
// that does not parse once rendered, an argument value that would change
// a query's structure, a condition that could exceed the CEL cost limit.
func TestValidateQueriesAndCost(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("testdata", "queries")
	cases := []struct {
		dir  string
		code int
		want string
	}{
		{"valid", 0, "ok: 1 Rollout, 1 AnalysisTemplate in 2 files"},
		{"broken-query", 1, `analysis.yaml:24: spec.metrics[0].provider.prometheus.query: Invalid value: the query of metric "success-rate" does not parse as PromQL (Rollout "reviews", spec.strategy.canary.steps[3].analysis): 6:1: parse error: unclosed left parenthesis`},
		{"unsafe-arg", 1, `rollout.yaml:39: spec.strategy.canary.steps[3].analysis.args[0].value: Invalid value: argument "window" in the query of metric "success-rate" of template "reviews-success-rate": value "2m]) or vector(1" stands inside [ ] outside a quoted string`},
		{"expensive-cel", 1, `analysis.yaml:19: spec.metrics[0].failureCondition: Invalid value: "all(result, x, all(result, y, x - y < 0.5))": worst-case cost is 7,006,003 (with result a list of 1000 values), more than the limit of 1,000,000`},
	}
	for _, tc := range cases {
		t.Run(tc.dir, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCLI("validate", filepath.Join(dir, tc.dir))
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout, stderr)
			}
			lines := strings.Split(strings.TrimSpace(stdout), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("output %q, want one line containing %q", stdout, tc.want)
			}
		})
	}
}

// A valid Rollout that mirrors passes with a warning on standard error,
// in the text and the JSON report: proxyless gRPC clients are not
// mirrored.
func TestValidateWarnsOfMirroring(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "rollout.yaml")
	if err := os.WriteFile(file, []byte(`apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: reviews
spec:
  service: {name: reviews, hosts: [reviews], port: 9080}
  backend: {version: v2, endpoints: ["10.0.0.2:9080"]}
  strategy:
    canary:
      steps:
      - setWeight: 10
      - setMirror:
          percent: 30
      - setMirror:
          percent: 0
`), 0o644); err != nil {
		t.Fatal(err)
	}
	want := file + ":12: spec.strategy.canary.steps[1].setMirror: warning: " + validation.MirrorWarning + "\n"
	code, stdout, stderr := runCLI("validate", dir)
	if code != 0 || stdout != "ok: 1 Rollout, 0 AnalysisTemplates in 1 file\n" || stderr != want {
		t.Fatalf("exit %d\nstdout: %q\nstderr: %q\nwant stderr: %q", code, stdout, stderr, want)
	}
	code, stdout, _ = runCLI("validate", "-o", "json", dir)
	var rep validateReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || code != 0 {
		t.Fatalf("exit %d, %v\n%s", code, err, stdout)
	}
	if len(rep.Problems) != 0 || len(rep.Warnings) != 1 || rep.Warnings[0].Line != 12 || rep.Warnings[0].Reason != validation.MirrorWarning {
		t.Errorf("report %+v, want one warning at line 12", rep)
	}
}
