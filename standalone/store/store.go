package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// DefaultFile is the name of the state file inside the state directory.
const DefaultFile = "state.db"

// SchemaVersion is the layout this code reads and writes. Bump it with a
// migration in migrate whenever a bucket or value changes shape.
const SchemaVersion = 1

// Defaults for Options.
const (
	DefaultLockTimeout  = 2 * time.Second
	DefaultHistoryLimit = 200
)

var (
	// ErrLocked: another process holds the state file.
	ErrLocked = errors.New("state file locked by another process")
	// ErrSchema: the file was written by a newer Sluice, or is not a Sluice
	// state file.
	ErrSchema = errors.New("unsupported state file schema")
	// ErrNotFound: no such rollout or run.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: a Commit argument that would store inconsistent state.
	ErrInvalid = errors.New("invalid record")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store closed")
)

// Options tune Open. The zero value is ready to use.
type Options struct {
	// LockTimeout is how long Open waits for another process to release the
	// file before failing with ErrLocked. Zero means DefaultLockTimeout;
	// bbolt's own zero (wait forever) is not offered, because a second
	// `sluice run` on the same directory should fail loudly, not hang.
	LockTimeout time.Duration
	// HistoryLimit is how many events are kept per Rollout. Zero means
	// DefaultHistoryLimit.
	HistoryLimit int
}

// Bucket layout (schema 1):
//
//	meta/      schema -> decimal text; git -> GitState JSON;
//	           bucket sequence = the last Commit sequence number
//	rollouts/  <key>/ status -> RolloutStatus JSON, plan -> plan.Plan JSON,
//	                  meta -> rolloutMeta JSON, runs/ <run name> -> blob
//	history/   <key>/ big-endian uint64 index -> Event JSON
//	outbox/    see outbox.go (added within schema 1: older files gain
//	           the empty bucket when opened)
//
// History lives outside rollouts/ so that Delete can drop a Rollout and
// keep what happened to it.
var (
	bMeta     = []byte("meta")
	bRollouts = []byte("rollouts")
	bHistory  = []byte("history")
	bRuns     = []byte("runs")

	kSchema = []byte("schema")
	kGit    = []byte("git")
	kStatus = []byte("status")
	kPlan   = []byte("plan")
	kMeta   = []byte("meta")
)

// Store is an open state file.
type Store struct {
	db           *bolt.DB
	path         string
	historyLimit int
	// writes counts the write transactions committed.
	writes atomic.Uint64

	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) the state file at path, and the
// directories above it. It fails with ErrLocked, naming the holder's pid
// when known, if another process has it open, and with ErrSchema if the
// file was written by a newer Sluice.
func Open(path string, opts Options) (*Store, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if opts.HistoryLimit <= 0 {
		opts.HistoryLimit = DefaultHistoryLimit
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("open state file %s: %w (%s); stop it or use another state directory",
			path, ErrLocked, readOwner(path))
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return nil, fmt.Errorf("open state file %s: not a usable bbolt file: %w", path, err)
	case err != nil:
		return nil, fmt.Errorf("open state file %s: %w", path, err)
	}
	s := &Store{db: db, path: path, historyLimit: opts.HistoryLimit}
	if err := db.Update(initSchema); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open state file %s: %w", path, err)
	}
	// The owner file only feeds the ErrLocked message of the next process;
	// failing to write it must not stop this one.
	_ = writeOwner(path)
	return s, nil
}

// Transactions is the number of write transactions this Store committed
// since Open, each one a disk flush (two, with the meta page).
func (s *Store) Transactions() uint64 { return s.writes.Load() }

// Path is the state file's path.
func (s *Store) Path() string { return s.path }

// Close releases the file. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		// Remove the owner note while still holding the lock, so it never
		// names a process that no longer has the file.
		_ = os.Remove(ownerPath(s.path))
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("close state file %s: %w", s.path, err)
		}
	})
	return s.closeErr
}

// initSchema stamps a new file and checks an existing one.
func initSchema(tx *bolt.Tx) error {
	meta := tx.Bucket(bMeta)
	if meta == nil {
		// A file with buckets but no meta was written by something else;
		// adding ours to it would mix two programs' data.
		foreign := false
		_ = tx.ForEach(func([]byte, *bolt.Bucket) error { foreign = true; return nil })
		if foreign {
			return fmt.Errorf("%w: file has data but no schema version; it is not a Sluice state file", ErrSchema)
		}
		var err error
		if meta, err = tx.CreateBucket(bMeta); err != nil {
			return fmt.Errorf("create meta bucket: %w", err)
		}
		if err := meta.Put(kSchema, []byte(strconv.Itoa(SchemaVersion))); err != nil {
			return fmt.Errorf("write schema version: %w", err)
		}
	}
	raw := meta.Get(kSchema)
	v, err := strconv.Atoi(string(raw))
	if err != nil {
		return fmt.Errorf("%w: unreadable schema version %q", ErrSchema, raw)
	}
	if v > SchemaVersion {
		return fmt.Errorf("%w: file has schema %d, this sluice reads up to %d; upgrade sluice (downgrades are not supported)",
			ErrSchema, v, SchemaVersion)
	}
	if err := migrate(tx, v); err != nil {
		return err
	}
	for _, b := range [][]byte{bRollouts, bHistory, bOutbox} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return fmt.Errorf("create bucket %s: %w", b, err)
		}
	}
	return nil
}

// migrations[v] upgrades a file from schema v to v+1, inside the opening
// transaction so an interrupted upgrade leaves the old file intact.
var migrations = map[int]func(*bolt.Tx) error{}

func migrate(tx *bolt.Tx, from int) error {
	if from < 1 {
		return fmt.Errorf("%w: schema version %d", ErrSchema, from)
	}
	for v := from; v < SchemaVersion; v++ {
		m, ok := migrations[v]
		if !ok {
			return fmt.Errorf("%w: no migration from schema %d", ErrSchema, v)
		}
		if err := m(tx); err != nil {
			return fmt.Errorf("migrate schema %d to %d: %w", v, v+1, err)
		}
	}
	if from == SchemaVersion {
		return nil
	}
	if err := tx.Bucket(bMeta).Put(kSchema, []byte(strconv.Itoa(SchemaVersion))); err != nil {
		return fmt.Errorf("write schema version: %w", err)
	}
	return nil
}

func ownerPath(path string) string { return path + ".owner" }

// writeOwner notes who holds the file; bbolt's flock carries no pid.
func writeOwner(path string) error {
	host, _ := os.Hostname()
	note := fmt.Sprintf("pid %d on %s since %s", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
	return os.WriteFile(ownerPath(path), []byte(note), 0o600)
}

func readOwner(path string) string {
	b, err := os.ReadFile(ownerPath(path))
	if err != nil || len(b) == 0 {
		return "holder unknown"
	}
	return "held by " + strings.TrimSpace(string(b))
}

// Key is the store key of a Rollout: "namespace/name", or "name" when the
// namespace is empty (standalone mode), as in Kubernetes cache keys.
func Key(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// SplitKey is the inverse of Key.
func SplitKey(key string) (namespace, name string, err error) {
	ns, n, found := strings.Cut(key, "/")
	if !found {
		ns, n = "", key
	}
	if n == "" || strings.Contains(n, "/") || (found && ns == "") {
		return "", "", fmt.Errorf("%w: rollout key %q is not \"name\" or \"namespace/name\"", ErrInvalid, key)
	}
	return ns, n, nil
}

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

// view and update refuse to touch a closed store with a clear error rather
// than bbolt's "database not open".
func (s *Store) view(fn func(*bolt.Tx) error) error {
	err := s.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

func (s *Store) update(fn func(*bolt.Tx) error) error {
	err := s.db.Update(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	if err == nil {
		s.writes.Add(1)
	}
	return err
}
