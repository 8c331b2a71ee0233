package manifest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"

	yaml "go.yaml.in/yaml/v3"
)

func mustValue(t *testing.T, doc string) *value {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatal(err)
	}
	v, _, err := toValue(&n, maxDocumentValues)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// FuzzLoad feeds arbitrary bytes to the loader as one file: it must never
// panic, and every problem must point into the file.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*", "*.y*ml"))
	more, _ := filepath.Glob(filepath.Join("..", "..", "examples", "*", "*.yaml"))
	for _, name := range append(seeds, more...) {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("apiVersion: sluice.dev/v1alpha1\nkind: Rollout\nspec: {strategy: {canary: {steps: [{setWeight: 1e9}]}}}\n"))
	f.Add([]byte("---\n---\n\t\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := Load(fstest.MapFS{"f.yaml": {Data: data}}, ".")
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, p := range res.Problems {
			if p.File != "f.yaml" || p.Line < 1 || p.Line > lines {
				t.Errorf("problem outside the file (%d lines): %+v", lines, p)
			}
			if p.Reason == "" {
				t.Errorf("problem without reason: %+v", p)
			}
		}
	})
}
