package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sluicehq/sluice/internal/grpcecho"
	"github.com/sluicehq/sluice/rolloutapi"
)

// options of one run of the demo (or of a test of it).
type options struct {
	SluiceBin, PrometheusBin, Quickstart string
	// Rate is the load generator's calls per second.
	Rate int
	// Settle is how long each end state is watched.
	Settle time.Duration
	// Tune edits the quickstart files before the first commit.
	Tune func(name, content string) (string, error)
	// Out gets the timeline; SluiceLogs, if not nil, Sluice's log.
	Out, SluiceLogs io.Writer
	// StartSluice starts Sluice; nil runs SluiceBin as a subprocess.
	StartSluice func(context.Context, sluiceSetup) (sluiceInstance, error)
	// Keep, when set, keeps everything running after the scenario until
	// it ends (Ctrl-C), for a person to look around in the dashboard.
	Keep context.Context
}

// demo is every part of one run, so that Close can stop them all.
type demo struct {
	dir      string
	backends map[string]*grpcecho.Backend
	prom     *prometheusServer
	repo     *gitRepo
	sluice   sluiceInstance
	load     *grpcecho.Load
	// token operates the Sluice API (its SHA-256 is in the configuration);
	// viewer is the read token a person logs in to the dashboard with.
	token, viewer string
}

// failing is the share of calls the bad release fails.
const failing = 30

// play runs the whole demo and stops everything it started, whatever
// happens.
func play(ctx context.Context, o options) (rep *report, err error) {
	pr := &printer{w: o.Out, start: time.Now()}
	d := &demo{backends: map[string]*grpcecho.Backend{}}
	defer func() {
		if cerr := d.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		} else if err == nil {
			pr.Plain("\nStopped the load generator, sluice run, Prometheus and the backends; no process left behind.\n")
		}
	}()
	if err := d.setup(ctx, o, pr); err != nil {
		return nil, err
	}
	s := &stage{Backends: d.backends, Repo: d.repo, API: &rolloutapi.Client{BaseURL: d.sluice.APIURL(), Token: d.token}, Load: d.load, Print: pr, Settle: o.Settle}
	if rep, err = s.run(ctx); err != nil || o.Keep == nil {
		return rep, err
	}
	pr.Plain("\nEverything keeps running: the load generator still calls echo on v2 through Sluice.\n")
	if u := d.sluice.DashboardURL(); u != "" {
		pr.Plain("The dashboard at %s shows v3's rollback and Sluice's revert commit.\n", u)
	}
	pr.Plain("Ctrl-C stops it all.\n")
	<-o.Keep.Done()
	return rep, nil
}

func (d *demo) setup(ctx context.Context, o options, pr *printer) error {
	var err error
	if d.dir, err = os.MkdirTemp("", "sluice-demo-"); err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	var targets []string
	for _, v := range []string{"v1", "v2", "v3"} {
		fail := 0
		if v == "v3" {
			fail = failing
		}
		b, err := grpcecho.Start(grpcecho.Options{Service: rollout, Version: v, FailPercent: fail})
		if err != nil {
			return err
		}
		d.backends[v] = b
		targets = append(targets, b.MetricsAddr)
	}
	pr.Plain("  echo backends   v1 %s, v2 %s, v3 %s (v3 fails %d%% of its calls with UNAVAILABLE)\n",
		d.backends["v1"].Addr, d.backends["v2"].Addr, d.backends["v3"].Addr, failing)

	if d.prom, err = startPrometheus(ctx, o.PrometheusBin, d.dir, targets); err != nil {
		return err
	}
	pr.Plain("  Prometheus      %s, scraping demo_rpcs_total{version,code} of each backend every second\n", d.prom.URL)

	if d.repo, err = newRepo(ctx, d.dir, o.Quickstart, d.backends["v1"].Addr, o.Tune); err != nil {
		return err
	}
	pr.Plain("  Git             %s (from %s, v1 released)\n", d.repo.URL(), o.Quickstart)

	for _, tok := range []*string{&d.token, &d.viewer} {
		if *tok, _, err = rolloutapi.NewToken(); err != nil {
			return err
		}
	}
	setup := sluiceSetup{Dir: d.dir, RepoURL: d.repo.URL(), PrometheusURL: d.prom.URL, Token: d.token, ViewerToken: d.viewer}
	start := o.StartSluice
	if start == nil {
		start = func(ctx context.Context, s sluiceSetup) (sluiceInstance, error) {
			return startSluiceProcess(ctx, o.SluiceBin, s, o.SluiceLogs)
		}
	}
	if d.sluice, err = start(ctx, setup); err != nil {
		return err
	}
	pr.Plain("  sluice run      xDS %s, HTTP API %s, polling Git every second\n", d.sluice.XDSAddr(), d.sluice.APIURL())
	if u := d.sluice.DashboardURL(); u != "" {
		pr.Plain("  dashboard       %s  <- open it to watch the canary and the rollback live\n", u)
		pr.Plain("                  log in with the read token %s (the demo steers; you watch)\n", d.viewer)
	}

	d.load, err = grpcecho.StartLoad(ctx, grpcecho.LoadOptions{XDSAddr: d.sluice.XDSAddr(), Target: rollout, Rate: o.Rate, NodeID: "demo-load-generator"})
	if err != nil {
		return err
	}
	pr.Plain("  load generator  proxyless gRPC, xds:///%s via Sluice's xDS, %d calls/s\n\n", rollout, o.Rate)
	return nil
}

// Close stops every part in the reverse order of starting (the client
// before the control plane, the control plane before what it reads), then
// removes the temporary directory.
func (d *demo) Close() error {
	var errs []error
	if d.load != nil {
		d.load.Stop()
	}
	if d.sluice != nil {
		errs = append(errs, d.sluice.Stop())
	}
	if d.prom != nil {
		errs = append(errs, d.prom.Stop())
	}
	for _, b := range d.backends {
		b.Stop()
	}
	if d.dir != "" {
		if err := os.RemoveAll(d.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", d.dir, err))
		}
	}
	return errors.Join(errs...)
}
