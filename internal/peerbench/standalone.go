package peerbench

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// SluiceRun is `sluice run` (standalone mode) as a traffic benchmark
// side: the Rollout and its AnalysisTemplate in a Git repository that
// the benchmark pushes to, over file:// from a bare repository on this
// machine, with a push webhook (HMAC-signed, as GitHub, GitLab and Gitea
// send it) that the benchmark sends as soon as the push returns: what a
// production setup with a Git host does (polling, the fallback, would
// add up to its interval). The webhook's transit from a Git host is not
// counted, as Argo CD's or Flux's poll is not counted for the peer.
type SluiceRun struct {
	Bin string // path of sluice
	// Log gets the process's output.
	Log io.Writer

	dir, bare, work string
	secret          string
	webhook         string
	plan            ReleasePlan
	p               *Process
	api             *rolloutapi.Client
}

func (*SluiceRun) Name() string { return "sluice-run" }

// Node: any id (plaintext xDS on loopback: `sluice run` verifies no
// identity there, and serves every service).
func (*SluiceRun) Node(i int) GRPCNode { return GRPCNode{ID: fmt.Sprintf("peerbench-client-%d", i)} }

var runStarted = regexp.MustCompile(`msg="sluice run started" xds=(\S+) http=(\S+)`)

func (s *SluiceRun) Start(ctx context.Context, plan ReleasePlan) (string, string, error) {
	s.plan = plan
	dir, err := os.MkdirTemp("", "peerbench-sluice-run-")
	if err != nil {
		return "", "", err
	}
	s.dir, s.bare, s.work = dir, filepath.Join(dir, "origin.git"), filepath.Join(dir, "work")
	for _, args := range [][]string{
		{"init", "-q", "--bare", "-b", "main", s.bare},
		{"init", "-q", "-b", "main", s.work},
	} {
		if err := runGit(ctx, dir, args...); err != nil {
			return "", "", err
		}
	}
	if err := runGit(ctx, s.work, "remote", "add", "origin", s.bare); err != nil {
		return "", "", err
	}
	if _, err := s.push(ctx, "v1", "echo v1"); err != nil {
		return "", "", err
	}
	buf := make([]byte, 16)
	_, _ = rand.Read(buf)
	s.secret = hex.EncodeToString(buf)
	token, _, err := rolloutapi.NewToken()
	if err != nil {
		return "", "", err
	}
	port, err := FreePort()
	if err != nil {
		return "", "", err
	}
	s.webhook = fmt.Sprintf("http://127.0.0.1:%d/webhook", port)
	cfg := fmt.Sprintf(`stateDir: %s
git:
  url: file://%s
  branch: main
  webhookSecret:
    env: PEERBENCH_WEBHOOK_SECRET
xds:
  address: 127.0.0.1:0
http:
  address: 127.0.0.1:0
  metricsAddress: 127.0.0.1:0
  webhookAddress: 127.0.0.1:%d
  tokens:
    - name: bench
      role: operate
      sha256: %s
prometheus:
  address: %s
shutdown:
  drainTimeout: 1s
`, filepath.Join(dir, "state"), s.bare, port, rolloutapi.HashToken(token), plan.PrometheusURL)
	path := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return "", "", err
	}
	started := make(chan []string, 1)
	p, err := Start(s.Name(), s.Bin, []string{"run", "--config", path}, []string{"PEERBENCH_WEBHOOK_SECRET=" + s.secret}, s.Log)
	if err != nil {
		return "", "", err
	}
	s.p = p
	p.OnLine(func(line string) {
		if m := runStarted.FindStringSubmatch(line); m != nil {
			select {
			case started <- m:
			default:
			}
		}
	})
	select {
	case m := <-started:
		p.OnLine(nil)
		s.api = &rolloutapi.Client{BaseURL: "http://" + m[2], Token: token}
		return m[1], "echo", nil
	case <-time.After(time.Minute):
		return "", "", fmt.Errorf("sluice run did not start in a minute:\n%s", p.Tail())
	case <-ctx.Done():
		return "", "", ctx.Err()
	}
}

// push commits the Rollout with version's backend and pushes it.
func (s *SluiceRun) push(ctx context.Context, version, msg string) (time.Time, error) {
	files := map[string]string{"rollout.yaml": s.rollout(version)}
	if s.plan.Analysis {
		files["analysis.yaml"] = s.analysis()
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(s.work, name), []byte(content), 0o644); err != nil {
			return time.Time{}, err
		}
	}
	if err := runGit(ctx, s.work, "add", "-A"); err != nil {
		return time.Time{}, err
	}
	if err := runGit(ctx, s.work, "commit", "-q", "-m", msg); err != nil {
		return time.Time{}, err
	}
	if err := runGit(ctx, s.work, "push", "-q", "origin", "HEAD:main"); err != nil {
		return time.Time{}, err
	}
	return time.Now(), nil
}

func (s *SluiceRun) rollout(version string) string {
	steps := "        - setWeight: 50\n        - pause: {}\n"
	if s.plan.Analysis {
		steps = "        - setWeight: 50\n        - analysis:\n            templates:\n              - name: echo-errors\n"
	}
	return fmt.Sprintf(`apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: echo
spec:
  service:
    name: echo
    hosts:
      - echo
    port: 9080
  backend:
    version: %s
    endpoints:
      - %s
  strategy:
    canary:
      steps:
%s  rollback:
    onAnalysisFailure: Abort
`, version, s.plan.Backends[version].Addr, steps)
}

func (s *SluiceRun) analysis() string {
	return fmt.Sprintf(`apiVersion: sluice.dev/v1alpha1
kind: AnalysisTemplate
metadata:
  name: echo-errors
spec:
  metrics:
    - name: error-ratio
      interval: %s
      count: %d
      failureLimit: 0
      successCondition: result[0] <= %g
      failureCondition: result[0] > %g
      provider:
        prometheus:
          timeout: 2s
          query: %s
`, s.plan.Interval, AnalysisCount, ErrorThreshold, ErrorThreshold, yamlQuote(ErrorRatioQuery(RateWindow)))
}

// Release pushes v2, then sends the push webhook as a Git host would.
func (s *SluiceRun) Release(ctx context.Context) (time.Time, error) {
	pushed, err := s.push(ctx, "v2", "echo v2")
	if err != nil {
		return pushed, err
	}
	body, _ := json.Marshal(map[string]string{"ref": "refs/heads/main"})
	mac := hmac.New(sha256.New, []byte(s.secret))
	mac.Write(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.webhook, bytes.NewReader(body))
	if err != nil {
		return pushed, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("peerbench-%d", pushed.UnixNano()))
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return pushed, fmt.Errorf("webhook: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusAccepted {
		return pushed, fmt.Errorf("webhook: %s: %s", resp.Status, msg)
	}
	return pushed, nil
}

// Aborted asks `sluice run`'s API, as `sluice status` does.
func (s *SluiceRun) Aborted(ctx context.Context) (bool, string, error) {
	ro, err := s.api.Get(ctx, "default", "echo")
	if err != nil {
		return false, "", err
	}
	for _, c := range ro.Status.Conditions {
		if c.Type == v1alpha1.ConditionAborted && c.Status == metav1.ConditionTrue {
			return true, "", nil
		}
	}
	return false, fmt.Sprintf("phase %s, step %s: %s", ro.Status.Phase, ro.Status.StepDisplay, ro.Status.Message), nil
}

func (s *SluiceRun) Stop() {
	if s.p != nil {
		s.p.Stop(10 * time.Second)
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

// runGit runs git in dir, isolated from the user's configuration.
func runGit(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_GLOBAL="+os.DevNull, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=Peerbench", "GIT_AUTHOR_EMAIL=peerbench@example.com",
		"GIT_COMMITTER_NAME=Peerbench", "GIT_COMMITTER_EMAIL=peerbench@example.com")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
