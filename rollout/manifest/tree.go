package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// Bounds on one document. Aliases let a few bytes of YAML expand into
// billions of values, and deep nesting would exhaust the stack; a real
// manifest is far below both.
const (
	maxDocumentValues = 200_000
	maxLoadValues     = 10_000_000
	maxDocumentDepth  = 200
)

type valueKind int

const (
	kindNull valueKind = iota
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

func (k valueKind) String() string {
	return [...]string{"null", "boolean", "number", "string", "list", "object"}[k]
}

// value is a JSON value that remembers where in the YAML it came from, so
// every later problem, found by path, can be given a line.
type value struct {
	kind    valueKind
	line    int
	scalar  string // number literal, string, or "true"/"false"
	items   []*value
	members []member
}

type member struct {
	key     string
	keyLine int
	val     *value
}

func (v *value) member(key string) *member {
	for i := range v.members {
		if v.members[i].key == key {
			return &v.members[i]
		}
	}
	return nil
}

// treeError is a problem found while turning YAML into JSON; path and line
// say where.
type treeError struct {
	path   string
	line   int
	reason string
}

func (e *treeError) Error() string { return fmt.Sprintf("line %d: %s: %s", e.line, e.path, e.reason) }

type converter struct {
	values, limit int
}

// toValue converts a YAML node to a JSON value tree of at most limit
// values, and returns the number of values it made. YAML features without a
// JSON equivalent are rejected rather than guessed at.
func toValue(n *yaml.Node, limit int) (*value, int, error) {
	c := &converter{limit: limit}
	v, err := c.convert(n, "", 0)
	return v, c.values, err
}

func (c *converter) convert(n *yaml.Node, path string, depth int) (*value, error) {
	c.values++
	if c.values > c.limit {
		msg := fmt.Sprintf("document has more than %d values (aliases expanding too far?)", c.limit)
		if c.limit < maxDocumentValues {
			msg = fmt.Sprintf("the manifests have more than %d values in all (aliases expanding too far?)", maxLoadValues)
		}
		return nil, &treeError{path, n.Line, msg}
	}
	if depth > maxDocumentDepth {
		return nil, &treeError{path, n.Line, fmt.Sprintf("document is nested more than %d levels deep", maxDocumentDepth)}
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return &value{kind: kindNull, line: n.Line}, nil
		}
		return c.convert(n.Content[0], path, depth+1)
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil, &treeError{path, n.Line, "alias to an unknown anchor"}
		}
		return c.convert(n.Alias, path, depth+1)
	case yaml.ScalarNode:
		return scalarValue(n, path)
	case yaml.SequenceNode:
		v := &value{kind: kindArray, line: n.Line}
		for i, item := range n.Content {
			iv, err := c.convert(item, fmt.Sprintf("%s[%d]", path, i), depth+1)
			if err != nil {
				return nil, err
			}
			v.items = append(v.items, iv)
		}
		return v, nil
	case yaml.MappingNode:
		return c.mapping(n, path, depth)
	}
	return nil, &treeError{path, n.Line, "unsupported YAML node"}
}

func (c *converter) mapping(n *yaml.Node, path string, depth int) (*value, error) {
	v := &value{kind: kindObject, line: n.Line}
	var merges []*yaml.Node
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key, err := keyString(k, path)
		if err != nil {
			return nil, err
		}
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, val)
			continue
		}
		child := joinPath(path, key)
		if first, dup := seen[key]; dup {
			return nil, &treeError{child, k.Line, fmt.Sprintf("duplicate key %q (first at line %d)", key, first)}
		}
		seen[key] = k.Line
		cv, err := c.convert(val, child, depth+1)
		if err != nil {
			return nil, err
		}
		v.members = append(v.members, member{key: key, keyLine: k.Line, val: cv})
	}
	// Merge keys (<<) add the keys of other mappings that are not set here;
	// with a list, earlier mappings win.
	for _, m := range merges {
		sources := []*yaml.Node{m}
		if resolveAlias(m).Kind == yaml.SequenceNode {
			sources = resolveAlias(m).Content
		}
		for _, s := range sources {
			mv, err := c.convert(s, path, depth+1)
			if err != nil {
				return nil, err
			}
			if mv.kind != kindObject {
				return nil, &treeError{path, s.Line, "a merge key (<<) must refer to a mapping or a list of mappings"}
			}
			for _, mm := range mv.members {
				if _, ok := seen[mm.key]; !ok {
					seen[mm.key] = mm.keyLine
					v.members = append(v.members, mm)
				}
			}
		}
	}
	return v, nil
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func keyString(k *yaml.Node, path string) (string, error) {
	r := resolveAlias(k)
	if r.Kind != yaml.ScalarNode {
		return "", &treeError{path, k.Line, "mapping keys must be strings"}
	}
	return r.Value, nil
}

func scalarValue(n *yaml.Node, path string) (*value, error) {
	v := &value{line: n.Line}
	switch n.ShortTag() {
	case "!!null":
		v.kind = kindNull
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, &treeError{path, n.Line, "invalid boolean: " + err.Error()}
		}
		v.kind, v.scalar = kindBool, strconv.FormatBool(b)
	case "!!int":
		var x any
		if err := n.Decode(&x); err != nil {
			return nil, &treeError{path, n.Line, "invalid integer: " + err.Error()}
		}
		v.kind = kindNumber
		switch x := x.(type) {
		case int:
			v.scalar = strconv.Itoa(x)
		case int64:
			v.scalar = strconv.FormatInt(x, 10)
		case uint64:
			v.scalar = strconv.FormatUint(x, 10)
		case float64:
			v.scalar = strconv.FormatFloat(x, 'g', -1, 64)
		default:
			return nil, &treeError{path, n.Line, fmt.Sprintf("invalid integer %q", n.Value)}
		}
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			return nil, &treeError{path, n.Line, "invalid number: " + err.Error()}
		}
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return nil, &treeError{path, n.Line, fmt.Sprintf("%s has no JSON equivalent; quote it if it is a string", n.Value)}
		}
		v.kind, v.scalar = kindNumber, strconv.FormatFloat(f, 'g', -1, 64)
	default:
		// Strings, and tags with no JSON type (timestamps, binary, custom
		// tags): their text, as Kubernetes' own YAML decoding does.
		v.kind, v.scalar = kindString, n.Value
	}
	return v, nil
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// marshal writes v as JSON.
func (v *value) marshal() []byte {
	var b bytes.Buffer
	v.write(&b)
	return b.Bytes()
}

func (v *value) write(b *bytes.Buffer) {
	switch v.kind {
	case kindNull:
		b.WriteString("null")
	case kindBool, kindNumber:
		b.WriteString(v.scalar)
	case kindString:
		writeString(b, v.scalar)
	case kindArray:
		b.WriteByte('[')
		for i, it := range v.items {
			if i > 0 {
				b.WriteByte(',')
			}
			it.write(b)
		}
		b.WriteByte(']')
	case kindObject:
		b.WriteByte('{')
		for i, m := range v.members {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(b, m.key)
			b.WriteByte(':')
			m.val.write(b)
		}
		b.WriteByte('}')
	}
}

func writeString(b *bytes.Buffer, s string) {
	// json.Marshal of a string cannot fail; invalid UTF-8 is replaced.
	enc, _ := json.Marshal(s)
	b.Write(enc)
}

// lineOf returns the line of the field at path (field.Path syntax:
// a.b[3].c, map keys as [key]), or of its nearest existing parent when the
// field itself is absent (a required field, say).
func (v *value) lineOf(path string) int {
	cur, line := v, v.line
	for _, seg := range splitPath(path) {
		switch {
		case cur.kind == kindArray && seg.index:
			i, err := strconv.Atoi(seg.name)
			if err != nil || i < 0 || i >= len(cur.items) {
				return line
			}
			cur = cur.items[i]
			line = cur.line
		case cur.kind == kindObject:
			m := cur.member(seg.name)
			if m == nil {
				return line
			}
			cur, line = m.val, m.keyLine
		default:
			return line
		}
	}
	return line
}

type segment struct {
	name  string
	index bool // written as [name]
}

func splitPath(path string) []segment {
	var segs []segment
	for path != "" {
		switch path[0] {
		case '.':
			path = path[1:]
		case '[':
			end := strings.IndexByte(path, ']')
			if end < 0 {
				return append(segs, segment{name: path[1:], index: true})
			}
			segs = append(segs, segment{name: path[1:end], index: true})
			path = path[end+1:]
		default:
			end := strings.IndexAny(path, ".[")
			if end < 0 {
				end = len(path)
			}
			segs = append(segs, segment{name: path[:end]})
			path = path[end:]
		}
	}
	return segs
}
