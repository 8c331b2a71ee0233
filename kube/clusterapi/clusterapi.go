// Package clusterapi lets the sluice CLI's verbs (status, history, promote,
// abort, retry, pause, resume) and the web dashboard work against a
// Kubernetes cluster: Backend implements rolloutapi.Backend on the API
// server, with the user's own kubeconfig credentials or, in `sluice
// controller`, with the controller's, reading from its cache; there
// Access admits each dashboard viewer by their own Kubernetes identity and
// asks the API server (SubjectAccessReview) what they may read and do.
//
// Reads are plain: Rollouts convert to rolloutapi.Rollout exactly as the
// standalone runner converts its own (rolloutapi.FromRollout), and a
// Rollout's history is its Kubernetes Events. A command is what docs/controller.md "Manual commands"
// defines: the sluice.dev/command annotation, set with a JSON merge patch
// under the user's identity, which the controller hands to the engine; the
// Backend then watches the Rollout until status.lastCommand carries the
// command's ID and reports what the engine did.
package clusterapi

import (
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// Options tune a Backend.
type Options struct {
	// ListNamespace is the namespace List looks in; empty lists every
	// namespace (which needs cluster-wide list permission).
	ListNamespace string
	// User names the caller when the API server cannot say who the
	// credentials belong to (see Backend.Command); the CLI passes the
	// kubeconfig's user name.
	User string
	// Now is the clock that stamps commands; nil means time.Now.
	Now func() time.Time
	// Warnings receives the API server's warnings (deprecations, policy
	// notices) as kubectl prints them; nil drops them. A cfg with a
	// warning handler of its own keeps it.
	Warnings io.Writer
	// Reader, when set, is where Rollouts, AnalysisRuns and GitSources
	// are read (a controller's cache) instead of the API server. Events,
	// commands and their watches always go to the API server.
	Reader client.Reader
	// StatedActor makes Command record CommandRequest.By as who sent the
	// command, without asking the API server: for a caller that has
	// authenticated the person itself (Access, in the controller), whose
	// patch goes out with the controller's own credentials.
	StatedActor bool
	// Git and DataPlane, when set, add what they know to Get's Detail.
	Git       GitDetailer
	DataPlane DataPlaneDetailer
}

// Backend is rolloutapi.Backend on a Kubernetes API server.
type Backend struct {
	c client.WithWatch
	// r reads Rollouts, AnalysisRuns and GitSources: c, or Options.Reader.
	r client.Reader
	o Options
	// impersonated is who cfg acts as, if it impersonates: that is who the
	// API server's audit log names, so the fallback identity is that too.
	impersonated string
	host         string
	// pageSize bounds one List response (listPage; tests make it small).
	pageSize int64
}

var _ rolloutapi.Backend = (*Backend)(nil)

// New returns a Backend that talks to the API server cfg describes, with
// cfg's credentials, impersonation and limits as they are. It does not
// contact the server: the first call does.
func New(cfg *rest.Config, o Options) (*Backend, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		v1alpha1.AddToScheme, corev1.AddToScheme, appsv1.AddToScheme, authenticationv1.AddToScheme, authorizationv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			return nil, fmt.Errorf("cluster backend scheme: %w", err)
		}
	}
	cfg = rest.CopyConfig(cfg)
	if cfg.WarningHandler == nil && cfg.WarningHandlerWithContext == nil {
		// Without one, controller-runtime logs warnings through its own
		// logger, which a CLI never sets up.
		if o.Warnings != nil {
			cfg.WarningHandler = rest.NewWarningWriter(o.Warnings, rest.WarningWriterOptions{Deduplicate: true})
		} else {
			cfg.WarningHandler = rest.NoWarnings{}
		}
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("cluster client for %s: %w", cfg.Host, err)
	}
	b := newBackend(c, o)
	b.impersonated = cfg.Impersonate.UserName
	b.host = cfg.Host
	return b, nil
}

// Host is the API server's address.
func (b *Backend) Host() string { return b.host }

func newBackend(c client.WithWatch, o Options) *Backend {
	if o.Now == nil {
		o.Now = time.Now
	}
	b := &Backend{c: c, r: o.Reader, o: o, pageSize: listPage}
	if b.r == nil {
		b.r = c
	}
	return b
}

// listPage bounds one List response; a large cluster is read in pages
// rather than in one response the API server must build in memory.
const listPage = 500

// List returns the Rollouts of Options.ListNamespace (every namespace if
// empty), sorted by namespace/name.
func (b *Backend) List(ctx context.Context) ([]rolloutapi.Rollout, error) {
	where := "all namespaces"
	if b.o.ListNamespace != "" {
		where = "namespace " + b.o.ListNamespace
	}
	var out []rolloutapi.Rollout
	opts := &client.ListOptions{Namespace: b.o.ListNamespace, Limit: b.pageSize}
	// A cache holds every object already: one page, whatever its
	// Continue says.
	cached := b.o.Reader != nil
	if cached {
		opts.Limit = 0
	}
	for {
		var page v1alpha1.RolloutList
		if err := b.r.List(ctx, &page, opts); err != nil {
			return nil, classify(err, "list rollouts in "+where)
		}
		for i := range page.Items {
			out = append(out, rolloutapi.FromRollout(&page.Items[i], nil))
		}
		if opts.Continue = page.Continue; opts.Continue == "" || cached {
			break
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out, nil
}

// Get returns one Rollout with what the cluster knows beyond its status
// (detail). The cluster keeps only the plan's summary (status.traffic);
// the whole plan is rebuilt from spec and status, as every controller
// replica does for xDS, and is nil while the spec has changed since the
// status was written.
func (b *Backend) Get(ctx context.Context, namespace, name string) (rolloutapi.Rollout, error) {
	return b.getFor(ctx, namespace, name, nil)
}

// getFor is Get with the detail that may allows (every part when nil).
func (b *Backend) getFor(ctx context.Context, namespace, name string, may func(resource) bool) (rolloutapi.Rollout, error) {
	ro, err := b.get(ctx, namespace, name)
	if err != nil {
		return rolloutapi.Rollout{}, err
	}
	var p *plan.Plan
	if pl, err := engine.PersistedPlan(ro); err == nil {
		p = &pl
	}
	out := rolloutapi.FromRollout(ro, p)
	out.Detail = b.detail(ctx, ro, p, may)
	return out, nil
}

func (b *Backend) get(ctx context.Context, namespace, name string) (*v1alpha1.Rollout, error) {
	ro := &v1alpha1.Rollout{}
	if err := b.r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, ro); err != nil {
		return nil, classify(err, fmt.Sprintf("get rollout %s/%s", namespace, name))
	}
	return ro, nil
}
