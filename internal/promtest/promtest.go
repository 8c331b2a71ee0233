// Package promtest runs a real Prometheus for tests and the demo: the
// binary built into bin/ by `make tools` (tests find it with
// testbin.Path(t, "prometheus")), scraping targets on 127.0.0.1 every
// second, and Target, a scrape target whose Istio-style request metrics a
// test controls. It lives under internal/ rather than beside one package's
// tests because the analysis, the Kubernetes analysis controller and the
// demo all run the same Prometheus.
//
// The package does not import testing, so the demo, an ordinary program,
// can use it.
package promtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Server is a running Prometheus.
type Server struct {
	// URL is the base URL of the HTTP API, e.g. http://127.0.0.1:41234.
	URL string

	cmd  *exec.Cmd
	dir  string
	logs *syncBuffer
	done chan struct{}
	err  error // the process's exit error, once done is closed

	stopOnce sync.Once
}

// Start runs Prometheus with a scrape and evaluation interval of 1 s over
// targets (host:port), with its storage in a fresh temporary directory,
// and waits until it is ready. The caller must Stop it.
func Start(binary string, targets ...string) (*Server, error) {
	return StartEvery(binary, time.Second, targets...)
}

// StartEvery is Start with a scrape interval of scrape.
func StartEvery(binary string, scrape time.Duration, targets ...string) (*Server, error) {
	var lastErr error
	// Another process may take the free port between our probe and
	// Prometheus binding it; a couple of attempts make that harmless.
	for range 3 {
		s, err := start(binary, scrape, targets)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func start(binary string, scrape time.Duration, targets []string) (*Server, error) {
	dir, err := os.MkdirTemp("", "sluice-prometheus-")
	if err != nil {
		return nil, err
	}
	cfg, err := WriteConfigEvery(dir, targets, scrape)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	addr, err := FreeAddr()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{URL: "http://" + addr, dir: dir, logs: &syncBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(binary, Flags(cfg, filepath.Join(dir, "data"), addr)...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting %s: %w", binary, err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := WaitReady(ctx, s.URL, s.done); err != nil {
		_ = s.Stop()
		return nil, fmt.Errorf("%w (exit: %v)\n%s", err, s.err, s.Logs())
	}
	return s, nil
}

// Stop terminates Prometheus (SIGTERM, then SIGKILL after 10 s), waits for
// it and removes its storage. It may be called more than once.
func (s *Server) Stop() error {
	var err error
	s.stopOnce.Do(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		err = os.RemoveAll(s.dir)
	})
	return err
}

// Logs returns what Prometheus wrote so far.
func (s *Server) Logs() string { return s.logs.String() }

// syncBuffer collects process output, bounded: a test that fails wants
// the last lines, not all of them.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

const maxLogBytes = 64 << 10

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if over := b.buf.Len() - maxLogBytes; over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
