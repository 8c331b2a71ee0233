package gitsync

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Write-back edits a Rollout's file as text: the YAML parser finds where
// the revision's fields are, and only those bytes are replaced. Re-encoding
// the node tree would reformat the file (indentation, quoting, line
// folding), and people review these commits. Whatever the edit, the result
// is re-parsed and compared with what was intended before it is committed
// (see verifyEdit), so a shape this file does not handle is an error, never
// a wrong commit.

var errShape = errors.New("written in a form write-back cannot edit safely; edit it by hand")

// yamlText is a file being edited.
type yamlText struct {
	data       []byte
	lineStarts []int // byte offset of each line (line 1 at index 0)
	newline    string
}

func newYAMLText(data []byte) *yamlText {
	t := &yamlText{data: data, lineStarts: []int{0}, newline: "\n"}
	for i, b := range data {
		if b == '\n' {
			t.lineStarts = append(t.lineStarts, i+1)
		}
	}
	if bytes.Contains(data, []byte("\r\n")) {
		t.newline = "\r\n"
	}
	return t
}

func (t *yamlText) lines() int { return len(t.lineStarts) }

// line returns line n (1-based) without its line break.
func (t *yamlText) line(n int) string {
	if n < 1 || n > t.lines() {
		return ""
	}
	end := len(t.data)
	if n < t.lines() {
		end = t.lineStarts[n] - 1
	}
	return strings.TrimSuffix(string(t.data[t.lineStarts[n-1]:end]), "\r")
}

// lineEnd is the offset just past line n's line break.
func (t *yamlText) lineEnd(n int) int {
	if n >= t.lines() {
		return len(t.data)
	}
	return t.lineStarts[n]
}

// offset converts a parser position (1-based line, 1-based column counted
// in characters) to a byte offset.
func (t *yamlText) offset(line, col int) int {
	off := t.lineStarts[line-1]
	for c := 1; c < col && off < len(t.data); c++ {
		_, size := utf8.DecodeRune(t.data[off:])
		off += size
	}
	return off
}

// indentOf returns the leading spaces of a line and whether the line holds
// nothing but them.
func indentOf(s string) (int, bool) {
	trimmed := strings.TrimLeft(s, " ")
	return len(s) - len(trimmed), strings.TrimSpace(trimmed) == ""
}

type edit struct {
	start, end int
	text       string
}

// apply returns data with the edits (which must not overlap) made.
func apply(data []byte, edits []edit) []byte {
	slices.SortFunc(edits, func(a, b edit) int { return a.start - b.start })
	var out bytes.Buffer
	prev := 0
	for _, e := range edits {
		out.Write(data[prev:e.start])
		out.WriteString(e.text)
		prev = e.end
	}
	out.Write(data[prev:])
	return out.Bytes()
}

// yamlDoc is one document of a file, for finding nodes and their extent.
type yamlDoc struct {
	root *yaml.Node // the document's top mapping
	// starts are the lines where nodes start, sorted.
	starts []int
	// end is the last line of the document (before the next marker).
	end int
}

// findRollout finds the document of the Rollout namespace/name (namespace
// as written in the file, "" when absent).
func findRollout(t *yamlText, name, namespace string) (*yamlDoc, error) {
	dec := yaml.NewDecoder(bytes.NewReader(t.data))
	var docs []*yaml.Node
	for {
		var d yaml.Node
		if err := dec.Decode(&d); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("parse: %w", err)
		}
		docs = append(docs, &d)
	}
	for i, d := range docs {
		if len(d.Content) == 0 || d.Content[0].Kind != yaml.MappingNode {
			continue
		}
		root := d.Content[0]
		meta := member(root, "metadata")
		if scalar(member(root, "kind")) != "Rollout" || !strings.HasPrefix(scalar(member(root, "apiVersion")), "sluice.dev/") ||
			meta == nil || scalar(member(meta, "name")) != name || scalar(member(meta, "namespace")) != namespace {
			continue
		}
		doc := &yamlDoc{root: root, end: t.lines()}
		if i+1 < len(docs) {
			// The next document starts at its marker, which is on or
			// before its first node.
			next := docs[i+1].Line
			if len(docs[i+1].Content) > 0 {
				next = min(next, docs[i+1].Content[0].Line)
			}
			doc.end = next - 1
		}
		var walk func(n *yaml.Node)
		walk = func(n *yaml.Node) {
			doc.starts = append(doc.starts, n.Line)
			for _, c := range n.Content {
				walk(c)
			}
		}
		walk(root)
		slices.Sort(doc.starts)
		return doc, nil
	}
	return nil, fmt.Errorf("Rollout %s not found in the file", joinNamespace(namespace, name))
}

func joinNamespace(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

// member returns the value of key in a mapping, nil if absent. Merge keys
// and aliases are not followed: an edit through them would change other
// objects too.
func member(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Kind == yaml.ScalarNode && m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func scalar(n *yaml.Node) string {
	if n == nil || n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}

// path follows keys from the document's root mapping, refusing aliases.
func (d *yamlDoc) path(keys ...string) (*yaml.Node, error) {
	n := d.root
	for i, k := range keys {
		n = member(n, k)
		if n == nil {
			return nil, fmt.Errorf("%s: not found", strings.Join(keys[:i+1], "."))
		}
		if n.Kind == yaml.AliasNode || n.Anchor != "" {
			return nil, fmt.Errorf("%s: uses a YAML anchor or alias: %w", strings.Join(keys[:i+1], "."), errShape)
		}
	}
	return n, nil
}

func maxLine(n *yaml.Node) int {
	l := n.Line
	for _, c := range n.Content {
		l = max(l, maxLine(c))
	}
	return l
}

// scalarSpan returns the bytes of a one-line scalar token.
func (t *yamlText) scalarSpan(n *yaml.Node) (int, int, error) {
	start := t.offset(n.Line, n.Column)
	lineEnd := t.lineEnd(n.Line)
	rest := t.data[start:lineEnd]
	switch n.Style {
	case yaml.DoubleQuotedStyle:
		for i := 1; i < len(rest); i++ {
			switch rest[i] {
			case '\\':
				i++
			case '"':
				return start, start + i + 1, nil
			}
		}
	case yaml.SingleQuotedStyle:
		for i := 1; i < len(rest); i++ {
			if rest[i] == '\'' {
				if i+1 < len(rest) && rest[i+1] == '\'' {
					i++
					continue
				}
				return start, start + i + 1, nil
			}
		}
	case 0:
		if bytes.HasPrefix(rest, []byte(n.Value)) {
			end := start + len(n.Value)
			// The token must end there: a comment, a flow separator or
			// the end of the line may follow, nothing else.
			after := strings.TrimRight(string(t.data[end:lineEnd]), "\r\n")
			next := strings.TrimLeft(after, " \t")
			if next == "" || strings.ContainsAny(next[:1], ",]}") || (next[0] == '#' && next != after) {
				return start, end, nil
			}
		}
	}
	return 0, 0, fmt.Errorf("line %d: value %q: %w", n.Line, n.Value, errShape)
}

// blockEnd returns the last line of block collection n: the last line
// before the next node (or the document's end) that is not blank and not a
// comment, so comments after the block stay where they are. Block scalars
// inside n are measured on their own, since their text may hold lines that
// look like comments.
func (t *yamlText) blockEnd(d *yamlDoc, n *yaml.Node) int {
	last := maxLine(n)
	boundary := d.end + 1
	if i, _ := slices.BinarySearch(d.starts, last+1); i < len(d.starts) {
		boundary = min(boundary, d.starts[i])
	}
	end := last
	for l := boundary - 1; l > last; l-- {
		s := t.line(l)
		if _, blank := indentOf(s); blank || strings.HasPrefix(strings.TrimLeft(s, " "), "#") {
			continue
		}
		end = l
		break
	}
	var scan func(m *yaml.Node)
	scan = func(m *yaml.Node) {
		if m.Kind == yaml.ScalarNode && (m.Style == yaml.LiteralStyle || m.Style == yaml.FoldedStyle) {
			end = max(end, t.blockScalarEnd(m, boundary))
		}
		for _, c := range m.Content {
			scan(c)
		}
	}
	scan(n)
	return end
}

// blockScalarEnd returns the last non-blank line of a literal or folded
// scalar: its content lines are those indented at least as far as its
// first non-blank one.
func (t *yamlText) blockScalarEnd(n *yaml.Node, boundary int) int {
	indent, end := -1, n.Line
	for l := n.Line + 1; l < boundary; l++ {
		ind, blank := indentOf(t.line(l))
		if blank {
			continue
		}
		if indent < 0 {
			indent = ind
		}
		if ind < indent {
			break
		}
		end = l
	}
	return end
}

// blockLines returns the byte range of the whole lines of block collection
// n, checking that n starts its line.
func (t *yamlText) blockLines(d *yamlDoc, n *yaml.Node, what string) (start, end, indent int, err error) {
	if n.Style&yaml.FlowStyle != 0 || (n.Kind != yaml.MappingNode && n.Kind != yaml.SequenceNode) {
		return 0, 0, 0, fmt.Errorf("%s: %w", what, errShape)
	}
	ind, _ := indentOf(t.line(n.Line))
	if ind != n.Column-1 {
		return 0, 0, 0, fmt.Errorf("%s: does not start its line: %w", what, errShape)
	}
	return t.lineStarts[n.Line-1], t.lineEnd(t.blockEnd(d, n)), ind, nil
}

// renderScalar writes s as a YAML scalar, in the given style when it can
// be, so the edited line looks like the one it replaces.
func renderScalar(s string, style yaml.Style) string {
	double := func() string {
		b, _ := json.Marshal(s) // a JSON string is a YAML double-quoted scalar
		return string(b)
	}
	switch {
	case style == yaml.DoubleQuotedStyle || strings.ContainsAny(s, "\n\r\t"):
		return double()
	case style == yaml.SingleQuotedStyle:
		return "'" + strings.ReplaceAll(s, "'", "''") + "'"
	}
	out, err := yaml.Marshal(s)
	if err != nil {
		return double()
	}
	text := strings.TrimSuffix(string(out), "\n")
	if strings.Contains(text, "\n") {
		return double()
	}
	// yaml.Marshal quotes strings that would otherwise read as numbers,
	// booleans or null (a version "1.10"): keep its choice.
	return text
}

// editBackend sets spec.backend to b: version, endpoints and labels.
func editBackend(data []byte, name, namespace string, b *v1alpha1.Backend) ([]byte, error) {
	t := newYAMLText(data)
	d, err := findRollout(t, name, namespace)
	if err != nil {
		return nil, err
	}
	bn, err := d.path("spec", "backend")
	if err != nil {
		return nil, err
	}
	vn, err := d.path("spec", "backend", "version")
	if err != nil {
		return nil, err
	}
	var edits []edit
	if vn.Value != b.Version {
		if vn.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("spec.backend.version: %w", errShape)
		}
		s, e, err := t.scalarSpan(vn)
		if err != nil {
			return nil, err
		}
		edits = append(edits, edit{s, e, renderScalar(b.Version, vn.Style)})
	}
	en, err := d.path("spec", "backend", "endpoints")
	if err != nil {
		return nil, err
	}
	ee, err := t.editList(d, en, b.Endpoints, "spec.backend.endpoints")
	if err != nil {
		return nil, err
	}
	le, err := t.editLabels(d, bn, b.Labels)
	if err != nil {
		return nil, err
	}
	return apply(data, slices.Concat(edits, ee, le)), nil
}

// editLabels makes spec.backend.labels hold labels (none: no key), adding
// or removing the key as needed.
func (t *yamlText) editLabels(d *yamlDoc, backend *yaml.Node, labels map[string]string) ([]edit, error) {
	const what = "spec.backend.labels"
	var key, val *yaml.Node
	for i := 0; i+1 < len(backend.Content); i += 2 {
		if backend.Content[i].Value == "labels" {
			key, val = backend.Content[i], backend.Content[i+1]
		}
	}
	current := map[string]string{}
	if val != nil {
		if val.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(val.Content); i += 2 {
				current[val.Content[i].Value] = val.Content[i+1].Value
			}
		} else if val.ShortTag() != "!!null" {
			return nil, fmt.Errorf("%s: %w", what, errShape)
		}
	}
	if maps.Equal(current, labels) {
		return nil, nil
	}
	if val != nil && (val.Anchor != "" || val.Kind == yaml.AliasNode) {
		return nil, fmt.Errorf("%s: uses a YAML anchor or alias: %w", what, errShape)
	}
	keys := slices.Sorted(maps.Keys(labels))
	if val != nil && val.Kind == yaml.MappingNode && val.Style&yaml.FlowStyle != 0 {
		s := t.offset(val.Line, val.Column)
		e, err := t.flowEnd(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = renderScalar(k, 0) + ": " + renderScalar(labels[k], 0)
		}
		return []edit{{s, e, "{" + strings.Join(parts, ", ") + "}"}}, nil
	}
	if backend.Style&yaml.FlowStyle != 0 {
		return nil, fmt.Errorf("%s: %w", what, errShape)
	}
	indent := backend.Column - 1
	var b strings.Builder
	if len(keys) > 0 {
		b.WriteString(strings.Repeat(" ", indent) + "labels:" + t.newline)
	}
	for _, k := range keys {
		b.WriteString(strings.Repeat(" ", indent+2) + renderScalar(k, 0) + ": " + renderScalar(labels[k], 0) + t.newline)
	}
	if key == nil {
		// Add the key after the backend's last line.
		at := t.lineEnd(t.blockEnd(d, backend))
		text := b.String()
		if at == len(t.data) && len(t.data) > 0 && t.data[at-1] != '\n' {
			text = t.newline + text
		}
		return []edit{{at, at, text}}, nil
	}
	// Replace the key's lines, whether its value is a block or nothing.
	if ind, _ := indentOf(t.line(key.Line)); ind != key.Column-1 {
		return nil, fmt.Errorf("%s: %w", what, errShape)
	}
	end := key.Line
	if val != nil && val.Kind == yaml.MappingNode {
		end = t.blockEnd(d, val)
	}
	return []edit{{t.lineStarts[key.Line-1], t.lineEnd(end), b.String()}}, nil
}

// editList makes sequence n hold items. A list of the same length is
// edited item by item, which keeps comments between items; otherwise the
// list is rewritten in its style.
func (t *yamlText) editList(d *yamlDoc, n *yaml.Node, items []string, what string) ([]edit, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s: not a list: %w", what, errShape)
	}
	same := len(n.Content) == len(items)
	for i := 0; same && i < len(items); i++ {
		same = n.Content[i].Kind == yaml.ScalarNode
	}
	if same {
		var edits []edit
		for i, item := range n.Content {
			if item.Value == items[i] {
				continue
			}
			s, e, err := t.scalarSpan(item)
			if err != nil {
				return nil, err
			}
			edits = append(edits, edit{s, e, renderScalar(items[i], item.Style)})
		}
		return edits, nil
	}
	style := yaml.Style(0)
	if len(n.Content) > 0 {
		style = n.Content[0].Style
	}
	if n.Style&yaml.FlowStyle != 0 {
		s := t.offset(n.Line, n.Column)
		e, err := t.flowEnd(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		parts := make([]string, len(items))
		for i, it := range items {
			parts[i] = renderScalar(it, style)
		}
		return []edit{{s, e, "[" + strings.Join(parts, ", ") + "]"}}, nil
	}
	start, end, indent, err := t.blockLines(d, n, what)
	if err != nil {
		return nil, err
	}
	// Keep the spacing after the dash, as in "-   item".
	gap := 1
	if len(n.Content) > 0 && n.Content[0].Line == n.Line {
		gap = n.Content[0].Column - n.Column - 1
	}
	var b strings.Builder
	for _, it := range items {
		b.WriteString(strings.Repeat(" ", indent) + "-" + strings.Repeat(" ", max(gap, 1)) + renderScalar(it, style) + t.newline)
	}
	return []edit{{start, end, b.String()}}, nil
}

// flowEnd returns the offset past the bracket that closes the flow
// collection opening at start.
func (t *yamlText) flowEnd(start int) (int, error) {
	depth := 0
	var quote byte
	for i := start; i < len(t.data); i++ {
		c := t.data[i]
		switch {
		case quote == '"' && c == '\\':
			i++
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '[' || c == '{':
			depth++
		case c == ']' || c == '}':
			if depth--; depth == 0 {
				return i + 1, nil
			}
		case c == '#' && i > start && (t.data[i-1] == ' ' || t.data[i-1] == '\t'):
			return 0, errShape
		}
	}
	return 0, errShape
}

// editTemplate replaces spec.template in data with spec.template as
// written in old (the file at an earlier commit), re-indented to its place.
func editTemplate(data, old []byte, name, namespace string) ([]byte, error) {
	t, o := newYAMLText(data), newYAMLText(old)
	d, err := findRollout(t, name, namespace)
	if err != nil {
		return nil, err
	}
	od, err := findRollout(o, name, namespace)
	if err != nil {
		return nil, fmt.Errorf("earlier version: %w", err)
	}
	cur, err := d.path("spec", "template")
	if err != nil {
		return nil, err
	}
	prev, err := od.path("spec", "template")
	if err != nil {
		return nil, fmt.Errorf("earlier version: %w", err)
	}
	start, end, indent, err := t.blockLines(d, cur, "spec.template")
	if err != nil {
		return nil, err
	}
	ps, pe, pindent, err := o.blockLines(od, prev, "spec.template (earlier version)")
	if err != nil {
		return nil, err
	}
	text, err := reindent(string(old[ps:pe]), pindent, indent, t.newline)
	if err != nil {
		return nil, err
	}
	return apply(data, []edit{{start, end, text}}), nil
}

// reindent moves a block from one indentation to another. Lines indented
// less than the block (comments only, in valid YAML) stay as they are.
func reindent(block string, from, to int, newline string) (string, error) {
	var b strings.Builder
	lines := strings.SplitAfter(block, "\n")
	for _, l := range lines {
		if l == "" {
			continue
		}
		body := strings.TrimRight(l, "\r\n")
		ind, blank := indentOf(body)
		switch {
		case blank:
			b.WriteString(newline)
			continue
		case ind < from:
			if !strings.HasPrefix(strings.TrimLeft(body, " "), "#") {
				return "", fmt.Errorf("spec.template (earlier version): %w", errShape)
			}
			b.WriteString(body)
		default:
			b.WriteString(strings.Repeat(" ", ind-from+to) + body[ind:])
		}
		b.WriteString(newline)
	}
	return b.String(), nil
}
