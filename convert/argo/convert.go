// Package argo converts Argo Rollouts manifests into Sluice's.
//
// Convert reads every document of the files it is given as YAML nodes
// (go.yaml.in/yaml/v3), so comments travel with the fields they
// describe, and never imports Argo Rollouts' Go types. It converts
//
//   - argoproj.io/v1alpha1 Rollout (canary with Istio or no traffic
//     routing, blueGreen) into sluice.dev/v1alpha1 Rollout;
//   - AnalysisTemplate and ClusterAnalysisTemplate with Prometheus metrics
//     into sluice.dev/v1alpha1 AnalysisTemplate, translating conditions
//     from Argo's expr language into CEL (TranslateCondition);
//   - the DestinationRules and VirtualServices those Rollouts name, where
//     Sluice needs a change (subset names);
//
// and leaves every other document of those files as it was written. For
// each field it cannot carry over exactly it reports a Finding at the
// field's line: a Note (not needed in Sluice, or renamed), Approximated
// (converted, with a difference it states) or Unsupported (no equivalent;
// left out). docs/migrating-from-argo-rollouts.md is the user's guide.
//
// All files are converted as one set, because one document explains
// another: a Rollout's Service gives the port, its VirtualService the
// hosts, and the Rollouts that bind a template's argument to the
// pod-template hash decide how the template is rewritten.
package argo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// File is one input file.
type File struct {
	// Path names the file in findings.
	Path string
	// Rel is the file's path in an output directory (slash-separated,
	// relative); see ReadPaths.
	Rel  string
	Data []byte
}

// Level says how far a field was carried over.
type Level int

const (
	// Note: converted exactly, renamed, or not needed in Sluice (Sluice
	// does that job another way).
	Note Level = iota
	// Approximated: converted to the nearest Sluice equivalent; the
	// finding says what differs.
	Approximated
	// Unsupported: no equivalent; left out of the output.
	Unsupported
)

func (l Level) String() string {
	switch l {
	case Note:
		return "note"
	case Approximated:
		return "approximated"
	}
	return "no equivalent"
}

// MarshalText writes the level as String does.
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// Finding is one field that was not carried over exactly.
type Finding struct {
	File string `json:"file"`
	// Line is 1-based, in the input file.
	Line int `json:"line"`
	// Object is the Argo object, as "Kind name".
	Object string `json:"object,omitempty"`
	// Field is the field's path in the Argo object, e.g.
	// spec.strategy.canary.steps[2].experiment; empty for the whole
	// document.
	Field   string `json:"field,omitempty"`
	Level   Level  `json:"level"`
	Message string `json:"message"`
}

// String formats the finding as file:line: field: level: message.
func (f Finding) String() string {
	if f.Field == "" {
		return fmt.Sprintf("%s:%d: %s: %s", f.File, f.Line, f.Level, f.Message)
	}
	return fmt.Sprintf("%s:%d: %s: %s: %s", f.File, f.Line, f.Field, f.Level, f.Message)
}

// Object summarises the conversion of one Argo Rollouts object.
type Object struct {
	File string `json:"file"`
	Line int    `json:"line"`
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Written is false when nothing of the object could be written.
	Written bool `json:"written"`
	// Worst is the most severe level among the object's findings; Note
	// when it has none.
	Worst Level `json:"worst"`
}

// Outcome says how an object fared: "clean", "approximated", "partial"
// (written without what has no equivalent) or "not converted".
func (o Object) Outcome() string {
	switch {
	case !o.Written:
		return "not converted"
	case o.Worst == Unsupported:
		return "partial"
	case o.Worst == Approximated:
		return "approximated"
	}
	return "clean"
}

// Output is a converted file.
type Output struct {
	// Path and Rel are the input file's.
	Path, Rel string
	Data      []byte
}

// Result is what Convert produced.
type Result struct {
	// Files are the files that held Argo Rollouts objects, or documents
	// Sluice needs changed, in input order, converted. Other files are
	// not listed: they stay as they are. Neither is a file of which
	// nothing could be converted.
	Files    []Output
	Objects  []Object
	Findings []Finding
}

// Complete reports whether everything converted: no finding says
// Unsupported.
func (r *Result) Complete() bool {
	return !slices.ContainsFunc(r.Findings, func(f Finding) bool { return f.Level == Unsupported })
}

// The Argo Rollouts API group and the kinds Convert converts.
const (
	argoAPIVersion      = "argoproj.io/v1alpha1"
	sluiceAPIVersion    = "sluice.dev/v1alpha1"
	kindRollout         = "Rollout"
	kindTemplate        = "AnalysisTemplate"
	kindClusterTemplate = "ClusterAnalysisTemplate"
)

// Convert converts files as one set (see the package documentation). It
// never fails: what cannot be read or converted is a Finding.
func Convert(files []File) *Result {
	c := &converter{res: &Result{}}
	for _, f := range files {
		c.read(f)
	}
	c.idx = buildIndex(c.files)
	// Templates first: a Rollout's reference says whether its template
	// converted.
	for _, f := range c.files {
		c.convertDocuments(f, true)
	}
	for _, f := range c.files {
		c.convertDocuments(f, false)
	}
	// Findings in file order, then by line, as a reader goes through them.
	order := map[string]int{}
	for i, f := range c.files {
		order[f.path] = i
	}
	slices.SortStableFunc(c.res.Findings, func(a, b Finding) int {
		if d := order[a.File] - order[b.File]; d != 0 {
			return d
		}
		return a.Line - b.Line
	})
	for _, f := range c.files {
		if !f.unreadable && f.changed() {
			c.res.Files = append(c.res.Files, Output{Path: f.path, Rel: f.rel, Data: render(f)})
		}
	}
	return c.res
}

type converter struct {
	res   *Result
	files []*file
	idx   *index
}

// file is an input file split into documents.
type file struct {
	path, rel string
	docs      []*document
	// unreadable is set when a document is not YAML; such a file is
	// reported and not written.
	unreadable bool
}

// document is one YAML document of a file: its text as written, and its
// tree when it parsed into a mapping.
type document struct {
	file  string
	text  string
	first int // line of the document's first line in the file, 0-based
	node  *yaml.Node
	root  *yaml.Node // the mapping, nil if the document is not one

	apiVersion, kind, name, namespace string
	// out replaces the document in the output: a converted object, or a
	// changed Istio object. nil: written as read. dropped: not written.
	out     *yaml.Node
	dropped bool
}

func (d *document) isArgo(kinds ...string) bool {
	return d.apiVersion == argoAPIVersion && (len(kinds) == 0 || slices.Contains(kinds, d.kind))
}

// line converts a line of the document's tree into a line of the file.
func (d *document) line(n *yaml.Node) int {
	if n == nil || n.Line == 0 {
		return d.first + 1
	}
	return d.first + n.Line
}

func (c *converter) read(f File) {
	fl := &file{path: f.Path, rel: f.Rel}
	c.files = append(c.files, fl)
	unreadable := func(line int, err error) {
		fl.unreadable = true
		if bytes.Contains(f.Data, []byte(argoAPIVersion)) {
			c.res.Findings = append(c.res.Findings, Finding{File: f.Path, Line: min(max(line, 1), bytes.Count(f.Data, []byte("\n"))+1), Level: Unsupported,
				Message: fmt.Sprintf("not YAML, so not converted (a Helm or other template? render it first, e.g. with helm template): %s", oneLine(err.Error()))})
		}
	}
	// The file as one stream first: a document may parse alone and not
	// in its file, and the file is what is written back.
	if err := parseStream(f.Data); err != nil {
		unreadable(errorLine(err), err)
		return
	}
	for _, ch := range splitDocuments(string(f.Data)) {
		d := &document{file: f.Path, text: ch.text, first: ch.first}
		fl.docs = append(fl.docs, d)
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(ch.text), &n); err != nil {
			unreadable(ch.first+errorLine(err), err)
			return
		}
		d.node = &n
		if len(n.Content) == 1 && n.Content[0].Kind == yaml.MappingNode {
			d.root = n.Content[0]
			d.apiVersion = scalar(d.root, "apiVersion")
			d.kind = scalar(d.root, "kind")
			_, meta := get(d.root, "metadata")
			d.name = scalar(meta, "name")
			d.namespace = scalar(meta, "namespace")
		}
	}
}

func parseStream(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		switch err := dec.Decode(&n); {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return err
		}
	}
}

// errorLine finds "line N" in a yaml error.
func errorLine(err error) int {
	var n int
	if i := strings.Index(err.Error(), "line "); i >= 0 {
		_, _ = fmt.Sscanf(err.Error()[i:], "line %d", &n)
	}
	return max(n, 1)
}

type chunk struct {
	text  string
	first int
}

// splitDocuments splits a YAML stream at its document markers. A line
// that starts with "---" followed by a blank or nothing always starts a
// document in YAML, even inside a block scalar, so this is exact; the
// marker line itself is not part of either document.
func splitDocuments(s string) []chunk {
	var out []chunk
	lines := strings.SplitAfter(s, "\n")
	start, first := 0, 0
	var b strings.Builder
	for i, l := range lines {
		t := strings.TrimRight(l, "\r\n")
		if t == "---" || strings.HasPrefix(t, "--- ") || strings.HasPrefix(t, "---\t") {
			if i > start {
				out = append(out, chunk{text: b.String(), first: first})
			}
			b.Reset()
			start, first = i+1, i+1
			continue
		}
		b.WriteString(l)
	}
	if b.Len() > 0 {
		out = append(out, chunk{text: b.String(), first: first})
	}
	return out
}

// convertDocuments converts the file's Argo templates, or its other Argo
// objects.
func (c *converter) convertDocuments(f *file, templates bool) {
	if f.unreadable {
		return
	}
	for _, d := range f.docs {
		if d.root != nil && d.isArgo() && d.isArgo(kindTemplate, kindClusterTemplate) == templates {
			c.convertDocument(d)
		}
	}
}

// changed reports whether the file holds anything converted or changed,
// and anything is left to write.
func (f *file) changed() bool {
	return slices.ContainsFunc(f.docs, func(d *document) bool { return d.isArgo() || d.out != nil || d.dropped }) &&
		slices.ContainsFunc(f.docs, func(d *document) bool { return !d.dropped && d.node != nil && len(d.node.Content) > 0 })
}

func (c *converter) convertDocument(d *document) {
	obj := &objectCtx{c: c, d: d, summary: Object{File: d.file, Line: d.line(d.root), Kind: d.kind, Name: d.name}}
	switch d.kind {
	case kindRollout:
		d.out = obj.rollout()
	case kindTemplate, kindClusterTemplate:
		d.out = obj.template()
	case "Experiment":
		obj.report(d.root, "", Unsupported, "an Experiment on its own has no equivalent: a Rollout's experiment step becomes setRevision steps (extra revisions), which a standalone Experiment cannot")
	case "AnalysisRun":
		obj.report(d.root, "", Note, "not needed: Sluice creates its AnalysisRuns itself")
	default:
		obj.report(d.root, "kind", Unsupported, fmt.Sprintf("%s has no equivalent", d.kind))
	}
	if d.out == nil {
		d.dropped = true
	}
	obj.summary.Written = d.out != nil
	c.res.Objects = append(c.res.Objects, obj.summary)
}

// render writes the file back: converted documents encoded from their
// trees, the others exactly as they were read.
func render(f *file) []byte {
	var parts []string
	for _, d := range f.docs {
		switch {
		case d.dropped:
			continue
		case d.out != nil:
			parts = append(parts, encode(d.out))
		default:
			parts = append(parts, d.text)
		}
	}
	var b bytes.Buffer
	for i, p := range parts {
		if i > 0 {
			b.WriteString("---\n")
		}
		b.WriteString(p)
		if p != "" && !strings.HasSuffix(p, "\n") {
			b.WriteString("\n")
		}
	}
	return b.Bytes()
}

func encode(n *yaml.Node) (out string) {
	defer func() {
		// The trees are built here from parsed nodes and scalars; a
		// failure to encode one is a bug, and the document says so.
		if r := recover(); r != nil {
			out = fmt.Sprintf("# sluice convert: this document could not be written: %v\n", r)
		}
	}()
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return fmt.Sprintf("# sluice convert: this document could not be written: %v\n", err)
	}
	_ = enc.Close()
	return b.String()
}
