package manifest

import (
	"encoding/json"
	"strings"
	"testing"
	"testing/fstest"
)

const istioVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
  labels: {app: reviews}
spec:
  hosts: [reviews]
  http:
  - name: debug
    match:
    - headers:
        x-debug: {exact: "1"}
    route:
    - destination: {host: reviews, subset: v1}
    timeout: 3s
  - name: reviews
    route:
    - destination: {host: reviews, subset: stable}
`

const istioDR = `apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
  subsets:
  - name: stable
  - name: canary
`

// loadDoc loads one file, f.yaml, holding doc.
func loadDoc(t *testing.T, doc string) *Result {
	t.Helper()
	res, err := Load(fstest.MapFS{"f.yaml": {Data: []byte(doc)}}, ".")
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// Istio VirtualServices and DestinationRules are read with their
// metadata and spec; other Istio kinds stay skipped.
func TestIstioObjectsAreRead(t *testing.T) {
	t.Parallel()
	gateway := "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: {servers: []}\n"
	fsys := fstest.MapFS{"istio.yaml": {Data: []byte(istioVS + "---\n" + istioDR + "---\n" + gateway)}}
	res, err := Load(fsys, ".")
	if err != nil {
		t.Fatal(err)
	}
	checkProblems(t, res.Problems, nil)
	if res.Skipped != 1 || len(res.Objects) != 2 {
		t.Fatalf("%d objects, %d skipped; want 2 and the Gateway skipped", len(res.Objects), res.Skipped)
	}
	vs, dr := res.Objects[0], res.Objects[1]
	if vs.Kind() != KindVirtualService || vs.Line != 1 || vs.Meta().GetNamespace() != "bookinfo" || vs.Istio.Labels["app"] != "reviews" {
		t.Errorf("VirtualService %+v at line %d: want kind, line 1, namespace and labels decoded", vs.Istio.ObjectMeta, vs.Line)
	}
	if dr.Kind() != KindDestinationRule || dr.Line != 21 || dr.Istio.APIVersion != "networking.istio.io/v1beta1" {
		t.Errorf("DestinationRule %s %s at line %d: want its own apiVersion, line 21", dr.Kind(), dr.Istio.APIVersion, dr.Line)
	}
	var spec struct {
		Http []struct {
			Name    string
			Timeout string
		}
	}
	if err := json.Unmarshal(vs.Istio.Spec, &spec); err != nil {
		t.Fatal(err)
	}
	if len(spec.Http) != 2 || spec.Http[0].Name != "debug" || spec.Http[0].Timeout != "3s" {
		t.Errorf("spec JSON %s: want both routes as written", vs.Istio.Spec)
	}
	// Marshalled, the object is the document again.
	doc, err := json.Marshal(dr.Istio)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(doc, &back); err != nil {
		t.Fatal(err)
	}
	if back["apiVersion"] != "networking.istio.io/v1beta1" || back["kind"] != "DestinationRule" || back["metadata"].(map[string]any)["name"] != "reviews" || back["spec"] == nil {
		t.Errorf("marshalled DestinationRule %s: want apiVersion, kind, metadata and spec", doc)
	}
}

func TestIstioProblems(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, doc string
		want      []want
	}{
		{"unknown spec field has its line", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
      wieght: 10
`, []want{{"f.yaml:9: spec.http[0].route[0].wieght", `unknown field "wieght"`}}},
		{"bad enum", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {simple: FASTEST}}
`, []want{{"f.yaml:4: spec", "FASTEST"}}},
		{"wrong type", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: reviews
`, []want{{"f.yaml:4: spec", `not a valid Istio VirtualService spec: syntax error: unexpected token "reviews"`}}},
		{"missing name", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {namespace: bookinfo}
spec: {hosts: [reviews]}
`, []want{{"f.yaml:3: metadata.name", "Required value"}}},
		{"invalid name and namespace", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: Reviews
  namespace: book.info
`, []want{{"f.yaml:4: metadata.name", "lowercase"}, {"f.yaml:5: metadata.namespace", "Invalid value"}}},
		{"unknown metadata field", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
  lables: {app: reviews}
`, []want{{"f.yaml:5: metadata.lables", `unknown field "lables"`}}},
		{"status is not declared", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
status: {}
`, []want{{"f.yaml:4: status", `unknown field "status"`}}},
		{"unsupported version", `apiVersion: networking.istio.io/v2
kind: VirtualService
metadata: {name: reviews}
`, []want{{"f.yaml:1: apiVersion", `"networking.istio.io/v1", "networking.istio.io/v1beta1"`}}},
		{"duplicate across versions", istioVS + "---\n" + `apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
`, []want{{"f.yaml:23: metadata.name", "VirtualService bookinfo/reviews is already defined at f.yaml:1"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := loadDoc(t, tc.doc)
			checkProblems(t, res.Problems, tc.want)
			for _, p := range res.Problems {
				// protojson's own prefix and JSON position mean nothing here.
				if r := p.Reason; strings.HasPrefix(r, ":") || strings.HasPrefix(r, " ") || strings.Contains(r, "proto:") || strings.Contains(r, "(line ") {
					t.Errorf("reason %q carries protojson's framing", r)
				}
			}
		})
	}
}

// A VirtualService and a DestinationRule may share a name, as they do in
// every Istio example; only the same kind twice is a duplicate.
func TestIstioKindsShareNames(t *testing.T) {
	t.Parallel()
	dr := "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: bookinfo}\n"
	res := loadDoc(t, istioVS+"---\n"+dr)
	checkProblems(t, res.Problems, nil)
	if res.Count(KindVirtualService) != 1 || res.Count(KindDestinationRule) != 1 {
		t.Errorf("counts %d VirtualService, %d DestinationRule; want 1 each", res.Count(KindVirtualService), res.Count(KindDestinationRule))
	}
}
