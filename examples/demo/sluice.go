package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/rolloutapi"
)

// sluiceInstance is a running Sluice as the demo sees it: an xDS server for
// the load generator, an HTTP API to follow the rollout, and the web
// dashboard for a person to watch it.
type sluiceInstance interface {
	XDSAddr() string
	APIURL() string
	// DashboardURL is "" when this Sluice serves no dashboard.
	DashboardURL() string
	// Stop shuts Sluice down and reports anything left behind.
	Stop() error
}

// sluiceSetup is what a Sluice needs from the demo's environment.
type sluiceSetup struct {
	Dir           string // state and configuration go here
	RepoURL       string
	PrometheusURL string
	// Token is the demo's operator token for the Sluice API.
	Token string
	// ViewerToken is a read token, for a person to log in to the
	// dashboard with: they watch, the demo steers.
	ViewerToken string
}

// sluiceAuthor signs Sluice's revert commits; the demo tells them apart
// from its own by it.
const sluiceAuthor = "Sluice"

// sluiceConfig is the `sluice run` configuration of the demo: poll Git
// every second (no webhook needed on one machine), listen on free ports
// of 127.0.0.1, measure with the demo's Prometheus.
func sluiceConfig(s sluiceSetup) string {
	return fmt.Sprintf(`stateDir: %s
git:
  url: %s
  branch: main
  interval: 1s
  writeBack:
    authorName: %s
    authorEmail: sluice@localhost
xds:
  address: 127.0.0.1:0
http:
  address: 127.0.0.1:0
  metricsAddress: 127.0.0.1:0
  # The API and the dashboard fail closed: the demo's operator token,
  # and a read token for you to watch in the dashboard.
  tokens:
    - name: demo
      role: operate
      sha256: %s
    - name: you
      role: read
      sha256: %s
prometheus:
  address: %s
shutdown:
  # The load generator has disconnected by the time Sluice stops.
  drainTimeout: 2s
`, filepath.Join(s.Dir, "sluice-state"), s.RepoURL, sluiceAuthor, rolloutapi.HashToken(s.Token), rolloutapi.HashToken(s.ViewerToken), s.PrometheusURL)
}

// sluiceProcess is `sluice run` as a subprocess.
type sluiceProcess struct {
	xds, api, dashboard string
	p                   *proc
}

// The listeners are on port 0, so the addresses come from the log line
// `sluice run started xds=… http=… … dashboard=…`: no port can be taken in
// between.
var startedLine = regexp.MustCompile(`msg="sluice run started" xds=(\S+) http=(\S+)(?:.* dashboard=(\S+))?`)

// startSluiceProcess runs `binary run --config …` and waits until /readyz
// answers. Its log goes to logs (nil: kept only for error messages).
func startSluiceProcess(ctx context.Context, binary string, s sluiceSetup, logs io.Writer) (*sluiceProcess, error) {
	cfg := filepath.Join(s.Dir, "sluice.yaml")
	if err := os.WriteFile(cfg, []byte(sluiceConfig(s)), 0o600); err != nil {
		return nil, fmt.Errorf("sluice config: %w", err)
	}
	w := &lineMatcher{re: startedLine, found: make(chan []string, 1)}
	var out io.Writer = w
	if logs != nil {
		out = io.MultiWriter(w, logs)
	}
	p, err := startProc("sluice run", out, binary, "run", "--config", cfg)
	if err != nil {
		return nil, err
	}
	sp := &sluiceProcess{p: p}
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	select {
	case m := <-w.found:
		sp.xds, sp.api = m[1], "http://"+m[2]
		if strings.HasPrefix(m[3], "http") {
			sp.dashboard = m[3]
		}
	case <-p.Exited():
		return nil, fmt.Errorf("sluice run exited at start: %v\n%s", p.err, p.Logs())
	case <-wait.Done():
		_ = p.Stop(5 * time.Second)
		return nil, fmt.Errorf("sluice run did not start: %w\n%s", wait.Err(), p.Logs())
	}
	err = poll(wait, 50*time.Millisecond, func() (bool, error) {
		select {
		case <-p.Exited():
			return false, fmt.Errorf("sluice run exited: %v", p.err)
		default:
		}
		return httpOK(wait, sp.api+"/readyz"), nil
	})
	if err != nil {
		_ = p.Stop(5 * time.Second)
		return nil, fmt.Errorf("sluice run not ready: %w\n%s", err, p.Logs())
	}
	return sp, nil
}

func (s *sluiceProcess) XDSAddr() string      { return s.xds }
func (s *sluiceProcess) APIURL() string       { return s.api }
func (s *sluiceProcess) DashboardURL() string { return s.dashboard }

// Stop sends SIGTERM (Sluice writes its state and drains xDS), then
// checks that Sluice and the git processes it ran are gone.
func (s *sluiceProcess) Stop() error { return s.p.Stop(15 * time.Second) }

// Logs returns the end of Sluice's log.
func (s *sluiceProcess) Logs() string { return s.p.Logs() }

// lineMatcher passes the submatches of the first line matching re.
type lineMatcher struct {
	re    *regexp.Regexp
	found chan []string

	mu   sync.Mutex
	buf  []byte
	done bool
}

func (m *lineMatcher) Write(b []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.done {
		return len(b), nil
	}
	m.buf = append(m.buf, b...)
	for {
		i := bytes.IndexByte(m.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		line := m.buf[:i]
		m.buf = m.buf[i+1:]
		if sm := m.re.FindSubmatch(line); sm != nil {
			out := make([]string, len(sm))
			for j, s := range sm {
				out[j] = string(s)
			}
			m.found <- out
			m.done, m.buf = true, nil
			return len(b), nil
		}
	}
}
