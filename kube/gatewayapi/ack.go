package gatewayapi

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluicehq/sluice/internal/untrusted"
	"github.com/sluicehq/sluice/rollout/engine"
)

// maxConditionText bounds the text of one parent's condition in a
// rejection; the engine bounds the whole.
const maxConditionText = 300

// judge is the data plane's answer for a route Sluice wrote at generation
// gen, read from the route's status as the gateway controllers write it:
// acknowledged when, for every parentRef, every controller's status for
// that parent has Accepted=True and ResolvedRefs=True observed at gen or
// later; rejected (with the controllers' messages) as soon as one of
// those conditions is False, or PartiallyInvalid is True, at gen or
// later; pending otherwise, a condition observed at an older generation
// included.
func judge(kind Kind, route *unstructured.Unstructured, gen int64) (engine.AckState, string, error) {
	v, err := judgeRoute(kind, route, gen)
	return v.state, v.message, err
}

// verdict is judge's answer with its count: one answerer per parentRef
// and controller reporting on it (one for a parent none reports on yet),
// those that took the generation, and the names of those that have not
// answered it, as the engine counts xDS nodes.
type verdict struct {
	state            engine.AckState
	message          string
	answerers, acked int
	pending          []string
}

func judgeRoute(kind Kind, route *unstructured.Unstructured, gen int64) (verdict, error) {
	v := verdict{state: engine.AckPending}
	var parents []gatewayv1.ParentReference
	if raw, ok, _ := unstructured.NestedSlice(route.Object, "spec", "parentRefs"); ok {
		if err := fromUnstructured(raw, &parents); err != nil {
			return v, fmt.Errorf("spec.parentRefs of %s %s: %w", kind, route.GetName(), err)
		}
	}
	var status gatewayv1.RouteStatus
	if raw, ok, _ := unstructured.NestedMap(route.Object, "status"); ok {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &status); err != nil {
			return v, fmt.Errorf("status of %s %s: %w", kind, route.GetName(), err)
		}
	}
	ns := route.GetNamespace()
	where := fmt.Sprintf("%s %s/%s", kind, ns, route.GetName())
	if len(parents) == 0 {
		v.state, v.message = engine.AckRejected, where+" has no parentRefs: no gateway serves it"
		return v, nil
	}
	v.state = engine.AckAcknowledged
	var nacks []string
	for _, p := range parents {
		found := false
		for _, ps := range status.Parents {
			if !sameParent(p, ps.ParentRef, ns) {
				continue
			}
			found = true
			v.answerers++
			who := fmt.Sprintf("%s, parent %s (%s)", where, parentName(p, ns), untrusted.Text(string(ps.ControllerName), 128))
			s, msg := judgeParent(ps, gen)
			switch s {
			case engine.AckRejected:
				nacks = append(nacks, who+": "+msg)
			case engine.AckPending:
				v.state = engine.AckPending
				v.pending = append(v.pending, who)
			default:
				v.acked++
			}
		}
		if !found {
			v.state = engine.AckPending
			v.answerers++
			v.pending = append(v.pending, fmt.Sprintf("%s, parent %s (no controller has reported)", where, parentName(p, ns)))
		}
	}
	if len(nacks) > 0 {
		v.state, v.message = engine.AckRejected, strings.Join(nacks, "; ")
	}
	return v, nil
}

// judgeParent judges one controller's status for one parent.
func judgeParent(ps gatewayv1.RouteParentStatus, gen int64) (engine.AckState, string) {
	state := engine.AckAcknowledged
	var bad []string
	for _, t := range []gatewayv1.RouteConditionType{gatewayv1.RouteConditionAccepted, gatewayv1.RouteConditionResolvedRefs} {
		c := meta.FindStatusCondition(ps.Conditions, string(t))
		switch {
		case c == nil || c.ObservedGeneration < gen || c.Status == metav1.ConditionUnknown:
			state = engine.AckPending
		case c.Status == metav1.ConditionFalse:
			bad = append(bad, fmt.Sprintf("%s=False (%s): %s", t,
				untrusted.Text(c.Reason, 64), untrusted.Text(c.Message, maxConditionText)))
		}
	}
	// PartiallyInvalid=True (GEP-1364): the gateway serves the route
	// without the rules it found invalid, which may be the ones Sluice
	// wrote; the plan is not in force as written. Its absence, or False,
	// is the normal case.
	if c := meta.FindStatusCondition(ps.Conditions, string(gatewayv1.RouteConditionPartiallyInvalid)); c != nil &&
		c.Status == metav1.ConditionTrue && c.ObservedGeneration >= gen {
		bad = append(bad, fmt.Sprintf("%s=True (%s): %s", gatewayv1.RouteConditionPartiallyInvalid,
			untrusted.Text(c.Reason, 64), untrusted.Text(c.Message, maxConditionText)))
	}
	if len(bad) > 0 {
		return engine.AckRejected, strings.Join(bad, ", ")
	}
	return state, ""
}

// sameParent reports whether a status entry is about parentRef p of a
// route in namespace ns, with the API's defaults (group
// gateway.networking.k8s.io, kind Gateway, the route's namespace).
func sameParent(p, q gatewayv1.ParentReference, ns string) bool {
	return parentName(p, ns) == parentName(q, ns)
}

func parentName(p gatewayv1.ParentReference, ns string) string {
	group, kind, pns := gatewayv1.GroupName, "Gateway", ns
	if p.Group != nil {
		group = string(*p.Group)
	}
	if p.Kind != nil {
		kind = string(*p.Kind)
	}
	if p.Namespace != nil {
		pns = string(*p.Namespace)
	}
	s := kind + "." + group + " " + pns + "/" + string(p.Name)
	if p.SectionName != nil {
		s += "#" + string(*p.SectionName)
	}
	if p.Port != nil {
		s += fmt.Sprintf(":%d", *p.Port)
	}
	return s
}

// fromUnstructured converts an unstructured list into typed values.
func fromUnstructured[T any](raw []any, out *[]T) error {
	*out = make([]T, len(raw))
	for i, v := range raw {
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("item %d is not an object", i)
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &(*out)[i]); err != nil {
			return err
		}
	}
	return nil
}
