package manifest

import (
	"testing"
	"testing/fstest"
)

// TestWithNamespace: a confined load refuses objects of every kind that
// name another namespace, at the line of metadata.namespace, and lets
// through those that name the namespace or none.
func TestWithNamespace(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"own.yaml":   {Data: []byte("apiVersion: sluice.dev/v1alpha1\nkind: AnalysisTemplate\nmetadata:\n  name: own\n  namespace: team-a\nspec:\n  metrics:\n    - name: a\n      successCondition: \"true\"\n      provider: {prometheus: {query: up}}\n")},
		"none.yaml":  {Data: []byte("apiVersion: sluice.dev/v1alpha1\nkind: AnalysisTemplate\nmetadata: {name: none}\nspec:\n  metrics:\n    - name: a\n      successCondition: \"true\"\n      provider: {prometheus: {query: up}}\n")},
		"other.yaml": {Data: []byte("apiVersion: sluice.dev/v1alpha1\nkind: AnalysisTemplate\nmetadata:\n  name: other\n  labels: {a: b}\n  namespace: team-b\nspec:\n  metrics:\n    - name: a\n      successCondition: \"true\"\n      provider: {prometheus: {query: up}}\n")},
		"vs.yaml":    {Data: []byte("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: vs\n  namespace: kube-system\nspec:\n  hosts: [a]\n")},
	}
	for _, tc := range []struct {
		name string
		opts []Option
		want []want
	}{
		{"confined", []Option{WithNamespace("team-a")}, []want{
			{"other.yaml:6: metadata.namespace", `Forbidden: "team-b": this source may only create objects in namespace "team-a"`},
			{"vs.yaml:5: metadata.namespace", `Forbidden: "kube-system"`},
		}},
		{"any namespace by default", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, err := Load(fsys, ".", tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			checkProblems(t, res.Problems, tc.want)
			if got := len(res.Objects); got != 4 {
				t.Errorf("objects = %d, want all 4 decoded (problems are reported beside them)", got)
			}
		})
	}
}
