package gatewayapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

// Client is what the Writer needs of a controller-runtime client.
// client.Client satisfies it. Reads should reach the API server, not a
// cache: the write carries the resourceVersion read, and a stale read
// costs a conflict and a retry.
type Client interface {
	getter
	// List finds the routes holding a record of a Rollout that the
	// running process did not write (letgo.go).
	List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error
	Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error
}

// Writer writes traffic plans into Gateway API routes with server-side
// apply, one route per Write.
type Writer struct {
	c   Client
	log logr.Logger

	// The rest is a cached Writer's (NewCachedWriter); see watch.go.
	cache      cache.Cache
	base       atomic.Pointer[context.Context]
	mu         sync.Mutex
	watches    map[Kind]watchState
	mem        *memory
	wake       chan event.GenericEvent
	wakeWanted atomic.Bool
}

// NewWriter returns a Writer that reads through c and renders on every
// call; it applies when the route differs from the render.
func NewWriter(c Client) *Writer { return &Writer{c: c, log: logr.Discard()} }

// Written is one route as a Write left it.
type Written struct {
	Kind      Kind
	Namespace string
	Name      string
	// PlanVersion is the plan the route carries.
	PlanVersion string
	// Generation is the route's generation holding the plan: the one the
	// apply produced, or the live one when nothing needed writing. The
	// gateway's status must have observed it (see judge).
	Generation      int64
	ResourceVersion string
}

// Write renders in.Plan into the live route and applies the result when
// it differs from the live route. A write that lost a race with another
// writer (resourceVersion precondition) is rendered again from a fresh
// read.
//
// A cached Writer skips it all, sending no request, when in is the Input
// of its last write of this route for in.Owner and its cache shows the
// route at the resourceVersion that write left.
func (w *Writer) Write(ctx context.Context, in Input) (Written, error) {
	ref := routeRef{kind: in.Kind, namespace: in.Plan.Namespace, name: in.Route.Name}
	key, inputs, remember := w.memoryKey(in)
	if remember {
		if out, ok := w.unchanged(ctx, key, ref, inputs); ok {
			return out, nil
		}
	}
	var out Written
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var err error
		out, err = w.write(ctx, in)
		return err
	})
	var rej *RejectedError
	if err == nil || errors.As(err, &rej) {
		// The kind exists: watch it from now on (a cached Writer).
		w.ensureWatch(in.Kind)
	}
	if err != nil {
		return Written{}, fmt.Errorf("writing plan %s of %s/%s to %s %s: %w", in.Plan.Version, in.Plan.Namespace, in.Plan.Service, in.Kind, in.Route.Name, err)
	}
	if remember {
		w.mem.remember(key, ref, inputs, out)
	}
	return out, nil
}

func (w *Writer) write(ctx context.Context, in Input) (Written, error) {
	live, err := w.get(ctx, in.Kind, in.Plan.Namespace, in.Route.Name)
	if err != nil {
		return Written{}, err
	}
	if live == nil && in.Route.Create == nil {
		return Written{}, fmt.Errorf("%s %s/%s not found; create it, or set create in the router to let Sluice create it", in.Kind, in.Plan.Namespace, in.Route.Name)
	}
	d, err := Render(in, live)
	if err != nil {
		return Written{}, &RejectedError{Err: err}
	}
	out := Written{Kind: in.Kind, Namespace: in.Plan.Namespace, Name: in.Route.Name, PlanVersion: in.Plan.Version}
	if !d.Changed {
		out.Generation, out.ResourceVersion = live.GetGeneration(), live.GetResourceVersion()
		return out, nil
	}
	u := d.Apply
	if err := w.c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		if rejected(err) {
			return Written{}, &RejectedError{Err: fmt.Errorf("applying %s %s/%s: %w", in.Kind, u.GetNamespace(), u.GetName(), err)}
		}
		return Written{}, fmt.Errorf("applying %s %s/%s: %w", in.Kind, u.GetNamespace(), u.GetName(), err)
	}
	out.Generation, out.ResourceVersion = u.GetGeneration(), u.GetResourceVersion()
	return out, nil
}

// Release takes what rollout changed out of a route (Release, the pure
// part): for a Rollout that no longer names the route, or is gone. A
// missing route, or one without rollout's record, is left alone.
func (w *Writer) Release(ctx context.Context, kind Kind, ns, name, rollout string) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		live, err := w.get(ctx, kind, ns, name)
		if err != nil || live == nil {
			return err
		}
		d, err := Release(kind, rollout, live)
		if err != nil || d == nil {
			return err
		}
		return w.c.Apply(ctx, client.ApplyConfigurationFromUnstructured(d.Apply), client.FieldOwner(FieldManager), client.ForceOwnership)
	})
	if err != nil {
		return fmt.Errorf("releasing %s %s/%s from rollout %s: %w", kind, ns, name, rollout, err)
	}
	return nil
}

// get reads a route from the API server; nil when it does not exist.
func (w *Writer) get(ctx context.Context, kind Kind, ns, name string) (*unstructured.Unstructured, error) {
	return readRoute(ctx, w.c, kind, ns, name, "")
}

// Route returns the route as the Writer's cache holds it once it watches
// the kind, else as the API server has it; nil when it does not exist.
func (w *Writer) Route(ctx context.Context, kind Kind, ns, name string) (*unstructured.Unstructured, error) {
	if !w.watched(kind) {
		return w.get(ctx, kind, ns, name)
	}
	return readRoute(ctx, w.cache, kind, ns, name, " from the cache")
}

// getter reads one object: a client, or a cache.
type getter interface {
	Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error
}

func readRoute(ctx context.Context, r getter, kind Kind, ns, name, where string) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(kind.GroupVersionKind())
	err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u)
	switch {
	case err == nil:
		return u, nil
	case apierrors.IsNotFound(err):
		return nil, nil
	case meta.IsNoMatchError(err):
		return nil, notInstalled(kind, err)
	}
	return nil, fmt.Errorf("reading %s %s/%s%s: %w", kind, ns, name, where, err)
}

func notInstalled(kind Kind, err error) error {
	return fmt.Errorf("the Gateway API CRDs are not installed: the cluster serves no %s in %s (install the standard channel of Gateway API v1.x): %w",
		kind, kind.GroupVersionKind().GroupVersion(), err)
}

// RejectedError means the plan cannot be written into the route as it is:
// it does not fit the route (a named rule is missing, a match cannot be
// expressed), or the API server refused the write (the route's schema and
// CEL rules: at most 16 rules, 128 matches). Writing it again will not
// help.
type RejectedError struct{ Err error }

func (e *RejectedError) Error() string { return "rejected: " + e.Err.Error() }
func (e *RejectedError) Unwrap() error { return e.Err }

// rejected tells a refusal of the content from a failure that may pass
// (RBAC, timeouts, the API server unreachable).
func rejected(err error) bool {
	if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
		return true
	}
	// A validating webhook's denial; RBAC denials do not mention one.
	return apierrors.IsForbidden(err) && strings.Contains(err.Error(), "admission webhook")
}

// fingerprint identifies an Input: equal Inputs, equal fingerprints.
func fingerprint(in Input) (string, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12]), nil
}

// memoryKey tells whether w may skip and remember writes of in, and under
// which key: a cached Writer that watches the kind and is listened to,
// writing for a Rollout.
func (w *Writer) memoryKey(in Input) (key types.NamespacedName, inputs string, ok bool) {
	if w.mem == nil || in.Rollout == "" || !w.watched(in.Kind) || !w.wakeWanted.Load() {
		return key, "", false
	}
	inputs, err := fingerprint(in)
	if err != nil {
		return key, "", false
	}
	return types.NamespacedName{Namespace: in.Plan.Namespace, Name: in.Rollout}, inputs, true
}

// unchanged returns the last write of ref for key if it had these inputs
// and the cache holds the route at the resourceVersion it left. A cache
// behind the API server only costs a read; a change the cache has not seen
// yet is corrected when its event wakes the Rollout.
func (w *Writer) unchanged(ctx context.Context, key types.NamespacedName, ref routeRef, inputs string) (Written, bool) {
	out, ok := w.mem.lookup(key, ref, inputs)
	if !ok {
		return Written{}, false
	}
	u, err := w.Route(ctx, ref.kind, ref.namespace, ref.name)
	if err != nil || u == nil || u.GetResourceVersion() != out.ResourceVersion {
		return Written{}, false
	}
	return out, true
}
