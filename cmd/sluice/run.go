package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	promanalysis "github.com/sluicehq/sluice/analysis/prometheus"
	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/notify"
	"github.com/sluicehq/sluice/rolloutapi"
	"github.com/sluicehq/sluice/standalone/config"
	"github.com/sluicehq/sluice/standalone/runner"
	"github.com/sluicehq/sluice/standalone/store"
	"github.com/sluicehq/sluice/xds"
)

func init() { addCommand(newRunCommand) }

// runFlags override the configuration file.
type runFlags struct {
	config     string
	gitURL     string
	gitBranch  string
	gitPath    string
	gitPoll    time.Duration
	xdsAddr    string
	httpAddr   string
	metrics    string
	stateDir   string
	prometheus string
	tokenEnv   string
	log        logFlags
	ackNoProxy bool
	insecure   bool
	insecXDS   bool
	dashboard  dashboardFlags
}

// runOptions are what only flags set, never the file.
type runOptions struct {
	// insecureNoAuth serves the API and metrics without tokens.
	insecureNoAuth bool
	// insecureXDS serves xDS beyond loopback without mutual TLS.
	insecureXDS bool
	dashboard   dashboardFlags
}

func newRunCommand() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run Sluice without Kubernetes: Git in, xDS out, state on local disk",
		Long: `Run syncs Rollouts from a Git repository, runs the rollout engine, serves the
traffic plans to Envoy sidecars and proxyless gRPC clients over xDS (ADS),
queries Prometheus for analysis, and keeps its state in a bbolt file under
the state directory. After a crash it serves the same plans again before it
advances anything, and continues every rollout where it stopped.

Configuration comes from --config (YAML; see docs/standalone.md) and the flags
below, which override it. Listeners:
  xDS      --xds-address       ADS over gRPC, state of the world and delta
  API      --http-address      the CLI verbs' API (a token for every request;
                               operate tokens for commands), /healthz, /readyz,
                               and the web dashboard at --dashboard-path (log
                               in with the same tokens; docs/dashboard.md)
  metrics  http.metricsAddress /metrics (a token), /healthz, /readyz
  webhook  http.webhookAddress POST /webhook for Git pushes (HMAC-signed), when
                               git.webhookSecret is set

The API fails closed: without a token in http.tokens or http.token, run
refuses to start unless --insecure-no-auth is given. 'sluice token' makes one.

On SIGTERM or SIGINT it stops advancing, writes its state, and keeps serving
xDS until the proxies disconnect or shutdown.drainTimeout passes.`,
		Example: `  sluice run --git-url https://git.example.com/platform/rollouts.git --git-path prod/
  sluice run --config /etc/sluice/run.yaml`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.load(cmd)
			if err != nil {
				return usageError{err}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := f.dashboard.check(); err != nil {
				return usageError{err}
			}
			log, err := f.log.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return runStandalone(ctx, cfg, runOptions{insecureNoAuth: f.insecure, insecureXDS: f.insecXDS, dashboard: f.dashboard}, log)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "configuration file (YAML)")
	fl.StringVar(&f.gitURL, "git-url", "", "repository to sync Rollouts from (git.url)")
	fl.StringVar(&f.gitBranch, "git-branch", "", "branch to follow (git.branch; default main)")
	fl.StringVar(&f.gitPath, "git-path", "", "path inside the repository (git.path)")
	fl.DurationVar(&f.gitPoll, "git-interval", 0, "poll interval (git.interval; default 1m)")
	fl.StringVar(&f.xdsAddr, "xds-address", "", "xDS listen address (xds.address; default 127.0.0.1:18000)")
	fl.StringVar(&f.httpAddr, "http-address", "", "HTTP listen address (http.address; default 127.0.0.1:8080)")
	fl.StringVar(&f.metrics, "metrics-address", "", "metrics and health listen address (http.metricsAddress; default 127.0.0.1:8081)")
	fl.StringVar(&f.stateDir, "state-dir", "", "state directory (stateDir; default ./sluice-state)")
	fl.StringVar(&f.prometheus, "prometheus-url", "", "Prometheus for templates that name none (prometheus.address)")
	fl.StringVar(&f.tokenEnv, "token-env", "", "environment variable holding the API token for commands (http.token.env)")
	f.log.addFlags(fl)
	fl.BoolVar(&f.insecXDS, "insecure-xds", false, "serve xDS beyond loopback without mutual TLS: node ids unverified, anyone who reaches it reads every route (never on a shared network)")
	fl.BoolVar(&f.insecure, "insecure-no-auth", false, "serve the API and metrics to anyone who reaches them, without tokens (never on a shared network)")
	fl.BoolVar(&f.ackNoProxy, "ack-without-proxies", false, "count a plan as acknowledged when no proxy subscribes (xds.ackWithoutClients)")
	f.dashboard.addFlags(fl)
	return cmd
}

func (f *runFlags) load(cmd *cobra.Command) (*config.Config, error) {
	cfg := &config.Config{}
	if f.config != "" {
		var err error
		if cfg, err = config.Load(f.config); err != nil {
			return nil, err
		}
	}
	set := func(name string, dst *string, v string) {
		if cmd.Flags().Changed(name) {
			*dst = v
		}
	}
	set("git-url", &cfg.Git.URL, f.gitURL)
	set("git-branch", &cfg.Git.Branch, f.gitBranch)
	set("git-path", &cfg.Git.Path, f.gitPath)
	set("xds-address", &cfg.XDS.Address, f.xdsAddr)
	set("http-address", &cfg.HTTP.Address, f.httpAddr)
	set("metrics-address", &cfg.HTTP.MetricsAddress, f.metrics)
	set("state-dir", &cfg.StateDir, f.stateDir)
	set("prometheus-url", &cfg.Prometheus.Address, f.prometheus)
	if cmd.Flags().Changed("git-interval") {
		cfg.Git.Interval.Duration = f.gitPoll
	}
	if cmd.Flags().Changed("token-env") {
		cfg.HTTP.Token = &config.ValueFrom{Env: f.tokenEnv}
	}
	if cmd.Flags().Changed("ack-without-proxies") {
		cfg.XDS.AckWithoutClients = f.ackNoProxy
	}
	cfg.Default()
	return cfg, cfg.Check()
}

// runStandalone wires the parts and runs them until ctx ends, then shuts
// down in order: stop advancing, flush state, drain xDS.
func runStandalone(ctx context.Context, cfg *config.Config, o runOptions, log logr.Logger) error {
	tokens, err := cfg.HTTP.APITokens()
	if err != nil {
		return usageError{err}
	}
	if len(tokens) == 0 && !o.insecureNoAuth {
		return usageError{errors.New("http.tokens: no API token configured, so anyone who reaches " + cfg.HTTP.Address +
			" could promote or abort rollouts; make one with 'sluice token NAME' and add it to http.tokens, or pass --insecure-no-auth")}
	}
	if err := checkXDSExposure(cfg.XDS, o.insecureXDS, log); err != nil {
		return usageError{err}
	}
	if o.insecureNoAuth {
		log.Info("INSECURE: --insecure-no-auth: the API, dashboard and metrics answer anyone who reaches them, and anyone may promote, abort, retry, pause or resume",
			"http", cfg.HTTP.Address, "metrics", cfg.HTTP.MetricsAddress)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return exitError{code: exitFailure, msg: fmt.Sprintf("state directory: %v", err)}
	}
	st, err := store.Open(filepath.Join(cfg.StateDir, "state.db"), store.Options{})
	if err != nil {
		return exitError{code: exitFailure, msg: err.Error()}
	}
	defer st.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	eps := xds.NewStatic()
	var xdsTLS *xds.TLSFiles
	if cfg.XDS.CertFile != "" {
		xdsTLS = &xds.TLSFiles{CertFile: cfg.XDS.CertFile, KeyFile: cfg.XDS.KeyFile, ClientCAFile: cfg.XDS.ClientCAFile}
	}
	xsrv, err := xds.New(xds.Options{Address: cfg.XDS.Address, TLS: xdsTLS, Endpoints: eps, Registerer: reg, Authorization: cfg.XDS.Authorization, Logger: slog.New(logr.ToSlogHandler(log.WithName("xds")))})
	if err != nil {
		return exitError{code: exitFailure, msg: err.Error()}
	}

	src, err := cfg.Git.Source()
	if err != nil {
		return usageError{err}
	}
	syncer, err := gitsync.New(src, gitsync.Options{
		MirrorDir: filepath.Join(cfg.StateDir, "git"), Logger: log.WithName("gitsync"), Registerer: reg,
		WriteBack: gitsync.WriteBackOptions{AuthorName: cfg.Git.WriteBack.AuthorName, AuthorEmail: cfg.Git.WriteBack.AuthorEmail},
	})
	if err != nil {
		return usageError{err}
	}

	targets, err := cfg.Notifications.Resolve(os.LookupEnv)
	if err != nil {
		return usageError{fmt.Errorf("notifications: %w", err)}
	}
	var notifier *notify.Notifier
	if len(targets) > 0 {
		if notifier, err = notify.New(targets, notify.Options{Registerer: reg, Log: log.WithName("notify")}); err != nil {
			return usageError{fmt.Errorf("notifications: %w", err)}
		}
	}

	// Advancing stops when ctx ends, or when a component fails (runCtx);
	// xDS outlives it to drain.
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	xdsCtx, stopXDS := context.WithCancel(context.WithoutCancel(ctx))
	defer stopXDS()
	plane := runner.NewXDSPlane(xdsCtx, xsrv, eps)
	plane.AckWithoutClients = cfg.XDS.AckWithoutClients
	// No SecretResolver: templates read no credential of the configuration,
	// only providers do (docs/analysis.md, "Providers").
	measurer := promanalysis.New(cfg.Prometheus.Options())
	driver := runner.NewAnalysisDriver(runCtx, measurer, nil, log.WithName("analysis"))

	run, err := runner.New(runner.Options{
		Store: st, Source: syncer, Reverter: syncer, Plane: plane, Analysis: driver,
		Notifier: notifier, Log: log.WithName("runner"), DefaultNamespace: cfg.Namespace, Registerer: reg,
	})
	if err != nil {
		return exitError{code: exitFailure, msg: err.Error()}
	}

	var webhook http.Handler
	if cfg.Git.WebhookSecret != nil {
		secret, err := cfg.Git.WebhookSecret.Read("git.webhookSecret")
		if err != nil {
			return usageError{err}
		}
		if webhook, err = syncer.Webhook(gitsync.WebhookOptions{Secret: []byte(secret)}); err != nil {
			return usageError{err}
		}
	}
	apiHandler, err := o.dashboard.serve(rolloutapi.NewHandler(run, rolloutapi.HandlerOptions{
		Tokens: tokens, InsecureNoAuth: o.insecureNoAuth, Ready: run.Ready}), run, tokens, o.insecureNoAuth)
	if err != nil {
		return exitError{code: exitFailure, msg: err.Error()}
	}
	servers, err := listenHTTP(cfg.HTTP, []httpListener{
		{key: "http.address", addr: cfg.HTTP.Address, handler: apiHandler},
		{key: "http.metricsAddress", addr: cfg.HTTP.MetricsAddress, handler: rolloutapi.NewOpsHandler(rolloutapi.OpsOptions{
			Tokens: tokens, InsecureNoAuth: o.insecureNoAuth, Ready: run.Ready, Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})})},
		{key: "http.webhookAddress", addr: cfg.HTTP.WebhookAddress, handler: webhookMux(webhook)},
	})
	if err != nil {
		return exitError{code: exitFailure, msg: err.Error()}
	}
	xl, err := net.Listen("tcp", cfg.XDS.Address)
	if err != nil {
		servers.close()
		return exitError{code: exitFailure, msg: fmt.Sprintf("xds: %v", err)}
	}
	log.Info("sluice run started", "xds", xl.Addr().String(), "http", servers[0].addr, "metrics", servers[1].addr, "webhook", servers.webhookAddr(),
		"dashboard", o.dashboard.url(servers[0]))

	var wg sync.WaitGroup
	errc := make(chan error, 4)
	goRun := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	goRun("xds", func() error { return xsrv.Serve(xdsCtx, xl) })
	for _, srv := range servers {
		goRun(srv.key, srv.serve)
	}
	goRun("gitsync", func() error { return syncer.Run(runCtx) })
	runDone := make(chan error, 1)
	go func() { runDone <- run.Run(runCtx) }()

	var failed error
	select {
	case <-ctx.Done():
	case failed = <-errc:
		log.Error(failed, "a component failed; shutting down")
	case failed = <-runDone:
		// The runner gave up (it could not restore the stored plans):
		// exit rather than serve xDS with nothing advancing.
		runDone <- failed
		log.Error(failed, "the runner stopped; shutting down")
	}
	// Stop advancing: the runner returns once its last step is on disk.
	stopRun()
	stopAll := context.WithoutCancel(ctx)
	if err := <-runDone; err != nil && failed == nil {
		failed = err
	}
	driver.Wait()
	drain(xsrv, cfg.Shutdown.DrainTimeout.Duration, log)
	stopXDS()
	shutCtx, cancel := context.WithTimeout(stopAll, 5*time.Second)
	defer cancel()
	servers.shutdown(shutCtx)
	if notifier != nil {
		if err := notifier.Close(shutCtx); err != nil {
			log.Error(err, "notifications not delivered at shutdown")
		}
	}
	wg.Wait()
	if failed != nil {
		return exitError{code: exitFailure, msg: failed.Error()}
	}
	log.Info("sluice run stopped")
	return nil
}

// drain keeps serving xDS until every proxy has gone or the timeout ends,
// so proxies keep the last plan while they move to another instance.
func drain(srv *xds.Server, timeout time.Duration, log logr.Logger) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if len(srv.Nodes()) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	log.Info("drain timeout: closing xDS with proxies still connected", "proxies", len(srv.Nodes()))
}
