package gatewayapi

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// slot is one rule of the route as declared, or another Rollout's rule
// put before the rule it manages (foreign), which does not count as a
// declared rule.
type slot struct {
	rule    rule
	foreign bool
}

// declaredSlots takes the live rules back to the route as declared, as
// far as rollout's last write goes: the rules it put in are dropped
// (another Rollout's are kept, as foreign slots), and in the managed rules
// it recorded the declared backendRefs come back and the mirror filter it
// appended goes, each only where the live value is still the one Sluice
// wrote. A rule someone rewrote since is that someone's declaration.
func declaredSlots(live []rule, recs records, rollout string) ([]slot, error) {
	extras, err := recs.extraNames()
	if err != nil {
		return nil, err
	}
	slots := make([]slot, 0, len(live))
	for _, ru := range live {
		owner, ok := extras[ru.name()]
		switch {
		case !ok || ru.name() == "":
			slots = append(slots, slot{rule: ru})
		case owner != rollout:
			slots = append(slots, slot{rule: ru, foreign: true})
		}
	}
	last, err := recs.entry(rollout)
	if err != nil || last == nil {
		return slots, err
	}
	for _, rec := range last.Rules {
		i, err := findKey(slots, rec.Key)
		if err != nil {
			continue // the rule is gone or moved; nothing to undo
		}
		if slots[i].rule, err = undo(slots[i].rule, rec); err != nil {
			return nil, err
		}
	}
	return slots, nil
}

// undo takes back what rec says Sluice changed in ru, where it is still
// Sluice's.
func undo(ru rule, rec ruleRecord) (rule, error) {
	ru = ru.clone()
	if sameJSON(ru["backendRefs"], rec.Written) {
		if err := ru.set("backendRefs", rec.Declared); err != nil {
			return nil, err
		}
	}
	if len(rec.Mirror) == 0 {
		return ru, nil
	}
	filters, err := rawList(ru["filters"])
	if err != nil {
		return nil, fmt.Errorf("filters of rule %q: %w", ru.name(), err)
	}
	if n := len(filters); n > 0 && sameJSON(filters[n-1], rec.Mirror) {
		var rest any
		if n > 1 {
			rest = filters[:n-1]
		}
		if err := ru.set("filters", rest); err != nil {
			return nil, err
		}
	}
	return ru, nil
}

// ruleKey is how a record names a managed rule.
func ruleKey(ref v1alpha1.GatewayRuleRef) string {
	switch {
	case ref.Name != "":
		return "name/" + ref.Name
	case ref.Index != nil:
		return "index/" + strconv.Itoa(int(*ref.Index))
	}
	return "only"
}

// findKey finds a managed rule among the declared ones (foreign rules do
// not count, and do not shift indexes).
func findKey(slots []slot, key string) (int, error) {
	var declared []int
	for i, s := range slots {
		if !s.foreign {
			declared = append(declared, i)
		}
	}
	kind, arg, _ := strings.Cut(key, "/")
	switch kind {
	case "only":
		if len(declared) != 1 {
			return 0, fmt.Errorf("the route has %d rules; name the ones Sluice manages in the router's rules", len(declared))
		}
		return declared[0], nil
	case "index":
		n, err := strconv.Atoi(arg)
		if err != nil || n < 0 || n >= len(declared) {
			return 0, fmt.Errorf("the route has %d rules; there is no rule at index %s", len(declared), arg)
		}
		return declared[n], nil
	}
	var named []int
	for _, i := range declared {
		if slots[i].rule.name() == arg {
			named = append(named, i)
		}
	}
	switch len(named) {
	case 0:
		return 0, fmt.Errorf("the route has no rule named %q", arg)
	case 1:
		return named[0], nil
	}
	return 0, fmt.Errorf("the route has %d rules named %q; pick one by index in the router's rules", len(named), arg)
}

// Release takes a route back to its declaration as far as rollout's
// changes go (declaredSlots) and drops rollout's record: what a Rollout
// that no longer names the route, or no longer exists, leaves behind. It
// is pure; nil when the route holds nothing of rollout's, or Sluice
// created it (it goes with its Rollout).
func Release(kind Kind, rollout string, live *unstructured.Unstructured) (*Desired, error) {
	recs, err := readRecords(live)
	if err != nil || recs[rollout] == nil || live.GetLabels()[workload.LabelManagedBy] == workload.ManagedBy {
		return nil, err
	}
	decl, err := rulesOf(live)
	if err != nil {
		return nil, err
	}
	slots, err := declaredSlots(decl, recs, rollout)
	if err != nil {
		return nil, err
	}
	delete(recs, rollout)
	rules := make([]rule, 0, len(slots))
	for _, s := range slots {
		rules = append(rules, s.rule)
	}
	u, err := applyRules(kind, live.GetNamespace(), live.GetName(), rules, recs, live)
	if err != nil {
		return nil, err
	}
	return &Desired{Apply: u, Changed: true}, nil
}
