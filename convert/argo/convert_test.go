package argo

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"
)

// rollout builds an Argo Rollout with the given strategy (indented under
// strategy:) around a fixed template.
func rollout(strategy string) string {
	return `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: web
  namespace: shop
spec:
  replicas: 4
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: example/web:2
        ports: [{name: http, containerPort: 8080}]
  strategy:
` + strategy
}

const istioRouting = `      trafficRouting:
        istio:
          virtualService: {name: web, routes: [primary]}
          destinationRule: {name: web, canarySubsetName: canary, stableSubsetName: stable}
`

// TestConvertCases covers what the golden files and Argo's examples do
// not: each case is converted alone, its output must contain the wanted
// text and pass Sluice's validation, and its findings contain the wanted
// lines (field: level: message, in part).
func TestConvertCases(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		in       string
		out      []string
		findings []string
	}{{
		name: "experiment with analyses",
		in: rollout(`    canary:
` + istioRouting + `      steps:
      - setWeight: 20
      - experiment:
          duration: 10m
          templates:
          - {name: baseline, specRef: stable, weight: 10}
          - {name: canary, specRef: canary, replicas: 2, weight: 10}
          analyses:
          - {name: compare, templateName: compare, args: [{name: window, value: 5m}]}
`),
		out: []string{
			"- setRevision:\n            name: baseline\n            template:\n              from: Stable\n            weight: 10\n            duration: 10m",
			"name: exp-canary", "from: Canary", "replicas: 2",
			"- analysis:\n            templates:\n              - {name: compare}\n            args:\n              - {name: window, value: 5m}",
		},
		findings: []string{
			`steps[1].experiment.templates[1].name: note: renamed "exp-canary"`,
			`steps[1].experiment.analyses: approximated: Argo ran "compare" beside the experiment`,
			`steps[1].experiment: approximated: converted into 2 setRevision step(s)`,
		},
	}, {
		name: "experiment without duration stops its revisions",
		in: rollout(`    canary:
` + istioRouting + `      steps:
      - experiment:
          templates: [{name: preview, specRef: canary}]
`),
		out:      []string{"- pause: {}\n        - setRevision:\n            name: preview\n"},
		findings: []string{"a pause until `sluice promote`"},
	}, {
		name: "background analysis after a split step",
		in: rollout(`    canary:
` + istioRouting + `      analysis:
        templates: [{templateName: errors}]
        startingStep: 2
      steps:
      - setWeight: 10
        setHeaderRoute: {name: testers, match: [{headerName: x-test, headerValue: {prefix: "yes"}}]}
      - pause: {duration: 1h}
      - setWeight: 50
`),
		out:      []string{"startingStep: 3", "- setWeight: 10\n        - setHeaderRoute:", "headers: [{name: x-test, prefix: \"yes\"}]", "duration: 1h"},
		findings: []string{"steps[0]: note: Sluice's steps hold one action each: this one is 2 steps", "analysis.startingStep: note: Argo's step 2 is Sluice's step 3"},
	}, {
		name: "foreign router: replicas, without the steps that need routing",
		in: rollout(`    canary:
      trafficRouting:
        nginx: {stableIngress: web}
      steps:
      - setHeaderRoute: {name: t, match: [{headerName: x, headerValue: {exact: "1"}}]}
      - setWeight: 25
      - setCanaryScale: {matchTrafficWeight: true}
`),
		out: []string{"routers:\n      - replicas: {}", "steps:\n        - setWeight: 25\n"},
		findings: []string{
			"trafficRouting.nginx: no equivalent: Sluice routes with Istio, Gateway API routes",
			"steps[0].setHeaderRoute: no equivalent: needs request routing",
			"steps[2].setCanaryScale: note: not needed",
		},
	}, {
		name: "Istio objects not among the files",
		in: rollout(`    canary:
      trafficRouting:
        istio:
          virtualService: {name: web}
          destinationRule: {name: web-dr, canarySubsetName: new, stableSubsetName: old}
      steps: [{setWeight: 5}]
`),
		out: []string{"hosts: [web]", "destinationRule:\n      name: web-dr"},
		findings: []string{
			`istio.virtualService: approximated: VirtualService "web" is not among the files`,
			`istio.destinationRule: no equivalent: DestinationRule "web-dr" is not among the files: rename its subsets "new", "old" to "canary", "stable"`,
			`spec: approximated: no Service names this Rollout's pods`,
		},
	}, {
		name: "workloadRef to a Deployment elsewhere; blue/green without preview",
		in: `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: api}
spec:
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: api}
  strategy:
    blueGreen:
      activeService: api
      autoPromotionEnabled: false
      autoPromotionSeconds: 30
`,
		findings: []string{
			`spec.workloadRef: no equivalent: Deployment "api" is not among the files`,
			`spec.template: no equivalent: no pod template`,
			"blueGreen: approximated: Sluice needs a preview: requests with the header x-preview",
			"autoPromotionSeconds: note: not needed: ignored by Argo",
		},
	}, {
		name: "template: placeholders, limits and providers",
		in: `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: t}
spec:
  args:
  - {name: count}
  - {name: limit, value: "2"}
  - name: token
    valueFrom: {secretKeyRef: {name: s, key: k}}
  - name: ns
    valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
  metrics:
  - name: a
    count: "{{args.limit}}"
    failureLimit: "{{ args.limit }}"
    successCondition: result[0] < {{args.limit}}
    provider: {prometheus: {query: 'up{namespace="{{args.ns}}"}'}}
  - name: a2
    successCondition: result[0] < {{args.count}}
    provider: {prometheus: {query: up}}
  - name: b
    failureLimit: -1
    successCondition: result[0] < 1
    provider: {prometheus: {query: up}}
  - name: c
    successCondition: result[0] < 1
    provider: {prometheus: {query: up, rangeQuery: {step: 1m}}}
  - name: d
    interval: 1m
    successCondition: result == 'ok'
    provider: {prometheus: {query: up}}
  - name: e
    interval: 1m
    successCondition: result[0] < 1
    consecutiveSuccessLimit: 2
    provider: {prometheus: {query: up, authentication: {sigv4: {region: eu}}, headers: [{key: X-Org, value: "1"}]}}
`,
		out: []string{"name: a\n      count: 2\n      failureLimit: 2\n      successCondition: result[0] < 2\n", `query: 'up{namespace="{{args.namespace}}"}'`, "name: e"},
		findings: []string{
			"spec.args[2]: no equivalent: Sluice's arguments are plain values from Git",
			"spec.args[3]: note: converted: metadata.namespace is the built-in {{args.namespace}}",
			`spec.metrics[0].count: approximated: this field takes no arguments in Sluice: the default of "limit" is written in`,
			`spec.metrics[1].successCondition: no equivalent: Argo fills {{args.count}} in per run`,
			"spec.metrics[2].failureLimit: no equivalent: a negative limit",
			"spec.metrics[3].provider.prometheus.rangeQuery: no equivalent",
			`spec.metrics[4].successCondition: no equivalent: string "ok"`,
			"spec.metrics[5].consecutiveSuccessLimit: no equivalent",
			"spec.metrics[5].provider.prometheus.authentication: no equivalent",
			"spec.metrics[5].provider.prometheus.headers: approximated: headers go with a template's own address",
		},
	}, {
		name: "an unquoted # in a condition",
		in: `apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: t}
spec:
  metrics:
  - name: a
    successCondition: all(result, # < 1)
    provider: {prometheus: {query: up}}
`,
		findings: []string{`mind that " #" in an unquoted YAML value starts a comment`, "no metric could be converted"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := Convert([]File{{Path: "in.yaml", Rel: "in.yaml", Data: []byte(tc.in)}})
			var out string
			for _, f := range res.Files {
				out = string(f.Data)
				validateOutput(t, f, false)
			}
			for _, w := range tc.out {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			var lines []string
			for _, f := range res.Findings {
				lines = append(lines, f.String())
			}
			all := strings.Join(lines, "\n")
			for _, w := range tc.findings {
				if !strings.Contains(all, w) {
					t.Errorf("no finding %q among:\n%s", w, all)
				}
			}
		})
	}
}

func TestSplitDocuments(t *testing.T) {
	t.Parallel()
	in := "# head\n---\na: 1\n--- # marker comment\nb: |\n  --- not a marker\n---\n"
	got := splitDocuments(in)
	want := []chunk{{"# head\n", 0}, {"a: 1\n", 2}, {"b: |\n  --- not a marker\n", 4}}
	if len(got) != len(want) {
		t.Fatalf("%q: %d documents, want %d: %+v", in, len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("document %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// FuzzConvert: whatever the input, Convert does not panic, writes YAML
// that parses, and places every finding on a line of its file.
func FuzzConvert(f *testing.F) {
	for _, name := range []string{"canary", "bluegreen"} {
		data, err := os.ReadFile(filepath.Join("testdata", name, "input.yaml"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(data))
	}
	f.Add(rollout("    canary:\n" + istioRouting + "      steps: [{experiment: {templates: [{name: a, specRef: canary}]}}]\n"))
	f.Add("apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nspec: [1, 2]\n---\nkind: Service\n")
	f.Fuzz(func(t *testing.T, in string) {
		res := Convert([]File{{Path: "in.yaml", Rel: "in.yaml", Data: []byte(in)}})
		lines := strings.Count(in, "\n") + 1
		for _, fd := range res.Findings {
			if fd.Line < 1 || fd.Line > lines {
				t.Errorf("%s: line %d of %d", fd, fd.Line, lines)
			}
		}
		for _, out := range res.Files {
			if bytes.Contains(out.Data, []byte("could not be written")) {
				t.Fatalf("a document could not be encoded:\n%s", out.Data)
			}
			dec := yaml.NewDecoder(bytes.NewReader(out.Data))
			for {
				var n yaml.Node
				err := dec.Decode(&n)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("output does not parse: %v\n%s", err, out.Data)
				}
			}
		}
	})
}
