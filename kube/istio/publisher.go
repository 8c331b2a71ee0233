package istio

import (
	"context"
	"fmt"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Declarations is what Git declares, as the Publisher needs it: the
// controller's Git applier keeps the VirtualServices and DestinationRules
// that Rollouts name, and does not apply them itself, so that the Writer is
// their one writer (docs/istio.md, "one writer").
type Declarations interface {
	// Declared returns the VirtualService and the DestinationRule of
	// namespace ns with these names as Git declares them, each nil when
	// its name is empty or Git does not declare it. The objects are the
	// caller's. It fails while the declarations are not known yet (before
	// the first Git sync): writing then would replace Git's objects with
	// Sluice's own.
	Declared(ns, virtualService, destinationRule string) (*networkingv1.VirtualService, *networkingv1.DestinationRule, error)
}

// RolloutDeclarations are the Declarations of several Git sources
// (kube/gitapply.Sources): DeclaredFor answers from the source ro was
// applied from, so one source's objects never stand in for another's.
// The Publisher prefers it to Declared when its Declarations have it.
type RolloutDeclarations interface {
	DeclaredFor(ctx context.Context, ro *v1alpha1.Rollout, virtualService, destinationRule string) (*networkingv1.VirtualService, *networkingv1.DestinationRule, error)
}

// Publisher writes a Rollout's traffic plans as Istio objects. It has the
// controller's Publisher method set (kube/controller), so the reconciler
// can use it directly or behind controller.AcceptedOnWrite.
type Publisher struct {
	Writer *Writer
	// Declared is Git's declarations; nil when the controller has no Git
	// source, and then Sluice renders objects of its own (named after the
	// Rollout's spec.service references, or the service).
	Declared Declarations
	// RevisionLabel is the pod label subsets select; default
	// DefaultRevisionLabel.
	RevisionLabel string
}

// Publish writes p for ro: Git's declarations of the objects ro names,
// merged with the plan, with ro's Git provenance.
//
// It hands every call to the Writer, not only a new plan version: a Git
// change to the declared objects (an unmanaged route, say) must reach the
// cluster while the plan stays the same. A cached Writer skips the write
// when neither the plan, nor Git's declaration, nor the live objects
// changed since its last write.
func (p *Publisher) Publish(ctx context.Context, ro *v1alpha1.Rollout, pl plan.Plan) error {
	in, err := p.input(ctx, ro, pl)
	if err != nil {
		return err
	}
	if _, err := p.Writer.Write(ctx, in); err != nil {
		return err
	}
	return nil
}

// Forget drops what the Writer remembers of a deleted Rollout.
func (p *Publisher) Forget(key types.NamespacedName) { p.Writer.Forget(key) }

// input builds the Writer's input for ro.
func (p *Publisher) input(ctx context.Context, ro *v1alpha1.Rollout, pl plan.Plan) (Input, error) {
	svc := &ro.Spec.Service
	in := Input{
		Plan:          pl,
		RevisionLabel: p.RevisionLabel,
		Annotations:   provenance(ro),
		Owner:         metav1.NewControllerRef(ro, workload.RolloutKind),
	}
	if ref := svc.VirtualService; ref != nil {
		in.VirtualServiceName, in.Routes = ref.Name, ref.Routes
	}
	if ref := svc.DestinationRule; ref != nil {
		in.DestinationRuleName = ref.Name
	}
	if p.Declared == nil {
		return in, nil
	}
	var vs *networkingv1.VirtualService
	var dr *networkingv1.DestinationRule
	var err error
	if rd, ok := p.Declared.(RolloutDeclarations); ok {
		vs, dr, err = rd.DeclaredFor(ctx, ro, in.VirtualServiceName, in.DestinationRuleName)
	} else {
		vs, dr, err = p.Declared.Declared(ro.Namespace, in.VirtualServiceName, in.DestinationRuleName)
	}
	if err != nil {
		return Input{}, fmt.Errorf("Istio objects of rollout %s/%s as Git declares them: %w", ro.Namespace, ro.Name, err)
	}
	in.VirtualService, in.DestinationRule = vs, dr
	return in, nil
}

// provenance copies the Rollout's Git provenance annotations, which the
// Git applier set, onto the objects written for it.
func provenance(ro *v1alpha1.Rollout) map[string]string {
	out := map[string]string{}
	for _, k := range []string{gitsync.AnnotationRepository, gitsync.AnnotationCommit, gitsync.AnnotationPath, gitsync.AnnotationCommitTime} {
		if v, ok := ro.Annotations[k]; ok {
			out[k] = v
		}
	}
	return out
}
