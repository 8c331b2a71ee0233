package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An Argo Rollout and its template, both convertible.
const argoCanary = `# a canary without a mesh
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: web
spec:
  replicas: 4
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: example/web:2
        ports: [{containerPort: 8080}]
  strategy:
    canary:
      stableService: web
      steps:
      - setWeight: 25
      - analysis:
          templates: [{templateName: errors}]
      - pause: {duration: 60}   # a minute
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: errors
spec:
  metrics:
  - name: errors
    interval: 30s
    count: 4
    successCondition: result[0] < 0.01
    provider:
      prometheus:
        query: sum(rate(errors_total{service="web"}[1m]))
`

// A template that cannot be converted (a Job metric).
const argoJob = `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: job
spec:
  metrics:
  - name: job
    provider:
      job: {spec: {template: {spec: {containers: [{name: c, image: busybox}], restartPolicy: Never}}}}
`

// sluice convert argo writes what it converts and reports the rest; its
// output passes sluice validate; the exit status says whether everything
// converted.
func TestConvertArgo(t *testing.T) {
	t.Parallel()
	in := t.TempDir()
	write := func(name, data string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(in, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(in, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("apps/web.yaml", argoCanary)
	write("notes.txt", "not a manifest")

	out := filepath.Join(t.TempDir(), "sluice")
	code, stdout, stderr := runCLI("convert", "argo", in, "-o", out)
	if code != 0 || stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "2 objects: 2 clean in 1 file written") {
		t.Errorf("summary missing:\n%s", stderr)
	}
	data, err := os.ReadFile(filepath.Join(out, "apps", "web.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"apiVersion: sluice.dev/v1alpha1", "- replicas: {}", "pause: {duration: 1m} # a minute", "# a canary without a mesh"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("converted file lacks %q:\n%s", want, data)
		}
	}
	if code, stdout, stderr := runCLI("validate", out); code != 0 {
		t.Errorf("sluice validate of the converted files: exit %d\n%s%s", code, stdout, stderr)
	}

	// Notes only with -v.
	_, _, quiet := runCLI("convert", "argo", in, "-o", t.TempDir())
	_, _, verbose := runCLI("convert", "argo", "-v", in, "-o", t.TempDir())
	if strings.Contains(quiet, "note:") || !strings.Contains(verbose, "spec.selector: note: not needed") {
		t.Errorf("notes: without -v:\n%s\nwith -v:\n%s", quiet, verbose)
	}

	// Something without equivalent: exit 1, the rest still written, to
	// standard output.
	write("jobs.yaml", argoJob)
	code, stdout, stderr = runCLI("convert", "argo", in)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "jobs.yaml:9: spec.metrics[0].provider.job: no equivalent: Sluice measures with Prometheus only") {
		t.Errorf("stderr lacks the reason:\n%s", stderr)
	}
	if !strings.Contains(stdout, "# sluice convert argo: "+filepath.Join(in, "apps", "web.yaml")) || strings.Contains(stdout, "jobs.yaml") {
		t.Errorf("stdout: want the converted web.yaml only:\n%s", stdout)
	}

	// The JSON report.
	code, stdout, _ = runCLI("convert", "argo", "--report", "json", "-o", t.TempDir(), in)
	var rep struct {
		Complete bool
		Objects  []struct{ Kind, Name, Outcome string }
		Findings []struct {
			Line  int
			Level string
		}
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || code != 1 || rep.Complete || len(rep.Objects) != 3 {
		t.Fatalf("exit %d, report %+v (%v):\n%s", code, rep, err, stdout)
	}
}

func TestConvertArgoUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"convert", "argo"},
		{"convert", "argo", "--report", "yaml", "."},
		{"convert", "argo", "--report", "json", "."},
		{"convert", "argo", filepath.Join(t.TempDir(), "missing")},
	} {
		if code, _, stderr := runCLI(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, stderr)
		}
	}
}
