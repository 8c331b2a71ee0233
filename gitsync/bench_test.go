package gitsync

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// benchRollouts is the size of the generated repository.
const benchRollouts = 10_000

// benchRepo pushes a repository with benchRollouts Rollout manifests, 100
// to a folder, each the standalone example under its own name.
func benchRepo(b *testing.B) *remote {
	b.Helper()
	example, err := os.ReadFile("../examples/standalone/rollout.yaml")
	if err != nil {
		b.Fatal(err)
	}
	r := newRemote(b)
	for i := range benchRollouts {
		name := fmt.Sprintf("svc-%05d", i)
		p := filepath.Join(r.Work, "apps", fmt.Sprintf("team-%02d", i/100), name+".yaml")
		if i%100 == 0 {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				b.Fatal(err)
			}
		}
		content := strings.Replace(strings.Replace(string(example), "name: reviews\n", "name: "+name+"\n", 2),
			"version: v2", "version: v1", 1)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	r.Push("10k rollouts", nil)
	return r
}

// BenchmarkSync10k measures a first sync (clone into an empty mirror,
// parse and validate every file) and an incremental one (fetch one new
// commit that changes one file; the other 9,999 come from the cache).
func BenchmarkSync10k(b *testing.B) {
	r := benchRepo(b)
	src := Source{URL: r.URL(), Branch: "main", Path: "apps"}
	check := func(b *testing.B, st State, sha string) {
		if st.Err != nil || (sha != "" && appliedSHA(st) != sha) || len(st.Applied.Objects) != benchRollouts {
			b.Fatalf("applied %s (%d objects), err %v", appliedSHA(st), len(st.Applied.Objects), st.Err)
		}
	}

	b.Run("first", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			s, _ := newTestSyncer(b, src)
			b.StartTimer()
			check(b, s.Sync(context.Background()), "")
		}
	})

	const file = "apps/team-42/svc-04242.yaml"
	original := r.readWork(file)
	b.Run("incremental", func(b *testing.B) {
		s, _ := newTestSyncer(b, src)
		check(b, s.Sync(context.Background()), "")
		b.ResetTimer()
		for i := range b.N {
			b.StopTimer()
			version := fmt.Sprintf("    version: v1-%d-%d\n", b.N, i)
			sha := r.Push("bump", map[string]string{file: strings.Replace(original, "    version: v1\n", version, 1)})
			b.StartTimer()
			st := s.Sync(context.Background())
			check(b, st, sha)
			if d, _ := st.Applied.Lookup(ObjectRef{Kind: "Rollout", Name: "svc-04242"}); "    version: "+d.Rollout.Spec.Backend.Version+"\n" != version {
				b.Fatalf("version %s not applied", version)
			}
		}
	})
}

func (r *remote) readWork(name string) string {
	r.t.Helper()
	data, err := os.ReadFile(filepath.Join(r.Work, filepath.FromSlash(name)))
	if err != nil {
		r.t.Fatal(err)
	}
	return string(data)
}
