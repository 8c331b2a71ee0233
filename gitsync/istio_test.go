package gitsync

import (
	"context"
	"strings"
	"testing"
)

// istioVS is a VirtualService with a debug route of the given timeout.
func istioVS(name, timeout string) string {
	return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ` + name + `
spec:
  hosts: [` + name + `]
  http:
  - name: debug
    match:
    - headers: {x-debug: {exact: "1"}}
    route: [{destination: {host: ` + name + `, subset: stable}}]
    timeout: ` + timeout + `
  - name: ` + name + `
    route: [{destination: {host: ` + name + `, subset: stable}}]
`
}

// A snapshot carries the Istio objects under the path beside the Sluice
// objects, with provenance, and reports them removed like the others.
func TestSnapshotCarriesIstioObjects(t *testing.T) {
	t.Parallel()
	r := newRemote(t)
	first := r.Push("first", map[string]string{
		"deploy/a.yaml":     rollout("a", "v1"),
		"deploy/istio.yaml": istioVS("reviews", "3s") + "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n",
	})
	s, reg := newTestSyncer(t, Source{URL: r.URL(), Branch: "main", Path: "deploy"})
	st := s.Sync(context.Background())
	if st.Err != nil {
		t.Fatal(st.Err)
	}
	if got := refs(st.Applied); got != "Rollout a, VirtualService reviews" {
		t.Errorf("objects %s, want the Rollout and the VirtualService (the Gateway skipped)", got)
	}
	d, ok := st.Applied.Lookup(ObjectRef{Kind: "VirtualService", Name: "reviews"})
	if !ok || d.Istio == nil || !strings.Contains(string(d.Istio.Spec), `"timeout":"3s"`) {
		t.Fatalf("VirtualService reviews %+v: want it with its spec", d.Istio)
	}
	if d.Provenance.Commit != first || d.Provenance.Path != "deploy/istio.yaml" || d.Annotations()[AnnotationPath] != "deploy/istio.yaml" {
		t.Errorf("provenance %+v", d.Provenance)
	}
	if v := metricValue(t, reg, "sluice_gitsync_objects", "kind", "VirtualService"); v != 1 {
		t.Errorf("objects{kind=VirtualService} = %v, want 1", v)
	}

	r.Push("drop it", map[string]string{"deploy/istio.yaml": ""})
	st = s.Sync(context.Background())
	if st.Err != nil || len(st.Applied.Removed) != 1 || st.Applied.Removed[0].String() != "VirtualService reviews" {
		t.Errorf("removed %v (%v), want the VirtualService", st.Applied.Removed, st.Err)
	}
}
