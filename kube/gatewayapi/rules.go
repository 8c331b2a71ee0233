package gatewayapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// rule is one entry of a route's spec.rules, each field kept as the JSON
// the API server returned. Sluice sets the few fields it owns (name,
// matches, filters, backendRefs) from typed values and hands every other
// field back byte for byte, including fields newer than the Gateway API
// types it was built with.
type rule map[string]json.RawMessage

func (r rule) clone() rule { return maps.Clone(r) }

// name is the rule's name field, "" when unnamed.
func (r rule) name() string {
	var n string
	if raw, ok := r["name"]; ok {
		_ = json.Unmarshal(raw, &n)
	}
	return n
}

// get decodes field key into v; a missing field leaves v as it is.
func (r rule) get(key string, v any) error {
	raw, ok := r[key]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("rule %q: field %s: %w", r.name(), key, err)
	}
	return nil
}

// set encodes v as field key; raw JSON goes in as it is, nil removes it.
func (r rule) set(key string, v any) error {
	switch v := v.(type) {
	case nil:
		delete(r, key)
		return nil
	case json.RawMessage:
		if len(v) == 0 {
			delete(r, key)
		} else {
			r[key] = v
		}
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", key, err)
	}
	r[key] = b
	return nil
}

// rawList splits a JSON array into its elements; absent or null is none.
func rawList(raw json.RawMessage) ([]json.RawMessage, error) {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	var out []json.RawMessage
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// rulesOf reads spec.rules of a route as the API server returned it.
func rulesOf(u *unstructured.Unstructured) ([]rule, error) {
	v, ok, err := unstructured.NestedFieldNoCopy(u.Object, "spec", "rules")
	if err != nil || !ok {
		return nil, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("spec.rules: %w", err)
	}
	var rs []rule
	if err := json.Unmarshal(b, &rs); err != nil {
		return nil, fmt.Errorf("spec.rules: %w", err)
	}
	return rs, nil
}

// canonical is v's JSON in one spelling: object keys sorted, no spaces,
// numbers as encoding/json writes them. Two values are equal JSON when
// their canonical forms are.
func canonical(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	var generic any
	if err := json.Unmarshal(b, &generic); err != nil {
		return "", err
	}
	b, err = json.Marshal(generic)
	return string(b), err
}

func sameJSON(a, b any) bool {
	ca, errA := canonical(a)
	cb, errB := canonical(b)
	return errA == nil && errB == nil && ca == cb
}

// AnnotationManagedRules records, as JSON keyed by Rollout name, what
// Sluice changed in a route: for each managed rule, the backendRefs it
// replaced and the ones it wrote, the RequestMirror filter it appended and
// the names of the rules it put before it. With it the next write finds
// the route as declared again, whoever wrote the route in between.
const AnnotationManagedRules = "sluice.dev/managed-rules"

// entry is one Rollout's record on a route.
type entry struct {
	// PlanVersion is the traffic plan the rules carry.
	PlanVersion string `json:"planVersion"`
	// Provenance is the Rollout's Git provenance (repository, commit,
	// path), as its other objects carry it.
	Provenance map[string]string `json:"provenance,omitempty"`
	Rules      []ruleRecord      `json:"rules"`
}

// ruleRecord is what Sluice changed in one managed rule.
type ruleRecord struct {
	// Key picks the rule: "name/<name>", "index/<i>" or "only".
	Key string `json:"key"`
	// Extra names the rules Sluice put before it (match routes).
	Extra []string `json:"extra,omitempty"`
	// Declared is the rule's backendRefs before Sluice replaced them;
	// absent when it had none.
	Declared json.RawMessage `json:"declared,omitempty"`
	// Written is the backendRefs Sluice wrote.
	Written json.RawMessage `json:"written"`
	// Mirror is the filter Sluice appended to the rule's filters, if any.
	Mirror json.RawMessage `json:"mirror,omitempty"`
}

// records are every Rollout's entries on a route; another Rollout's stay
// raw, so a write for one Rollout hands the others' back unchanged.
type records map[string]json.RawMessage

func readRecords(u *unstructured.Unstructured) (records, error) {
	out := records{}
	if u == nil {
		return out, nil
	}
	s, ok := u.GetAnnotations()[AnnotationManagedRules]
	if !ok {
		return out, nil
	}
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, fmt.Errorf("annotation %s is not Sluice's record: %w", AnnotationManagedRules, err)
	}
	return out, nil
}

func (rs records) entry(rollout string) (*entry, error) {
	raw, ok := rs[rollout]
	if !ok {
		return nil, nil
	}
	e := &entry{}
	if err := json.Unmarshal(raw, e); err != nil {
		return nil, fmt.Errorf("annotation %s, rollout %s: %w", AnnotationManagedRules, rollout, err)
	}
	return e, nil
}

// extraNames are the names of the rules Sluice put into the route for
// each Rollout.
func (rs records) extraNames() (map[string]string, error) {
	owner := map[string]string{}
	for _, ro := range slices.Sorted(maps.Keys(rs)) {
		e, err := rs.entry(ro)
		if err != nil {
			return nil, err
		}
		for _, rr := range e.Rules {
			for _, n := range rr.Extra {
				owner[n] = ro
			}
		}
	}
	return owner, nil
}

// encode is the annotation's value; encoding/json sorts the keys, so the
// same records give the same text.
func (rs records) encode() (string, error) {
	b, err := json.Marshal(rs)
	if err != nil {
		return "", fmt.Errorf("encoding annotation %s: %w", AnnotationManagedRules, err)
	}
	return string(b), nil
}
