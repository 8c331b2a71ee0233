package manifest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sync"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/crds"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// An object read from Git must equal the object the API server stores for
// it, or anything computed from the spec disagrees between the two: above
// all the revision, a hash of the pod template (engine.DesiredRevision).
// The server fills in the defaults of the CRD's structural schema, and the
// Rollout CRD has many, most from the embedded core/v1 types (a container
// port's protocol: TCP, a gRPC probe's service: "", ...). So every
// object, once it has decoded strictly, goes through what the server does
// to a custom resource on create: prune what the schema does not know,
// then default. The schemas are the generated CRDs, built into the binary
// (package crds), so Git and cluster use the same ones.
//
// The object is processed as the JSON of its Go type, not as written,
// since that is what Sluice sends to the API server (kube/gitapply): a
// `protocol: ""` in YAML, which Go omits, is defaulted there as here. It is
// decoded from that JSON again with the decoder client-go uses.

// schemaKinds are the kinds the loader decodes, each with a CRD.
var schemaKinds = []string{KindRollout, KindAnalysisTemplate}

// kindSchemas holds the structural schema of each kind's served version.
type kindSchemas map[string]*structuralschema.Structural

// embeddedSchemas builds the schemas of the built-in CRDs on first use.
var embeddedSchemas = sync.OnceValues(func() (kindSchemas, error) {
	s, err := buildSchemas(crds.CRD)
	if err != nil {
		return nil, fmt.Errorf("manifest: the CustomResourceDefinitions built into this binary are unusable "+
			"(a defect of the build, not of the manifests): %w", err)
	}
	return s, nil
})

// buildSchemas converts the v1alpha1 schema of each kind's CRD, as read by
// crd, to a structural schema, as the API server does when it serves the
// CRD.
func buildSchemas(crd func(kind string) ([]byte, error)) (kindSchemas, error) {
	out := kindSchemas{}
	for _, kind := range schemaKinds {
		data, err := crd(kind)
		if err != nil {
			return nil, err
		}
		s, err := structuralSchema(kind, data)
		if err != nil {
			return nil, fmt.Errorf("CRD of %s: %w", kind, err)
		}
		out[kind] = s
	}
	return out, nil
}

func structuralSchema(kind string, data []byte) (*structuralschema.Structural, error) {
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(data, &crd); err != nil {
		return nil, err
	}
	if crd.Spec.Group != v1alpha1.GroupVersion.Group || crd.Spec.Names.Kind != kind {
		return nil, fmt.Errorf("defines %s in group %q", crd.Spec.Names.Kind, crd.Spec.Group)
	}
	for _, v := range crd.Spec.Versions {
		if v.Name != v1alpha1.GroupVersion.Version {
			continue
		}
		if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
			return nil, fmt.Errorf("version %s has no schema", v.Name)
		}
		var internal apiextensions.JSONSchemaProps
		if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
			return nil, fmt.Errorf("version %s: %w", v.Name, err)
		}
		s, err := structuralschema.NewStructural(&internal)
		if err != nil {
			return nil, fmt.Errorf("version %s: not a structural schema: %w", v.Name, err)
		}
		// The API server also prunes the default values themselves; it
		// refuses a CRD whose defaults pruning would change, so for a CRD
		// it serves that is a no-op.
		return s, nil
	}
	return nil, fmt.Errorf("no version %s", v1alpha1.GroupVersion.Version)
}

// admitted is an object as the API server would store it.
type admitted struct {
	// obj is a new object of obj's type, defaulted; nil if pruned is set.
	obj any
	// pruned are the paths (field.Path syntax) of fields that the Go type
	// has but the CRD's schema does not: the server would drop them.
	pruned []string
}

// admit returns obj, which has decoded strictly from a manifest, as the
// API server would store it. obj itself is not changed.
func admit(obj any, s *structuralschema.Structural) (admitted, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return admitted{}, fmt.Errorf("encode: %w", err)
	}
	var u map[string]any
	if err := kjson.UnmarshalCaseSensitivePreserveInts(b, &u); err != nil {
		return admitted{}, fmt.Errorf("decode as JSON: %w", err)
	}
	// isResourceRoot: apiVersion, kind and metadata are the server's own.
	pruned := pruning.PruneWithOptions(u, s, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
	if len(pruned) > 0 {
		return admitted{pruned: pruned}, nil
	}
	// The server also removes the nulls the schema neither allows nor
	// defaults; that is not needed here, as a null field and a missing one
	// decode to the same Go value.
	withDefaults(u, s)
	if b, err = json.Marshal(u); err != nil {
		return admitted{}, fmt.Errorf("encode with defaults: %w", err)
	}
	out := reflect.New(reflect.TypeOf(obj).Elem()).Interface()
	if err := kjson.UnmarshalCaseSensitivePreserveInts(b, out); err != nil {
		return admitted{}, fmt.Errorf("decode with defaults: %w", err)
	}
	return admitted{obj: out}, nil
}

// withDefaults returns v with the schema's defaults filled in, by the
// rules the Kubernetes documentation gives for CRD defaulting: a property
// that is absent, or null where the schema does not allow null, takes its
// default; this holds at every depth, also inside a value that was itself
// a default (a default of {} gets its properties' defaults in turn). Maps
// and lists are changed in place. k8s.io/apiextensions-apiserver's own
// defaulting package is not imported: it brings CEL validation, feature
// gates and OpenTelemetry (k8s.io/apiserver, k8s.io/component-base) into
// every binary that reads manifests. crds/revision_envtest_test.go holds
// this to the real server's behaviour.
func withDefaults(v any, s *structuralschema.Structural) any {
	if s == nil {
		return v
	}
	if v == nil && !s.Nullable && s.Default.Object != nil {
		v = runtime.DeepCopyJSONValue(s.Default.Object)
	}
	switch v := v.(type) {
	case map[string]any:
		for name, field := range v {
			v[name] = withDefaults(field, propertySchema(s, name))
		}
		for name := range s.Properties {
			if _, present := v[name]; present {
				continue
			}
			prop := s.Properties[name]
			if prop.Default.Object != nil {
				v[name] = withDefaults(nil, &prop)
			}
		}
	case []any:
		for i := range v {
			v[i] = withDefaults(v[i], s.Items)
		}
	}
	return v
}

// propertySchema is the schema of a map's field name: a declared property,
// else the additionalProperties schema, else none.
func propertySchema(s *structuralschema.Structural, name string) *structuralschema.Structural {
	if prop, ok := s.Properties[name]; ok {
		return &prop
	}
	if ap := s.AdditionalProperties; ap != nil {
		return ap.Structural
	}
	return nil
}
