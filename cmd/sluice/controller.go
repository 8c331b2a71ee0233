package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/sluicehq/sluice/kube/clusterapi"
	"github.com/sluicehq/sluice/kube/manager"
)

func init() { addCommand(newControllerCommand) }

// controllerFlags override the configuration file.
type controllerFlags struct {
	config         string
	kubeconfig     string
	context        string
	namespace      string
	stateDir       string
	leaderElect    bool
	metricsAddr    string
	probeAddr      string
	pprofAddr      string
	xdsAddr        string
	prometheus     string
	gitURL         string
	gitBranch      string
	gitPath        string
	gitPoll        time.Duration
	istio          bool
	log            logFlags
	watchNamespace []string
	kubeAPIQPS     float32
	kubeAPIBurst   int
	dashPath       string
	dashAddress    string
	dashReadOnly   bool
}

func newControllerCommand() *cobra.Command {
	var f controllerFlags
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run Sluice in a Kubernetes cluster: Rollouts reconciled, Istio and xDS written",
		Long: `Controller runs Sluice inside a Kubernetes cluster (crds/ installs it with
kubectl apply -k crds/). One manager holds:

  - the Rollout controller: one ReplicaSet and one headless Service per
    revision, the engine stepping each rollout, status with optimistic
    concurrency, Kubernetes Events for every step, promotion and abort;
  - the analysis controller measuring AnalysisRuns against Prometheus;
  - the Git applier (with a git section or --git-url): Rollouts and
    AnalysisTemplates applied with server-side apply, Istio objects the
    Rollouts name merged with their traffic plans;
  - the Istio writer (VirtualService, DestinationRule) and the xDS server.

Only the elected leader advances rollouts, measures and applies Git; every
replica serves xDS from Rollout status, and the web dashboard to people
with their own Kubernetes identity (a bearer token checked with
TokenReview, or an authenticating proxy's headers; RBAC asked with
SubjectAccessReview). Listeners: xDS --xds-address, /metrics
--metrics-address, /healthz and /readyz --probe-address, Git webhooks and
the dashboard http.webhookAddress (:8082; the dashboard at
--dashboard-path, or on --dashboard-address of its own).

Configuration comes from --config (YAML; see docs/controller.md) and the
flags below, which override it. The cluster comes from --kubeconfig, then
$KUBECONFIG, then ~/.kube/config, then the in-cluster service account.`,
		Example: `  sluice controller --config /etc/sluice/controller.yaml
  sluice controller --kubeconfig ~/.kube/config --leader-elect=false --git-url https://git.example.com/deploy.git
  sluice controller --config examples/controller/local.yaml   # on a workstation: docs/quickstart-controller.md`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.load(cmd)
			if err != nil {
				return usageError{err}
			}
			log, err := f.log.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			kc, err := clusterapi.LoadKubeconfig(f.kubeconfig, f.context)
			if err != nil {
				return exitError{code: exitUnavailable, msg: err.Error()}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// controller-runtime's packages outside the manager log here
			// too, and so does what client-go reports through klog (a
			// broken watch, runtime.HandleError), which would otherwise
			// write lines of klog's own format among the JSON ones.
			ctrl.SetLogger(log)
			klog.SetLogger(log)
			c, err := manager.New(manager.Options{Config: cfg, RestConfig: kc.Config, Log: log})
			if err != nil {
				return exitError{code: exitFailure, msg: err.Error()}
			}
			if err := c.Start(ctx); err != nil && !errors.Is(err, context.Canceled) {
				return exitError{code: exitFailure, msg: err.Error()}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "configuration file (YAML)")
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG, ~/.kube/config, in-cluster)")
	fl.StringVar(&f.context, "context", "", "kubeconfig context")
	fl.StringVar(&f.namespace, "namespace", "", "the controller's namespace, for its leader-election lease (namespace; default $POD_NAMESPACE or sluice-system)")
	fl.StringVar(&f.stateDir, "state-dir", "", "folder for the Git mirrors (stateDir; default /var/lib/sluice, or the user's cache folder when that cannot be written)")
	fl.StringSliceVar(&f.watchNamespace, "watch-namespace", nil, "reconcile only these namespaces (watchNamespaces; default all)")
	fl.BoolVar(&f.leaderElect, "leader-elect", true, "elect one leader among replicas (leaderElection.enabled)")
	fl.StringVar(&f.metricsAddr, "metrics-address", "", "/metrics listen address, 0 to turn off (http.metricsAddress; default :8080)")
	fl.StringVar(&f.probeAddr, "probe-address", "", "/healthz and /readyz listen address (http.probeAddress; default :8081)")
	fl.StringVar(&f.pprofAddr, "insecure-pprof-address", "", "/debug/pprof/ listen address, unauthenticated, loopback only, e.g. 127.0.0.1:6060 (http.insecurePprofAddress; default off)")
	fl.StringVar(&f.xdsAddr, "xds-address", "", "xDS listen address (xds.address; default :18000)")
	fl.StringVar(&f.prometheus, "prometheus-url", "", "Prometheus for templates that name none (prometheus.address)")
	fl.StringVar(&f.gitURL, "git-url", "", "repository to apply Rollouts from (git.url)")
	fl.StringVar(&f.gitBranch, "git-branch", "", "branch to follow (git.branch; default main)")
	fl.StringVar(&f.gitPath, "git-path", "", "path inside the repository (git.path)")
	fl.DurationVar(&f.gitPoll, "git-interval", 0, "poll interval (git.interval; default 1m)")
	fl.BoolVar(&f.istio, "istio", true, "write VirtualServices and DestinationRules (istio.enabled)")
	fl.Float32Var(&f.kubeAPIQPS, "kube-api-qps", 0, "requests per second to the Kubernetes API, per resource; negative for no client-side limit (kubeAPI.qps; default 50)")
	fl.IntVar(&f.kubeAPIBurst, "kube-api-burst", 0, "requests to the Kubernetes API at once before --kube-api-qps paces them (kubeAPI.burst; default 1000)")
	fl.StringVar(&f.dashPath, "dashboard-path", "", `where the web dashboard is served, "off" for nowhere (dashboard.path; default /dashboard)`)
	fl.StringVar(&f.dashAddress, "dashboard-address", "", "a listener of the dashboard's own (dashboard.address; default: beside the Git webhooks, http.webhookAddress)")
	fl.BoolVar(&f.dashReadOnly, "dashboard-read-only", false, "the dashboard offers and runs no command, whatever RBAC allows (dashboard.readOnly)")
	f.log.addFlags(fl)
	return cmd
}

func (f *controllerFlags) load(cmd *cobra.Command) (*manager.Config, error) {
	cfg, err := manager.LoadConfig(f.config)
	if err != nil {
		return nil, err
	}
	fl := cmd.Flags()
	set := func(name string, dst *string, v string) {
		if fl.Changed(name) {
			*dst = v
		}
	}
	set("namespace", &cfg.Namespace, f.namespace)
	set("state-dir", &cfg.StateDir, f.stateDir)
	set("metrics-address", &cfg.HTTP.MetricsAddress, f.metricsAddr)
	set("probe-address", &cfg.HTTP.ProbeAddress, f.probeAddr)
	set("insecure-pprof-address", &cfg.HTTP.InsecurePprofAddress, f.pprofAddr)
	set("xds-address", &cfg.XDS.Address, f.xdsAddr)
	set("prometheus-url", &cfg.Prometheus.Address, f.prometheus)
	set("dashboard-path", &cfg.Dashboard.Path, f.dashPath)
	set("dashboard-address", &cfg.Dashboard.Address, f.dashAddress)
	if fl.Changed("dashboard-read-only") {
		cfg.Dashboard.ReadOnly = f.dashReadOnly
	}
	if fl.Changed("watch-namespace") {
		cfg.WatchNamespaces = f.watchNamespace
	}
	if fl.Changed("leader-elect") {
		cfg.LeaderElection.Enabled = &f.leaderElect
	}
	if fl.Changed("istio") {
		cfg.Istio.Enabled = &f.istio
	}
	if fl.Changed("kube-api-qps") {
		cfg.KubeAPI.QPS = f.kubeAPIQPS
	}
	if fl.Changed("kube-api-burst") {
		cfg.KubeAPI.Burst = f.kubeAPIBurst
	}
	if fl.Changed("git-url") || fl.Changed("git-branch") || fl.Changed("git-path") || fl.Changed("git-interval") {
		if cfg.Git == nil {
			cfg.Git = &manager.GitConfig{}
		}
		set("git-url", &cfg.Git.URL, f.gitURL)
		set("git-branch", &cfg.Git.Branch, f.gitBranch)
		set("git-path", &cfg.Git.Path, f.gitPath)
		if fl.Changed("git-interval") {
			cfg.Git.Interval.Duration = f.gitPoll
		}
	}
	cfg.Default()
	return cfg, cfg.Check()
}
