package manifest

import (
	"strings"
	"testing"
	"testing/fstest"
)

// A Sluice object inside a YAML list, or a core List, is a problem at its
// line: nothing of Sluice reads it, so it would silently never roll out.
// GitSources are checked strictly on request.
func TestListsAndGitSources(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		doc  string
		opts []Option
		want []string // problems as file:line: field: reason prefixes; none when empty
	}{
		{"top-level list", "- apiVersion: v1\n  kind: ConfigMap\n- apiVersion: sluice.dev/v1alpha1\n  kind: Rollout\n  metadata: {name: x}\n", nil,
			[]string{"f.yaml:3: [1]: Unsupported value: a Rollout inside a list is not read"}},
		{"core List", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: sluice.dev/v1alpha1\n  kind: AnalysisTemplate\n  metadata: {name: t}\n", nil,
			[]string{"f.yaml:4: [0]: Unsupported value: a AnalysisTemplate inside a list"}},
		{"list of other objects", "- apiVersion: v1\n  kind: ConfigMap\n", nil, nil},
		{"GitSource with a typo, checked", "apiVersion: sluice.dev/v1alpha1\nkind: GitSource\nmetadata: {name: g}\nspec:\n  urll: https://example.com/x.git\n",
			[]Option{CheckGitSources()}, []string{`f.yaml:5: spec.urll: `}},
		{"GitSource with a typo, not checked", "apiVersion: sluice.dev/v1alpha1\nkind: GitSource\nmetadata: {name: g}\nspec:\n  urll: x\n", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, err := Load(fstest.MapFS{"f.yaml": {Data: []byte(tc.doc)}}, ".", tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Problems) != len(tc.want) {
				t.Fatalf("problems %v, want %d: %q", res.Problems, len(tc.want), tc.want)
			}
			for i, p := range res.Problems {
				if !strings.HasPrefix(p.String(), tc.want[i]) {
					t.Errorf("problem %q, want it to start with %q", p, tc.want[i])
				}
			}
			if len(res.Objects) != 0 {
				t.Errorf("objects %+v, want none read", res.Objects)
			}
		})
	}
}
