// Command trim shrinks generated CustomResourceDefinitions so that they can
// be installed with client-side `kubectl apply -f`.
//
// Client-side apply stores the whole object in the
// kubectl.kubernetes.io/last-applied-configuration annotation, and all
// annotations of an object together may not exceed 262144 bytes. The Rollout
// CRD embeds a full corev1.PodTemplateSpec whose upstream field descriptions
// alone make it ~690 KB. trim removes descriptions where they add the least:
//
//  1. always under the paths in stripPaths (the pod template: its fields are
//     documented by `kubectl explain pod.spec` and the Kubernetes API
//     reference);
//  2. then, while a document is still larger than -max-bytes (default
//     200 KiB) as compact JSON, which is how kubectl stores it in the
//     annotation, descriptions deeper than a nesting depth that is lowered
//     one level at a time, so the descriptions of top-level fields are the
//     last to go.
//
// Validation, defaults, enums and CEL rules are never touched. Files are
// rewritten in place through sigs.k8s.io/yaml, whose output has sorted keys,
// so the result depends only on the input. Running trim on its own output
// changes nothing.
//
// Usage (from the repository root, see `make generate`):
//
//	go run ./crds/internal/trim crds/*.yaml
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// stripPaths are property paths, below spec.versions[*].schema.openAPIV3Schema,
// whose descendants lose their descriptions. The description of the named
// field itself is kept.
var stripPaths = [][]string{
	{"spec", "template"},
}

// defaultMaxBytes keeps well below the 262144-byte annotation limit, leaving
// room for the other annotations and for kubectl's JSON encoding.
const defaultMaxBytes = 200 * 1024

func main() {
	maxBytes := flag.Int("max-bytes", defaultMaxBytes, "largest allowed size of one trimmed CRD document, in bytes of compact JSON")
	verbose := flag.Bool("v", false, "print the size of each file before and after")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: trim [-max-bytes N] [-v] CRD.yaml...\n\nRewrites each file in place.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	failed := false
	for _, path := range flag.Args() {
		before, after, err := trimFile(path, *maxBytes)
		if err != nil {
			fmt.Fprintf(os.Stderr, "trim: %s: %v\n", path, err)
			failed = true
			continue
		}
		if *verbose {
			fmt.Fprintf(os.Stderr, "trim: %s: %d -> %d bytes\n", path, before, after)
		}
	}
	if failed {
		os.Exit(1)
	}
}

func trimFile(path string, maxBytes int) (before, after int, err error) {
	in, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	out, err := trimDocuments(in, maxBytes)
	if err != nil {
		return len(in), 0, err
	}
	if !bytes.Equal(in, out) {
		if err := os.WriteFile(path, out, 0o644); err != nil {
			return len(in), 0, err
		}
	}
	return len(in), len(out), nil
}

// trimDocuments trims every CustomResourceDefinition in a file. Documents are
// separated by lines holding only "---", as controller-gen writes them. The
// separators and any document that is not a CRD (a kustomization.yaml, say)
// are kept byte for byte, so a file without CRDs is left as it is.
func trimDocuments(in []byte, maxBytes int) ([]byte, error) {
	var out bytes.Buffer
	for i, doc := range splitDocuments(string(in)) {
		if i > 0 {
			out.WriteString("---\n")
		}
		if !isCRD([]byte(doc)) {
			out.WriteString(doc)
			continue
		}
		trimmed, err := trimDocument([]byte(doc), maxBytes)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		out.Write(trimmed)
	}
	return out.Bytes(), nil
}

// splitDocuments splits s at separator lines; joining the parts with "---\n"
// gives s back.
func splitDocuments(s string) []string {
	var docs []string
	var cur strings.Builder
	for line := range strings.Lines(s) {
		if line == "---\n" {
			docs = append(docs, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteString(line)
	}
	return append(docs, cur.String())
}

func isCRD(doc []byte) bool {
	var meta struct {
		Kind string `json:"kind"`
	}
	return yaml.Unmarshal(doc, &meta) == nil && meta.Kind == "CustomResourceDefinition"
}

func trimDocument(doc []byte, maxBytes int) ([]byte, error) {
	var obj map[string]any
	if err := yaml.Unmarshal(doc, &obj); err != nil {
		return nil, err
	}
	versions, _ := lookup(obj, "spec", "versions").([]any)
	if len(versions) == 0 {
		return nil, errors.New("no spec.versions")
	}
	var roots []map[string]any
	for _, v := range versions {
		root, _ := lookup(v, "schema", "openAPIV3Schema").(map[string]any)
		if root != nil {
			roots = append(roots, root)
		}
	}

	for _, root := range roots {
		for _, p := range stripPaths {
			if node := property(root, p); node != nil {
				walkChildren(node, 1, func(s map[string]any, _ int) { delete(s, "description") })
			}
		}
	}
	size, err := jsonSize(obj)
	if err != nil {
		return nil, err
	}
	if size <= maxBytes {
		return yaml.Marshal(obj)
	}

	// Still too big: drop descriptions below a depth, shallower each round.
	// Depth 0 is the root schema, 1 spec/status, 2 their fields, ...
	for depth := maxDepth(roots) - 1; depth >= 0; depth-- {
		for _, root := range roots {
			walk(root, 0, func(s map[string]any, d int) {
				if d > depth {
					delete(s, "description")
				}
			})
		}
		if size, err = jsonSize(obj); err != nil {
			return nil, err
		}
		if size <= maxBytes {
			return yaml.Marshal(obj)
		}
	}
	return nil, fmt.Errorf("%d bytes of JSON even without descriptions, limit %d: split the schema or install with server-side apply", size, maxBytes)
}

// jsonSize is the length of the compact JSON encoding of obj: what kubectl
// stores in the last-applied-configuration annotation.
func jsonSize(obj any) (int, error) {
	b, err := json.Marshal(obj)
	return len(b), err
}

// lookup follows map keys from v; it returns nil when a key is missing.
func lookup(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// property returns the schema of the property at path (field names), or nil.
func property(schema map[string]any, path []string) map[string]any {
	for _, name := range path {
		next, _ := lookup(schema, "properties", name).(map[string]any)
		if next == nil {
			return nil
		}
		schema = next
	}
	return schema
}

// walk calls fn on schema and on every schema nested in it, with its depth.
// Only schema positions are visited, so a property that happens to be named
// "description" is never mistaken for the description keyword.
func walk(schema map[string]any, depth int, fn func(map[string]any, int)) {
	fn(schema, depth)
	walkChildren(schema, depth+1, fn)
}

// walkChildren calls walk on the schemas directly nested in schema.
func walkChildren(schema map[string]any, depth int, fn func(map[string]any, int)) {
	for _, key := range []string{"properties", "patternProperties", "definitions", "dependencies"} {
		if m, ok := schema[key].(map[string]any); ok {
			for _, name := range sortedKeys(m) {
				if s, ok := m[name].(map[string]any); ok {
					walk(s, depth, fn)
				}
			}
		}
	}
	for _, key := range []string{"items", "additionalProperties", "not", "additionalItems"} {
		switch v := schema[key].(type) {
		case map[string]any:
			walk(v, depth, fn)
		case []any:
			for _, e := range v {
				if s, ok := e.(map[string]any); ok {
					walk(s, depth, fn)
				}
			}
		}
	}
	for _, key := range []string{"allOf", "anyOf", "oneOf"} {
		if list, ok := schema[key].([]any); ok {
			for _, e := range list {
				if s, ok := e.(map[string]any); ok {
					walk(s, depth, fn)
				}
			}
		}
	}
}

func maxDepth(roots []map[string]any) int {
	deepest := 0
	for _, root := range roots {
		walk(root, 0, func(_ map[string]any, d int) { deepest = max(deepest, d) })
	}
	return deepest
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// Order does not change the result (deletions are independent), but a
	// fixed order keeps the walk itself deterministic.
	slices.Sort(keys)
	return keys
}
