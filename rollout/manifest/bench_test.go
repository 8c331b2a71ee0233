package manifest

import (
	"os"
	"path"
	"testing"
	"testing/fstest"
)

// BenchmarkLoad measures loading one file from memory: a standalone
// Rollout, a controller-mode Rollout (a pod template with ports and env,
// where the CRD's defaults apply), and an AnalysisTemplate.
func BenchmarkLoad(b *testing.B) {
	for _, name := range []string{"standalone/rollout.yaml", "canary/rollout.yaml", "analysis/success-rate.yaml"} {
		data, err := os.ReadFile(path.Join("..", "..", "examples", name))
		if err != nil {
			b.Fatal(err)
		}
		fsys := fstest.MapFS{"f.yaml": {Data: data}}
		b.Run(path.Dir(name), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res, err := Load(fsys, "f.yaml")
				if err != nil || len(res.Problems) > 0 || len(res.Objects) != 1 {
					b.Fatalf("load: %v %v", err, res.Problems)
				}
			}
		})
	}
}
