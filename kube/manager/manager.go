// Package manager assembles `sluice controller`: one controller-runtime
// manager holding the Rollout controller, the analysis controller, the Git
// applier, the Istio and Gateway API writers and the xDS server, with
// leader election, probes and metrics. cmd/sluice parses flags into a Config; the
// end-to-end tests start two of these in one process. Nothing here
// decides anything: it only connects the parts.
package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/kube/analysisrun"
	"github.com/sluicehq/sluice/kube/controller"
	"github.com/sluicehq/sluice/kube/gitapply"
	"github.com/sluicehq/sluice/kube/gitsource"
	"github.com/sluicehq/sluice/kube/istio"
	"github.com/sluicehq/sluice/kube/xdsplane"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/xds"
)

// Options are what a Controller is built from besides its Config.
type Options struct {
	Config *Config
	// RestConfig reaches the API server. Config.KubeAPI's rate limit
	// applies unless it carries one of its own (see KubeAPI.Apply).
	RestConfig *rest.Config
	Log        logr.Logger
	// Registerer receives the xDS server's and gitsync's metrics; default
	// controller-runtime's registry, served on /metrics. Two Controllers
	// in one process (tests) need one each.
	Registerer prometheus.Registerer
	// XDSListener, when set, serves xDS instead of Config.XDS.Address.
	XDSListener net.Listener
	// DashboardListener, when set, serves the dashboard instead of the
	// HTTP listener or Config.Dashboard.Address.
	DashboardListener net.Listener
	// Now is the clock of the Rollout controller; nil means time.Now.
	Now func() time.Time
	// SkipNameValidation lets tests run several managers in one process
	// (controller-runtime refuses two controllers of one name otherwise).
	SkipNameValidation bool
}

// Controller is one running `sluice controller`.
type Controller struct {
	cfg Config
	mgr ctrl.Manager
	xds *xds.Server
	log logr.Logger
	git *gitapply.Applier // nil without a git section
	// sources holds every Git source's Applier (the git section's and
	// the GitSources'), for write-back, declarations and wakes.
	sources *gitapply.Sources
	// base lives as long as Start: background work started at setup
	// (xDS acknowledgement waits, informer handlers) ends with it.
	base   context.Context
	cancel context.CancelFunc
}

// Scheme is every type the controller reads or writes.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme, istio.AddToScheme} {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("scheme: %w", err)
		}
	}
	return s, nil
}

// New builds the manager and registers every part; nothing runs until
// Start.
func New(opts Options) (*Controller, error) {
	if opts.Config == nil || opts.RestConfig == nil {
		return nil, errors.New("sluice controller: Config and RestConfig are required")
	}
	cfg := *opts.Config
	var err error
	if err = cfg.Check(); err != nil {
		return nil, fmt.Errorf("sluice controller: %w", err)
	}
	if opts.Registerer == nil {
		opts.Registerer = crmetrics.Registry
	}
	log := opts.Log
	if cfg.StateDir, err = stateDir(cfg.StateDir, log); err != nil {
		return nil, fmt.Errorf("sluice controller: %w", err)
	}
	scheme, err := Scheme()
	if err != nil {
		return nil, err
	}
	c := &Controller{cfg: cfg, log: log}
	c.base, c.cancel = context.WithCancel(context.Background())

	mgr, err := ctrl.NewManager(cfg.KubeAPI.Apply(opts.RestConfig), c.managerOptions(scheme, opts))
	if err != nil {
		return nil, fmt.Errorf("sluice controller: manager: %w", err)
	}
	c.mgr = mgr
	if err := c.setup(opts); err != nil {
		c.cancel()
		return nil, fmt.Errorf("sluice controller: %w", err)
	}
	return c, nil
}

func (c *Controller) managerOptions(scheme *runtime.Scheme, opts Options) ctrl.Options {
	cfg := &c.cfg
	byObject := controller.CacheByObject()
	maps.Copy(byObject, xdsplane.CacheByObject())
	maps.Copy(byObject, xdsplane.ReportCacheByObject(cfg.Namespace))
	co := cache.Options{ByObject: byObject}
	if len(cfg.WatchNamespaces) > 0 {
		co.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range cfg.WatchNamespaces {
			co.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	le := cfg.LeaderElection
	mo := ctrl.Options{
		// Per manager, not ctrl.SetLogger: that one is process-wide and
		// only its first call counts (cmd/sluice sets it for client-go).
		Logger:                  c.log,
		Scheme:                  scheme,
		Cache:                   co,
		Metrics:                 metricsserver.Options{BindAddress: cfg.HTTP.MetricsAddress},
		HealthProbeBindAddress:  cfg.HTTP.ProbeAddress,
		LeaderElection:          cfg.LeaderElectionEnabled(),
		LeaderElectionID:        le.ID,
		LeaderElectionNamespace: cfg.Namespace,
		LeaseDuration:           &le.LeaseDuration.Duration,
		RenewDeadline:           &le.RenewDeadline.Duration,
		RetryPeriod:             &le.RetryPeriod.Duration,
		// A replica that stops cleanly hands the lease over at once instead
		// of making the next leader wait out the lease; safe because Start
		// returns only after every leader-only part has stopped.
		LeaderElectionReleaseOnCancel: true,
	}
	if cfg.HTTP.ProbeAddress == "0" {
		mo.HealthProbeBindAddress = ""
	}
	if a := cfg.HTTP.InsecurePprofAddress; a != "0" {
		mo.PprofBindAddress = a
	}
	if opts.SkipNameValidation {
		skip := true
		mo.Controller.SkipNameValidation = &skip
	}
	return mo
}

// setup registers the parts: see docs/controller.md for what each does
// and which run on the leader only.
func (c *Controller) setup(opts Options) error {
	mgr, cfg := c.mgr, &c.cfg
	if err := c.setupGit(opts); err != nil {
		return err
	}

	// xDS: every replica serves every Rollout's plan, rebuilt from its
	// status by the Feeder; the leader's reconciler publishes first-hand.
	eps, err := xdsplane.NewEndpointSlices(c.base, mgr.GetCache())
	if err != nil {
		return err
	}
	sec, err := c.xdsSecurity()
	if err != nil {
		return err
	}
	for _, r := range sec.runnables {
		if err := mgr.Add(r); err != nil {
			return fmt.Errorf("add xds certificate: %w", err)
		}
	}
	if sec.ready != nil {
		if err := mgr.AddReadyzCheck("xds-certificate", sec.ready); err != nil {
			return fmt.Errorf("xds ready check: %w", err)
		}
	}
	srv, err := xds.New(xds.Options{
		Address:       cfg.XDS.Address,
		TLS:           sec.tls,
		Authenticator: sec.authn,
		Authorization: cfg.XDS.Authorization,
		Endpoints:     eps,
		Registerer:    opts.Registerer,
		Logger:        slog.New(logr.ToSlogHandler(c.log.WithName("xds"))),
		// With no proxyless client connected, the Plane's answers come
		// from the Fallback (the Istio write), not from the server, so a
		// plan change need not rebuild every Rollout's snapshot: at 1,000
		// Rollouts that rebuild was half the controller's CPU and every
		// reconcile waited for it.
		StageWithoutClients: true,
	})
	if err != nil {
		return fmt.Errorf("xds server: %w", err)
	}
	c.xds = srv

	// Istio: the plan merged into the objects Git declares, for the
	// Rollouts whose routers include Istio (all that name none). Without
	// xDS clients, the accepted write is the data plane's
	// acknowledgement. The writer skips a write that would change
	// nothing, and wakes the Rollout whose objects someone else changed
	// (leader only).
	var publishers controller.Publishers
	var fallback controller.Acknowledger
	wakes := c.wakes()
	if cfg.IstioEnabled() {
		writer, err := c.istioWriter()
		if err != nil {
			return err
		}
		accepted := controller.NewAcceptedOnWrite(controller.ForRouter{Uses: controller.UsesIstio,
			Publisher: &istio.Publisher{Writer: writer, Declared: c.declared()}})
		publishers = append(publishers, accepted)
		fallback = routerFallback{accepted, writer}
		wakes = append(wakes, writer.Wake())
	} else if !cfg.XDS.AckWithoutClients {
		// Istio's Rollouts wait for xDS clients, as with no fallback; the
		// others' steps are their routers' to hold.
		fallback = routerFallback{}
	}
	// Gateway API: the named rules of the HTTPRoutes and GRPCRoutes
	// Rollouts' routers name; their gateways' status acknowledges.
	gateway, err := c.gatewayRouter()
	if err != nil {
		return err
	}
	publishers = append(publishers, gateway)
	wakes = append(wakes, gateway.Writer.Wake())
	// Every replica reports its xDS clients; the leader's plane counts
	// the others' reports with its own tracker.
	xm, err := xdsplane.NewMetrics(opts.Registerer)
	if err != nil {
		return err
	}
	ropts := c.reportOptions(xm)
	reports, err := xdsplane.NewReports(c.base, mgr.GetCache(), mgr.GetClient(), ropts)
	if err != nil {
		return err
	}
	plane := xdsplane.NewPlane(c.base, srv, xdsplane.Options{
		Fallback:          fallback,
		AckWithoutClients: cfg.XDS.AckWithoutClients,
		Replicas:          reports,
		Metrics:           xm,
		Logger:            c.log.WithName("xds-plane"),
	})
	reporter, err := xdsplane.NewReporter(mgr.GetClient(), plane, ropts)
	if err != nil {
		return err
	}
	// Istio and the Gateway API first: by the time the xDS wait starts,
	// the write it may fall back on is already accepted.
	publishers = append(publishers, plane)
	for _, r := range []manager.Runnable{
		xdsplane.Runnable(srv, opts.XDSListener),
		&xdsplane.Feeder{Cache: mgr.GetCache(), Plane: plane, Logger: c.log.WithName("xds-feeder")},
		reporter, // every replica
		reports,  // the leader: deletes stale reports
	} {
		if err := mgr.Add(r); err != nil {
			return fmt.Errorf("add xds: %w", err)
		}
	}

	notifier, err := c.notifier(opts)
	if err != nil {
		return err
	}
	r := &controller.Reconciler{
		Client:                  mgr.GetClient(),
		Notifier:                notifier,
		Events:                  mgr.GetEventRecorder(controller.Name),
		Publisher:               publishers,
		Acknowledger:            controller.Acknowledgers{plane, gateway},
		Reverter:                c.reverter(),
		GitSync:                 c.sources,
		Now:                     opts.Now,
		RevisionHistory:         cfg.Reconcile.RevisionHistory,
		AckPollInterval:         cfg.Reconcile.AckPollInterval.Duration,
		Wake:                    append([]<-chan event.GenericEvent{plane.Wake()}, wakes...),
		MaxConcurrentReconciles: cfg.Reconcile.MaxConcurrent,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return err
	}
	if err := c.setupAnalysis(opts); err != nil {
		return err
	}
	return c.setupProbes()
}

func (c *Controller) setupProbes() error {
	mgr := c.mgr
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	// Ready once the caches are filled: a replica serves xDS from Rollout
	// status, and before its cache is synced it would serve no routes.
	if err := mgr.AddReadyzCheck("caches", func(req *http.Request) error {
		ctx, cancel := context.WithTimeout(req.Context(), time.Second)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return errors.New("informer caches not synced")
		}
		return nil
	}); err != nil {
		return fmt.Errorf("ready check: %w", err)
	}
	return nil
}

// reportOptions configure this replica's xDS report and the reading of
// the others' (docs/controller.md, "Acknowledgements across replicas").
func (c *Controller) reportOptions(m *xdsplane.Metrics) xdsplane.ReportOptions {
	x := &c.cfg.XDS
	return xdsplane.ReportOptions{
		Namespace:   c.cfg.Namespace,
		Replica:     x.ReplicaName,
		MinInterval: x.ReportInterval.Duration,
		Heartbeat:   x.ReportHeartbeat.Duration,
		Metrics:     m,
		Logger:      c.log.WithName("xds-report"),
	}
}

// istioClient reads from the API server, not the cache: the Istio and
// Gateway API Writers' writes carry the resourceVersion they read, and a
// stale cached read would only cost conflicts and retries.
type istioClient struct {
	client.Reader
	client.Writer
}

func (i istioClient) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
	return i.Writer.Apply(ctx, obj, opts...)
}

// Start runs the controller until ctx ends.
func (c *Controller) Start(ctx context.Context) error {
	defer c.cancel()
	if err := c.mgr.Start(ctx); err != nil {
		return fmt.Errorf("sluice controller: %w", err)
	}
	return nil
}

// XDS is the controller's xDS server (tests ask it for ACK state).
func (c *Controller) XDS() *xds.Server { return c.xds }

// Elected is closed when this replica becomes the leader (at once without
// leader election).
func (c *Controller) Elected() <-chan struct{} { return c.mgr.Elected() }

// setupAnalysis registers the analysis controller, which measures the
// AnalysisRuns the Rollout controller creates (leader only).
func (c *Controller) setupAnalysis(opts Options) error {
	return analysisrun.Setup(c.mgr, analysisrun.Options{
		Prometheus:              c.cfg.Prometheus.Options(),
		MaxConcurrentReconciles: c.cfg.Reconcile.MaxConcurrentAnalysis,
		Now:                     opts.Now,
	})
}

// setupGit registers the Git sources: the git section's applier and the
// GitSource controller (leader only), and on every replica the push
// webhooks. Without either, Rollouts come from elsewhere and the
// controller only reconciles them.
func (c *Controller) setupGit(opts Options) error {
	c.sources = gitapply.NewSources(c.mgr.GetClient())
	// Asked for before any Applier is registered; the reconciler consumes
	// them.
	c.sources.Wake()
	c.sources.StateWake()
	mux := http.NewServeMux()
	if err := c.setupConfigSource(opts, mux); err != nil {
		return err
	}
	if c.cfg.GitSourcesEnabled() {
		r, err := c.gitSourceReconciler(opts)
		if err != nil {
			return err
		}
		if err := r.SetupWithManager(c.mgr); err != nil {
			return err
		}
		// Every replica: a push only stamps the GitSource, whose watch
		// makes the leader sync, so a push to a follower is not lost.
		mux.Handle(gitsource.WebhookPattern, &gitsource.Webhook{
			Client: c.mgr.GetClient(), APIReader: c.mgr.GetAPIReader(), Log: c.log.WithName("gitsource-webhook"),
		})
	}
	onMux, err := c.setupDashboard(opts, mux)
	if err != nil {
		return err
	}
	if c.cfg.HTTP.WebhookAddress == "0" || (c.git == nil && !c.cfg.GitSourcesEnabled() && !onMux) {
		return nil
	}
	return c.mgr.Add(&manager.Server{
		Name:   "git-webhook",
		Server: &http.Server{Addr: c.cfg.HTTP.WebhookAddress, Handler: mux, ReadHeaderTimeout: 10 * time.Second},
	})
}

// gitSourceReconciler is the GitSource controller as the gitSources
// section configures it.
func (c *Controller) gitSourceReconciler(opts Options) (*gitsource.Reconciler, error) {
	limits, err := c.cfg.GitSources.FetchLimits()
	if err != nil {
		return nil, err
	}
	return &gitsource.Reconciler{
		Client:        c.mgr.GetClient(),
		APIReader:     c.mgr.GetAPIReader(),
		Sources:       c.sources,
		StateDir:      c.cfg.StateDir,
		Registerer:    opts.Registerer,
		AllowFileURLs: c.cfg.GitSources.AllowFileURLs,
		FetchLimits:   limits,
		Log:           c.log.WithName("gitsource"),
	}, nil
}

// setupConfigSource registers the git section's applier, if any, and its
// webhook (POST /webhook) on mux.
func (c *Controller) setupConfigSource(opts Options, mux *http.ServeMux) error {
	g := c.cfg.Git
	if g == nil {
		return nil
	}
	src, err := g.Source()
	if err != nil {
		return fmt.Errorf("git: %w", err)
	}
	a, err := gitapply.New(c.mgr.GetClient(), gitapply.Options{
		Source: src,
		Sync: gitsync.Options{
			MirrorDir:  filepath.Join(c.cfg.StateDir, "git"),
			Registerer: opts.Registerer,
			WriteBack:  gitsync.WriteBackOptions{AuthorName: g.WriteBack.AuthorName, AuthorEmail: g.WriteBack.AuthorEmail},
		},
		DefaultNamespace: c.cfg.DefaultNamespace,
		// Whether a failed rollout is reverted in Git is each Rollout's
		// choice (spec.rollback); the controller only needs to be able to.
		WriteBack: true,
		SourceID:  gitapply.ConfigSourceID,
		Log:       c.log.WithName("git"),
	})
	if err != nil {
		return err
	}
	c.git = a
	if err := c.sources.Add(a); err != nil {
		return err
	}
	if err := c.mgr.Add(a); err != nil {
		return fmt.Errorf("add git applier: %w", err)
	}
	if err := c.mgr.AddReadyzCheck("git", a.Ready); err != nil {
		return fmt.Errorf("git ready check: %w", err)
	}
	if g.WebhookSecret == nil || c.cfg.HTTP.WebhookAddress == "0" {
		return nil
	}
	secret, err := g.WebhookSecret.Read("git.webhookSecret")
	if err != nil {
		return err
	}
	h, err := a.Syncer().Webhook(gitsync.WebhookOptions{Secret: []byte(secret)})
	if err != nil {
		return fmt.Errorf("git webhook: %w", err)
	}
	// On every replica: a push that reaches a follower triggers a Syncer
	// that is not running and is lost, but the leader's poll
	// (git.interval) picks the commit up anyway.
	mux.Handle("POST /webhook", h)
	return nil
}

// declared is the Git sources' declarations for the Istio publisher,
// each Rollout's from the source it came from; a Rollout of no running
// source has none, and the publisher renders its own objects.
func (c *Controller) declared() istio.Declarations { return c.sources }

// reverter performs GitRevert actions through the Rollout's source.
func (c *Controller) reverter() controller.Reverter { return c.sources }

// wakes are the Git sources': Rollouts whose declared routing changed,
// and those whose source's Git state did (status.gitSync).
func (c *Controller) wakes() []<-chan event.GenericEvent {
	return []<-chan event.GenericEvent{c.sources.Wake(), c.sources.StateWake()}
}
