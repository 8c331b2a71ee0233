package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kvalidation "k8s.io/apimachinery/pkg/util/validation"
)

// The Istio objects this package reads. In controller mode Sluice merges
// its traffic plan into the VirtualService and DestinationRule a Rollout
// names, and applies the others as they are; both need them as Git
// declares them.
const (
	IstioGroup          = "networking.istio.io"
	KindVirtualService  = "VirtualService"
	KindDestinationRule = "DestinationRule"
)

// istioVersions are the versions of IstioGroup that Istio serves with one
// schema.
var istioVersions = []string{"v1", "v1beta1", "v1alpha3"}

func isIstioKind(kind string) bool {
	return kind == KindVirtualService || kind == KindDestinationRule
}

// IstioObject is a VirtualService or DestinationRule as the manifests
// declare it. Its metadata is decoded strictly; its spec stays JSON,
// checked against Istio's API (unknown fields, wrong types and bad enum
// values are problems), so that consumers decode it with the Istio types
// of their choosing and this package carries no Kubernetes client.
//
// Marshalled as JSON it is the document again (apiVersion, kind,
// metadata, spec). A status is refused: Git does not declare one.
type IstioObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	// Spec is the spec as JSON; nil when the document has none.
	Spec json.RawMessage `json:"spec,omitempty"`
}

// loadIstio decodes, checks and records an Istio document whose group and
// kind loadDocument recognised.
func (l *loader) loadIstio(file string, v *value, apiVersion string) {
	if _, version, _ := strings.Cut(apiVersion, "/"); !slices.Contains(istioVersions, version) {
		supported := make([]string, len(istioVersions))
		for i, ver := range istioVersions {
			supported[i] = fmt.Sprintf("%q", IstioGroup+"/"+ver)
		}
		l.problem(file, v.lineOf("apiVersion"), "apiVersion",
			fmt.Sprintf("Unsupported value: %q: supported values: %s", apiVersion, strings.Join(supported, ", ")))
		return
	}
	obj := &IstioObject{}
	if !l.decode(file, v, obj) {
		return
	}
	if string(obj.Spec) == "null" {
		obj.Spec = nil
	}
	l.checkIstioMeta(file, v, &obj.ObjectMeta)
	if len(obj.Spec) > 0 {
		if err := checkIstioSpec(obj.Kind, obj.Spec); err != nil {
			path, reason := istioSpecProblem(v, obj.Kind, err)
			l.problem(file, v.lineOf(path), path, reason)
		}
	}
	l.record(Object{File: file, Line: v.line, Istio: obj}, v)
}

// checkIstioMeta reports what the API server would refuse in the name and
// namespace, the identity of the object.
func (l *loader) checkIstioMeta(file string, v *value, m *metav1.ObjectMeta) {
	if m.Name == "" {
		l.problem(file, v.lineOf("metadata.name"), "metadata.name", "Required value")
	}
	for _, c := range []struct {
		path, val string
		check     func(string) []string
	}{
		{"metadata.name", m.Name, kvalidation.IsDNS1123Subdomain},
		{"metadata.namespace", m.Namespace, kvalidation.IsDNS1123Label},
	} {
		if c.val == "" {
			continue
		}
		if msgs := c.check(c.val); len(msgs) > 0 {
			l.problem(file, v.lineOf(c.path), c.path, fmt.Sprintf("Invalid value: %q: %s", c.val, strings.Join(msgs, "; ")))
		}
	}
}

// checkIstioSpec decodes spec with Istio's own API types, strictly:
// protojson refuses unknown fields, which Istio's CRDs would prune.
func checkIstioSpec(kind string, spec []byte) error {
	var m proto.Message = &networking.DestinationRule{}
	if kind == KindVirtualService {
		m = &networking.VirtualService{}
	}
	return protojson.Unmarshal(spec, m)
}

var (
	// protojson prefixes its errors with "proto:" and a position in the
	// JSON it was given, which means nothing to the YAML's author. It
	// sometimes writes a non-breaking space instead of a space, on purpose.
	protoPrefixRE    = regexp.MustCompile(`^proto:[\s\x{00a0}]*`)
	protoPositionRE  = regexp.MustCompile(`[\s\x{00a0}]*\(line \d+:\d+\)`)
	protoUnknownRE   = regexp.MustCompile(`unknown field "([^"]+)"`)
	errNoSuchSpecKey = errors.New("no such key")
)

// istioSpecProblem turns a protojson error into a field path and reason.
// An unknown field is found in the spec to give its own line; other errors
// are placed on the spec.
func istioSpecProblem(v *value, kind string, err error) (path, reason string) {
	msg := protoPrefixRE.ReplaceAllString(err.Error(), "")
	msg = strings.TrimLeft(protoPositionRE.ReplaceAllString(msg, ""), ": \u00a0")
	if m := protoUnknownRE.FindStringSubmatch(msg); m != nil {
		if spec := v.member("spec"); spec != nil {
			if p, ferr := findKey(spec.val, m[1], "spec"); ferr == nil {
				return p, msg
			}
		}
	}
	return "spec", fmt.Sprintf("Invalid value: not a valid Istio %s spec: %s", kind, msg)
}

// findKey finds the first member named key under v, depth first, and
// returns its path.
func findKey(v *value, key, path string) (string, error) {
	switch v.kind {
	case kindObject:
		for _, m := range v.members {
			if m.key == key {
				return joinPath(path, key), nil
			}
		}
		for _, m := range v.members {
			if p, err := findKey(m.val, key, joinPath(path, m.key)); err == nil {
				return p, nil
			}
		}
	case kindArray:
		for i, it := range v.items {
			if p, err := findKey(it, key, fmt.Sprintf("%s[%d]", path, i)); err == nil {
				return p, nil
			}
		}
	}
	return "", errNoSuchSpecKey
}
