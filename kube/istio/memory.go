package istio

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"sync"

	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// What a cached Writer remembers to skip writes that would change
// nothing. A write is skipped when its Input fingerprints the same as the
// last successful one for the Rollout, and the cache shows every object
// that write touched at the resourceVersion the write left it at: then
// the apply would send exactly what is stored, and the API server would
// not change it.
//
// The memory is per process. After a restart (or on a new leader) the
// first write of each Rollout reads and applies as before, and the
// following ones are skipped.

// objectRef names one object the Writer writes or deletes.
type objectRef struct {
	kind, namespace, name string
}

// versions is each object's resourceVersion; "" means absent, or not
// written by Sluice (a preview VirtualService someone else owns).
type versions map[objectRef]string

// record is the last write for one Rollout.
type record struct {
	// inputs fingerprints the Input of the last successful write; "" after
	// a failed write, when nothing may be skipped.
	inputs string
	// rv is what the last write left each of its objects at.
	rv  versions
	out Written
	// seen is non-nil while a write runs: the last resourceVersion the
	// cache reported meanwhile for each object, compared with rv at the
	// end (an edit that landed after Sluice's apply needs a new write).
	seen versions
}

// memory holds the records of every Rollout the Writer wrote for, and which
// Rollout wrote each object, for the cache's events.
type memory struct {
	mu      sync.Mutex
	records map[types.NamespacedName]*record
	owners  map[objectRef]types.NamespacedName
}

func newMemory() *memory {
	return &memory{records: map[types.NamespacedName]*record{}, owners: map[objectRef]types.NamespacedName{}}
}

// lookup returns what the last write of key left, if it had these inputs
// and no write runs.
func (m *memory) lookup(key types.NamespacedName, inputs string) (versions, Written, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.records[key]
	if !ok || rec.seen != nil || rec.inputs == "" || rec.inputs != inputs {
		return nil, Written{}, false
	}
	return maps.Clone(rec.rv), rec.out, true
}

// begin marks a write of key's objects as running: until end, nothing is
// skipped for key, and the cache's events for refs are collected.
func (m *memory) begin(key types.NamespacedName, refs []objectRef) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.records[key]
	if !ok {
		rec = &record{}
		m.records[key] = rec
	}
	// Objects the Rollout no longer names (a renamed VirtualService) are
	// not its to watch.
	for ref := range rec.rv {
		if m.owners[ref] == key {
			delete(m.owners, ref)
		}
	}
	rec.inputs, rec.rv, rec.seen = "", versions{}, versions{}
	for _, ref := range refs {
		m.owners[ref] = key
	}
}

// end records the outcome of the write begun for key: inputs is "" when it
// failed. It reports whether an object changed after Sluice wrote it, as
// the cache saw while the write ran: then the Rollout needs another write.
func (m *memory) end(key types.NamespacedName, inputs string, rv versions, out Written) (changedSince bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rec, ok := m.records[key]
	if !ok {
		return false // forgotten meanwhile
	}
	rec.inputs, rec.rv, rec.out = inputs, maps.Clone(rv), out
	for ref, seen := range rec.seen {
		if seen != rec.rv[ref] {
			changedSince = true
		}
	}
	rec.seen = nil
	return changedSince
}

// observe takes in the cache's news of an object: its resourceVersion, or
// "" when it is gone. It returns the Rollout to write again when the
// object is not as the Rollout's last write left it.
func (m *memory) observe(ref objectRef, rv string) (types.NamespacedName, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key, ok := m.owners[ref]
	if !ok {
		return key, false
	}
	rec := m.records[key]
	if rec.seen != nil {
		rec.seen[ref] = rv
		return key, false
	}
	return key, rec.rv[ref] != rv
}

// forget drops key's record.
func (m *memory) forget(key types.NamespacedName) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.records, key)
	for ref, k := range m.owners {
		if k == key {
			delete(m.owners, ref)
		}
	}
}

// fingerprint hashes everything Render takes from in besides the live
// objects: the plan (its Version is its content hash, which Check
// verifies), Git's declarations with their metadata, the names, managed
// routes, revision label, provenance and owner.
func fingerprint(in Input) (string, error) {
	if err := in.Plan.Check(); err != nil {
		return "", fmt.Errorf("invalid plan: %w", err)
	}
	type declared struct {
		Meta metav1.ObjectMeta
		// Spec is deterministic protobuf: Istio's specs are protos, and
		// their JSON encoding is not guaranteed stable.
		Spec []byte
	}
	encode := func(meta *metav1.ObjectMeta, spec proto.Message) (*declared, error) {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(spec)
		if err != nil {
			return nil, fmt.Errorf("fingerprinting the declared %s: %w", meta.Name, err)
		}
		return &declared{Meta: *meta, Spec: b}, nil
	}
	fp := struct {
		Plan, VirtualServiceName, DestinationRuleName, RevisionLabel string
		Routes                                                       []string
		VirtualService, DestinationRule                              *declared
		Annotations                                                  map[string]string
		Owner                                                        *metav1.OwnerReference
	}{
		Plan: in.Plan.Version, VirtualServiceName: in.VirtualServiceName, DestinationRuleName: in.DestinationRuleName,
		RevisionLabel: in.RevisionLabel, Routes: in.Routes, Annotations: in.Annotations, Owner: in.Owner,
	}
	var err error
	if vs := in.VirtualService; vs != nil {
		if fp.VirtualService, err = encode(&vs.ObjectMeta, &vs.Spec); err != nil {
			return "", err
		}
	}
	if dr := in.DestinationRule; dr != nil {
		if fp.DestinationRule, err = encode(&dr.ObjectMeta, &dr.Spec); err != nil {
			return "", err
		}
	}
	// encoding/json sorts map keys: equal inputs give equal bytes.
	b, err := json.Marshal(fp)
	if err != nil {
		return "", fmt.Errorf("fingerprinting the Istio input: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// refs are the objects a write of in touches, named as read names them.
func refs(in Input) []objectRef {
	n := namesOf(in)
	ns := in.Plan.Namespace
	return []objectRef{
		{kind: destinationRuleType.Kind, namespace: ns, name: n.destinationRule},
		{kind: virtualServiceType.Kind, namespace: ns, name: n.virtualService},
		{kind: virtualServiceType.Kind, namespace: ns, name: n.preview},
	}
}
