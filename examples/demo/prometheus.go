package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// prometheusServer is bin/prometheus scraping the demo backends every
// second, with its storage under the demo's temporary directory.
type prometheusServer struct {
	URL string
	p   *proc
}

// startPrometheus starts Prometheus on a free port of 127.0.0.1 and waits
// until it is ready. Another process may take the port between our probe
// and Prometheus binding it, hence a few attempts.
func startPrometheus(ctx context.Context, binary, dir string, targets []string) (*prometheusServer, error) {
	quoted := make([]string, len(targets))
	for i, t := range targets {
		quoted[i] = strconv.Quote(t)
	}
	// 1 s scrapes: the demo's analysis measures every 2 s over 10 s.
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: echo
    static_configs:
      - targets: [%s]
`, strings.Join(quoted, ", "))
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("prometheus config: %w", err)
	}
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		p, err := startProc("prometheus", nil, binary,
			"--config.file="+cfgPath,
			"--storage.tsdb.path="+filepath.Join(dir, "prometheus-data"),
			"--web.listen-address="+addr,
			"--log.level=warn",
		)
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
	err := poll(ctx, 100*time.Millisecond, func() (bool, error) {
		select {
		case <-s.p.Exited():
			return false, fmt.Errorf("prometheus exited: %v\n%s", s.p.err, s.p.Logs())
		default:
		}
		return httpOK(ctx, s.URL+"/-/ready"), nil
	})
	if err != nil {
		return fmt.Errorf("prometheus at %s not ready: %w\n%s", s.URL, err, s.p.Logs())
	}
	return nil
}

// waitScraped waits until n targets were scraped successfully.
func (s *prometheusServer) waitScraped(ctx context.Context, n int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	err := poll(ctx, 200*time.Millisecond, func() (bool, error) {
		v, err := s.queryScalar(ctx, "count(up == 1)")
		if err != nil {
			last = err.Error()
			return false, nil
		}
		return v == float64(n), nil
	})
	if err != nil {
		return fmt.Errorf("prometheus did not scrape the %d backends: %w %s\n%s", n, err, last, s.p.Logs())
	}
	return nil
}

// queryScalar runs an instant query whose result is one sample.
func (s *prometheusServer) queryScalar(ctx context.Context, q string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/api/v1/query?query="+url.QueryEscape(q), nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, fmt.Errorf("query %q: %w", q, err)
	}
	if len(body.Data.Result) != 1 {
		return 0, fmt.Errorf("query %q: %d samples", q, len(body.Data.Result))
	}
	str, _ := body.Data.Result[0].Value[1].(string)
	return strconv.ParseFloat(str, 64)
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

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
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
