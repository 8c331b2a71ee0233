package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/sluicehq/sluice/internal/promtest"
)

// prometheusServer is bin/prometheus scraping the demo backends every
// second, with its storage under the demo's temporary directory. It runs
// as a proc (a process group of its own, like every child of the demo);
// the configuration, flags and readiness checks are internal/promtest's,
// the same the tests use.
type prometheusServer struct {
	URL string
	p   *proc
}

// startPrometheus starts Prometheus on a free port of 127.0.0.1 and waits
// until it is ready and has scraped every target. Another process may take
// the port between our probe and Prometheus binding it, hence a few
// attempts.
func startPrometheus(ctx context.Context, binary, dir string, targets []string) (*prometheusServer, error) {
	// 1 s scrapes: the demo's analysis measures every 2 s over 10 s.
	cfgPath, err := promtest.WriteConfig(dir, targets)
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 {
		addr, err := promtest.FreeAddr()
		if err != nil {
			return nil, err
		}
		p, err := startProc("prometheus", nil, binary, promtest.Flags(cfgPath, filepath.Join(dir, "prometheus-data"), addr)...)
		if err != nil {
			return nil, err
		}
		s := &prometheusServer{URL: "http://" + addr, p: p}
		if lastErr = s.waitReady(ctx, 30*time.Second); lastErr == nil {
			// Prometheus applies discovered targets every 5 s, so the first
			// scrapes come a few seconds after it is ready; an analysis
			// before them would find no data.
			if err := s.waitScraped(ctx, len(targets), 30*time.Second); err != nil {
				_ = p.Stop(5 * time.Second)
				return nil, err
			}
			return s, nil
		}
		_ = p.Stop(5 * time.Second)
	}
	return nil, lastErr
}

func (s *prometheusServer) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := promtest.WaitReady(ctx, s.URL, s.p.Exited()); err != nil {
		select {
		case <-s.p.Exited(): // p.err is set once Exited is closed
			err = fmt.Errorf("%w: %v", err, s.p.err)
		default:
		}
		return fmt.Errorf("%w\n%s", err, s.p.Logs())
	}
	return nil
}

// waitScraped waits until n targets were scraped successfully.
func (s *prometheusServer) waitScraped(ctx context.Context, n int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	scraped := func(v []float64) bool { return len(v) == 1 && v[0] == float64(n) }
	if err := promtest.WaitQuery(ctx, s.URL, "count(up == 1)", scraped); err != nil {
		return fmt.Errorf("prometheus did not scrape the %d backends: %w\n%s", n, err, s.p.Logs())
	}
	return nil
}

// Stop stops Prometheus; its storage goes with the demo's directory.
func (s *prometheusServer) Stop() error { return s.p.Stop(10 * time.Second) }

// httpOK reports whether GET url answers 200.
func httpOK(ctx context.Context, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// poll calls cond every interval until it reports done, fails, or ctx ends.
func poll(ctx context.Context, interval time.Duration, cond func() (bool, error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		done, err := cond()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
