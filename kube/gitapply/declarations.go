package gitapply

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"

	"github.com/sluicehq/sluice/rollout/manifest"
)

// errNotSynced is what the Istio Publisher gets before the first commit:
// publishing then would write Sluice's own objects over Git's.
var errNotSynced = errors.New("waiting for the first Git sync")

// key names an object in the cluster.
type key struct {
	kind, namespace, name string
}

func (k key) String() string { return k.kind + " " + k.namespace + "/" + k.name }

// declared is one Istio object as the commit in force declares it.
type declared struct {
	// doc is the document as JSON, to tell a changed declaration.
	doc []byte
	vs  *networkingv1.VirtualService
	dr  *networkingv1.DestinationRule
}

// declarations holds every VirtualService and DestinationRule of the
// commit in force, for the Istio Publisher. They are replaced as a whole,
// before the commit's Rollouts are applied, so a Rollout reconciled for the
// new commit never sees the old declarations.
type declarations struct {
	mu     sync.RWMutex
	synced bool
	objs   map[key]declared
}

// decode turns a manifest's Istio object into Istio's client types, in
// namespace ns (the manifest's, or the default).
func decode(o *manifest.IstioObject, ns string) (declared, error) {
	doc, err := json.Marshal(o)
	if err != nil {
		return declared{}, fmt.Errorf("encoding %s %s: %w", o.Kind, o.Name, err)
	}
	d := declared{doc: doc}
	switch o.Kind {
	case manifest.KindVirtualService:
		d.vs = &networkingv1.VirtualService{}
		err = json.Unmarshal(doc, d.vs)
		d.vs.Namespace = ns
	case manifest.KindDestinationRule:
		d.dr = &networkingv1.DestinationRule{}
		err = json.Unmarshal(doc, d.dr)
		d.dr.Namespace = ns
	default:
		err = fmt.Errorf("kind %q is not an Istio kind Sluice declares", o.Kind)
	}
	if err != nil {
		return declared{}, fmt.Errorf("decoding %s %s/%s: %w", o.Kind, ns, o.Name, err)
	}
	return d, nil
}

// replace puts next in force and returns the keys whose declaration was
// added, changed or removed, and whether these are the first declarations.
func (s *declarations) replace(next map[key]declared) (changed []key, first bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	first = !s.synced
	for k, d := range next {
		if old, ok := s.objs[k]; !ok || !bytes.Equal(old.doc, d.doc) {
			changed = append(changed, k)
		}
	}
	for k := range s.objs {
		if _, ok := next[k]; !ok {
			changed = append(changed, k)
		}
	}
	s.objs, s.synced = next, true
	return changed, first
}

// Declared implements kube/istio's Declarations: the objects are deep
// copies the caller may change.
func (a *Applier) Declared(ns, virtualService, destinationRule string) (*networkingv1.VirtualService, *networkingv1.DestinationRule, error) {
	s := &a.decl
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.synced {
		return nil, nil, errNotSynced
	}
	var vs *networkingv1.VirtualService
	var dr *networkingv1.DestinationRule
	if virtualService != "" {
		if d, ok := s.objs[key{manifest.KindVirtualService, ns, virtualService}]; ok {
			vs = d.vs.DeepCopy()
		}
	}
	if destinationRule != "" {
		if d, ok := s.objs[key{manifest.KindDestinationRule, ns, destinationRule}]; ok {
			dr = d.dr.DeepCopy()
		}
	}
	return vs, dr, nil
}
