package argo

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestGolden converts testdata/NAME/input.yaml and compares the file
// written and the report (every finding, notes included, and each
// object's outcome) with output.yaml and report.txt; go test -update
// rewrites them. The output must pass `sluice validate` with its
// templates required among it.
func TestGolden(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// comments must survive the conversion.
		comments []string
		complete bool
	}{
		{"canary", []string{
			"# The reviews service of a shop", "# Testers first: they opt in with a header.",
			"# until someone promotes", "# five minutes", "# Latency is watched from the first weighted step on.",
			"# Argo adds the pod-template hash to these labels", "# Argo fills the threshold in per run.",
		}, false},
		{"bluegreen", []string{
			"# Checkout, released blue/green", "# Testers reach the new version here before the switch.",
			"# five minutes after the preview is up",
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join("testdata", tc.name)
			in, err := os.ReadFile(filepath.Join(dir, "input.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			res := Convert([]File{{Path: "input.yaml", Rel: "input.yaml", Data: in}})
			if len(res.Files) != 1 {
				t.Fatalf("%d files written, want 1", len(res.Files))
			}
			out := res.Files[0]
			golden(t, filepath.Join(dir, "output.yaml"), out.Data)
			golden(t, filepath.Join(dir, "report.txt"), report(res))
			for _, c := range tc.comments {
				if !bytes.Contains(out.Data, []byte(c)) {
					t.Errorf("comment %q was lost", c)
				}
			}
			if res.Complete() != tc.complete {
				t.Errorf("Complete() = %v, want %v", res.Complete(), tc.complete)
			}
			validateOutput(t, out, true)
		})
	}
}

func report(res *Result) []byte {
	var b strings.Builder
	for _, f := range res.Findings {
		fmt.Fprintln(&b, f)
	}
	for _, o := range res.Objects {
		fmt.Fprintf(&b, "%s:%d: %s %s: %s\n", o.File, o.Line, o.Kind, o.Name, o.Outcome())
	}
	return []byte(b.String())
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
