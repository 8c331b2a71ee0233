package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/rollout/manifest"
)

var examples = filepath.Join("..", "..", "examples")

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestValidateCommand(t *testing.T) {
	t.Parallel()
	invalid := filepath.Join("testdata", "invalid")
	file := filepath.Join(invalid, "rollout.yaml")
	cases := []struct {
		name       string
		args       []string
		code       int
		stdout     string // exact
		stderrPart string
	}{
		{"examples are valid", []string{"validate", examples}, 0,
			"ok: 9 Rollouts, 12 AnalysisTemplates in 33 files (16 documents of other kinds skipped)\n", ""},
		{"several dirs", []string{"validate", filepath.Join(examples, "canary"), filepath.Join(examples, "standalone")}, 0,
			"ok: 2 Rollouts, 2 AnalysisTemplates in 6 files (1 document of other kinds skipped)\n", ""},
		{"singular, templates elsewhere", []string{"validate", "--templates-elsewhere", filepath.Join(examples, "dark-release", "rollout.yaml")}, 0,
			"ok: 1 Rollout, 0 AnalysisTemplates in 1 file\n", ""},
		{"a template not among the files", []string{"validate", filepath.Join(examples, "dark-release", "rollout.yaml")}, 1,
			filepath.Join(examples, "dark-release", "rollout.yaml") + `:44: spec.strategy.darkRelease.analysis.templates[0].name: Not found: "ratings-success-rate": no AnalysisTemplate of that name in namespace "bookinfo" in the files given; the analysis would fail and abort the rollout` + "\n",
			"sluice: 1 problem found"},
		{"problems", []string{"validate", invalid}, 1,
			file + ":17: spec.strategy.canary.steps[1].setWeight: Invalid value: 101: must be between 0 and 100\n" +
				file + `:19: spec.strategy.canary.steps[2].pause.duration: Invalid value: "0s": must be greater than 0` + "\n",
			"sluice: 2 problems found"},
		{"conditions compiled", []string{"validate", filepath.Join("testdata", "invalid-condition")}, 1,
			filepath.Join("testdata", "invalid-condition", "template.yaml") + `:11: spec.metrics[0].failureCondition: Invalid value: "reslt[0] < 0.95": undeclared reference to 'reslt' (at 1:1)` + "\n",
			"sluice: 1 problem found"},
		{"no dir", []string{"validate"}, 2, "", "requires at least 1 arg"},
		{"unreadable dir", []string{"validate", filepath.Join("testdata", "missing")}, 2, "", "no such file or directory"},
		{"bad output format", []string{"validate", "-o", "yaml", examples}, 2, "", "--output must be text or json"},
		{"unknown flag", []string{"validate", "--strict", examples}, 2, "", "unknown flag: --strict"},
		{"unknown command", []string{"validat", examples}, 2, "", `did you mean "validate"?`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runCLI(tc.args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tc.code, stderr)
			}
			if stdout != tc.stdout {
				t.Errorf("stdout:\n%s\nwant:\n%s", stdout, tc.stdout)
			}
			if !strings.Contains(stderr, tc.stderrPart) {
				t.Errorf("stderr %q does not contain %q", stderr, tc.stderrPart)
			}
		})
	}
}

func TestValidateJSON(t *testing.T) {
	t.Parallel()
	code, stdout, _ := runCLI("validate", "-o", "json", filepath.Join("testdata", "invalid"))
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	var rep validateReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout)
	}
	want := manifest.Problem{
		File:   filepath.Join("testdata", "invalid", "rollout.yaml"),
		Line:   17,
		Field:  "spec.strategy.canary.steps[1].setWeight",
		Reason: "Invalid value: 101: must be between 0 and 100",
	}
	if len(rep.Problems) != 2 || rep.Problems[0] != want || rep.Rollouts != 1 || rep.Files != 1 {
		t.Errorf("report %+v, want 2 problems starting with %+v", rep, want)
	}

	code, stdout, _ = runCLI("validate", "--output=json", examples)
	if code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if !strings.Contains(stdout, `"problems": []`) || !strings.Contains(stdout, `"rollouts": 9`) {
		t.Errorf("clean JSON report:\n%s", stdout)
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	code, stdout, _ := runCLI("--help")
	if code != 0 || !strings.Contains(stdout, "validate") {
		t.Errorf("help: code %d\n%s", code, stdout)
	}
}

// TestBinary builds the real binary and checks exit codes as a CI job
// would see them.
func TestBinary(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "sluice")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"validate", examples}, 0, "ok: 9 Rollouts, 12 AnalysisTemplates in "},
		{[]string{"validate", filepath.Join("testdata", "invalid")}, 1, ":17: spec.strategy.canary.steps[1].setWeight: Invalid value: 101"},
		{[]string{"validate", filepath.Join("testdata", "missing")}, 2, ""},
	} {
		cmd := exec.Command(bin, tc.args...)
		var stdout bytes.Buffer
		cmd.Stdout = &stdout
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if code != tc.code || !strings.Contains(stdout.String(), tc.out) {
			t.Errorf("sluice %v: exit %d, stdout %q; want exit %d with %q", tc.args, code, stdout.String(), tc.code, tc.out)
		}
	}
}
