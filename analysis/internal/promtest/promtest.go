// Package promtest runs a real Prometheus for tests: the binary built into
// bin/ by `make tools`, scraping test targets on 127.0.0.1 every second.
package promtest

import (
	"bytes"
	"context"
	"fmt"
	"github.com/sluicehq/sluice/internal/testbin"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binary returns the path of the prometheus binary: in $SLUICE_BIN_DIR,
// else in bin/ at the root of the module. When it is missing the test is
// skipped, except with CI=true, where it fails: CI must never pass by
// skipping.
func Binary(t testing.TB) string {
	t.Helper()
	return testbin.Path(t, "prometheus")
}

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
	var lastErr error
	// Another process may take the free port between our probe and
	// Prometheus binding it; a couple of attempts make that harmless.
	for range 3 {
		s, err := start(binary, targets)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func start(binary string, targets []string) (*Server, error) {
	dir, err := os.MkdirTemp("", "sluice-prometheus-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	quoted := make([]string, len(targets))
	for i, t := range targets {
		quoted[i] = strconv.Quote(t)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: test
    static_configs:
      - targets: [%s]
`, strings.Join(quoted, ", "))
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s := &Server{URL: "http://" + addr, dir: dir, logs: &syncBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(binary,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting %s: %w", binary, err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	if err := s.waitReady(30 * time.Second); err != nil {
		_ = s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("prometheus exited before it was ready: %v\n%s", s.err, s.Logs())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/-/ready", nil)
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("prometheus not ready after %s\n%s", timeout, s.Logs())
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

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

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
