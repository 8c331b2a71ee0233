package store

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// BenchmarkCommit measures one engine step's write: status, plan, one event
// and one run state, fsynced. The fsync dominates, so the numbers say more
// about the disk than about the code; the nosync case (never used outside
// this benchmark) shows what is left without it.
func BenchmarkCommit(b *testing.B) {
	cases := []struct {
		name   string
		keys   int
		noSync bool
	}{
		{"rollouts=1", 1, false},
		{"rollouts=100", 100, false},
		{"rollouts=100/nosync", 100, true},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			s := open(b, Options{})
			s.db.NoSync = tc.noSync
			recs := make([]Record, 64)
			for i := range recs {
				recs[i] = crashRecord("shop/reviews", int32(i+1))
				recs[i].Status.Message = "" // a typical status size
			}
			b.ReportAllocs()
			start := time.Now()
			i := 0
			for b.Loop() {
				if _, err := s.Commit(fmt.Sprintf("shop/r%d", i%tc.keys), recs[i%len(recs)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(i)/time.Since(start).Seconds(), "commits/s")
		})
	}
}

// BenchmarkCommitAll writes a pass of the runner: n Rollouts' steps in
// one transaction, each changed; and the same pass again, unchanged,
// which writes nothing.
func BenchmarkCommitAll(b *testing.B) {
	for _, n := range []int{100, 1000} {
		changes := make([]Change, n)
		for i := range changes {
			k := fmt.Sprintf("shop/r%d", i)
			changes[i] = Change{Key: k, Record: crashRecord(k, 1)}
			changes[i].Record.Status.Message = ""
		}
		b.Run(fmt.Sprintf("rollouts=%d", n), func(b *testing.B) {
			s := open(b, Options{})
			b.ReportAllocs()
			gen := int32(0)
			for b.Loop() {
				gen++
				for i := range changes {
					changes[i].Record.Status.ObservedGeneration = int64(gen)
				}
				if _, err := s.CommitAll(changes); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("rollouts=%d/unchanged", n), func(b *testing.B) {
			s := open(b, Options{})
			if _, err := s.CommitAll(changes); err != nil {
				b.Fatal(err)
			}
			idle := make([]Change, n)
			for i, c := range changes {
				idle[i] = c
				idle[i].Record.Events = nil
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.CommitAll(idle); err != nil {
					b.Fatal(err)
				}
			}
			if s.Transactions() != 1 {
				b.Fatalf("%d transactions for unchanged passes", s.Transactions()-1)
			}
		})
	}
}

// BenchmarkCommitParallel: bbolt has one writer, so concurrent Commits
// queue; throughput stays at one fsync per Commit.
func BenchmarkCommitParallel(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), DefaultFile), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rec := crashRecord("x", 1)
	var mu sync.Mutex
	n := 0
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mu.Lock()
			k := fmt.Sprintf("shop/r%d", n%16)
			n++
			mu.Unlock()
			if _, err := s.Commit(k, rec); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "commits/s")
}

func BenchmarkPlans(b *testing.B) {
	s := open(b, Options{})
	for i := range 100 {
		if _, err := s.Commit(fmt.Sprintf("shop/r%d", i), crashRecord("x", int32(i+1))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Plans(); err != nil {
			b.Fatal(err)
		}
	}
}
