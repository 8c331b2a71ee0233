package gitsync

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/sluicehq/sluice/rollout/manifest"
	"github.com/sluicehq/sluice/rollout/validation"
)

// A commit is loaded file by file with manifest.Load, and the outcome for
// each file is cached by its path and blob hash: a blob is immutable, so a
// file whose hash has not changed need not be read or parsed again. What
// manifest.Load does across files (duplicate objects, the file and object
// limits) is done here on the merged results, with the same messages.

// Limits bounds what one commit may hold; zero fields take the manifest
// package's defaults.
type Limits struct {
	// MaxFileSize in bytes; larger files are problems.
	MaxFileSize int64
	// MaxFiles is the most manifest files a commit may have under the path.
	MaxFiles int
	// MaxObjects is the most YAML documents, of any kind, in all files.
	MaxObjects int
}

func (l Limits) withDefaults() Limits {
	l.MaxFileSize = cmp.Or(l.MaxFileSize, manifest.DefaultMaxFileSize)
	l.MaxFiles = cmp.Or(l.MaxFiles, manifest.DefaultMaxFiles)
	l.MaxObjects = cmp.Or(l.MaxObjects, manifest.DefaultMaxObjects)
	return l
}

type fileKey struct {
	path string
	blob plumbing.Hash
}

// fileResult is what manifest.Load made of one file. It is shared between
// loads and never modified.
type fileResult struct {
	objects  []manifest.Object
	problems []manifest.Problem
	// docs counts the documents seen (Sluice objects and skipped ones),
	// for the object limit.
	docs int
	// err is a load error of the file alone (a limit).
	err error
}

type loader struct {
	limits Limits
	opts   []manifest.Option
	// cache holds the files of the last load; only the loop goroutine (or
	// a caller holding Syncer.repoMu) touches it.
	cache map[fileKey]*fileResult
}

func newLoader(limits Limits, v *validation.Validator, namespace string) *loader {
	limits = limits.withDefaults()
	opts := []manifest.Option{
		manifest.WithMaxFileSize(limits.MaxFileSize),
		manifest.WithMaxObjects(limits.MaxObjects),
		manifest.WithNamespace(namespace),
	}
	if v != nil {
		opts = append(opts, manifest.WithValidator(*v))
	}
	return &loader{limits: limits, opts: opts, cache: map[fileKey]*fileResult{}}
}

// loaded is a commit's manifests, merged.
type loaded struct {
	files    []manifestFile
	objects  []manifest.Object
	problems []manifest.Problem
	// real maps an object's file (as walked) to the path of its blob.
	real map[string]string
	// parsed counts files parsed rather than taken from the cache.
	parsed int
}

// load reads the manifests under root. Its error is a *manifest.LimitError
// or a failure to read the tree; problems with the manifests are in the
// result.
func (l *loader) load(r *treeReader, root string) (*loaded, error) {
	files, err := r.manifestFiles(root, l.limits.MaxFiles)
	if err != nil {
		return nil, err
	}
	results := make([]*fileResult, len(files))
	next := make(map[fileKey]*fileResult, len(files))
	var todo []int
	for i, f := range files {
		if f.Problem != "" {
			results[i] = &fileResult{problems: []manifest.Problem{{File: f.Path, Line: 1, Reason: f.Problem}}}
			continue
		}
		k := fileKey{f.Path, f.Blob}
		if fr, ok := l.cache[k]; ok {
			results[i] = fr
			next[k] = fr
			continue
		}
		todo = append(todo, i)
	}
	if err := l.parse(r, files, todo, results); err != nil {
		return nil, err
	}
	for _, i := range todo {
		next[fileKey{files[i].Path, files[i].Blob}] = results[i]
	}
	// Only this commit's files are kept: memory stays bounded by one
	// commit, and the next commit mostly shares them.
	l.cache = next
	out, err := l.merge(files, results)
	if err != nil {
		return nil, err
	}
	out.parsed = len(todo)
	return out, nil
}

// parse loads the files at todo. Blobs are read by one goroutine, since
// go-git's object storage is not safe for concurrent use, and parsed by a
// worker per CPU; the channel bounds how many files are held in memory.
func (l *loader) parse(r *treeReader, files []manifestFile, todo []int, results []*fileResult) error {
	if len(todo) == 0 {
		return nil
	}
	type job struct {
		i    int
		data []byte
	}
	workers := min(runtime.GOMAXPROCS(0), len(todo))
	jobs := make(chan job, 4*workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				results[j.i] = l.parseFile(files[j.i].Path, j.data)
			}
		}()
	}
	var readErr error
	for _, i := range todo {
		data, err := r.read(files[i].Blob, l.limits.MaxFileSize)
		if err != nil {
			readErr = fmt.Errorf("%s: read blob %s: %w", files[i].Path, files[i].Blob, err)
			break
		}
		jobs <- job{i, data}
	}
	close(jobs)
	wg.Wait()
	return readErr
}

func (l *loader) parseFile(name string, data []byte) *fileResult {
	res, err := manifest.Load(singleFile{name: name, data: data}, name, l.opts...)
	if err != nil {
		return &fileResult{err: err}
	}
	return &fileResult{objects: res.Objects, problems: res.Problems, docs: len(res.Objects) + res.Skipped}
}

type objectKey struct{ kind, namespace, name string }

// merge joins the files' results in walk order, adding what only shows
// across files: duplicates and the object limit.
func (l *loader) merge(files []manifestFile, results []*fileResult) (*loaded, error) {
	out := &loaded{files: files, real: make(map[string]string, len(files))}
	seen := make(map[objectKey]manifest.Object)
	docs := 0
	for i, fr := range results {
		if fr.err != nil {
			return nil, fr.err
		}
		docs += fr.docs
		if docs > l.limits.MaxObjects {
			return nil, &manifest.LimitError{Limit: "WithMaxObjects", Max: l.limits.MaxObjects, Path: files[i].Path}
		}
		out.real[files[i].Path] = files[i].Real
		problems := fr.problems
		for _, o := range fr.objects {
			m := o.Meta()
			k := objectKey{o.Kind(), m.GetNamespace(), m.GetName()}
			first, dup := seen[k]
			if !dup {
				seen[k] = o
				out.objects = append(out.objects, o)
				continue
			}
			id := m.GetName()
			if m.GetNamespace() != "" {
				id = m.GetNamespace() + "/" + id
			}
			// Copy before appending: fr is shared with the cache.
			problems = append(slices.Clip(problems), manifest.Problem{
				File: o.File, Line: o.Line, Field: "metadata.name",
				Reason: fmt.Sprintf("Duplicate value: %q: %s %s is already defined at %s:%d",
					m.GetName(), o.Kind(), id, first.File, first.Line),
			})
			out.objects = append(out.objects, o)
		}
		if len(problems) != len(fr.problems) {
			slices.SortStableFunc(problems, func(a, b manifest.Problem) int { return cmp.Compare(a.Line, b.Line) })
		}
		out.problems = append(out.problems, problems...)
	}
	return out, nil
}

// singleFile is an fs.FS holding one file, to hand manifest.Load a blob.
type singleFile struct {
	name string
	data []byte
}

func (s singleFile) Open(name string) (fs.File, error) {
	if name != s.name {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &openFile{s: s}, nil
}

type openFile struct {
	s   singleFile
	off int
}

func (f *openFile) Stat() (fs.FileInfo, error) { return fileInfo{f.s}, nil }
func (f *openFile) Close() error               { return nil }
func (f *openFile) Read(p []byte) (int, error) {
	if f.off >= len(f.s.data) {
		return 0, io.EOF
	}
	n := copy(p, f.s.data[f.off:])
	f.off += n
	return n, nil
}

type fileInfo struct{ s singleFile }

func (i fileInfo) Name() string       { return path.Base(i.s.name) }
func (i fileInfo) Size() int64        { return int64(len(i.s.data)) }
func (i fileInfo) Mode() fs.FileMode  { return 0o444 }
func (i fileInfo) ModTime() time.Time { return time.Time{} }
func (i fileInfo) IsDir() bool        { return false }
func (i fileInfo) Sys() any           { return nil }

// isLimit reports whether err is a manifest limit.
func isLimit(err error) bool { return errors.Is(err, manifest.ErrLimit) }
