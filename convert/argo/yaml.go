package argo

import (
	"fmt"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// Helpers over YAML nodes. Input trees are read, never changed, except
// where a key node is reused in the output to keep its comments.

type pair struct{ k, v *yaml.Node }

// pairs lists a mapping's members in order, aliases resolved; nil for
// anything else.
func pairs(m *yaml.Node) []pair {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	out := make([]pair, 0, len(m.Content)/2)
	for i := 0; i+1 < len(m.Content); i += 2 {
		out = append(out, pair{m.Content[i], deref(m.Content[i+1])})
	}
	return out
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// get returns the key and value of a mapping's member.
func get(m *yaml.Node, key string) (k, v *yaml.Node) {
	for _, p := range pairs(m) {
		if p.k.Value == key {
			return p.k, p.v
		}
	}
	return nil, nil
}

// scalar returns a member's scalar value, "" when absent or not a scalar.
func scalar(m *yaml.Node, key string) string {
	_, v := get(m, key)
	if v == nil || v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		return ""
	}
	return v.Value
}

// items lists a sequence's items, aliases resolved.
func items(s *yaml.Node) []*yaml.Node {
	if s == nil || s.Kind != yaml.SequenceNode {
		return nil
	}
	out := make([]*yaml.Node, len(s.Content))
	for i, n := range s.Content {
		out[i] = deref(n)
	}
	return out
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// intValue reads an integer scalar; strings of digits count, as Argo's
// IntOrString fields read them.
func intValue(n *yaml.Node) (int64, bool) {
	if n == nil || n.Kind != yaml.ScalarNode {
		return 0, false
	}
	i, err := strconv.ParseInt(strings.TrimSpace(n.Value), 10, 64)
	return i, err == nil
}

func boolValue(n *yaml.Node) (value, ok bool) {
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		return false, false
	}
	b, err := strconv.ParseBool(n.Value)
	return b, err == nil
}

// Builders of output nodes.

func newMap() *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"} }

func newSeq(ns ...*yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: ns}
}

// str is a string scalar. Strings that YAML 1.1 reads as booleans (yes,
// off, ...) are quoted: kubectl and other YAML 1.1 readers would
// otherwise not see a string.
func str(s string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	switch strings.ToLower(s) {
	case "y", "yes", "n", "no", "on", "off":
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

func num(i int64) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(i, 10)}
}

func boolean(b bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(b)}
}

// set appends key: v to m and returns v.
func set(m *yaml.Node, key string, v *yaml.Node) *yaml.Node {
	m.Content = append(m.Content, str(key), v)
	return v
}

// setFrom appends key: v to m with a key node that carries the comments
// of orig, the Argo field it replaces.
func setFrom(m *yaml.Node, orig *yaml.Node, key string, v *yaml.Node) *yaml.Node {
	k := str(key)
	if orig != nil {
		k.HeadComment, k.LineComment, k.FootComment = orig.HeadComment, orig.LineComment, orig.FootComment
	}
	m.Content = append(m.Content, k, v)
	return v
}

// carry copies the comments of src onto dst, keeping dst's own where src
// has none.
func carry(dst, src *yaml.Node) *yaml.Node {
	if src == nil {
		return dst
	}
	if src.HeadComment != "" {
		dst.HeadComment = src.HeadComment
	}
	if src.LineComment != "" {
		dst.LineComment = src.LineComment
	}
	if src.FootComment != "" {
		dst.FootComment = src.FootComment
	}
	return dst
}

// maxCopy bounds the nodes deepCopy makes: aliases expand, and a few
// nested ones would otherwise make an input of a few lines enormous.
const maxCopy = 100_000

// deepCopy copies a tree, aliases expanded, so that one input node can
// appear in an output without sharing; nil past maxCopy nodes.
func deepCopy(n *yaml.Node) *yaml.Node {
	budget := maxCopy
	return copyNode(n, &budget)
}

func copyNode(n *yaml.Node, budget *int) *yaml.Node {
	if n == nil {
		return nil
	}
	if *budget--; *budget < 0 {
		return nil
	}
	if n.Kind == yaml.AliasNode {
		return copyNode(n.Alias, budget)
	}
	c := *n
	c.Anchor = ""
	c.Content = make([]*yaml.Node, len(n.Content))
	for i, ch := range n.Content {
		if c.Content[i] = copyNode(ch, budget); c.Content[i] == nil {
			return nil
		}
	}
	return &c
}

// flowLike gives dst the flow style of src, so `{}` stays `{}`.
func flowLike(dst, src *yaml.Node) *yaml.Node {
	if src != nil && src.Style&yaml.FlowStyle != 0 {
		dst.Style |= yaml.FlowStyle
	}
	return dst
}

// Field paths.

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func elem(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// has reports whether a mapping has the member.
func has(m *yaml.Node, key string) bool {
	k, _ := get(m, key)
	return k != nil
}
