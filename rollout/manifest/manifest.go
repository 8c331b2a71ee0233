// Package manifest loads Sluice objects from a tree of YAML and JSON files,
// the way they sit in a Git repository, and reports every problem with the
// file and line it is on.
//
// Every .yaml, .yml and .json file under the root is read, hidden files and
// folders (names starting with a dot) excepted. A file may hold many YAML
// documents. Documents of the sluice.dev/v1alpha1 kinds Rollout and
// AnalysisTemplate are decoded strictly (unknown and duplicate fields are
// errors), given the defaults of their CustomResourceDefinition as the API
// server would (so that an object from Git equals the one the cluster
// stores, and hashes the same), and validated with rollout/validation;
// other Kubernetes objects and plain YAML are counted as skipped, so Sluice
// manifests can live beside the rest of an application's configuration.
//
// Loading works on any fs.FS, so the same code serves `sluice validate` on
// a directory and gitsync on a checked-out commit.
package manifest

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/analysis/condition"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rollout/validation"
)

// Kinds this package decodes.
const (
	KindRollout          = "Rollout"
	KindAnalysisTemplate = "AnalysisTemplate"
	// KindGitSource is read by the API server only: the loader counts it
	// as skipped, like any Kubernetes object that is not Sluice's to apply.
	KindGitSource = "GitSource"
)

// Problem is one thing wrong with the manifests, at a file and line.
type Problem struct {
	// File is the path of the file: relative to the fs.FS for Load, as the
	// caller wrote it for LoadDir.
	File string `json:"file"`
	// Line is 1-based; problems with a whole file are on line 1.
	Line int `json:"line"`
	// Field is the path of the offending field, e.g.
	// spec.strategy.canary.steps[3].setWeight; empty for problems that are
	// not about one field, such as a YAML syntax error.
	Field string `json:"field,omitempty"`
	// Reason says what is wrong, e.g. "Invalid value: 101: must be between
	// 0 and 100".
	Reason string `json:"reason"`
}

// String formats the problem as file:line: field: reason, the form editors
// and CI annotations understand.
func (p Problem) String() string {
	if p.Field == "" {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Reason)
	}
	return fmt.Sprintf("%s:%d: %s: %s", p.File, p.Line, p.Field, p.Reason)
}

// Object is a decoded object and where it came from. Exactly one of
// Rollout, AnalysisTemplate and Istio is set.
type Object struct {
	// File and Line locate the document, for Git provenance and messages.
	File string
	Line int

	Rollout          *v1alpha1.Rollout
	AnalysisTemplate *v1alpha1.AnalysisTemplate
	// Istio is a VirtualService or DestinationRule (see IstioObject).
	Istio *IstioObject
}

// Kind is KindRollout, KindAnalysisTemplate, KindVirtualService or
// KindDestinationRule.
func (o Object) Kind() string {
	switch {
	case o.Rollout != nil:
		return KindRollout
	case o.Istio != nil:
		return o.Istio.Kind
	}
	return KindAnalysisTemplate
}

// Meta returns the object itself, through its metadata.
func (o Object) Meta() metav1.Object {
	switch {
	case o.Rollout != nil:
		return o.Rollout
	case o.Istio != nil:
		return o.Istio
	}
	return o.AnalysisTemplate
}

// Result is what a load found.
type Result struct {
	// Objects are the Sluice objects that decoded, in file and document
	// order. Objects with validation problems are included; a caller
	// applying manifests must check Problems first, since any problem
	// makes the whole set invalid.
	Objects []Object
	// Problems are sorted by file (in walk order) and line.
	Problems []Problem
	// Warnings are valid settings that some data planes do not honour
	// (validation.RolloutWarnings), sorted like Problems. They never make
	// the set invalid.
	Warnings []Problem
	// Files is the number of manifest files read.
	Files int
	// Skipped is the number of documents that are neither Sluice objects
	// nor the Istio objects this package reads.
	Skipped int
}

// Err returns nil when there are no problems, else a *ProblemsError.
func (r *Result) Err() error {
	if len(r.Problems) == 0 {
		return nil
	}
	return &ProblemsError{Problems: r.Problems}
}

// Count returns the number of objects of a kind.
func (r *Result) Count(kind string) int {
	n := 0
	for _, o := range r.Objects {
		if o.Kind() == kind {
			n++
		}
	}
	return n
}

// Rollouts returns the decoded Rollouts.
func (r *Result) Rollouts() []*v1alpha1.Rollout {
	var out []*v1alpha1.Rollout
	for _, o := range r.Objects {
		if o.Rollout != nil {
			out = append(out, o.Rollout)
		}
	}
	return out
}

// AnalysisTemplates returns the decoded AnalysisTemplates.
func (r *Result) AnalysisTemplates() []*v1alpha1.AnalysisTemplate {
	var out []*v1alpha1.AnalysisTemplate
	for _, o := range r.Objects {
		if o.AnalysisTemplate != nil {
			out = append(out, o.AnalysisTemplate)
		}
	}
	return out
}

// ProblemsError carries the problems of a load as one error.
type ProblemsError struct {
	Problems []Problem
}

func (e *ProblemsError) Error() string {
	const shown = 10
	var b strings.Builder
	fmt.Fprintf(&b, "%d problem(s) in manifests", len(e.Problems))
	for i, p := range e.Problems {
		if i == shown {
			fmt.Fprintf(&b, "\n(%d more)", len(e.Problems)-shown)
			break
		}
		b.WriteString("\n")
		b.WriteString(p.String())
	}
	return b.String()
}

// Defaults for the limits; see the With... options.
const (
	DefaultMaxFileSize = 4 << 20
	DefaultMaxFiles    = 10_000
	DefaultMaxObjects  = 10_000
)

// ErrLimit is matched (errors.Is) by every *LimitError.
var ErrLimit = errors.New("manifest limit exceeded")

// LimitError says a load stopped because it hit a limit; the manifests are
// too many to judge, so there is no partial result.
type LimitError struct {
	// Limit is the option's name, e.g. "WithMaxFiles".
	Limit string
	Max   int
	// Path is where the limit was hit.
	Path string
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s: more than %d %s; raise the limit with %s if this is intended",
		e.Path, e.Max, strings.ToLower(strings.TrimPrefix(e.Limit, "WithMax")), e.Limit)
}

// Is makes errors.Is(err, ErrLimit) true.
func (e *LimitError) Is(target error) bool { return target == ErrLimit }

// Option changes how manifests are loaded.
type Option func(*options)

type options struct {
	maxFileSize      int64
	maxFiles         int
	maxObjects       int
	validator        validation.Validator
	namespace        string
	requireTemplates bool
	checkGitSources  bool
	checkQueries     bool
}

// WithMaxFileSize sets the largest file read, in bytes; larger files are
// reported as problems and not read. Default DefaultMaxFileSize.
func WithMaxFileSize(n int64) Option { return func(o *options) { o.maxFileSize = n } }

// WithMaxFiles bounds the number of manifest files; past it Load fails with
// a *LimitError. Default DefaultMaxFiles.
func WithMaxFiles(n int) Option { return func(o *options) { o.maxFiles = n } }

// WithMaxObjects bounds the number of YAML documents of any kind; past it
// Load fails with a *LimitError. Default DefaultMaxObjects.
func WithMaxObjects(n int) Option { return func(o *options) { o.maxObjects = n } }

// WithValidator replaces the validator. The default, DefaultValidator,
// checks analysis conditions with the CEL environment analysis runs use.
func WithValidator(v validation.Validator) Option { return func(o *options) { o.validator = v } }

// WithNamespace confines every object to namespace ns: an object whose
// metadata.namespace names another one is a problem at that field, so a
// tenant's repository (a GitSource in controller mode) cannot reach into
// other namespaces. Objects that name no namespace stay as they are (the
// consumer puts them in ns). Default: any namespace.
func WithNamespace(ns string) Option { return func(o *options) { o.namespace = ns } }

// RequireTemplates makes an AnalysisTemplate that a Rollout names but no
// file of the load defines (in the Rollout's namespace) a problem at the
// field that names it. For a set of files that is the whole truth, such as
// `sluice validate` or standalone mode; in a cluster templates may come
// from elsewhere.
func RequireTemplates() Option { return func(o *options) { o.requireTemplates = true } }

// CheckGitSources decodes GitSource objects strictly (an unknown or
// misspelt field is a problem) although they are not applied from Git.
func CheckGitSources() Option { return func(o *options) { o.checkGitSources = true } }

// DefaultValidator is the validator Load uses unless WithValidator says
// otherwise: rollout/validation plus the CEL condition check of
// analysis/condition, so that `sluice validate` and gitsync reject a
// condition that does not compile before it reaches a rollout. (The
// validation package cannot import the condition package itself without
// making every user of it depend on cel-go.)
func DefaultValidator() validation.Validator {
	return validation.Validator{ConditionChecker: condition.Check}
}

func newOptions(opts []Option) options {
	o := options{maxFileSize: DefaultMaxFileSize, maxFiles: DefaultMaxFiles, maxObjects: DefaultMaxObjects, validator: DefaultValidator()}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Load reads the manifests under root in fsys (root may also name a single
// file, which is read whatever its extension). Problem and Object paths are
// fsys paths. The error is non-nil only when loading could not be done:
// root unreadable, a limit hit, or the CustomResourceDefinitions built into
// the binary unusable; problems with the manifests themselves are in the
// Result.
func Load(fsys fs.FS, root string, opts ...Option) (*Result, error) {
	l, err := newLoader(newOptions(opts))
	if err != nil {
		return nil, err
	}
	if err := l.load(fsys, root, func(p string) string { return p }); err != nil {
		return nil, err
	}
	return l.result(), nil
}

// LoadDir reads the manifests under dir, a directory or a single file, on
// the local file system. Paths in the result start with dir as given.
func LoadDir(dir string, opts ...Option) (*Result, error) {
	return LoadDirs([]string{dir}, opts...)
}

// LoadDirs reads the manifests under each path as one set: limits apply to
// the total and duplicate objects are found across all of them.
//
// Reads are confined to each path with os.Root, so a symbolic link in a
// repository cannot make Sluice read files outside it.
func LoadDirs(paths []string, opts ...Option) (*Result, error) {
	l, err := newLoader(newOptions(opts))
	if err != nil {
		return nil, err
	}
	for _, p := range paths {
		if err := l.loadDir(p); err != nil {
			return nil, err
		}
	}
	return l.result(), nil
}

func (l *loader) loadDir(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	dir, root := path, "."
	if !info.IsDir() {
		dir, root = filepath.Dir(path), filepath.Base(path)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	defer r.Close()
	display := func(p string) string {
		if !info.IsDir() {
			return path
		}
		return filepath.Join(path, filepath.FromSlash(p))
	}
	return l.load(r.FS(), root, display)
}

func (l *loader) result() *Result {
	if l.o.requireTemplates {
		l.checkTemplateRefs()
	}
	if l.o.checkQueries {
		l.checkQueries()
	}
	// Files keep walk order; within a file, problems go by line.
	order := map[string]int{}
	for _, p := range l.problems {
		if _, ok := order[p.File]; !ok {
			order[p.File] = len(order)
		}
	}
	for _, w := range l.warnings {
		if _, ok := order[w.File]; !ok {
			order[w.File] = len(order)
		}
	}
	byPlace := func(a, b Problem) int {
		return cmp.Or(cmp.Compare(order[a.File], order[b.File]), cmp.Compare(a.Line, b.Line))
	}
	slices.SortStableFunc(l.problems, byPlace)
	slices.SortStableFunc(l.warnings, byPlace)
	return &Result{Objects: l.objects, Problems: l.problems, Warnings: l.warnings, Files: l.files, Skipped: l.skipped}
}
