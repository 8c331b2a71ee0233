package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/util/validation/field"
	kjson "sigs.k8s.io/json"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rollout/validation"
)

type objectKey struct{ kind, namespace, name string }

type loader struct {
	o        options
	schemas  kindSchemas
	objects  []Object
	problems []Problem
	warnings []Problem
	files    int
	docs     int
	skipped  int
	seen     map[objectKey]Object
	// refs are the AnalysisTemplates Rollouts name (RequireTemplates).
	refs []templateRef
	// queryInputs are kept for CheckQueries.
	queryInputs []queryInput
	// valuesLeft is the budget of JSON values for the rest of the load.
	valuesLeft int
}

func newLoader(o options) (*loader, error) {
	schemas, err := embeddedSchemas()
	if err != nil {
		return nil, err
	}
	return &loader{o: o, schemas: schemas, seen: map[objectKey]Object{}, valuesLeft: maxLoadValues}, nil
}

func (l *loader) problem(file string, line int, fieldPath, reason string) {
	l.problems = append(l.problems, Problem{File: file, Line: max(line, 1), Field: fieldPath, Reason: reason})
}

func isManifest(name string) bool {
	switch strings.ToLower(path.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

func (l *loader) load(fsys fs.FS, root string, display func(string) string) error {
	root = path.Clean(root)
	info, err := fs.Stat(fsys, root)
	if err != nil {
		return fmt.Errorf("manifest: %s: %w", display(root), err)
	}
	if !info.IsDir() {
		return l.loadFile(fsys, root, display(root))
	}
	return fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root {
				return fmt.Errorf("manifest: %s: %w", display(p), err)
			}
			l.problem(display(p), 1, "", fmt.Sprintf("cannot read: %v", unwrapPathError(err)))
			return nil
		}
		if p != root && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() || !isManifest(d.Name()) {
			return nil
		}
		switch {
		case d.Type().IsRegular():
		case d.Type()&fs.ModeSymlink != 0:
			// Linked files are read (the FS decides whether the target is
			// reachable); linked folders are not followed, which rules out
			// cycles.
			info, err := fs.Stat(fsys, p)
			if err != nil {
				l.problem(display(p), 1, "", fmt.Sprintf("cannot read: %v", unwrapPathError(err)))
				return nil
			}
			if !info.Mode().IsRegular() {
				return nil
			}
		default:
			// Devices and pipes could block or never end.
			return nil
		}
		return l.loadFile(fsys, p, display(p))
	})
}

func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (l *loader) loadFile(fsys fs.FS, name, file string) error {
	l.files++
	if l.files > l.o.maxFiles {
		return &LimitError{Limit: "WithMaxFiles", Max: l.o.maxFiles, Path: file}
	}
	data, err := readLimited(fsys, name, l.o.maxFileSize)
	if err != nil {
		l.problem(file, 1, "", err.Error())
		return nil
	}
	return l.loadBytes(file, data)
}

func readLimited(fsys fs.FS, name string, limit int64) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", unwrapPathError(err))
	}
	defer f.Close()
	// Read one byte past the limit rather than trust Stat, which some file
	// systems get wrong.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", unwrapPathError(err))
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("file is larger than %d bytes; split it or raise the limit (WithMaxFileSize)", limit)
	}
	return data, nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// loadBytes decodes every document of one file.
func (l *loader) loadBytes(file string, data []byte) (err error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	lastLine := 0
	for {
		var doc yaml.Node
		derr := decodeNode(dec, &doc)
		if derr == io.EOF {
			return nil
		}
		if derr != nil {
			line, reason := lastLine+1, derr.Error()
			if m := yamlLineRE.FindStringSubmatch(reason); m != nil {
				line, _ = strconv.Atoi(m[1])
				reason = m[2]
			} else {
				reason = strings.TrimPrefix(reason, "yaml: ")
			}
			line = syntaxErrorLine(data, line)
			l.problem(file, min(line, lineCount(data)), "", "invalid YAML: "+reason)
			return nil
		}
		l.docs++
		if l.docs > l.o.maxObjects {
			return &LimitError{Limit: "WithMaxObjects", Max: l.o.maxObjects, Path: file}
		}
		lastLine = max(lastLine, l.loadDocument(file, &doc))
	}
}

// decodeNode shields the caller from a panic in the YAML parser: manifests
// come from Git, and no input may take down a controller.
func decodeNode(dec *yaml.Decoder, doc *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: parser failed: %v", r)
		}
	}()
	return dec.Decode(doc)
}

// Bounds on the search for a syntax error's line: it re-parses the file
// once per line tried.
const (
	syntaxSearchMaxSize  = 1 << 20
	syntaxSearchMaxLines = 20
)

// syntaxErrorLine finds the line a YAML syntax error is on. The parser
// reports the line where the enclosing block began (a mis-indented key is
// reported on the line above it), so this looks for the first line, from
// the reported one on, at which the file's prefix stops parsing.
func syntaxErrorLine(data []byte, reported int) int {
	if len(data) > syntaxSearchMaxSize {
		return reported
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	end := 0
	for i := 0; i < reported-1 && i < len(lines); i++ {
		end += len(lines[i])
	}
	for line := reported; line <= len(lines) && line < reported+syntaxSearchMaxLines; line++ {
		end += len(lines[line-1])
		if !parses(data[:end]) {
			return line
		}
	}
	return reported
}

func parses(data []byte) bool {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		switch err := decodeNode(dec, &n); err {
		case nil:
		case io.EOF:
			return true
		default:
			return false
		}
	}
}

func lineCount(data []byte) int {
	return bytes.Count(data, []byte("\n")) + 1
}

// loadDocument decodes, checks and records one document. It returns the
// last line the document was seen to use, to place later syntax errors.
func (l *loader) loadDocument(file string, doc *yaml.Node) int {
	last := maxLine(doc)
	before := len(l.problems)
	root := doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return last
		}
		root = root.Content[0]
	}
	root = resolveAlias(root)
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return last // an empty document
	}
	// Decide whether the document is ours before converting it: other
	// files (Helm values, Envoy or Prometheus configuration) may use YAML
	// that has no JSON form, and that is none of Sluice's business.
	// Core objects have no group ("v1"); only Sluice's own group, and the
	// two Istio kinds Sluice merges into, are read.
	if l.sluiceInList(file, root) {
		l.skipped++
		return last
	}
	apiVersion := scalarMember(root, "apiVersion")
	group, _, _ := strings.Cut(apiVersion, "/")
	istio := group == IstioGroup && isIstioKind(scalarMember(root, "kind"))
	if root.Kind != yaml.MappingNode || (group != v1alpha1.GroupVersion.Group && !istio) {
		l.skipped++
		return last
	}

	// Each document may expand to maxDocumentValues, and a whole load to
	// maxLoadValues, so many small alias bombs cannot add up.
	v, used, err := toValue(doc, min(maxDocumentValues, max(l.valuesLeft, 1)))
	l.valuesLeft -= used
	if err != nil {
		var te *treeError
		if errors.As(err, &te) {
			l.problem(file, te.line, te.path, te.reason)
			return last
		}
		l.problem(file, root.Line, "", err.Error())
		return last
	}
	if istio {
		l.loadIstio(file, v, apiVersion)
		return last
	}
	kind := stringMember(v, "kind")
	if kind == KindGitSource {
		// Cluster configuration (a GitSource may well sit in the Git it
		// follows, Flux-style), not something Sluice applies from Git;
		// checked on request (`sluice validate`) all the same.
		l.skipped++
		if l.o.checkGitSources {
			l.decode(file, v, &v1alpha1.GitSource{})
		}
		return last
	}
	if apiVersion != v1alpha1.GroupVersion.String() {
		l.problem(file, v.lineOf("apiVersion"), "apiVersion",
			fmt.Sprintf("Unsupported value: %q: supported values: %q", apiVersion, v1alpha1.GroupVersion.String()))
		return last
	}

	var obj any
	switch kind {
	case KindRollout:
		obj = &v1alpha1.Rollout{}
	case KindAnalysisTemplate:
		obj = &v1alpha1.AnalysisTemplate{}
	case "":
		l.problem(file, v.line, "kind", "Required value")
		return last
	default:
		l.problem(file, v.lineOf("kind"), "kind",
			fmt.Sprintf("Unsupported value: %q: supported values: %q, %q", kind, KindRollout, KindAnalysisTemplate))
		return last
	}

	if !l.decode(file, v, obj) {
		return last
	}
	if obj = l.admit(file, v, kind, obj); obj == nil {
		return last
	}
	o := Object{File: file, Line: v.line}
	var errs field.ErrorList
	switch obj := obj.(type) {
	case *v1alpha1.Rollout:
		o.Rollout = obj
		errs = l.o.validator.Rollout(obj)
		l.collectTemplateRefs(file, v, obj)
		for _, w := range validation.RolloutWarnings(obj) {
			l.warnings = append(l.warnings, Problem{File: file, Line: max(v.lineOf(w.Field), 1), Field: w.Field, Reason: w.Message})
		}
	case *v1alpha1.AnalysisTemplate:
		o.AnalysisTemplate = obj
		errs = l.o.validator.AnalysisTemplate(obj)
	}
	for _, e := range errs {
		fieldPath := e.Field
		if fieldPath == "<nil>" {
			fieldPath = ""
		}
		l.problem(file, v.lineOf(fieldPath), fieldPath, e.ErrorBody())
	}
	l.record(o, v)
	l.collectForQueries(o, v, len(l.problems) == before)
	return last
}

// decode decodes v into obj strictly, reporting every problem; it reports
// whether obj is complete enough to validate. Validating a partly decoded
// object would add errors about fields that are only misspelt.
func (l *loader) decode(file string, v *value, obj any) bool {
	if tps := typeCheck(v, reflect.TypeOf(obj)); len(tps) > 0 {
		for _, tp := range tps {
			l.problem(file, tp.line, tp.path, tp.reason)
		}
		return false
	}
	// The type check mirrors the decoder; the decoder stays the authority,
	// so anything it rejects that the check let through is reported too.
	strict, err := kjson.UnmarshalStrict(v.marshal(), obj)
	for _, e := range strict {
		p := ""
		var fe kjson.FieldError
		if errors.As(e, &fe) {
			p = fe.FieldPath()
		}
		l.problem(file, v.lineOf(p), p, e.Error())
	}
	if err != nil {
		l.problem(file, v.line, "", "cannot decode: "+err.Error())
	}
	return err == nil && len(strict) == 0
}

// admit returns obj, which decoded strictly, as the API server would
// store it (see defaults.go), or nil after reporting the fields the server
// would drop. Validation sees the object with its defaults, as the
// server's does.
func (l *loader) admit(file string, v *value, kind string, obj any) any {
	a, err := admit(obj, l.schemas[kind])
	if err != nil {
		l.problem(file, v.line, "", fmt.Sprintf("cannot apply the defaults of the %s CRD: %v", kind, err))
		return nil
	}
	for _, p := range a.pruned {
		l.problem(file, v.lineOf(p), p, "unknown field: the "+kind+" CRD has no such field, so the API server would drop it")
	}
	return a.obj
}

func (l *loader) record(o Object, v *value) {
	m := o.Meta()
	if ns := m.GetNamespace(); l.o.namespace != "" && ns != "" && ns != l.o.namespace {
		l.problem(o.File, v.lineOf("metadata.namespace"), "metadata.namespace",
			fmt.Sprintf("Forbidden: %q: this source may only create objects in namespace %q (or name none)", ns, l.o.namespace))
	}
	if m.GetName() == "" {
		return // reported by validation
	}
	key := objectKey{o.Kind(), m.GetNamespace(), m.GetName()}
	if first, dup := l.seen[key]; dup {
		id := m.GetName()
		if m.GetNamespace() != "" {
			id = m.GetNamespace() + "/" + id
		}
		l.problem(o.File, v.lineOf("metadata.name"), "metadata.name",
			fmt.Sprintf("Duplicate value: %q: %s %s is already defined at %s:%d", m.GetName(), o.Kind(), id, first.File, first.Line))
	} else {
		l.seen[key] = o
	}
	l.objects = append(l.objects, o)
}

// scalarMember returns the text of a scalar member of a YAML mapping.
// sluiceInList reports Sluice objects inside a top-level YAML list or a
// core List, which kubectl would apply but nothing of Sluice reads: left
// unsaid, a Rollout written that way would silently never roll out.
func (l *loader) sluiceInList(file string, root *yaml.Node) bool {
	items := root
	if root.Kind == yaml.MappingNode && scalarMember(root, "kind") == "List" {
		items = nil
		for i := 0; i+1 < len(root.Content); i += 2 {
			if k := resolveAlias(root.Content[i]); k.Kind == yaml.ScalarNode && k.Value == "items" {
				items = resolveAlias(root.Content[i+1])
			}
		}
	}
	if items == nil || items.Kind != yaml.SequenceNode {
		return false
	}
	found := false
	for i, it := range items.Content {
		it = resolveAlias(it)
		group, _, _ := strings.Cut(scalarMember(it, "apiVersion"), "/")
		if group != v1alpha1.GroupVersion.Group {
			continue
		}
		found = true
		l.problem(file, it.Line, fmt.Sprintf("[%d]", i), fmt.Sprintf(
			"Unsupported value: a %s inside a list is not read: write each Sluice object as a YAML document of its own (separate them with ---)", scalarMember(it, "kind")))
	}
	return found
}

func scalarMember(m *yaml.Node, key string) string {
	if m.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := resolveAlias(m.Content[i]), resolveAlias(m.Content[i+1])
		if k.Kind == yaml.ScalarNode && k.Value == key && v.Kind == yaml.ScalarNode {
			return v.Value
		}
	}
	return ""
}

func stringMember(v *value, key string) string {
	if m := v.member(key); m != nil && m.val.kind == kindString {
		return m.val.scalar
	}
	return ""
}

func maxLine(n *yaml.Node) int {
	line := n.Line
	for _, c := range n.Content {
		line = max(line, maxLine(c))
	}
	return line
}
