package manager_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/metricsdoc"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/testbin"
	"github.com/sluicehq/sluice/kube/controller"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// quickstartDoc is the page TestQuickstart walks.
var quickstartDoc = filepath.Join("..", "..", "docs", "quickstart-controller.md")

// TestQuickstart runs docs/quickstart-controller.md as a newcomer would:
// every sh block in order, with bash, the real kubectl and a sluice built
// from this checkout, against an API server as fresh as a new kind
// cluster (no CRD at all, and no Istio). Blocks marked <!-- background -->
// (the controller, the readiness loop) run beside the rest until the end;
// blocks marked <!-- not run by the test ... --> are skipped, and the one
// that installs Istio's CRDs from the internet is replaced by installing
// the same file from the module cache. The only departures from the page:
// HOME is the test's own folder, and the controller gets a copy of
// examples/controller/local.yaml with free ports.
//
// Then it checks what the page promises: the controller started without
// Istio's CRDs and said so once, then found them; hello was released to
// v2 with the Stable Ready and Canary Ready columns filled in; sluice
// history lists every step; the Rollout's Events are events.k8s.io
// Events; every metric docs/metrics.md documents for controller mode that
// the quick start makes exist is served, with its labels; the canary
// example named the missing CRDs in its condition, then got a
// VirtualService of Sluice's own; the Git mirror is in the user's cache
// folder; and no conflict was logged as an error.
func TestQuickstart(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not on PATH: the quick start runs the real one")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not on PATH")
	}
	root, err := testbin.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := bare.Start(t)
	admin := bare.Client(t)
	blocks, err := quickstartBlocks(quickstartDoc)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	bin := filepath.Join(dir, "bin")
	for _, d := range []string{home, bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "sluice"), "./cmd/sluice")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/sluice: %v\n%s", err, out)
	}
	user := bare.AddUser(t, envtest.User{Name: "quickstart", Groups: []string{"system:masters"}})
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	local, metrics := localConfig(t, root, dir)

	sh := &shell{t: t, dir: root, env: quickstartEnv(home, bin, kubectl, kubeconfig)}
	t.Cleanup(sh.stopAll)
	var outputs []string
	for i, b := range blocks {
		code := strings.ReplaceAll(b.code, "examples/controller/local.yaml", local)
		switch {
		case b.skip && strings.Contains(b.marker, "module cache"):
			istioCRDs, err := kubetest.IstioCRDs()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{Paths: []string{istioCRDs}}); err != nil {
				t.Fatal(err)
			}
			t.Logf("block %d (line %d): installed Istio's CRDs from %s", i, b.line, istioCRDs)
		case b.skip:
			t.Logf("block %d (line %d): not run (%s)", i, b.line, b.marker)
		case b.background:
			sh.start(fmt.Sprintf("block%d", i), code)
		default:
			outputs = append(outputs, sh.run(b.line, code))
		}
	}

	ctx := context.Background()
	controllerLog := "block" + fmt.Sprint(slices.IndexFunc(blocks, func(b quickstartBlock) bool {
		return strings.Contains(b.code, "sluice controller")
	}))
	t.Run("the controller started without Istio and found it later", func(t *testing.T) {
		// The Writer looks again at most every 30 s.
		poll.Within(t, time.Minute, "the log saying that Istio's CRDs arrived", func() bool {
			return strings.Contains(sh.output(controllerLog), "Istio's CRDs are installed now")
		})
		log := sh.output(controllerLog)
		if n := strings.Count(log, `level=INFO msg="Istio's CRDs are not installed`); n != 1 {
			t.Errorf("the log says %d times that Istio's CRDs are missing, want once", n)
		}
		for _, line := range strings.Split(log, "\n") {
			// The one error on purpose: xDS in plaintext.
			if strings.Contains(line, "level=ERROR") && !strings.Contains(line, "INSECURE") {
				t.Errorf("an error in the controller's log: %s", line)
			}
		}
	})
	t.Run("printer columns", func(t *testing.T) {
		i := slices.IndexFunc(outputs, func(o string) bool { return strings.Contains(o, "Paused") && strings.Contains(o, "CANARY READY") })
		if i < 0 {
			t.Fatalf("no `kubectl get sro` output with the rollout paused and a CANARY READY column:\n%s", strings.Join(outputs, "\n---\n"))
		}
		// The stable revision's pods may still be going from 3 to 2.
		if !regexp.MustCompile(`(?m)^hello\s+Paused\s+4/5\s+50\s+\S+\s+[23]/2\s+\S+\s+2/2\s`).MatchString(outputs[i]) {
			t.Errorf("kubectl get sro at the manual pause:\n%s\nwant Paused 4/5 50 with 2 pods of each revision", outputs[i])
		}
	})
	t.Run("history loses no step", func(t *testing.T) {
		i := slices.IndexFunc(outputs, func(o string) bool { return strings.Contains(o, "RolloutPromoted") })
		if i < 0 {
			t.Fatalf("no sluice history output naming the promotion:\n%s", strings.Join(outputs, "\n---\n"))
		}
		for step := 1; step <= 4; step++ {
			if want := fmt.Sprintf("step %d/5:", step); !strings.Contains(outputs[i], want) {
				t.Errorf("sluice history lacks %q:\n%s", want, outputs[i])
			}
		}
		if !strings.Contains(outputs[i], "ran Promote") {
			t.Errorf("sluice history does not say who promoted:\n%s", outputs[i])
		}
	})
	t.Run("hello promoted", func(t *testing.T) {
		ro := &v1alpha1.Rollout{}
		if err := admin.Get(ctx, client.ObjectKey{Namespace: "hello", Name: "hello"}, ro); err != nil {
			t.Fatal(err)
		}
		st := ro.Status
		if st.Phase != v1alpha1.PhaseHealthy || st.CanaryRevision != "" || st.LastRollout == nil || st.LastRollout.Outcome != v1alpha1.OutcomePromoted {
			t.Errorf("status %+v: want Healthy after a promotion", st)
		}
		if r := st.StableReplicas; r == nil || r.Display != "4/4" || st.CanaryReplicas != nil {
			t.Errorf("stableReplicas %+v, canaryReplicas %+v: want 4/4 and none", r, st.CanaryReplicas)
		}
		var evs eventsv1.EventList
		if err := admin.List(ctx, &evs, client.InNamespace("hello")); err != nil {
			t.Fatal(err)
		}
		var steps int
		for _, e := range evs.Items {
			if e.Regarding.Kind == "Rollout" && e.ReportingController == controller.Name && e.Reason == v1alpha1.ReasonStepAdvanced {
				steps++
			}
		}
		if steps < 4 {
			t.Errorf("%d events.k8s.io StepAdvanced Events from %s, want one per step (4)", steps, controller.Name)
		}
	})
	t.Run("documented metrics", func(t *testing.T) {
		served := scrape(t, metrics)
		checked := 0
		for _, m := range documentedMetrics(t) {
			if !m.ServedBy(metricsdoc.Controller) || !inQuickstart(m.Appears) {
				continue
			}
			checked++
			labels, ok := served[m.Name]
			if !ok {
				t.Errorf("%s (docs/metrics.md:%d) is documented for controller mode but not served", m.Name, m.Line)
				continue
			}
			// Exactly the documented labels: a series served by both modes
			// has the same labels in both (deploy's dashboard test holds
			// sluice run to the same rows).
			if got := sortedKeys(labels); !slices.Equal(got, sorted(m.Labels)) {
				t.Errorf("%s (docs/metrics.md:%d) is documented with labels %v, but the controller serves it with %v", m.Name, m.Line, sorted(m.Labels), got)
			}
		}
		if checked < 20 {
			t.Errorf("only %d documented metrics checked: did the page's appears column change?", checked)
		}
	})
	t.Run("the canary example through kubectl, before and after Istio", func(t *testing.T) {
		i := slices.IndexFunc(outputs, func(o string) bool { return strings.Contains(o, "not installed") })
		if i < 0 || !strings.Contains(outputs[i], "Istio's CRDs are not installed") {
			t.Errorf("no Reconciled message naming Istio's CRDs among the outputs:\n%s", strings.Join(outputs, "\n---\n"))
		}
		ro := &v1alpha1.Rollout{}
		if err := admin.Get(ctx, client.ObjectKey{Namespace: "bookinfo", Name: "reviews"}, ro); err != nil {
			t.Fatal(err)
		}
		if !meta.IsStatusConditionTrue(ro.Status.Conditions, controller.ConditionReconciled) {
			t.Errorf("conditions %+v: want Reconciled", ro.Status.Conditions)
		}
		vs := &networkingv1.VirtualService{}
		if err := admin.Get(ctx, client.ObjectKey{Namespace: "bookinfo", Name: "reviews"}, vs); err != nil {
			t.Fatalf("the VirtualService Sluice writes of its own: %v", err)
		}
		if vs.Labels["app.kubernetes.io/managed-by"] != "sluice" {
			t.Errorf("VirtualService labels %v: want Sluice's own", vs.Labels)
		}
	})
	t.Run("the Git mirror in the user's cache folder", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(home, ".cache", "sluice", "controller", "git")); err != nil {
			t.Error(err)
		}
	})
}

// quickstartBlock is one sh block of the page.
type quickstartBlock struct {
	line       int
	code       string
	marker     string // the HTML comment before it, if any
	background bool
	skip       bool
}

// quickstartBlocks reads the sh blocks of a page and the markers before
// them.
func quickstartBlocks(path string) ([]quickstartBlock, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []quickstartBlock
	var cur *quickstartBlock
	var lastComment string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur != nil && line == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.code += line + "\n"
		case line == "```sh":
			cur = &quickstartBlock{line: n, marker: lastComment}
			cur.background = lastComment == "background"
			cur.skip = strings.HasPrefix(lastComment, "not run by the test")
			lastComment = ""
		case strings.HasPrefix(line, "<!--") && strings.HasSuffix(line, "-->"):
			lastComment = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(line, "<!--"), "-->"))
		case strings.TrimSpace(line) != "":
			lastComment = ""
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("%s: the block at line %d does not end", path, cur.line)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no sh block", path)
	}
	return out, sc.Err()
}

// quickstartEnv is a newcomer's environment: the test's HOME, sluice on
// PATH, the envtest kubeconfig, a Git identity, and nothing that would
// point sluice or the state folder elsewhere.
func quickstartEnv(home, bin, kubectl, kubeconfig string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "HOME", "PATH", "KUBECONFIG", "SLUICE_SERVER", "XDG_CACHE_HOME", "KUBERNETES_SERVICE_HOST":
			continue
		}
		if strings.HasPrefix(k, "GIT_") {
			continue
		}
		env = append(env, kv)
	}
	path := bin + string(os.PathListSeparator) + filepath.Dir(kubectl) + string(os.PathListSeparator) + os.Getenv("PATH")
	return append(env, "HOME="+home, "PATH="+path, "KUBECONFIG="+kubeconfig,
		"GIT_AUTHOR_NAME=Newcomer", "GIT_AUTHOR_EMAIL=newcomer@example.com",
		"GIT_COMMITTER_NAME=Newcomer", "GIT_COMMITTER_EMAIL=newcomer@example.com", "GIT_CONFIG_NOSYSTEM=1")
}

// localConfig copies examples/controller/local.yaml with a free port for
// each 127.0.0.1 address, and returns it and the metrics address.
func localConfig(t *testing.T, root, dir string) (path, metrics string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "examples", "controller", "local.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	addrs := map[string]string{}
	out := regexp.MustCompile(`127\.0\.0\.1:\d+`).ReplaceAllFunc(data, func(a []byte) []byte {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		free := l.Addr().String()
		l.Close()
		addrs[string(a)] = free
		return []byte(free)
	})
	metrics = addrs["127.0.0.1:8080"]
	if metrics == "" {
		t.Fatal("examples/controller/local.yaml: no metrics address 127.0.0.1:8080, which the page names")
	}
	path = filepath.Join(dir, "local.yaml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, metrics
}

// shell runs the page's blocks with bash.
type shell struct {
	t   *testing.T
	dir string
	env []string
	bg  []*background
}

type background struct {
	name string
	cmd  *exec.Cmd
	out  *os.File
}

// run runs a block to its end and returns its output; a failure ends the
// test, with the controller's log.
func (s *shell) run(line int, code string) string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", code)
	cmd.Dir, cmd.Env = s.dir, s.env
	out, err := cmd.CombinedOutput()
	s.t.Logf("$ %s%s", code, out)
	if err != nil {
		for _, b := range s.bg {
			s.t.Logf("%s's output:\n%s", b.name, tail(s.output(b.name), 60))
		}
		s.t.Fatalf("the block at line %d of %s failed: %v", line, quickstartDoc, err)
	}
	return string(out)
}

// start runs a block in the background, in a process group of its own.
func (s *shell) start(name, code string) {
	s.t.Helper()
	f, err := os.Create(filepath.Join(s.t.TempDir(), name+".log"))
	if err != nil {
		s.t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", code)
	cmd.Dir, cmd.Env = s.dir, s.env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.t.Logf("$ %s& (in the background: %s)", code, name)
	s.bg = append(s.bg, &background{name: name, cmd: cmd, out: f})
}

// output is what a background block wrote so far.
func (s *shell) output(name string) string {
	for _, b := range s.bg {
		if b.name == name {
			data, _ := os.ReadFile(b.out.Name())
			return string(data)
		}
	}
	return ""
}

// stopAll ends the background blocks: SIGTERM to each process group,
// which stops the controller cleanly.
func (s *shell) stopAll() {
	for _, b := range s.bg {
		_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = b.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		b.out.Close()
	}
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	return strings.Join(l[max(0, len(l)-lines):], "\n")
}

// documentedMetrics are the metrics docs/metrics.md documents.
func documentedMetrics(t *testing.T) []metricsdoc.Metric {
	t.Helper()
	ms, err := metricsdoc.Read(filepath.Join("..", "..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// inQuickstart tells, from docs/metrics.md's appears column, whether a
// metric's series exist once the quick start has run: it starts the
// controller with a Git source and releases a Rollout, but runs no
// analysis, sends no notification and never force-pushes.
func inQuickstart(appears string) bool {
	for _, p := range []string{"at start", "with a Rollout", "with a Git source"} {
		if strings.HasPrefix(appears, p) {
			return true
		}
	}
	return false
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// sortedKeys are the labels of a scraped family, a histogram's le and a
// summary's quantile aside.
func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		if k != "le" && k != "quantile" {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// scrape reads the metric families served at addr, each with the names
// of the labels its series carry (a histogram's le aside).
func scrape(t *testing.T, addr string) map[string]map[string]bool {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]map[string]bool{}
	for name, f := range fams {
		labels := map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		out[name] = labels
	}
	return out
}
