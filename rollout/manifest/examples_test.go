package manifest

import (
	"path/filepath"
	"testing"
)

// TestExamples keeps the shipped examples valid.
func TestExamples(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..", "examples")
	cases := []struct {
		dir                 string
		rollouts, templates int
	}{
		{"canary", 1, 1},
		{"bluegreen", 1, 2},
		{"dark-release", 1, 1},
		{"standalone", 1, 1},
		{"quickstart", 1, 1},
		{"analysis", 0, 3},
		{"gateway-api", 2, 2},
		{"hello", 1, 0},
		{".", 9, 12},
	}
	for _, tc := range cases {
		t.Run(tc.dir, func(t *testing.T) {
			t.Parallel()
			res, err := LoadDir(filepath.Join(root, tc.dir))
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range res.Problems {
				t.Error(p)
			}
			if r, a := res.Count(KindRollout), res.Count(KindAnalysisTemplate); r != tc.rollouts || a != tc.templates {
				t.Errorf("%d Rollouts, %d AnalysisTemplates; want %d, %d", r, a, tc.rollouts, tc.templates)
			}
		})
	}
}
