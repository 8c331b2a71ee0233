package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"

	promanalysis "github.com/sluicehq/sluice/analysis/prometheus"
	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/rolloutapi"
	"github.com/sluicehq/sluice/standalone/config"
	"github.com/sluicehq/sluice/standalone/runner"
	"github.com/sluicehq/sluice/standalone/store"
	"github.com/sluicehq/sluice/xds"
)

// inProcess is Sluice wired inside the test process the way `sluice run`
// wires it (cmd/sluice/run.go): the runner, the xDS server, gitsync and the
// analysis driver, so the race detector watches them at work.
type inProcess struct {
	xds, api string
	logs     *tail
	stop     func() error
}

func (s *inProcess) XDSAddr() string { return s.xds }
func (s *inProcess) APIURL() string  { return s.api }
func (s *inProcess) Stop() error     { return s.stop() }

// DashboardURL: the API alone is wired here; TestDemoBinary's `sluice
// run` serves the dashboard.
func (s *inProcess) DashboardURL() string { return "" }

func startInProcess(ctx context.Context, s sluiceSetup) (_ *inProcess, err error) {
	logs := &tail{}
	sl := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	log := logr.FromSlogHandler(sl.Handler())

	st, err := store.Open(filepath.Join(s.Dir, "sluice-state", "state.db"), store.Options{})
	if err != nil {
		return nil, err
	}
	var cleanups []func() error
	cleanups = append(cleanups, st.Close)
	defer func() {
		if err != nil {
			for i := len(cleanups) - 1; i >= 0; i-- {
				_ = cleanups[i]()
			}
		}
	}()
	eps := xds.NewStatic()
	xsrv, err := xds.New(xds.Options{Endpoints: eps, Logger: sl.With("logger", "xds")})
	if err != nil {
		return nil, err
	}
	syncer, err := gitsync.New(gitsync.Source{URL: s.RepoURL, Branch: "main", Interval: time.Second}, gitsync.Options{
		MirrorDir: filepath.Join(s.Dir, "sluice-state", "git"), Logger: log.WithName("gitsync"),
		WriteBack: gitsync.WriteBackOptions{AuthorName: sluiceAuthor, AuthorEmail: "sluice@localhost"},
	})
	if err != nil {
		return nil, err
	}
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	xdsCtx, stopXDS := context.WithCancel(context.WithoutCancel(ctx))
	cleanups = append(cleanups, func() error { stopRun(); stopXDS(); return nil })
	plane := runner.NewXDSPlane(xdsCtx, xsrv, eps)
	driver := runner.NewAnalysisDriver(runCtx, promanalysis.New((&config.Prometheus{Address: s.PrometheusURL}).Options()), nil, log.WithName("analysis"))
	run, err := runner.New(runner.Options{Store: st, Source: syncer, Reverter: syncer, Plane: plane, Analysis: driver, Log: log.WithName("runner")})
	if err != nil {
		return nil, err
	}
	xl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	cleanups = append(cleanups, xl.Close)
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	tok, err := rolloutapi.ParseToken("demo", "demo", rolloutapi.RoleOperate, rolloutapi.HashToken(s.Token))
	if err != nil {
		return nil, err
	}
	hsrv := &http.Server{Handler: rolloutapi.NewHandler(run, rolloutapi.HandlerOptions{Tokens: []rolloutapi.Token{tok}, Ready: run.Ready}), ReadHeaderTimeout: 5 * time.Second}

	var wg sync.WaitGroup
	errc := make(chan error, 4)
	goRun := func(name string, f func() error) {
		wg.Go(func() {
			if err := f(); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		})
	}
	goRun("xds", func() error { return xsrv.Serve(xdsCtx, xl) })
	goRun("http", func() error { return hsrv.Serve(hl) })
	goRun("gitsync", func() error { return syncer.Run(runCtx) })
	runDone := make(chan error, 1)
	go func() { runDone <- run.Run(runCtx) }()

	p := &inProcess{xds: xl.Addr().String(), api: "http://" + hl.Addr().String(), logs: logs}
	// The same order as `sluice run` on SIGTERM: stop advancing, let the
	// runs end, then close xDS and the API.
	p.stop = sync.OnceValue(func() error {
		stopRun()
		runErr := <-runDone // its last step is on disk
		driver.Wait()
		stopXDS()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hsrv.Shutdown(shut)
		wg.Wait()
		close(errc)
		errs := []error{runErr, st.Close()}
		for err := range errc {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
	return p, nil
}
