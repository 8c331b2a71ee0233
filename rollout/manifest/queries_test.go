package manifest

import (
	"os"
	"strings"
	"testing"
	"testing/fstest"
)

// CheckQueries reports, at the field at fault, what the analyses of a
// Rollout would fail on: a rendered query Prometheus's parser refuses, a
// value that cannot stand outside quotes, a revision placeholder outside
// quotes, a run that could not start, a range vector where a number goes.
func TestCheckQueries(t *testing.T) {
	t.Parallel()
	rollout := mustRead(t, "../../examples/standalone/rollout.yaml")
	tmpl := mustRead(t, "../../examples/standalone/analysis.yaml")
	const step = "            templates:\n              - name: reviews-success-rate\n"
	withArgs := func(args string) string {
		return strings.Replace(rollout, step, step+"            args:\n"+args, 1)
	}
	rangeQuery := "            1 - (\n"
	cases := []struct {
		name          string
		rollout, tmpl string
		want          string // "" for no problem
	}{
		{"valid", rollout, tmpl, ""},
		{"a number passed", withArgs("              - name: window\n                value: \"300\"\n"), tmpl, ""},
		{"unbalanced query", rollout, strings.Replace(tmpl, "[{{args.window}}]))\n", "[{{args.window}}])\n", 1),
			`t.yaml:24: spec.metrics[0].provider.prometheus.query: Invalid value: the query of metric "success-rate" does not parse as PromQL (Rollout "reviews", spec.strategy.canary.steps[3].analysis): 6:1: parse error: unclosed left parenthesis`},
		{"injection from the Rollout", withArgs("              - name: window\n                value: 5m]) or vector(1\n"), tmpl,
			`r.yaml:39: spec.strategy.canary.steps[3].analysis.args[0].value: Invalid value: argument "window" in the query of metric "success-rate" of template "reviews-success-rate": value "5m]) or vector(1" stands inside [ ] outside a quoted string`},
		{"keyword as a template default", rollout, strings.Replace(tmpl, "value: 2m", "value: or", 1),
			`t.yaml:13: spec.args[0].value: Invalid value: argument "window" in the query of metric "success-rate"`},
		{"revision outside quotes", rollout, strings.Replace(tmpl, rangeQuery, "            {{args.canaryRevision}} + 1 - (\n", 1),
			`t.yaml:24: spec.metrics[0].provider.prometheus.query: Invalid value: argument "canaryRevision" of metric "success-rate" stands outside a quoted string, but its value is known only during the rollout`},
		{"argument not passed", rollout, strings.Replace(tmpl, "      value: 2m\n", "", 1),
			`r.yaml:34: spec.strategy.canary.steps[3].analysis: Invalid value: the analysis run could not start: argument "window" of template "reviews-success-rate" has no default and is not passed`},
		{"range vector", rollout, tmpl[:strings.Index(tmpl, "query: |")] + "query: up{a=\"{{args.canaryRevision}}\"}[{{args.window}}]\n",
			`t.yaml:24: spec.metrics[0].provider.prometheus.query: Invalid value: the query of metric "success-rate" returns a range vector`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			files := fstest.MapFS{"r.yaml": {Data: []byte(tc.rollout)}, "t.yaml": {Data: []byte(tc.tmpl)}}
			res, err := Load(files, ".", RequireTemplates(), CheckQueries())
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range res.Problems {
				got = append(got, p.String())
			}
			switch {
			case tc.want == "" && len(got) > 0:
				t.Fatalf("problems %q, want none", got)
			case tc.want != "" && (len(got) != 1 || !strings.HasPrefix(got[0], tc.want)):
				t.Fatalf("problems %q, want one starting %q", got, tc.want)
			}
			// Without the option nothing is rendered.
			if res, _ := Load(files, ".", RequireTemplates()); tc.want != "" && len(res.Problems) != 0 {
				t.Fatalf("without CheckQueries: %v", res.Problems)
			}
		})
	}
}

func mustRead(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
