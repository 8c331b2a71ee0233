package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// boltWrite edits a closed state file behind the store's back.
func boltWrite(t *testing.T, path string, fn func(*bolt.Tx) error) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func setSchema(v string) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		s, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		boltWrite(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put(kSchema, []byte(v)) })
	}
}

func TestOpen(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		setup   func(t *testing.T, path string) // prepares path; may leave a store open
		wantIs  error
		wantMsg string
	}{
		{name: "new file in new directories", setup: func(*testing.T, string) {}},
		{name: "current schema", setup: setSchema(fmt.Sprint(SchemaVersion))},
		{name: "future schema", setup: setSchema("2"), wantIs: ErrSchema, wantMsg: "file has schema 2, this sluice reads up to 1; upgrade sluice"},
		{name: "schema zero", setup: setSchema("0"), wantIs: ErrSchema, wantMsg: "schema version 0"},
		{name: "unreadable schema", setup: setSchema("one"), wantIs: ErrSchema, wantMsg: `unreadable schema version "one"`},
		{name: "foreign bbolt file", setup: func(t *testing.T, path string) {
			boltWrite(t, path, func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err })
		}, wantIs: ErrSchema, wantMsg: "not a Sluice state file"},
		{name: "not a bbolt file", setup: func(t *testing.T, path string) {
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(strings.Repeat("not bolt ", 2000)), 0o600); err != nil {
				t.Fatal(err)
			}
		}, wantMsg: "not a usable bbolt file"},
		{name: "locked by another holder", setup: func(t *testing.T, path string) {
			s, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
		}, wantIs: ErrLocked, wantMsg: fmt.Sprintf("held by pid %d on ", os.Getpid())},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Directories that do not exist yet: Open creates them.
			path := filepath.Join(t.TempDir(), "a", "b", DefaultFile)
			tc.setup(t, path)
			s, err := Open(path, Options{LockTimeout: 200 * time.Millisecond})
			if tc.wantMsg == "" {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				defer s.Close()
				if seq, err := s.Seq(); err != nil || seq != 0 {
					t.Fatalf("Seq() = %d, %v; want 0", seq, err)
				}
				fi, err := os.Stat(path)
				if err != nil || fi.Mode().Perm() != 0o600 {
					t.Fatalf("state file mode = %v, %v; want 0600", fi.Mode(), err)
				}
				return
			}
			if err == nil {
				s.Close()
				t.Fatalf("Open succeeded, want error %q", tc.wantMsg)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("Open error %v is not %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("Open error %q does not contain %q", err, tc.wantMsg)
			}
		})
	}
}

// The lock is released by Close, and the next process takes over.
func TestReopenAfterClose(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), DefaultFile)
	s, err := Open(path, Options{LockTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rec := testRecord(2, 20, "run-a")
	rec.Runs = map[string]json.RawMessage{"run-a": json.RawMessage(`{"n":1}`)}
	mustCommit(t, s, "default/reviews", rec)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ownerPath(path)); !os.IsNotExist(err) {
		t.Errorf("owner note left after Close: %v", err)
	}
	s, err = Open(path, Options{LockTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	r, err := s.Get("default/reviews")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := mustJSON(t, r.Status), mustJSON(t, rec.Status); got != want {
		t.Errorf("status after reopen:\n got %s\nwant %s", got, want)
	}
	if got, want := mustJSON(t, r.Plan), mustJSON(t, rec.Plan); got != want {
		t.Errorf("plan after reopen:\n got %s\nwant %s", got, want)
	}
	if blob, err := s.Run("default/reviews", "run-a"); err != nil || string(blob) != `{"n":1}` {
		t.Errorf("Run after reopen = %s, %v", blob, err)
	}
}

func TestClosed(t *testing.T) {
	t.Parallel()
	s, err := Open(filepath.Join(t.TempDir(), DefaultFile), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	calls := map[string]func() error{
		"Commit":       func() error { _, err := s.Commit("a", testRecord(0, 0)); return err },
		"Get":          func() error { _, err := s.Get("a"); return err },
		"List":         func() error { _, err := s.List(); return err },
		"Plans":        func() error { _, err := s.Plans(); return err },
		"Run":          func() error { _, err := s.Run("a", "r"); return err },
		"Runs":         func() error { _, err := s.Runs("a"); return err },
		"History":      func() error { _, err := s.History("a", 0); return err },
		"Delete":       func() error { return s.Delete("a") },
		"PurgeHistory": func() error { return s.PurgeHistory("a") },
		"SetGit":       func() error { return s.SetGit(GitState{}) },
		"Git":          func() error { _, err := s.Git(); return err },
		"Seq":          func() error { _, err := s.Seq(); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

func TestKey(t *testing.T) {
	t.Parallel()
	cases := []struct {
		ns, name, key string
		bad           bool
	}{
		{ns: "", name: "reviews", key: "reviews"},
		{ns: "shop", name: "reviews", key: "shop/reviews"},
		{key: "", bad: true},
		{key: "shop/", bad: true},
		{key: "/reviews", bad: true},
		{key: "a/b/c", bad: true},
	}
	for _, tc := range cases {
		t.Run(tc.key, func(t *testing.T) {
			t.Parallel()
			ns, name, err := SplitKey(tc.key)
			if tc.bad {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("SplitKey(%q) = %q, %q, %v; want ErrInvalid", tc.key, ns, name, err)
				}
				return
			}
			if err != nil || ns != tc.ns || name != tc.name {
				t.Fatalf("SplitKey(%q) = %q, %q, %v", tc.key, ns, name, err)
			}
			if k := Key(tc.ns, tc.name); k != tc.key {
				t.Fatalf("Key(%q, %q) = %q, want %q", tc.ns, tc.name, k, tc.key)
			}
		})
	}
}

// Concurrent writers each get their own sequence number and nothing is lost.
func TestConcurrentCommits(t *testing.T) {
	t.Parallel()
	s := open(t, Options{})
	const writers, each = 4, 10
	seqs := make(chan uint64, writers*each)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				seq, err := s.Commit(fmt.Sprintf("ns/r%d", w), testRecord(int32(i), int32(i)))
				if err != nil {
					t.Error(err)
					return
				}
				seqs <- seq
			}
		}()
	}
	wg.Wait()
	close(seqs)
	seen := map[uint64]bool{}
	for seq := range seqs {
		if seen[seq] {
			t.Errorf("sequence %d handed out twice", seq)
		}
		seen[seq] = true
	}
	if last, err := s.Seq(); err != nil || last != writers*each || len(seen) != writers*each {
		t.Errorf("Seq() = %d, %v; %d distinct; want %d", last, err, len(seen), writers*each)
	}
}
