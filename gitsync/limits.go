package gitsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"

	"github.com/sluicehq/sluice/internal/untrusted"
)

// FetchLimits bound what a remote can make a Syncer download and keep.
// Without them a push of a few hundred megabytes anywhere in the
// repository fills the mirror's disk and, read back, the memory of a
// process that only needs a few manifests.
type FetchLimits struct {
	// MaxPackBytes bounds the bytes one fetch receives (the pack as sent,
	// side-band framing included). Past it the transport stops reading,
	// the fetch fails and nothing of it is kept. Default
	// DefaultMaxPackBytes.
	MaxPackBytes int64
	// MaxBlobBytes bounds every file of a commit, inside Path or not.
	// Default DefaultMaxBlobBytes.
	MaxBlobBytes int64
	// MaxFiles bounds the entries (files, links, folders) of a commit's
	// whole tree. Default DefaultMaxFiles.
	MaxFiles int
}

// Default fetch limits: far above a repository of manifests, far below
// what hurts a controller with a few hundred MiB of memory.
const (
	DefaultMaxPackBytes = 256 << 20
	DefaultMaxBlobBytes = 16 << 20
	DefaultMaxFiles     = 20_000
)

// Names of the limits, as FetchLimitError.Limit and the config keys
// (git.limits.<name>) call them.
const (
	LimitMaxPackBytes = "maxPackBytes"
	LimitMaxBlobBytes = "maxBlobBytes"
	LimitMaxFiles     = "maxFiles"
)

func (l FetchLimits) withDefaults() (FetchLimits, error) {
	for _, f := range []struct {
		name string
		v    *int64
		def  int64
	}{{LimitMaxPackBytes, &l.MaxPackBytes, DefaultMaxPackBytes}, {LimitMaxBlobBytes, &l.MaxBlobBytes, DefaultMaxBlobBytes}} {
		if *f.v < 0 {
			return l, fmt.Errorf("fetchLimits.%s %d: must not be negative (0 means the default, %d)", f.name, *f.v, f.def)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if l.MaxFiles < 0 {
		return l, fmt.Errorf("fetchLimits.%s %d: must not be negative (0 means the default, %d)", LimitMaxFiles, l.MaxFiles, DefaultMaxFiles)
	}
	if l.MaxFiles == 0 {
		l.MaxFiles = DefaultMaxFiles
	}
	return l, nil
}

// FetchLimitError is a fetch or a commit over one of the FetchLimits. It
// is reported as an *Error of KindLimit.
type FetchLimitError struct {
	// Limit is LimitMaxPackBytes, LimitMaxBlobBytes or LimitMaxFiles.
	Limit string
	// Max is the limit's value.
	Max int64
	// Size is what was found: the bytes received when the fetch was
	// stopped, the file's size, or the entries counted when the walk was
	// stopped.
	Size int64
	// Path is the file over LimitMaxBlobBytes, as the commit names it.
	// A fetch stopped for an object over it cannot know the path yet:
	// Object then says what the object is (blob, tree, ...).
	Path   string
	Object string
}

// maxPathShown bounds a path from the remote in an error message.
const maxPathShown = 256

func (e *FetchLimitError) Error() string {
	switch e.Limit {
	case LimitMaxPackBytes:
		return fmt.Sprintf("the fetch was stopped after %d bytes: over the limit %s (%d bytes); nothing of it was kept",
			e.Size, e.Limit, e.Max)
	case LimitMaxBlobBytes:
		if e.Path == "" {
			return fmt.Sprintf("the fetch was stopped: it holds a %s of %d bytes: over the limit %s (%d bytes); nothing of it was kept",
				e.Object, e.Size, e.Limit, e.Max)
		}
		return fmt.Sprintf("file %q is %d bytes: over the limit %s (%d bytes)",
			untrusted.Text(e.Path, maxPathShown), e.Size, e.Limit, e.Max)
	}
	return fmt.Sprintf("the commit's tree has more than %d files and folders: over the limit %s", e.Max, e.Limit)
}

// Fetches are limited where the bytes arrive: in the transport's reader.
// A limit in the object storage would fail the storage's write while the
// transport still holds the other end of a pipe (git upload-pack's
// output, or an HTTP body), and the fetch would then hang closing it.
// go-git chooses transports only from its global table, so gitsync wraps
// each entry once, at init, before any fetch can read the table. The
// wrapper does nothing unless the fetch's context carries a packBudget,
// so other users of go-git in the process are unaffected.
func init() {
	for _, scheme := range []string{"http", "https", "ssh", "file"} {
		if t := client.Protocols[scheme]; t != nil {
			client.InstallProtocol(scheme, limitedTransport{t})
		}
	}
}

type packBudgetKey struct{}

// packBudget is the limits of one fetch, carried in its context.
type packBudget struct {
	max, maxObject int64

	mu       sync.Mutex
	received int64
	err      *FetchLimitError
	// refs is what the remote advertised to the fetch (refused.go).
	refs map[plumbing.ReferenceName]plumbing.Hash
}

func withPackBudget(ctx context.Context, l FetchLimits) (context.Context, *packBudget) {
	b := &packBudget{max: l.MaxPackBytes, maxObject: l.MaxBlobBytes}
	return context.WithValue(ctx, packBudgetKey{}, b), b
}

// exceeded is the limit error once the fetch went over, else nil.
func (b *packBudget) exceeded() *FetchLimitError {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// fail records a limit error found in the pack's content.
func (b *packBudget) fail(err *FetchLimitError) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err = err
	}
}

func (b *packBudget) advertised(ar *packp.AdvRefs) {
	refs := make(map[plumbing.ReferenceName]plumbing.Hash, len(ar.References))
	for name, h := range ar.References {
		refs[plumbing.ReferenceName(name)] = h
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refs = refs
}

// advertisedRefs is what the remote advertised to the fetch.
func (b *packBudget) advertisedRefs() map[plumbing.ReferenceName]plumbing.Hash {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.refs
}

func (b *packBudget) add(n int) *FetchLimitError {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.received += int64(n)
	if b.err == nil && b.received > b.max {
		b.err = &FetchLimitError{Limit: LimitMaxPackBytes, Max: b.max, Size: b.received}
	}
	return b.err
}

type limitedTransport struct{ transport.Transport }

func (t limitedTransport) NewUploadPackSession(ep *transport.Endpoint, auth transport.AuthMethod) (transport.UploadPackSession, error) {
	s, err := t.Transport.NewUploadPackSession(ep, auth)
	if err != nil {
		return nil, err
	}
	return limitedSession{s}, nil
}

type limitedSession struct{ transport.UploadPackSession }

// AdvertisedReferencesContext keeps the remote's refs for the fetch's
// budget: a refused fetch is remembered by the tip it was for.
func (s limitedSession) AdvertisedReferencesContext(ctx context.Context) (*packp.AdvRefs, error) {
	ar, err := s.UploadPackSession.AdvertisedReferencesContext(ctx)
	if budget, ok := ctx.Value(packBudgetKey{}).(*packBudget); ok && err == nil {
		budget.advertised(ar)
	}
	return ar, err
}

func (s limitedSession) UploadPack(ctx context.Context, req *packp.UploadPackRequest) (*packp.UploadPackResponse, error) {
	budget, ok := ctx.Value(packBudgetKey{}).(*packBudget)
	if !ok {
		return s.UploadPackSession.UploadPack(ctx, req)
	}
	// The session reads the pack under this context; cancelling it is how
	// an abandoned read is stopped (below).
	ctx, cancel := context.WithCancel(ctx)
	res, err := s.UploadPackSession.UploadPack(ctx, req)
	if err != nil {
		cancel()
		return nil, err
	}
	c := &countingPack{res: res, budget: budget, cancel: cancel}
	c.startScan(req)
	out := packp.NewUploadPackResponseWithPackfile(req, c)
	out.ShallowUpdate, out.ServerResponse = res.ShallowUpdate, res.ServerResponse
	return out, nil
}

// countingPack counts the bytes of a pack as go-git reads them, hands
// them to the object scanner (packscan.go) too, and fails the read that
// goes over a limit.
type countingPack struct {
	res    *packp.UploadPackResponse
	budget *packBudget
	cancel context.CancelFunc

	scan     *io.PipeWriter
	scanDone chan struct{}
}

func (c *countingPack) startScan(req *packp.UploadPackRequest) {
	pr, pw := io.Pipe()
	c.scan, c.scanDone = pw, make(chan struct{})
	framing, framed := sidebandOf(req.Capabilities)
	go func() {
		defer close(c.scanDone)
		err := scanPackObjects(pr, framing, framed, c.budget.maxObject)
		var lerr *FetchLimitError
		if errors.As(err, &lerr) {
			c.budget.fail(lerr)
		}
		// Whatever the outcome, the rest of the stream is not needed:
		// the pipe's writes fail from now on instead of blocking.
		pr.CloseWithError(errScanDone)
	}()
}

var errScanDone = errors.New("pack scan finished")

// endScan waits for the scanner to see everything written to it.
func (c *countingPack) endScan() {
	c.scan.Close()
	<-c.scanDone
}

func (c *countingPack) Read(p []byte) (int, error) {
	if err := c.budget.exceeded(); err != nil {
		return 0, err
	}
	n, err := c.res.Read(p)
	if lerr := c.budget.add(n); lerr != nil {
		return 0, lerr
	}
	// Blocks until the scanner took the bytes; fails once it stopped.
	_, _ = c.scan.Write(p[:n])
	if err != nil {
		// The last bytes: the scanner's verdict must be in before go-git
		// sees the end of the pack and starts indexing it.
		c.endScan()
		if lerr := c.budget.exceeded(); lerr != nil {
			return 0, lerr
		}
	}
	return n, err
}

// maxAbortReads bounds the reads that stop a session after the limit;
// the first or second normally does (see Close).
const maxAbortReads = 64

// Close ends the session. After the limit the sender is still writing:
// git upload-pack blocks on a full pipe and the session's Close would
// wait for it forever. So the context is cancelled first; go-git's
// command sessions answer the next read with the context's error and
// kill the command on it, and an HTTP body read fails at once.
func (c *countingPack) Close() error {
	defer c.cancel()
	c.endScan()
	if c.budget.exceeded() != nil {
		c.cancel()
		buf := make([]byte, 32<<10)
		for range maxAbortReads {
			if _, err := c.res.Read(buf); err != nil {
				break
			}
		}
	}
	return c.res.Close()
}

var _ io.ReadCloser = (*countingPack)(nil)

// sizer reads an object's size from its header (for a packed object the
// pack index and the entry's header), without inflating the object.
type sizer interface {
	EncodedObjectSize(plumbing.Hash) (int64, error)
}

// treeChecker enforces MaxBlobBytes and MaxFiles on a commit's whole tree
// before anything of the commit is read. It remembers the entry count of
// every subtree that passed, for the next commit: unchanged folders are
// not walked again.
type treeChecker struct {
	limits FetchLimits
	passed map[plumbing.Hash]int
}

type treeWalk struct {
	s      storer.EncodedObjectStorer
	size   func(plumbing.Hash) (int64, error)
	limits FetchLimits
	prev   map[plumbing.Hash]int
	next   map[plumbing.Hash]int
	count  int
}

// check walks root. On success it keeps the counts of this tree's
// subtrees only, so what it remembers stays the size of one tree.
func (c *treeChecker) check(s storer.EncodedObjectStorer, root *object.Tree) error {
	w := &treeWalk{s: s, limits: c.limits, prev: c.passed, next: map[plumbing.Hash]int{}}
	if sz, ok := s.(sizer); ok {
		w.size = sz.EncodedObjectSize
	} else {
		w.size = func(h plumbing.Hash) (int64, error) {
			o, err := s.EncodedObject(plumbing.AnyObject, h)
			if err != nil {
				return 0, err
			}
			return o.Size(), nil
		}
	}
	if err := w.walk(root, ""); err != nil {
		return err
	}
	c.passed = w.next
	return nil
}

func (w *treeWalk) walk(t *object.Tree, dir string) error {
	for _, e := range t.Entries {
		if w.count++; w.count > w.limits.MaxFiles {
			return &FetchLimitError{Limit: LimitMaxFiles, Max: int64(w.limits.MaxFiles), Size: int64(w.count)}
		}
		p := joinPath(dir, e.Name)
		switch e.Mode {
		case filemode.Dir:
			if n, ok := w.prev[e.Hash]; ok {
				w.count += n
				if w.count > w.limits.MaxFiles {
					return &FetchLimitError{Limit: LimitMaxFiles, Max: int64(w.limits.MaxFiles), Size: int64(w.count)}
				}
				w.next[e.Hash] = n
				continue
			}
			sub, err := object.GetTree(w.s, e.Hash)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			before := w.count
			if err := w.walk(sub, p); err != nil {
				return err
			}
			w.next[e.Hash] = w.count - before
		case filemode.Submodule:
			// A commit of another repository: nothing here to size.
		default:
			n, err := w.size(e.Hash)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if n > w.limits.MaxBlobBytes {
				return &FetchLimitError{Limit: LimitMaxBlobBytes, Max: w.limits.MaxBlobBytes, Size: n, Path: p}
			}
		}
	}
	return nil
}
