package metricsdoc

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The page parses, every metric row is read, and each names a type
// and its mode.
func TestReadThePage(t *testing.T) {
	t.Parallel()
	ms, err := Read(filepath.Join("..", "..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Metric{}
	for _, m := range ms {
		byName[m.Name] = m
	}
	got := byName["sluice_rollout_analysis_runs_total"]
	if got.Type != "counter" || !slices.Equal(got.Labels, []string{"namespace", "rollout", "kind", "phase"}) || !got.ServedBy(Run) || !got.ServedBy(Controller) {
		t.Errorf("sluice_rollout_analysis_runs_total read as %+v", got)
	}
	if m := byName["sluice_xds_report_bytes"]; len(m.Labels) != 0 || m.ServedBy(Run) {
		t.Errorf("sluice_xds_report_bytes read as %+v", m)
	}
	if len(ms) < 30 {
		t.Errorf("%d metrics read: the tables changed shape?", len(ms))
	}
}

func TestReadRefusesABadRow(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"a column short": "| `sluice_x` | gauge | 1 | a | both | meaning |\n",
		"unknown mode":   "| `sluice_x` | gauge | 1 | a | everywhere | at start | meaning |\n",
		"twice":          "| `sluice_x` | gauge | 1 | a | both | at start | m |\n| `sluice_x` | gauge | 1 | a | both | at start | m |\n",
	}
	for name, page := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "metrics.md")
			if err := os.WriteFile(path, []byte(page), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Read(path)
			if err == nil || !strings.Contains(err.Error(), "metrics.md:") {
				t.Errorf("Read = %v, want an error naming the line", err)
			}
		})
	}
}
