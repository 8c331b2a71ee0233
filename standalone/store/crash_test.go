package store

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// The crash test re-executes this test binary as a writer process (selected
// by crashChildEnv), kills it with SIGKILL at random moments and checks the
// file it leaves behind.
const (
	crashChildEnv = "SLUICE_STORE_CRASH_CHILD"
	crashSeedEnv  = "SLUICE_STORE_CRASH_SEED"
	crashLimit    = 20 // history limit, small so trimming happens under crashes
)

var crashKeys = []string{"shop/reviews", "shop/ratings", "details"}

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		if err := crashChild(path); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashRecord is the n-th write to key. Everything in it is derived from
// (key, n), so a reader can tell a complete record from a torn one: the
// status, the plan, the run state and the last event must all say n.
func crashRecord(key string, n int32) Record {
	rec := testRecord(n%5, n%101, fmt.Sprintf("run-%d", n))
	rec.Status.ObservedGeneration = int64(n)
	// Vary the size so commits touch different numbers of pages.
	rec.Status.Message = key + strings.Repeat("x", int(n%7)*1500)
	rec.Plan.Hosts[0].Name = fmt.Sprintf("%s-%d", strings.ReplaceAll(key, "/", "-"), n)
	rec.Plan.Seal()
	rec.Status.Traffic.PlanVersion = rec.Plan.Version
	rec.Events = []engine.Event{{Type: engine.EventNormal, Reason: v1alpha1.ReasonStepAdvanced, Message: fmt.Sprintf("n=%d", n)}}
	rec.Runs = map[string]json.RawMessage{fmt.Sprintf("run-%d", n): json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))}
	return rec
}

// crashChild writes to the store until it is killed, in turn one Rollout
// with Commit and all of them in one CommitAll, printing a line after
// each returned: "key n seq", one triple per Rollout written, separated
// by ";".
func crashChild(path string) error {
	s, err := Open(path, Options{HistoryLimit: crashLimit, LockTimeout: 10 * time.Second})
	if err != nil {
		return err
	}
	next := map[string]int32{}
	for _, k := range crashKeys {
		r, err := s.Get(k)
		switch {
		case err == nil:
			next[k] = int32(r.Status.ObservedGeneration) + 1
		case errors.Is(err, ErrNotFound):
			next[k] = 1
		default:
			return err
		}
	}
	out := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		keys := crashKeys
		if !crashBatch(i) {
			keys = []string{crashKeys[i/2%len(crashKeys)]}
		}
		changes := make([]Change, len(keys))
		for j, k := range keys {
			changes[j] = Change{Key: k, Record: crashRecord(k, next[k])}
		}
		seqs, err := crashWrite(s, changes)
		if err != nil {
			return err
		}
		// Flushed per line: a line the parent reads is a write that returned.
		triples := make([]string, len(keys))
		for j, k := range keys {
			triples[j] = fmt.Sprintf("%s %d %d", k, next[k], seqs[j])
			next[k]++
		}
		fmt.Fprintln(out, strings.Join(triples, ";"))
		if err := out.Flush(); err != nil {
			return err
		}
	}
}

// crashBatch: the child's i-th write is a CommitAll of every key.
func crashBatch(i int) bool { return i%2 == 1 }

// crashWrite writes one change with Commit, several with CommitAll.
func crashWrite(s *Store, changes []Change) ([]uint64, error) {
	if len(changes) == 1 {
		seq, err := s.Commit(changes[0].Key, changes[0].Record)
		return []uint64{seq}, err
	}
	res, err := s.CommitAll(changes)
	if err != nil {
		return nil, err
	}
	seqs := make([]uint64, len(res))
	for i, r := range res {
		if r.Err != nil || r.Unchanged {
			return nil, fmt.Errorf("CommitAll of %s: %+v", changes[i].Key, r)
		}
		seqs[i] = r.Seq
	}
	return seqs, nil
}

func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a writer process several times")
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(crashSeedEnv); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("%s: %v", crashSeedEnv, err)
		}
	}
	t.Logf("seed %d (rerun with %s=%d)", seed, crashSeedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	path := filepath.Join(dir, DefaultFile)

	acked := map[string]int32{} // highest n whose Commit returned
	seen := map[string]int32{}  // n found on disk after the previous kill
	var ackedSeq, seenSeq uint64
	const rounds = 20
	for round := range rounds {
		// Kill a random time after the writer is up. Killing right after
		// reading an acknowledgement instead hits the same phase of the
		// write loop again and again (the processes fall into step), which
		// never kills between a write and its acknowledgement.
		waitFor := 1 + rng.IntN(3)
		pause := time.Duration(rng.IntN(20000)) * time.Microsecond
		lines := runAndKill(t, dir, round, path, waitFor, pause)
		for _, l := range lines {
			for _, w := range strings.Split(l, ";") {
				var k string
				var n int32
				var seq uint64
				if _, err := fmt.Sscanf(w, "%s %d %d", &k, &n, &seq); err != nil {
					t.Fatalf("round %d: child said %q: %v", round, l, err)
				}
				acked[k], ackedSeq = n, seq
			}
		}
		// The write in flight at the kill, which lands whole or not at all.
		inFlight := 1
		if crashBatch(len(lines)) {
			inFlight = len(crashKeys)
		}
		t.Logf("round %d: killed after %d acknowledged writes (+%v)", round, len(lines), pause)
		seenSeq = checkAfterCrash(t, path, round, acked, seen, ackedSeq, seenSeq, inFlight)
	}
}

// runAndKill starts a writer, lets it acknowledge at least waitFor commits,
// waits pause more, kills it with SIGKILL and returns every line it wrote.
//
// The writer's output goes to files, not pipes: a pipe wakes this process's
// poller at every line, which lines the kill up with the writer's loop.
func runAndKill(t *testing.T, dir string, round int, path string, waitFor int, pause time.Duration) []string {
	t.Helper()
	outPath := filepath.Join(dir, fmt.Sprintf("acks-%d", round))
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	errOut, err := os.Create(outPath + ".stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer errOut.Close()
	stderr := func() string { b, _ := os.ReadFile(errOut.Name()); return string(b) }

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	cmd.Stdout, cmd.Stderr = out, errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	kill := func() {
		if err := syscall.Kill(cmd.Process.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if err := <-exited; err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("writer ended with %v, want killed; stderr: %s", err, stderr())
		}
	}
	// A generous bound so a wedged writer fails the test instead of hanging
	// it; it is not a performance expectation.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		b, err := os.ReadFile(outPath)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Count(b, []byte("\n")) >= waitFor {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("writer exited (%v) after %d commits; stderr: %s", err, bytes.Count(b, []byte("\n")), stderr())
		default:
		}
		if time.Now().After(deadline) {
			kill()
			t.Fatalf("writer acknowledged %d commits, want %d; stderr: %s", bytes.Count(b, []byte("\n")), waitFor, stderr())
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(pause)
	kill()
	b, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// checkAfterCrash reopens the file and checks that every record is whole,
// that no acknowledged Commit was lost, and that nothing went backwards.
// It returns the store's sequence number.
func checkAfterCrash(t *testing.T, path string, round int, acked, seen map[string]int32, ackedSeq, seenSeq uint64, inFlight int) uint64 {
	t.Helper()
	s, err := Open(path, Options{HistoryLimit: crashLimit})
	if err != nil {
		t.Fatalf("round %d: reopen after kill: %v", round, err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	seq, err := s.Seq()
	if err != nil {
		t.Fatal(err)
	}
	// The one write in flight at the kill may have landed unacknowledged,
	// all of it (a CommitAll's every Rollout) or nothing.
	if landed := seq - ackedSeq; seq < ackedSeq || (landed != 0 && landed != uint64(inFlight)) || seq < seenSeq {
		t.Fatalf("round %d: sequence %d; acknowledged %d, seen before %d, %d in flight", round, seq, ackedSeq, seenSeq, inFlight)
	}
	list, err := s.List()
	if err != nil {
		t.Fatalf("round %d: List: %v", round, err)
	}
	for _, r := range list {
		n := int32(r.Status.ObservedGeneration)
		// The writer goes on from what it found on disk, which may be
		// the previous round's unacknowledged commit: one more than the
		// higher of the two may have landed.
		if n < acked[r.Key] || n > max(acked[r.Key], seen[r.Key])+1 || n < seen[r.Key] {
			t.Fatalf("round %d: %s at n=%d; acknowledged %d, seen before %d", round, r.Key, n, acked[r.Key], seen[r.Key])
		}
		seen[r.Key] = n
		want := crashRecord(r.Key, n)
		if g, w := mustJSON(t, r.Status), mustJSON(t, want.Status); g != w {
			t.Fatalf("round %d: %s status torn:\n got %.300s\nwant %.300s", round, r.Key, g, w)
		}
		if g, w := mustJSON(t, r.Plan), mustJSON(t, want.Plan); g != w {
			t.Fatalf("round %d: %s plan does not match its status (n=%d):\n got %s\nwant %s", round, r.Key, n, g, w)
		}
		if r.Seq > seq {
			t.Fatalf("round %d: %s written by commit %d, after the last one %d", round, r.Key, r.Seq, seq)
		}
		runs, err := s.Runs(r.Key)
		if err != nil {
			t.Fatal(err)
		}
		if g, w := mustJSON(t, runs), mustJSON(t, want.Runs); g != w {
			t.Fatalf("round %d: %s runs = %s, want %s", round, r.Key, g, w)
		}
		checkHistory(t, s, round, r.Key, n)
	}
	for _, k := range crashKeys {
		if acked[k] > 0 && seen[k] == 0 {
			t.Fatalf("round %d: %s acknowledged at n=%d but not stored", round, k, acked[k])
		}
	}
	return seq
}

// checkHistory: the kept events are the last ones written, contiguous, the
// newest being the record's own.
func checkHistory(t *testing.T, s *Store, round int, key string, n int32) {
	t.Helper()
	h, err := s.History(key, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := min(int(n), crashLimit); len(h) != want {
		t.Fatalf("round %d: %s history has %d events, want %d", round, key, len(h), want)
	}
	for i, e := range h {
		wantN := int(n) - len(h) + 1 + i
		if e.Index != uint64(wantN) || e.Message != fmt.Sprintf("n=%d", wantN) {
			t.Fatalf("round %d: %s history[%d] = index %d %q, want index %d n=%d", round, key, i, e.Index, e.Message, wantN, wantN)
		}
	}
}
