package manifest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/sluicehq/sluice/rollout/validation"
)

var testdata = os.DirFS("testdata")

// want is one expected problem: its exact "file:line: field" location and
// a part of its reason.
type want struct {
	loc    string
	reason string
}

func checkProblems(t *testing.T, got []Problem, wants []want) {
	t.Helper()
	ok := len(got) == len(wants)
	for i := 0; ok && i < len(wants); i++ {
		loc := fmt.Sprintf("%s:%d", got[i].File, got[i].Line)
		if got[i].Field != "" {
			loc += ": " + got[i].Field
		}
		ok = loc == wants[i].loc && strings.Contains(got[i].Reason, wants[i].reason)
	}
	if !ok {
		var b strings.Builder
		for _, p := range got {
			fmt.Fprintf(&b, "\n  %s", p)
		}
		b.WriteString("\nwant:")
		for _, w := range wants {
			fmt.Fprintf(&b, "\n  %s: ...%s...", w.loc, w.reason)
		}
		t.Errorf("problems:%s", b.String())
	}
}

func TestLoadValidTree(t *testing.T) {
	t.Parallel()
	res, err := Load(testdata, "valid")
	if err != nil {
		t.Fatal(err)
	}
	checkProblems(t, res.Problems, nil)
	// .hidden/, .hidden.yaml and notes.txt are not read.
	if res.Files != 4 || res.Skipped != 3 {
		t.Errorf("files %d, skipped %d; want 4, 3", res.Files, res.Skipped)
	}
	var got []string
	for _, o := range res.Objects {
		got = append(got, fmt.Sprintf("%s:%d %s %s", o.File, o.Line, o.Kind(), o.Meta().GetName()))
	}
	wantObjs := []string{
		"valid/nested/deeper/template.yml:1 AnalysisTemplate saturation",
		"valid/nested/template.json:1 AnalysisTemplate latency",
		"valid/rollouts.yaml:3 Rollout reviews",
		"valid/rollouts.yaml:24 AnalysisTemplate error-rate",
	}
	if strings.Join(got, "\n") != strings.Join(wantObjs, "\n") {
		t.Errorf("objects:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantObjs, "\n"))
	}
	if n := len(res.Rollouts()); n != 1 {
		t.Errorf("Rollouts() has %d, want 1", n)
	}
	if n := len(res.AnalysisTemplates()); n != 3 {
		t.Errorf("AnalysisTemplates() has %d, want 3", n)
	}
	if r := res.Rollouts()[0]; r.Spec.Backend.Endpoints[0] != "127.0.0.1:9082" || *r.Spec.Strategy.Canary.Steps[2].SetWeight != 100 {
		t.Errorf("rollout decoded wrongly: %+v", r.Spec)
	}
	if res.Err() != nil {
		t.Errorf("Err() = %v, want nil", res.Err())
	}
}

func TestLoadProblems(t *testing.T) {
	t.Parallel()
	cases := []struct {
		file  string
		wants []want
	}{
		{"invalid/unknown-field.yaml", []want{
			{"invalid/unknown-field.yaml:16: spec.template.spec.containers[0].imagePullPolicyy", `unknown field "imagePullPolicyy"`},
			{"invalid/unknown-field.yaml:21: spec.strategy.canary.steps[1].setWeigth", `unknown field "setWeigth"`},
			// Field names match case-sensitively, as in Kubernetes.
			{"invalid/unknown-field.yaml:22: spec.Paused", `unknown field "Paused"`},
		}},
		// The parser blames line 4, where the block began; the key at
		// fault is on line 5.
		{"invalid/bad-indent.yaml", []want{
			{"invalid/bad-indent.yaml:5", "invalid YAML: did not find expected key"},
		}},
		{"invalid/wrong-type.yaml", []want{
			{"invalid/wrong-type.yaml:6: metadata.labels[tier]", "Invalid type: expected string, got number 3; quote it"},
			{"invalid/wrong-type.yaml:10: spec.service.hosts", `expected list, got string "reviews"`},
			{"invalid/wrong-type.yaml:11: spec.service.port", `expected integer, got string "9080"; remove the quotes`},
			{"invalid/wrong-type.yaml:19: spec.strategy.canary.steps[1].setWeight", `expected integer, got string "ten"`},
			{"invalid/wrong-type.yaml:21: spec.strategy.canary.steps[2].pause.duration", `Invalid value: "5 minutes": time: unknown unit`},
			{"invalid/wrong-type.yaml:22: spec.strategy.canary.steps[3].setWeight", "Invalid value: 2.5: must be a whole number"},
			{"invalid/wrong-type.yaml:23: spec.paused", `expected boolean, got string "yes"; write true or false`},
		}},
		{"invalid/invalid-values.yaml", []want{
			{"invalid/invalid-values.yaml:6: spec.service.port", "Required value"},
			{"invalid/invalid-values.yaml:8: spec.service.hosts[1]", `Invalid value: "Reviews!"`},
			{"invalid/invalid-values.yaml:12: spec.backend.endpoints[0]", "must be host:port"},
			{"invalid/invalid-values.yaml:22: spec.strategy.canary.steps[1].setHeaderRoute.match[0].headers[0].regex", "must be an RE2 regular expression"},
			{"invalid/invalid-values.yaml:23: spec.strategy.canary.steps[2].setWeight", "Invalid value: 101: must be between 0 and 100"},
			{"invalid/invalid-values.yaml:25: spec.strategy.canary.steps[3].setHeaderRoute.name", "no earlier step set one"},
			{"invalid/invalid-values.yaml:29: spec.analysis.startingStep", "must be less than the number of steps (4)"},
			{"invalid/invalid-values.yaml:34: spec.windows[0].timeZone", "unknown time zone Europe/Berln"},
			{"invalid/invalid-values.yaml:36: spec.windows[1].schedule", "above maximum (59)"},
			{"invalid/invalid-values.yaml:37: spec.windows[1].duration", "Required value"},
		}},
		{"invalid/analysis.yaml", []want{
			{"invalid/analysis.yaml:13: spec.metrics[0].provider.prometheus.query", `argument "code" is not declared`},
			{"invalid/analysis.yaml:14: spec.metrics[1].name", `Duplicate value: "errors"`},
			{"invalid/analysis.yaml:14: spec.metrics[1].successCondition", "at least one of successCondition or failureCondition"},
			{"invalid/analysis.yaml:15: spec.metrics[1].provider", "a metric provider must be set"},
		}},
		{"invalid/multi-doc-syntax.yaml", []want{
			{"invalid/multi-doc-syntax.yaml:17", "invalid YAML: did not find expected ',' or ']'"},
		}},
		{"invalid/kinds.yaml", []want{
			{"invalid/kinds.yaml:1: apiVersion", `Unsupported value: "sluice.dev/v1beta1"`},
			{"invalid/kinds.yaml:7: kind", `Unsupported value: "Rollouts"`},
			{"invalid/kinds.yaml:11: kind", "Required value"},
			{"invalid/kinds.yaml:20: apiVersion", `Unsupported value: "sluice.dev"`},
		}},
		{"invalid/duplicate-key.yaml", []want{
			{"invalid/duplicate-key.yaml:9: spec.metrics[0].successCondition", `duplicate key "successCondition" (first at line 8)`},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			res, err := Load(testdata, tc.file)
			if err != nil {
				t.Fatal(err)
			}
			checkProblems(t, res.Problems, tc.wants)
			if res.Err() == nil {
				t.Error("Err() = nil with problems")
			}
		})
	}
}

func TestMultiDocumentKeepsGoodDocuments(t *testing.T) {
	t.Parallel()
	res, err := Load(testdata, "invalid/multi-doc-syntax.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Objects) != 1 || res.Objects[0].Meta().GetName() != "ok" {
		t.Errorf("objects %+v, want the first document only", res.Objects)
	}
}

func TestKindsOfOtherGroupsAreSkipped(t *testing.T) {
	t.Parallel()
	res, err := Load(testdata, "invalid/kinds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped != 1 {
		t.Errorf("skipped %d, want 1 (the argoproj.io Rollout)", res.Skipped)
	}
}

func TestDuplicateObjects(t *testing.T) {
	t.Parallel()
	res, err := Load(testdata, "invalid/dup")
	if err != nil {
		t.Fatal(err)
	}
	checkProblems(t, res.Problems, []want{
		{"invalid/dup/b.yaml:6: metadata.name", `Duplicate value: "shared": AnalysisTemplate team/shared is already defined at invalid/dup/a.yaml:1`},
	})
	if len(res.Objects) != 3 {
		t.Errorf("%d objects, want 3", len(res.Objects))
	}
}

func TestLoadDirPaths(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("testdata", "invalid", "dup")
	res, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	checkProblems(t, res.Problems, []want{
		{filepath.Join(dir, "b.yaml") + ":6: metadata.name", "is already defined at " + filepath.Join(dir, "a.yaml") + ":1"},
	})

	file := filepath.Join("testdata", "invalid", "kinds.yaml")
	res, err = LoadDir(file)
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 1 || len(res.Problems) != 4 || res.Problems[0].File != file {
		t.Errorf("single file: files %d, problems %v", res.Files, res.Problems)
	}
}

func TestLoadDirsFindsDuplicatesAcrossRoots(t *testing.T) {
	t.Parallel()
	a := filepath.Join("testdata", "invalid", "dup", "a.yaml")
	res, err := LoadDirs([]string{a, a})
	if err != nil {
		t.Fatal(err)
	}
	checkProblems(t, res.Problems, []want{{a + ":4: metadata.name", "already defined at " + a + ":1"}})
}

func TestMissingRoot(t *testing.T) {
	t.Parallel()
	if _, err := LoadDir(filepath.Join("testdata", "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadDir(missing) error = %v, want not exist", err)
	}
	if _, err := Load(testdata, "nope"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) error = %v, want not exist", err)
	}
}

func TestLimits(t *testing.T) {
	t.Parallel()
	var le *LimitError
	_, err := Load(testdata, "valid", WithMaxFiles(3))
	if !errors.Is(err, ErrLimit) || !errors.As(err, &le) || le.Limit != "WithMaxFiles" {
		t.Errorf("WithMaxFiles(3): error %v, want a WithMaxFiles *LimitError", err)
	} else if want := "valid/rollouts.yaml: more than 3 files; raise the limit with WithMaxFiles if this is intended"; err.Error() != want {
		t.Errorf("error text %q, want %q", err, want)
	}

	_, err = Load(testdata, "valid", WithMaxObjects(5))
	if !errors.As(err, &le) || le.Limit != "WithMaxObjects" {
		t.Errorf("WithMaxObjects(5): error %v, want a WithMaxObjects *LimitError", err)
	}

	res, err := Load(testdata, "valid", WithMaxFileSize(400))
	if err != nil {
		t.Fatal(err)
	}
	checkProblems(t, res.Problems, []want{
		{"valid/rollouts.yaml:1", "file is larger than 400 bytes"},
	})
}

func TestValidatorOption(t *testing.T) {
	t.Parallel()
	v := validation.Validator{ConditionChecker: func(expr string) error {
		if strings.Contains(expr, "<") {
			return errors.New("undeclared reference to 'less'")
		}
		return nil
	}}
	res, err := Load(testdata, "valid/nested/deeper/template.yml", WithValidator(v))
	if err != nil {
		t.Fatal(err)
	}
	checkProblems(t, res.Problems, []want{
		{"valid/nested/deeper/template.yml:8: spec.metrics[0].successCondition", "undeclared reference"},
	})
}

// TestDefaultValidatorChecksConditions: without WithValidator, conditions
// are compiled with the analysis CEL environment.
func TestDefaultValidatorChecksConditions(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{"t.yaml": {Data: []byte(`apiVersion: sluice.dev/v1alpha1
kind: AnalysisTemplate
metadata: {name: t}
spec:
  metrics:
    - name: a
      successCondition: result[0] >= 0.99 && all(result, x, x > 0)
      failureCondition: reslt[0] < 0.9
      provider: {prometheus: {query: up}}
`)}}
	res, err := Load(fsys, ".")
	if err != nil {
		t.Fatal(err)
	}
	checkProblems(t, res.Problems, []want{
		{"t.yaml:8: spec.metrics[0].failureCondition", "undeclared reference to 'reslt'"},
	})
}

func TestYAMLFeatures(t *testing.T) {
	t.Parallel()
	const head = "apiVersion: sluice.dev/v1alpha1\nkind: AnalysisTemplate\nmetadata: {name: t}\n"
	cases := []struct {
		name  string
		doc   string
		wants []want
	}{
		{"anchors and merge keys", head + `spec:
  metrics:
    - &m
      name: a
      successCondition: "true"
      provider: {prometheus: {query: up}}
    - <<: *m
      name: b
`, nil},
		{"alias bomb", head + `spec:
  args: &a0 [{name: x}]
  metrics: &a1 [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]
  x2: &a2 [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]
  x3: &a3 [*a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2]
  x4: &a4 [*a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3]
  x5: &a5 [*a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4]
  x6: &a6 [*a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5]
  x7: &a7 [*a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6]
`, []want{{"f.yaml:5: spec.x5[3][6][2][5][6]", "more than 200000 values"}}},
		{"infinity has no JSON form", head + "spec:\n  metrics:\n    - name: a\n      count: .inf\n",
			[]want{{"f.yaml:7: spec.metrics[0].count", ".inf has no JSON equivalent"}}},
		{"non-string key", head + "spec:\n  ? [a]\n  : 1\n",
			[]want{{"f.yaml:5: spec", "mapping keys must be strings"}}},
		{"unknown anchor", head + "spec: *nope\n",
			[]want{{"f.yaml:4", "unknown anchor 'nope'"}}},
		{"tab indentation", head + "spec:\n\tmetrics: []\n",
			[]want{{"f.yaml:5", "invalid YAML"}}},
		{"not a mapping", "- a\n- b\n", nil},
		// YAML without a JSON form is fine in documents that are not ours.
		{"other documents are not converted", "limit: .inf\n---\napiVersion: v1\nkind: ConfigMap\ndata: {a: x, a: y}\n", nil},
		{"empty", "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			checkProblems(t, loadDoc(t, tc.doc).Problems, tc.wants)
		})
	}
}

func TestSymlinkCannotEscapeDir(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret.yaml")
	if err := os.WriteFile(secret, []byte("apiVersion: sluice.dev/v1alpha1\nkind: Rollout\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(secret, filepath.Join(dir, "link.yaml")); err != nil {
		t.Skipf("symlinks unsupported: %v", err)
	}
	res, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) != 1 || !strings.Contains(res.Problems[0].Reason, "cannot read") {
		t.Errorf("problems %v, want one 'cannot read'", res.Problems)
	}
}

func TestProblemString(t *testing.T) {
	t.Parallel()
	p := Problem{File: "a.yaml", Line: 3, Field: "spec.x", Reason: "Required value"}
	if got := p.String(); got != "a.yaml:3: spec.x: Required value" {
		t.Errorf("String() = %q", got)
	}
	p.Field = ""
	if got := p.String(); got != "a.yaml:3: Required value" {
		t.Errorf("String() without field = %q", got)
	}
}

func TestLineOfFallsBackToParent(t *testing.T) {
	t.Parallel()
	doc := "metadata:\n  labels:\n    app.kubernetes.io/name: x\nspec:\n  steps:\n    - a: 1\n    - b: 2\n"
	res, err := Load(fstest.MapFS{"f.yaml": {Data: []byte(doc)}}, ".")
	if err != nil || len(res.Problems) != 0 {
		t.Fatalf("load: %v %v", err, res.Problems)
	}
	v := mustValue(t, doc)
	for path, line := range map[string]int{
		"": 1,
		"metadata.labels[app.kubernetes.io/name]": 3,
		"spec.steps[1]":         7,
		"spec.steps[1].b":       7,
		"spec.steps[1].missing": 7,
		"spec.steps[9].b":       5,
		"spec.missing.deeper":   4,
	} {
		if got := v.lineOf(path); got != line {
			t.Errorf("lineOf(%q) = %d, want %d", path, got, line)
		}
	}
}
