package promtest

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/util/wait"
)

// The pieces of running Prometheus, for callers that start the process
// their own way (the demo puts every child in a process group of its own);
// Start puts them together for tests.

// WriteConfig writes dir/prometheus.yml: one job scraping targets
// (host:port) every second, the evaluation interval 1 s too, so a query
// sees a change within a couple of seconds. It returns the file's path.
func WriteConfig(dir string, targets []string) (string, error) {
	return WriteConfigEvery(dir, targets, time.Second)
}

// WriteConfigEvery is WriteConfig with scrapes (and their timeout) every
// scrape instead of every second; a benchmark that times how soon a
// change shows in a query compares the two.
func WriteConfigEvery(dir string, targets []string, scrape time.Duration) (string, error) {
	if scrape < time.Millisecond {
		return "", fmt.Errorf("prometheus config: scrape interval %v: want at least 1ms", scrape)
	}
	quoted := make([]string, len(targets))
	for i, t := range targets {
		quoted[i] = strconv.Quote(t)
	}
	every := fmt.Sprintf("%dms", scrape.Milliseconds())
	cfg := fmt.Sprintf(`global:
  scrape_interval: %s
  scrape_timeout: %s
  evaluation_interval: 1s
scrape_configs:
  - job_name: test
    static_configs:
      - targets: [%s]
`, every, every, strings.Join(quoted, ", "))
	path := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return "", fmt.Errorf("prometheus config: %w", err)
	}
	return path, nil
}

// Flags are the command-line flags of a Prometheus with configFile, its
// storage in dataDir, listening on addr (host:port).
func Flags(configFile, dataDir, addr string) []string {
	return []string{
		"--config.file=" + configFile,
		"--storage.tsdb.path=" + dataDir,
		"--web.listen-address=" + addr,
		"--log.level=warn",
	}
}

// FreeAddr returns 127.0.0.1:port for a port that was free a moment ago.
// Another process may take it before Prometheus binds it, so callers try
// again when Prometheus does not come up.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// WaitReady polls baseURL/-/ready until Prometheus answers 200, ctx ends,
// or exited (the process's end; nil if unknown) is closed.
func WaitReady(ctx context.Context, baseURL string, exited <-chan struct{}) error {
	return wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		select {
		case <-exited:
			return false, fmt.Errorf("prometheus at %s exited before it was ready", baseURL)
		default:
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(rctx, http.MethodGet, baseURL+"/-/ready", nil)
		if err != nil {
			return false, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// WaitQuery polls the instant query until ok holds for its values (one per
// series of a vector, or the scalar), so that a test or a demo starts on
// data rather than on a guess about scrape timing: Prometheus applies its
// targets a few seconds after it is ready.
func WaitQuery(ctx context.Context, baseURL, query string, ok func(values []float64) bool) error {
	c, err := api.NewClient(api.Config{Address: baseURL})
	if err != nil {
		return fmt.Errorf("prometheus client for %s: %w", baseURL, err)
	}
	a := v1.NewAPI(c)
	var last string
	err = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		v, _, err := a.Query(ctx, query, time.Now())
		if err != nil {
			last = err.Error()
			return false, nil
		}
		got := values(v)
		last = fmt.Sprint(got)
		return ok(got), nil
	})
	if err != nil {
		return fmt.Errorf("query %s on %s: last result %s: %w", query, baseURL, last, err)
	}
	return nil
}

// HasData is the condition of WaitQuery for "the query returns a number":
// at least one series whose first value is not NaN.
func HasData(vs []float64) bool { return len(vs) > 0 && !math.IsNaN(vs[0]) }

// values are the numbers of an instant query's result: a scalar's value,
// or one per series of a vector; nil for anything else.
func values(v model.Value) []float64 {
	switch v := v.(type) {
	case *model.Scalar:
		return []float64{float64(v.Value)}
	case model.Vector:
		out := make([]float64, len(v))
		for i, s := range v {
			out[i] = float64(s.Value)
		}
		return out
	}
	return nil
}
