package istio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/sluicehq/sluice/rollout/engine"
)

// AddToScheme registers the Istio networking types the Writer reads.
var AddToScheme = networkingv1.AddToScheme

// Client is what the Writer needs of a controller-runtime client.
// client.Client satisfies it. Reads should reach the API server, not a
// cache: a cached Writer reads its own cache first and this client only
// for what that lacks, and after a write that lost a race, when a stale
// read would lose it again.
type Client interface {
	Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error
	Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error
	Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error
}

// Writer writes traffic plans as Istio objects with server-side apply.
type Writer struct {
	c Client

	// The rest is a cached Writer's (NewCachedWriter); see watch.go.
	cache      cache.Cache
	startCache bool // the cache is the Writer's own (StartsCache)
	log        logr.Logger
	mem        *memory
	watching   atomic.Bool
	wake       chan event.GenericEvent
	wakeWanted atomic.Bool
}

// NewWriter returns a Writer that reads through c and writes on every
// call.
func NewWriter(c Client) *Writer { return &Writer{c: c} }

// Written is what the API server accepted for one plan.
type Written struct {
	PlanVersion string
	// Generation and ResourceVersion are the main VirtualService's after
	// the write. An unchanged plan leaves both as they were.
	Generation      int64
	ResourceVersion string
}

// Write renders in.Plan against the live and declared objects and applies
// the DestinationRule, then the VirtualService(s), then deletes a preview
// VirtualService the plan no longer wants. A write that lost a race with
// another writer (resourceVersion precondition) is rendered again from a
// fresh read.
//
// A cached Writer skips all of it, sending no request, when in is the
// Input of its last successful write for in.Owner and its cache shows the
// objects as that write left them (see NewCachedWriter).
//
// With no xDS client connected, a nil error is the data plane's
// acknowledgement of the plan version; see Acknowledgement.
func (w *Writer) Write(ctx context.Context, in Input) (Written, error) {
	key, inputs, remember := w.memoryKey(in)
	if remember {
		if out, ok := w.unchanged(ctx, key, inputs); ok {
			return out, nil
		}
	}
	objects := refs(in)
	if remember {
		w.mem.begin(key, objects)
	}
	var out Written
	rv := versions{}
	for _, ref := range objects {
		rv[ref] = "" // until written: absent, or not Sluice's
	}
	// The first attempt reads what the cache has of the objects, when it
	// may (see read); one that lost a race reads the API server.
	fromCache := remember
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var err error
		out, err = w.write(ctx, in, rv, fromCache)
		fromCache = false
		return err
	})
	if remember {
		if err != nil {
			inputs = ""
		}
		if w.mem.end(key, inputs, rv, out) {
			w.wakeUp(ctx, key)
		}
	}
	if err != nil {
		return Written{}, fmt.Errorf("writing plan %s of %s/%s to Istio: %w", in.Plan.Version, in.Plan.Namespace, in.Plan.Service, err)
	}
	return out, nil
}

// write reads, renders and applies once, noting in rv the resourceVersion
// each object is left at. The DestinationRule is applied only when the
// write would change it: its subsets change at the start of a rollout and
// at promotion, not at each step.
func (w *Writer) write(ctx context.Context, in Input, rv versions, fromCache bool) (Written, error) {
	live, err := w.read(ctx, in, fromCache)
	if err != nil {
		return Written{}, err
	}
	d, err := Render(in, live)
	if err != nil {
		return Written{}, &RejectedError{Err: err}
	}
	if l := live.DestinationRule; l != nil && applies(d.DestinationRule, l) {
		rv[objectRef{kind: destinationRuleType.Kind, namespace: l.Namespace, name: l.Name}] = l.ResourceVersion
	} else if _, err := w.apply(ctx, d.DestinationRule, &d.DestinationRule.Spec, rv); err != nil {
		return Written{}, err
	}
	vs, err := w.apply(ctx, d.VirtualService, &d.VirtualService.Spec, rv)
	if err != nil {
		return Written{}, err
	}
	switch {
	case d.Preview != nil:
		if _, err := w.apply(ctx, d.Preview, &d.Preview.Spec, rv); err != nil {
			return Written{}, err
		}
	case live.Preview != nil && ownedBy(live.Preview, in.Owner):
		if err := w.deleteStale(ctx, live.Preview); err != nil {
			return Written{}, err
		}
	}
	return Written{PlanVersion: in.Plan.Version, Generation: vs.GetGeneration(), ResourceVersion: vs.GetResourceVersion()}, nil
}

// names are the objects a write of one Input reads and writes.
type names struct {
	virtualService, preview, destinationRule string
}

func namesOf(in Input) names {
	n := names{
		virtualService:  nameOr(in.VirtualServiceName, in.Plan.Service),
		destinationRule: nameOr(in.DestinationRuleName, in.Plan.Service),
	}
	if in.VirtualService != nil {
		n.virtualService = in.VirtualService.Name
	}
	if in.DestinationRule != nil {
		n.destinationRule = in.DestinationRule.Name
	}
	n.preview = n.virtualService + previewSuffix
	return n
}

// read gets the live objects Render compares with; absent ones are nil.
//
// fromCache reads them from the cached Writer's cache first: it holds
// every object Sluice wrote (LabelRouting), and the Rollout is woken when
// one changes (NewCachedWriter), so a read that is behind costs at worst a
// conflict, and a fresh read, or a write the wake-up corrects. An object
// the cache lacks is read from the API server: it may exist without
// Sluice's label (someone else's, which Render must see to leave alone).
// Only the preview VirtualService of a plan without preview hosts is not:
// Sluice deletes a stale one only if it wrote it, and then the cache has
// it.
func (w *Writer) read(ctx context.Context, in Input, fromCache bool) (Live, error) {
	ns := in.Plan.Namespace
	n := namesOf(in)
	var live Live
	var err error
	if live.VirtualService, err = read(ctx, w, fromCache, ns, n.virtualService, &networkingv1.VirtualService{}); err != nil {
		return live, err
	}
	answered := false
	if fromCache && !hasPreview(in) {
		var cerr error
		live.Preview, _, cerr = cached(ctx, w.cache, ns, n.preview, &networkingv1.VirtualService{})
		// Found, or absent from a cache that could answer: then it is
		// not Sluice's, which is all a plan without preview hosts asks.
		answered = cerr == nil
	}
	if !answered {
		if live.Preview, err = read(ctx, w, fromCache, ns, n.preview, &networkingv1.VirtualService{}); err != nil {
			return live, err
		}
	}
	if live.DestinationRule, err = read(ctx, w, fromCache, ns, n.destinationRule, &networkingv1.DestinationRule{}); err != nil {
		return live, err
	}
	return live, nil
}

// read reads one object, from the cache first if fromCache; the API
// server answers for what the cache lacks or cannot say.
func read[T client.Object](ctx context.Context, w *Writer, fromCache bool, ns, name string, obj T) (T, error) {
	if fromCache {
		if got, found, err := cached(ctx, w.cache, ns, name, obj); err == nil && found {
			return got, nil
		}
	}
	return get(ctx, w.c, ns, name, obj)
}

// cached reads one object from the cache; found is false when the cache
// lacks it.
func cached[T client.Object](ctx context.Context, ca cache.Cache, ns, name string, obj T) (got T, found bool, err error) {
	err = ca.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)
	switch {
	case apierrors.IsNotFound(err):
		return got, false, nil
	case err != nil:
		return got, false, fmt.Errorf("reading %s/%s from the cache: %w", ns, name, err)
	}
	return obj, true, nil
}

// hasPreview reports whether the plan routes preview hosts, which get a
// VirtualService of their own; when unsure, true.
func hasPreview(in Input) bool {
	_, preview, err := hostGroups(&in.Plan, in.VirtualService)
	return err != nil || preview != nil
}

// applies reports whether live already is what applying desired would
// make it, but for the plan version it records: every label, annotation
// and owner reference desired sets, and the same spec. Applying it would
// then change nothing that routes traffic.
func applies(desired, live *networkingv1.DestinationRule) bool {
	if !proto.Equal(&desired.Spec, &live.Spec) || !slices.EqualFunc(desired.OwnerReferences, live.OwnerReferences, ownerRefEqual) {
		return false
	}
	for k, v := range desired.Labels {
		if got, ok := live.Labels[k]; !ok || got != v {
			return false
		}
	}
	for k, v := range desired.Annotations {
		if got, ok := live.Annotations[k]; k != AnnotationPlanVersion && (!ok || got != v) {
			return false
		}
	}
	return true
}

func ownerRefEqual(a, b metav1.OwnerReference) bool { return equality.Semantic.DeepEqual(a, b) }

func nameOr(name, def string) string {
	if name != "" {
		return name
	}
	return def
}

func get[T client.Object](ctx context.Context, c Client, ns, name string, obj T) (T, error) {
	var zero T
	err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj)
	switch {
	case apierrors.IsNotFound(err):
		return zero, nil
	case meta.IsNoMatchError(err):
		return zero, notInstalled(err)
	case err != nil:
		return zero, fmt.Errorf("reading %s/%s: %w", ns, name, err)
	}
	return obj, nil
}

// apply server-side applies obj as field manager "sluice", forcing
// ownership: everything in the request is either Sluice's (the managed
// routes, the subsets, its annotations) or Git's declaration, which Sluice
// writes, or a live value echoed back unchanged (see Render). It returns
// the object as stored, and notes its resourceVersion in rv.
func (w *Writer) apply(ctx context.Context, obj client.Object, spec json.Marshaler, rv versions) (*unstructured.Unstructured, error) {
	u, err := applyConfiguration(obj, spec)
	if err != nil {
		return nil, err
	}
	kind := u.GetKind()
	if err := w.c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		if rejected(err) {
			return nil, &RejectedError{Err: fmt.Errorf("applying %s %s/%s: %w", kind, obj.GetNamespace(), obj.GetName(), err)}
		}
		return nil, fmt.Errorf("applying %s %s/%s: %w", kind, obj.GetNamespace(), obj.GetName(), err)
	}
	rv[objectRef{kind: kind, namespace: u.GetNamespace(), name: u.GetName()}] = u.GetResourceVersion()
	return u, nil
}

// applyConfiguration turns a typed object into the apply request: only
// the metadata Sluice sets and the spec, so no zero-valued field of the Go
// types (status, creationTimestamp) claims ownership of anything.
func applyConfiguration(obj client.Object, spec json.Marshaler) (*unstructured.Unstructured, error) {
	// Istio's MarshalJSON writes protobuf JSON, the form its CRDs define.
	s, err := spec.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encoding the spec of %s: %w", obj.GetName(), err)
	}
	var specMap map[string]any
	if err := utiljson.Unmarshal(s, &specMap); err != nil {
		return nil, fmt.Errorf("decoding the spec of %s: %w", obj.GetName(), err)
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": specMap}}
	u.GetObjectKind().SetGroupVersionKind(obj.GetObjectKind().GroupVersionKind())
	u.SetName(obj.GetName())
	u.SetNamespace(obj.GetNamespace())
	u.SetLabels(obj.GetLabels())
	u.SetAnnotations(obj.GetAnnotations())
	u.SetOwnerReferences(obj.GetOwnerReferences())
	// A non-empty resourceVersion makes the API server refuse the write
	// if the object changed since it was read (a 409, then a fresh render).
	u.SetResourceVersion(obj.GetResourceVersion())
	return u, nil
}

// ownedBy reports whether Sluice created obj for this Rollout, so it may
// delete it.
func ownedBy(obj metav1.Object, owner *metav1.OwnerReference) bool {
	if obj.GetLabels()[LabelManagedBy] != managedByValue {
		return false
	}
	c := metav1.GetControllerOf(obj)
	return owner == nil || c == nil || c.UID == owner.UID
}

// deleteStale removes a preview VirtualService once the plan has no preview
// hosts, provided it is still the object that was read.
func (w *Writer) deleteStale(ctx context.Context, vs *networkingv1.VirtualService) error {
	uid, rv := vs.UID, vs.ResourceVersion
	err := w.c.Delete(ctx, vs, client.Preconditions{UID: &uid, ResourceVersion: &rv})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting stale preview VirtualService %s/%s: %w", vs.Namespace, vs.Name, err)
	}
	return nil
}

// CRDsMissing is what the Writer says when the cluster serves no
// VirtualService: what is missing, and what to do about it.
const CRDsMissing = "Istio's CRDs are not installed: the cluster serves no VirtualService or DestinationRule in networking.istio.io/v1 " +
	"(install Istio, or only its CRDs with its base Helm chart; or give the Rollout another router in spec.service.routers; " +
	"or run sluice controller with --istio=false to serve such Rollouts over xDS only)"

// NotInstalledError says that Istio's CRDs are missing, and what to do.
// It is kube/controller's Waiting error: the reconciler looks again after
// RetryAfter rather than with backoff, so a Rollout finds the CRDs soon
// after they are installed.
type NotInstalledError struct{ Err error }

func (e *NotInstalledError) Error() string { return CRDsMissing + ": " + e.Err.Error() }
func (e *NotInstalledError) Unwrap() error { return e.Err }

// RetryAfter is how often a Rollout looks for Istio's CRDs again.
func (e *NotInstalledError) RetryAfter() time.Duration { return 15 * time.Second }

func notInstalled(err error) error { return &NotInstalledError{Err: err} }

// RejectedError means the plan cannot be written as it is: it does not fit
// the declared objects, or the API server (schema validation, Istio's
// validating webhook) refused it. Writing it again will not help.
type RejectedError struct{ Err error }

func (e *RejectedError) Error() string { return "rejected: " + e.Err.Error() }
func (e *RejectedError) Unwrap() error { return e.Err }

// rejected tells a refusal of the content from a failure to reach or
// convince the API server for other reasons (RBAC, timeouts), which may pass.
func rejected(err error) bool {
	switch {
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		return true
	case apierrors.IsForbidden(err):
		// A validating webhook's denial; RBAC denials do not mention one.
		return strings.Contains(err.Error(), "admission webhook")
	}
	return false
}

// Acknowledgement maps the outcome of Write to the engine's data-plane
// observation for the case with no xDS client connected: an accepted write
// acknowledges the version; a rejected one is the data plane refusing it,
// like a proxy's NACK, with the reason; any other error leaves the version
// pending, to be written again.
func Acknowledgement(planVersion string, err error) engine.DataPlane {
	var rej *RejectedError
	switch {
	case err == nil:
		return engine.DataPlane{Version: planVersion, State: engine.AckAcknowledged}
	case errors.As(err, &rej):
		return engine.DataPlane{Version: planVersion, State: engine.AckRejected, Message: rej.Err.Error()}
	}
	return engine.DataPlane{Version: planVersion, State: engine.AckPending}
}
