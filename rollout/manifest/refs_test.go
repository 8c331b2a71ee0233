package manifest

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
)

// With RequireTemplates, a Rollout naming an AnalysisTemplate that no file
// defines in its namespace is a problem at the line of the name; without
// it (templates may live in the cluster), it is not.
func TestRequireTemplates(t *testing.T) {
	t.Parallel()
	rollout, err := os.ReadFile("../../examples/standalone/rollout.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := os.ReadFile("../../examples/standalone/analysis.yaml")
	if err != nil {
		t.Fatal(err)
	}
	misspelt := strings.Replace(string(rollout), "- name: reviews-success-rate", "- name: reviews-succes-rate", 1)
	line := 1 + strings.Count(misspelt[:strings.Index(misspelt, "reviews-succes-rate")], "\n")
	otherNS := strings.Replace(string(tmpl), "metadata:\n", "metadata:\n  namespace: elsewhere\n", 1)
	cases := []struct {
		name    string
		files   fstest.MapFS
		require bool
		want    string // a problem; "" for none
	}{
		{"found", fstest.MapFS{"r.yaml": {Data: rollout}, "t.yaml": {Data: tmpl}}, true, ""},
		{"misspelt", fstest.MapFS{"r.yaml": {Data: []byte(misspelt)}, "t.yaml": {Data: tmpl}}, true,
			"r.yaml:" + strconv.Itoa(line) + `: spec.strategy.canary.steps[3].analysis.templates[0].name: Not found: "reviews-succes-rate"`},
		{"in another namespace", fstest.MapFS{"r.yaml": {Data: rollout}, "t.yaml": {Data: []byte(otherNS)}}, true, `Not found: "reviews-success-rate"`},
		{"not required", fstest.MapFS{"r.yaml": {Data: []byte(misspelt)}}, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var opts []Option
			if tc.require {
				opts = append(opts, RequireTemplates())
			}
			res, err := Load(tc.files, ".", opts...)
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
			case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want)):
				t.Fatalf("problems %q, want one containing %q", got, tc.want)
			}
		})
	}
}
