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

	dir     string
	repo    *gitRemote
	secret  string
	webhook string
	plan    ReleasePlan
	p       *Process
	api     *rolloutapi.Client
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
	s.dir = dir
	if s.repo, err = newGitRemote(ctx, dir); err != nil {
		return "", "", err
	}
	if _, err := s.push(ctx, "v1", "echo v1"); err != nil {
		return "", "", err
	}
	s.secret = newSecret()
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
`, filepath.Join(dir, "state"), s.repo.bare, port, rolloutapi.HashToken(token), plan.PrometheusURL)
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
	return s.repo.push(ctx, files, msg)
}

func (s *SluiceRun) rollout(version string) string {
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
`, version, s.plan.Backends[version].Addr, sluiceSteps(s.plan))
}

func (s *SluiceRun) analysis() string { return sluiceAnalysis(s.plan) }

// sluiceAnalysis is the AnalysisTemplate of both Sluice sides.
func sluiceAnalysis(plan ReleasePlan) string {
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
`, plan.Interval, AnalysisCount, ErrorThreshold, ErrorThreshold, yamlQuote(ErrorRatioQuery(plan.RateWindow)))
}

// sluiceSteps are the canary steps of both Sluice sides, indented for
// spec.strategy.canary.steps.
func sluiceSteps(plan ReleasePlan) string {
	if plan.Analysis {
		return "        - setWeight: 50\n        - analysis:\n            templates:\n              - name: echo-errors\n"
	}
	return "        - setWeight: 50\n        - pause: {}\n"
}

// Release pushes v2, then sends the push webhook as a Git host would.
func (s *SluiceRun) Release(ctx context.Context) (time.Time, error) {
	pushed, err := s.push(ctx, "v2", "echo v2")
	if err != nil {
		return pushed, err
	}
	return pushed, sendPushWebhook(ctx, s.webhook, s.secret, pushed)
}

// sendPushWebhook posts a GitHub push event for main to url, signed with
// secret.
func sendPushWebhook(ctx context.Context, url, secret string, pushed time.Time) error {
	body, _ := json.Marshal(map[string]string{"ref": "refs/heads/main"})
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", fmt.Sprintf("peerbench-%d", pushed.UnixNano()))
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("webhook: %s: %s", resp.Status, msg)
	}
	return nil
}

// newSecret is a random webhook secret.
func newSecret() string {
	buf := make([]byte, 16)
	_, _ = rand.Read(buf)
	return hex.EncodeToString(buf)
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

// FailedMeasurement reads the analysis's measurements from `sluice
// run`'s API, as `sluice status` shows them.
func (s *SluiceRun) FailedMeasurement(ctx context.Context) (time.Time, error) {
	ro, err := s.api.Get(ctx, "default", "echo")
	if err != nil || ro.Detail == nil {
		return time.Time{}, err
	}
	for _, run := range ro.Detail.Analysis {
		for _, m := range run.Metrics {
			if at := firstFailed(m.Measurements); !at.IsZero() {
				return at, nil
			}
		}
	}
	return time.Time{}, nil
}

func (s *SluiceRun) Stop() {
	if s.p != nil {
		s.p.Stop(10 * time.Second)
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}

// gitRemote is a bare repository on this machine, branch main, and a
// clone of it where the benchmark commits as a developer would.
type gitRemote struct {
	bare, work string
}

func newGitRemote(ctx context.Context, dir string) (*gitRemote, error) {
	r := &gitRemote{bare: filepath.Join(dir, "origin.git"), work: filepath.Join(dir, "work")}
	for _, args := range [][]string{
		{"init", "-q", "--bare", "-b", "main", r.bare},
		{"init", "-q", "-b", "main", r.work},
	} {
		if err := runGit(ctx, dir, args...); err != nil {
			return nil, err
		}
	}
	return r, runGit(ctx, r.work, "remote", "add", "origin", r.bare)
}

// push writes files, commits and pushes to main; it returns when the
// push returned.
func (r *gitRemote) push(ctx context.Context, files map[string]string, msg string) (time.Time, error) {
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(r.work, name), []byte(content), 0o644); err != nil {
			return time.Time{}, err
		}
	}
	for _, args := range [][]string{{"add", "-A"}, {"commit", "-q", "-m", msg}, {"push", "-q", "origin", "HEAD:main"}} {
		if err := runGit(ctx, r.work, args...); err != nil {
			return time.Time{}, err
		}
	}
	return time.Now(), nil
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
