package argo

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/testbin"
	"github.com/sluicehq/sluice/rollout/manifest"
)

// argoModule is the Argo Rollouts release whose examples the test
// converts. It is not a dependency of this module: the test finds it in
// the module cache, or downloads it there.
const argoModule = "github.com/argoproj/argo-rollouts@v1.10.1"

// argoExamples returns the examples/ folder of argoModule, skipping the
// test (failing it under CI=true) when the module cannot be had.
func argoExamples(t *testing.T) string {
	t.Helper()
	if out, err := exec.Command("go", "env", "GOMODCACHE").Output(); err == nil {
		dir := filepath.Join(strings.TrimSpace(string(out)), filepath.FromSlash(argoModule), "examples")
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return dir
		}
	}
	// Outside this module, so that nothing is added to go.mod or go.sum.
	cmd := exec.Command("go", "mod", "download", "-json", argoModule)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); err != nil || jerr != nil || info.Dir == "" {
		testbin.SkipOrFail(t, fmt.Sprintf("cannot download %s to convert its examples: %v %s", argoModule, err, info.Error))
	}
	return filepath.Join(info.Dir, "examples")
}

// fixture is one example file with the Argo Rollouts objects it holds.
type fixture struct {
	rel  string
	file File
}

// argoFixtures lists the example files that hold Argo Rollouts objects
// (or mention them, as a Helm template does), and the shared files the
// examples tell users to apply first: top-level files of templates only.
func argoFixtures(t *testing.T, dir string) (fixtures []fixture, shared []File) {
	t.Helper()
	files, err := ReadPaths([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		text := string(f.Data)
		if !strings.Contains(text, argoAPIVersion) {
			continue
		}
		templatesOnly := !strings.Contains(text, "kind: Rollout") && !strings.Contains(text, "kind: Experiment")
		if !strings.Contains(f.Rel, "/") && templatesOnly {
			shared = append(shared, f)
		}
		fixtures = append(fixtures, fixture{rel: f.Rel, file: f})
	}
	if len(fixtures) == 0 {
		t.Fatalf("no Argo Rollouts manifests under %s", dir)
	}
	return fixtures, shared
}

// wantOutcomes are the outcomes of the objects of argoModule's examples,
// by file, kind and name; "file" stands for a file that is not YAML.
var wantOutcomes = map[string]string{
	"analysis-templates.yaml AnalysisTemplate pass":                                                   "not converted", // a Job metric
	"analysis-templates.yaml AnalysisTemplate random-fail":                                            "not converted", // a Job metric
	"cluster-analysis-templates.yaml ClusterAnalysisTemplate always-pass":                             "not converted", // a Job metric
	"appmesh/canary-rollout.yaml AnalysisTemplate success-rate":                                       "approximated",  // the template's own Prometheus address
	"appmesh/canary-rollout.yaml Rollout my-rollout":                                                  "partial",       // App Mesh routing
	"ambassador/rollout.yaml Rollout echo-rollout":                                                    "partial",       // Ambassador routing
	"apisix/rollout.yaml Rollout rollout-apisix-canary":                                               "partial",       // APISIX routing, setCanaryScale
	"experiment-with-analysis.yaml Experiment experiment-with-analysis":                               "not converted", // a standalone Experiment
	"helm-blue-green/templates/rollout.yaml file":                                                     "not converted", // a Helm template, not YAML
	"istio/istio-mirror.yaml Rollout istio-host-split":                                                "partial",       // setCanaryScale; the mirror's match
	"istio/istio-subset-split.yaml Rollout istio-subset-split":                                        "clean",
	"notifications/rollout-canary.yaml Rollout rollout-canary":                                        "partial", // notification subscriptions
	"rollout-analysis-step.yaml Rollout rollout-analysis-step":                                        "partial", // its templates run Jobs
	"rollout-background-analysis.yaml Rollout rollout-background-analysis":                            "partial", // its template runs a Job
	"rollout-baseline-vs-canary.yaml Rollout rollout-baseline-vs-canary":                              "partial", // an experiment without traffic routing
	"rollout-bluegreen.yaml Rollout rollout-bluegreen":                                                "approximated",
	"rollout-canary-preview.yaml Rollout rollout-canary-preview":                                      "partial",      // an experiment without traffic routing
	"rollout-canary.yaml Rollout rollout-canary":                                                      "approximated", // no Service among the files
	"rollout-experiment-step.yaml Rollout rollout-experiment-step":                                    "partial",      // an experiment without traffic routing
	"rollout-rolling-update.yaml Rollout rollout-rollingupdate":                                       "approximated",
	"rollout-secret.yaml AnalysisTemplate analysis-secret":                                            "not converted", // a Web metric
	"rollout-secret.yaml Rollout rollout-secret":                                                      "partial",       // its template is a Web metric
	"rollout-template-ref.yaml Rollout rollout-ref-deployment":                                        "approximated",  // workloadRef
	"traffic-management/job.yaml AnalysisTemplate load-test":                                          "not converted",
	"traffic-management/rollout-linkerd.yaml AnalysisTemplate load-test":                              "not converted",
	"traffic-management/rollout-linkerd.yaml Rollout rollout-linkerd":                                 "partial", // SMI routing
	"traffic-routing-experiment-step/istio-host-split-experiment-step.yaml Rollout istio-host-split":  "approximated",
	"traffic-routing-experiment-step/rollout-alb-experiment-step.yaml Rollout alb-rollout":            "partial", // ALB routing
	"traffic-routing-experiment-step/rollout-smi-experiment-step.yaml Rollout rollout-smi-experiment": "partial", // SMI routing
	"workload-ref/workload-ref.yaml Rollout rollout-ref-deployment":                                   "approximated",
}

// TestArgoExamples converts every example of Argo Rollouts that holds its
// objects, each with the shared templates the examples say to apply
// first: what converts passes Sluice's validation, as `sluice validate
// --templates-elsewhere` checks it (the loader and rollout/validation,
// queries parsed), and what does not says why, at a line of the file.
func TestArgoExamples(t *testing.T) {
	t.Parallel()
	dir := argoExamples(t)
	fixtures, shared := argoFixtures(t, dir)
	got := map[string]string{}
	var table []string
	for _, fx := range fixtures {
		t.Run(fx.rel, func(t *testing.T) {
			in := append([]File{fx.file}, slices.DeleteFunc(slices.Clone(shared), func(f File) bool { return f.Rel == fx.rel })...)
			res := Convert(in)
			checkFindings(t, res, in)
			objects := 0
			for _, o := range res.Objects {
				if o.File != fx.file.Path {
					continue
				}
				objects++
				key := fmt.Sprintf("%s %s %s", fx.rel, o.Kind, o.Name)
				got[key] = o.Outcome()
				table = append(table, fmt.Sprintf("%-90s %s", key, o.Outcome()))
				if o.Outcome() != "clean" && o.Outcome() != "approximated" && !hasFinding(res, o, Unsupported) {
					t.Errorf("%s is %s without a finding that says why", key, o.Outcome())
				}
			}
			if objects == 0 {
				key := fx.rel + " file"
				got[key] = "not converted"
				table = append(table, fmt.Sprintf("%-90s %s", key, "not converted"))
				if res.Complete() {
					t.Errorf("%s: nothing converted, and no finding says why", fx.rel)
				}
			}
			for _, out := range res.Files {
				if out.Path == fx.file.Path {
					validateOutput(t, out, false)
				}
			}
		})
	}
	t.Cleanup(func() {
		slices.Sort(table)
		t.Logf("outcomes of %s's examples:\n%s", argoModule, strings.Join(table, "\n"))
		for key, want := range wantOutcomes {
			if g, ok := got[key]; !ok {
				t.Errorf("%s: not among the examples any more", key)
			} else if g != want {
				t.Errorf("%s: %s, want %s", key, g, want)
			}
		}
		for key := range got {
			if _, ok := wantOutcomes[key]; !ok {
				t.Errorf("%s (%s): a new example; add it to wantOutcomes", key, got[key])
			}
		}
	})
}

func hasFinding(res *Result, o Object, lvl Level) bool {
	return slices.ContainsFunc(res.Findings, func(f Finding) bool {
		return f.File == o.File && f.Object == o.Kind+" "+o.Name && f.Level == lvl
	})
}

// checkFindings: every finding names a line of its file and says
// something.
func checkFindings(t *testing.T, res *Result, in []File) {
	t.Helper()
	lines := map[string]int{}
	for _, f := range in {
		lines[f.Path] = strings.Count(string(f.Data), "\n") + 1
	}
	for _, f := range res.Findings {
		if n, ok := lines[f.File]; !ok || f.Line < 1 || f.Line > n {
			t.Errorf("%s: line %d is not in the file", f, f.Line)
		}
		if strings.TrimSpace(f.Message) == "" {
			t.Errorf("%s: no message", f)
		}
	}
}

// validateOutput loads a converted file as `sluice validate` does:
// with the referenced templates required among it, or, when they are
// elsewhere, without.
func validateOutput(t *testing.T, out Output, requireTemplates bool) {
	t.Helper()
	p := filepath.Join(t.TempDir(), filepath.Base(out.Rel))
	if err := os.WriteFile(p, out.Data, 0o644); err != nil {
		t.Fatal(err)
	}
	opts := []manifest.Option{manifest.CheckQueries()}
	if requireTemplates {
		opts = append(opts, manifest.RequireTemplates())
	}
	res, err := manifest.LoadDir(p, opts...)
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range res.Problems {
		t.Errorf("converted %s does not validate: %s", out.Path, pr)
	}
	if t.Failed() {
		t.Logf("converted %s:\n%s", out.Path, out.Data)
	}
}
