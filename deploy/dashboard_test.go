package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/sluicehq/sluice/internal/gittest"
	"github.com/sluicehq/sluice/internal/metricsdoc"
	"github.com/sluicehq/sluice/internal/promtest"
	"github.com/sluicehq/sluice/internal/testbin"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

const dashboardFile = "grafana/sluice.json"

// A Grafana dashboard, as far as the test reads it.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	GridPos    struct{ H, W, X, Y int }
	Targets    []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's
}

// query is one PromQL expression of the dashboard, or the series selector
// of a label_values() variable, with the label it reads.
type query struct {
	where string
	expr  string
	label string // label_values' label
}

func loadDashboard(t *testing.T) (dashboard, []query) {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var qs []query
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				qs = append(qs, query{where: fmt.Sprintf("panel %q target %s", p.Title, tg.RefID), expr: tg.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q string
		switch x := v.Query.(type) {
		case string:
			q = x
		case map[string]any:
			q, _ = x["query"].(string)
		}
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(SELECTOR, LABEL)", v.Name, q)
			continue
		}
		qs = append(qs, query{where: "variable " + v.Name, expr: m[1], label: m[2]})
	}
	return d, qs
}

// grafanaVar is a variable reference in an expression: $name, ${name}
// or ${name:format}.
var grafanaVar = regexp.MustCompile(`\$(?:\{([a-zA-Z_][a-zA-Z0-9_]*)(?::[a-z]+)?\}|([a-zA-Z_][a-zA-Z0-9_]*))`)

// substitute replaces Grafana's variables so the parser sees PromQL:
// its interval variables by a duration, the dashboard's own (which stand
// inside label matchers' regular expressions) by a word. An unknown
// variable is an error: Grafana would leave it in the query.
func substitute(expr string, vars []string) (string, error) {
	var bad []string
	out := grafanaVar.ReplaceAllStringFunc(expr, func(m string) string {
		sub := grafanaVar.FindStringSubmatch(m)
		name := sub[1] + sub[2]
		switch {
		case slices.Contains([]string{"__rate_interval", "__interval", "__range"}, name):
			return "5m"
		case slices.Contains(vars, name):
			return "x"
		}
		bad = append(bad, m)
		return m
	})
	if len(bad) > 0 {
		return "", fmt.Errorf("unknown variables %v", bad)
	}
	return out, nil
}

// use is what one expression needs from the exporter: each metric with
// the labels its matchers name, and the labels its aggregations group by
// with the metrics below them.
type use struct {
	metrics map[string][]string // metric -> labels matched
	groups  []grouping
}

type grouping struct {
	labels  []string
	metrics []string
}

func inspect(expr parser.Expr) use {
	u := use{metrics: map[string][]string{}}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			name := n.Name
			var labels []string
			for _, m := range n.LabelMatchers {
				if m.Name == model.MetricNameLabel {
					name = m.Value
					continue
				}
				labels = append(labels, m.Name)
			}
			u.metrics[name] = append(u.metrics[name], labels...)
		case *parser.AggregateExpr:
			if len(n.Grouping) == 0 || n.Without {
				break
			}
			var below []string
			parser.Inspect(n.Expr, func(node parser.Node, _ []parser.Node) error {
				if vs, ok := node.(*parser.VectorSelector); ok {
					below = append(below, vs.Name)
				}
				return nil
			})
			u.groups = append(u.groups, grouping{labels: n.Grouping, metrics: below})
		}
		return nil
	})
	return u
}

// TestDashboardIsWellFormed checks what needs no running Sluice: unique
// panel ids, every panel on the grid with a query against the dashboard's
// data source variable, and every expression parsed by Prometheus' own
// parser with nothing but Sluice's series in it.
func TestDashboardIsWellFormed(t *testing.T) {
	t.Parallel()
	d, qs := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: both are needed to import and link the dashboard", d.UID, d.Title)
	}
	vars := dashboardVars(d)
	if !slices.Contains(vars, "datasource") {
		t.Error("no datasource variable: the dashboard would be tied to one Prometheus")
	}
	ids := map[int]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if prev, dup := ids[p.ID]; dup {
				t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
			}
			ids[p.ID] = p.Title
			if p.GridPos.X < 0 || p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H <= 0 {
				t.Errorf("panel %q: gridPos %+v is off Grafana's 24 columns", p.Title, p.GridPos)
			}
			if p.Type != "row" {
				if len(p.Targets) == 0 {
					t.Errorf("panel %q has no query", p.Title)
				}
				if !strings.Contains(string(p.Datasource), "${datasource}") {
					t.Errorf("panel %q: datasource %s, want the ${datasource} variable", p.Title, p.Datasource)
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, q := range qs {
		expr, err := parseQuery(q, vars)
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
			continue
		}
		for m := range inspect(expr).metrics {
			if !strings.HasPrefix(m, "sluice_") {
				t.Errorf("%s: %s is not one of Sluice's series", q.where, m)
			}
		}
	}
}

func dashboardVars(d dashboard) []string {
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
	}
	return vars
}

func parseQuery(q query, vars []string) (parser.Expr, error) {
	s, err := substitute(q.expr, vars)
	if err != nil {
		return nil, err
	}
	expr, err := parser.ParseExpr(s)
	if err != nil {
		return nil, fmt.Errorf("PromQL %q: %w", s, err)
	}
	if q.label != "" {
		if _, ok := expr.(*parser.VectorSelector); !ok {
			return nil, fmt.Errorf("label_values of %q: want a series selector", s)
		}
	}
	return expr, nil
}

// series is what a scrape shows of one metric name: its labels.
type series map[string]map[string]bool

// scraped turns exposition-format families into the names a query can
// select (a histogram's _bucket, _sum and _count) and their labels.
func scraped(fams map[string]*dto.MetricFamily) series {
	out := series{}
	add := func(name string, labels []*dto.LabelPair, extra ...string) {
		if out[name] == nil {
			out[name] = map[string]bool{}
		}
		for _, l := range labels {
			out[name][l.GetName()] = true
		}
		for _, l := range extra {
			out[name][l] = true
		}
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM:
				add(name+"_bucket", m.GetLabel(), "le")
				add(name+"_sum", m.GetLabel())
				add(name+"_count", m.GetLabel())
			case dto.MetricType_SUMMARY:
				add(name, m.GetLabel(), "quantile")
				add(name+"_sum", m.GetLabel())
				add(name+"_count", m.GetLabel())
			default:
				add(name, m.GetLabel())
			}
		}
	}
	return out
}

// Labels Prometheus adds to every scraped series.
var targetLabels = []string{"job", "instance"}

// TestDashboardMatchesExportedMetrics runs the real `sluice run` through a
// canary rollout promoted after an analysis step and one rolled back by a
// failed analysis and reverted in Git (against a real Prometheus), so that
// the per-Rollout, analysis, xDS and Git series exist, scrapes its
// /metrics with a token, and checks every series and label the
// dashboard's expressions and variables name against the scrape. A
// dashboard panel over a metric that was renamed, or never existed,
// fails here. It also checks the scrape against docs/metrics.md
// (checkDocumented).
func TestDashboardMatchesExportedMetrics(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("builds and runs sluice")
	}
	d, qs := loadDashboard(t)
	prom, err := promtest.Start(testbin.Path(t, "prometheus"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prom.Stop() })
	s := startSluice(t, prom.URL)

	s.wait(t, "v1 stable", func(ro rolloutapi.Rollout) bool { return ro.Status.StableRevision == "v1" })
	s.push(t, "v2", 9002, "always-passes")
	s.wait(t, "v2 promoted", func(ro rolloutapi.Rollout) bool {
		return ro.Status.Phase == v1alpha1.PhaseHealthy && ro.Status.StableRevision == "v2" && ro.Status.CanaryRevision == ""
	})
	s.push(t, "v3", 9003, "always-fails")
	s.wait(t, "v3 rolled back and reverted in Git", func(ro rolloutapi.Rollout) bool {
		g := ro.Status.GitRevert
		return ro.Status.StableRevision == "v2" && ro.Status.CanaryRevision == "" && g != nil && g.Phase == v1alpha1.GitRevertDone
	})
	got := s.scrape(t)

	vars := dashboardVars(d)
	missing := map[string][]string{}
	for _, q := range qs {
		expr, err := parseQuery(q, vars)
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
			continue
		}
		u := inspect(expr)
		for m, labels := range u.metrics {
			have, ok := got[m]
			if !ok {
				missing[m] = append(missing[m], q.where)
				continue
			}
			if q.label != "" {
				labels = append(labels, q.label)
			}
			for _, l := range labels {
				if !have[l] && !slices.Contains(targetLabels, l) {
					t.Errorf("%s: %s has no label %q (it has %v)", q.where, m, l, keys(have))
				}
			}
		}
		for _, g := range u.groups {
			for _, l := range g.labels {
				if slices.Contains(targetLabels, l) {
					continue
				}
				if !slices.ContainsFunc(g.metrics, func(m string) bool { return got[m][l] }) {
					t.Errorf("%s: groups by %q, which none of %v carries", q.where, l, g.metrics)
				}
			}
		}
	}
	for m, where := range missing {
		t.Errorf("the dashboard uses %s (%s), which sluice run does not export", m, strings.Join(where, "; "))
	}
	checkDocumented(t, got)
	if t.Failed() {
		var names []string
		for n := range got {
			if strings.HasPrefix(n, "sluice_") {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		t.Logf("sluice run exports: %s", strings.Join(names, " "))
	}
}

// inScenario tells, from docs/metrics.md's appears column, whether a
// metric's series exist once the test's rollouts have run: a Git source,
// a Rollout, analysis measurements and a write-back, but no notification
// target and no force push.
func inScenario(appears string) bool {
	for _, p := range []string{"at start", "with a Rollout", "with a Git source", "with a measurement", "with `sluice_analysis_metric_value`", "at the first write-back"} {
		if strings.HasPrefix(appears, p) {
			return true
		}
	}
	return false
}

// checkDocumented holds the scrape of sluice run to docs/metrics.md: every
// metric documented for run mode (both modes, or run only) that the
// scenario makes exist is served, with the documented labels.
// kube/manager's TestQuickstart does the same for controller mode, so the
// series documented for both are served by both, alike.
func checkDocumented(t *testing.T, got series) {
	t.Helper()
	docs, err := metricsdoc.Read("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, d := range docs {
		if !d.ServedBy(metricsdoc.Run) || !inScenario(d.Appears) {
			continue
		}
		checked++
		name := d.Name
		if d.Type == "histogram" {
			name += "_count"
		}
		have, ok := got[name]
		if !ok {
			t.Errorf("%s (docs/metrics.md:%d) is documented for sluice run but not served", d.Name, d.Line)
			continue
		}
		// Exactly the documented labels: a series served by both modes
		// has the same labels in both (kube/manager's TestQuickstart
		// holds the controller to the same rows).
		want := slices.Clone(d.Labels)
		sort.Strings(want)
		if got := keys(have); !slices.Equal(got, want) {
			t.Errorf("%s (docs/metrics.md:%d) is documented with labels %v, but sluice run serves it with %v", d.Name, d.Line, want, got)
		}
	}
	if checked < 20 {
		t.Errorf("only %d documented metrics checked: did the page's appears column change?", checked)
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// The Rollout the test drives: a canary with an analysis step naming
// one of two templates, one whose metric always passes and one whose
// metric always fails, and a Git revert after an automatic rollback, so
// that the analysis series and Git's write-back series appear too.
const dashRollout = `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: reviews
spec:
  service: {name: reviews, hosts: [reviews], port: 9080}
  backend: {version: %s, endpoints: ["127.0.0.1:%d"]}
  strategy:
    canary:
      steps:
      - setWeight: 20
      - analysis:
          templates: [{name: %s}]
      - setWeight: 50
      - pause: {duration: 1s}
  rollback:
    onAnalysisFailure: Abort
    gitRevert: true
---
apiVersion: sluice.dev/v1alpha1
kind: AnalysisTemplate
metadata:
  name: always-passes
spec:
  metrics:
  - name: success-rate
    interval: 1s
    count: 1
    successCondition: result[0] >= 0.9
    provider:
      prometheus:
        query: vector(1)
---
apiVersion: sluice.dev/v1alpha1
kind: AnalysisTemplate
metadata:
  name: always-fails
spec:
  metrics:
  - name: success-rate
    interval: 1s
    count: 1
    failureCondition: result[0] < 0.9
    provider:
      prometheus:
        query: vector(0.5)
`

const dashConfig = `git:
  url: %s
  branch: main
  interval: 1s
  writeBack: {authorName: sluice-bot, authorEmail: bot@example.com}
stateDir: %s
prometheus:
  address: %s
xds:
  address: %s
  ackWithoutClients: true
http:
  address: %s
  metricsAddress: %s
  token: {env: SLUICE_DASHBOARD_TOKEN}
`

const dashToken = "dashboard-test-token"

type sluiceRun struct {
	repo    *gittest.Repo
	client  *rolloutapi.Client
	metrics string
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// sluiceBinary builds cmd/sluice once for the package's tests.
func sluiceBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sluice-deploy-test-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "sluice")
		cmd := exec.Command("go", "build", "-o", builtBin, "./cmd/sluice")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/sluice: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startSluice(t *testing.T, promURL string) *sluiceRun {
	t.Helper()
	bin := sluiceBinary(t)
	root := t.TempDir()
	repo := gittest.New(t)
	httpAddr, metricsAddr := freeAddr(t), freeAddr(t)
	cfg := filepath.Join(root, "sluice.yaml")
	body := fmt.Sprintf(dashConfig, repo.URL(), filepath.Join(root, "state"), promURL, freeAddr(t), httpAddr, metricsAddr)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", cfg, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "SLUICE_DASHBOARD_TOKEN="+dashToken)
	cmd.Stderr = os.Stderr
	s := &sluiceRun{repo: repo, client: &rolloutapi.Client{BaseURL: "http://" + httpAddr, Token: dashToken}, metrics: "http://" + metricsAddr + "/metrics"}
	// The first commit must exist before sluice run starts following main.
	s.push(t, "v1", 9001, "always-passes")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	return s
}

func (s *sluiceRun) push(t *testing.T, version string, port int, template string) {
	t.Helper()
	s.repo.Push("reviews "+version, map[string]string{"reviews.yaml": fmt.Sprintf(dashRollout, version, port, template)})
}

func (s *sluiceRun) wait(t *testing.T, what string, ok func(rolloutapi.Rollout) bool) {
	t.Helper()
	var last rolloutapi.Rollout
	var lastErr error
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		ro, err := s.client.Get(context.Background(), "default", "reviews")
		if lastErr = err; err != nil {
			continue
		}
		if last = ro; ok(ro) {
			return
		}
	}
	t.Fatalf("%s: never happened; last: phase %s stable %q canary %q %s (err %v)", what, last.Status.Phase,
		last.Status.StableRevision, last.Status.CanaryRevision, last.Status.Message, lastErr)
}

func (s *sluiceRun) scrape(t *testing.T) series {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.metrics, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+dashToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", s.metrics, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return scraped(fams)
}
