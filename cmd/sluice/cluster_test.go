package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/kube/controller"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// clusterEnv is a real kube-apiserver and etcd, started by the test that
// needs it and stopped when that test ends.
var clusterEnv = kubetest.NewEnv()

// ackingPlane is a data plane whose proxies acknowledge every plan the
// reconciler publishes, at once.
type ackingPlane struct {
	mu        sync.Mutex
	published map[string]bool // namespace/name@version
}

func (p *ackingPlane) Publish(_ context.Context, ro *v1alpha1.Rollout, pl plan.Plan) error {
	if err := pl.Check(); err != nil {
		return fmt.Errorf("invalid plan: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.published[client.ObjectKeyFromObject(ro).String()+"@"+pl.Version] = true
	return nil
}

func (p *ackingPlane) Acknowledgement(_ context.Context, ro *v1alpha1.Rollout, version string) (engine.DataPlane, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.published[client.ObjectKeyFromObject(ro).String()+"@"+version] {
		return engine.DataPlane{Version: version, State: engine.AckAcknowledged}, nil
	}
	return engine.DataPlane{Version: version}, nil
}

// startController runs the real Rollout reconciler in a manager, with Events
// recorded in the API server, until the returned stop is called or the test
// ends. It also plays the ReplicaSet controller and kubelet for ns: every
// pod asked for is available.
func startController(t *testing.T, ns string) (stop func()) {
	t.Helper()
	cfg, scheme := clusterEnv.Start(t)
	ctrl.SetLogger(logr.Discard())
	opts := manager.Options{Scheme: scheme, Cache: cache.Options{ByObject: controller.CacheByObject()}}
	return kubetest.RunManager(t, cfg, opts, func(_ context.Context, mgr manager.Manager) error {
		plane := &ackingPlane{published: map[string]bool{}}
		r := &controller.Reconciler{
			Client:    mgr.GetClient(),
			Recorder:  mgr.GetEventRecorderFor(controller.Name), //nolint:staticcheck // the Reconciler takes a core/v1 recorder
			Publisher: plane, Acknowledger: plane, AckPollInterval: 50 * time.Millisecond,
		}
		if err := r.SetupWithManager(mgr); err != nil {
			return err
		}
		return mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
			for {
				// Errors are retried on the next pass.
				_ = kubetest.MarkAvailable(ctx, mgr.GetClient(), ns)
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(50 * time.Millisecond):
				}
			}
		}))
	})
}

func ptrTo[T any](v T) *T { return &v }

// kubeconfigOf writes a kubeconfig file for a user the API server
// authenticates by its own client certificate; server, if set, replaces
// the API server's address.
func kubeconfigOf(t *testing.T, u envtest.User, server string) string {
	t.Helper()
	data, err := clusterEnv.AddUser(t, u).KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	if server != "" {
		kc, err := clientcmd.Load(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range kc.Clusters {
			c.Server = server
		}
		if data, err = clientcmd.Write(*kc); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), u.Name+".kubeconfig")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The verbs against a cluster: the CLI reads Rollouts and their Events with
// the user's kubeconfig, and its commands round-trip through the real
// reconciler and engine, recorded with the user the API server knows.
func TestVerbsAgainstCluster(t *testing.T) {
	t.Cleanup(func() {
		if err := clusterEnv.Stop(); err != nil {
			t.Error(err)
		}
	})
	c := clusterEnv.Client(t)
	ctx := context.Background()
	ns := kubetest.Namespace(t, c, "sluice-cli-")
	alice := kubeconfigOf(t, envtest.User{Name: "alice", Groups: []string{"system:masters"}}, "")
	mallory := kubeconfigOf(t, envtest.User{Name: "mallory"}, "")
	nowhere := kubeconfigOf(t, envtest.User{Name: "alice", Groups: []string{"system:masters"}}, "https://127.0.0.1:1")
	stopController := startController(t, ns)

	get := func() *v1alpha1.Rollout {
		ro := &v1alpha1.Rollout{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "checkout"}, ro); err != nil {
			t.Fatal(err)
		}
		return ro
	}
	acked := func(st v1alpha1.RolloutStatus) bool {
		return st.Traffic.PlanVersion != "" && st.Traffic.AcknowledgedVersion == st.Traffic.PlanVersion
	}
	pausedAt := func(step, weight int32) func(v1alpha1.RolloutStatus) bool {
		return func(st v1alpha1.RolloutStatus) bool {
			return st.CurrentStepIndex != nil && *st.CurrentStepIndex == step && st.Phase == v1alpha1.PhasePaused &&
				st.Traffic.CanaryWeight == weight && acked(st)
		}
	}
	stableOn := func(image string) func(v1alpha1.RolloutStatus) bool {
		return func(st v1alpha1.RolloutStatus) bool {
			ro := get()
			ro.Spec.Template.Spec.Containers[0].Image = image
			rev, err := engine.DesiredRevision(&ro.Spec)
			return err == nil && st.Phase == v1alpha1.PhaseHealthy && st.StableRevision == rev && st.CanaryRevision == "" && acked(st)
		}
	}
	waitFor := func(what string, cond func(v1alpha1.RolloutStatus) bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond(get().Status) {
			if time.Now().After(deadline) {
				st := get().Status
				t.Fatalf("timed out waiting until %s: phase %s step %s: %s; traffic %+v", what, st.Phase, st.StepDisplay, st.Message, st.Traffic)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	setImage := func(image string) {
		t.Helper()
		ro := get()
		ro.Spec.Template.Spec.Containers[0].Image = image
		if err := c.Update(ctx, ro); err != nil {
			t.Fatal(err)
		}
	}

	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "checkout"},
		Spec: v1alpha1.RolloutSpec{
			Service:  v1alpha1.ServiceSpec{Name: "checkout", Hosts: []string{"checkout." + ns + ".svc.cluster.local"}, Port: 8080},
			Replicas: ptrTo[int32](2),
			Template: &corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "checkout"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "checkout:v1"}}},
			},
			Strategy: v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{
				{SetWeight: ptrTo[int32](20)}, {Pause: &v1alpha1.PauseStep{}},
				{SetWeight: ptrTo[int32](60)}, {Pause: &v1alpha1.PauseStep{}},
			}}},
		},
	}
	if err := c.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	waitFor("healthy on v1", stableOn("checkout:v1"))
	// The web dashboard follows the canary as the controller steps it.
	checkClusterDashboardLive(t, alice, ns, func() { setImage("checkout:v2") })
	waitFor("paused at 20%", pausedAt(1, 20))
	// The same cluster in the web dashboard, with each person's kubeconfig.
	checkClusterDashboard(t, c, ns, alice, mallory)
	checkClusterCompletion(t, ns, alice, nowhere)

	as := func(kubeconfig string) []string { return []string{"--kubeconfig", kubeconfig, "-n", ns} }
	// Sequential: each step changes the rollout the next one sees, and
	// waits until the controller has carried the change out.
	steps := []struct {
		args  []string
		code  int
		want  []string // substrings of stdout+stderr
		until func(v1alpha1.RolloutStatus) bool
	}{
		{args: []string{"status"}, want: []string{"NAMESPACE", ns, "checkout", "canary", "Paused", "2/5"}},
		{args: []string{"status", "checkout"}, want: []string{"Rollout " + ns + "/checkout", "▶  2  pause until promote", "stable 80% / canary 20%", "acknowledged"}},
		{args: []string{"pause", "checkout"}, want: []string{ns + "/checkout: Pause: paused"},
			until: func(st v1alpha1.RolloutStatus) bool {
				return st.Pause != nil && st.Pause.Reason == v1alpha1.ReasonPausedByUser
			}},
		{args: []string{"pause", "checkout"}, code: exitFailure, want: []string{"Pause: refused: already paused (PausedByUser)"}},
		{args: []string{"resume", "checkout", "-o", "json"}, want: []string{`"kind": "Resume"`, `"result": "resumed"`, `"refused": false`},
			until: func(st v1alpha1.RolloutStatus) bool { return st.Pause == nil }},
		{args: []string{"promote", "checkout"}, want: []string{"Promote: skipped step 2"}, until: pausedAt(3, 60)},
		{args: []string{"promote", "checkout", "--full"}, want: []string{"PromoteFull"}, until: stableOn("checkout:v2")},
		{args: []string{"abort", "checkout"}, code: exitFailure, want: []string{"Abort: refused: no rollout in progress"}},
	}
	run := func(args []string, code int, want []string) {
		t.Helper()
		code2, stdout, stderr := runCLI(args...)
		if code2 != code {
			t.Fatalf("sluice %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code2, code, stdout, stderr)
		}
		for _, w := range want {
			if !strings.Contains(stdout+stderr, w) {
				t.Fatalf("sluice %s: output lacks %q\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), w, stdout, stderr)
			}
		}
	}
	for _, s := range steps {
		run(append(s.args, as(alice)...), s.code, s.want)
		if s.until != nil {
			waitFor(strings.Join(s.args, " "), s.until)
		}
	}
	if lc := get().Status.LastCommand; lc == nil || lc.By != "alice" || lc.Kind != v1alpha1.CommandAbort {
		t.Fatalf("status.lastCommand = %+v, want alice's Abort: the identity the API server knows", lc)
	}

	// An abort sends the traffic back; status -w then ends with exit 1.
	setImage("checkout:v3")
	waitFor("v3 paused at 20%", pausedAt(1, 20))
	run(append([]string{"abort", "checkout"}, as(alice)...), exitOK, []string{"Abort: aborted: 100% to stable"})
	waitFor("all traffic back on stable", func(st v1alpha1.RolloutStatus) bool {
		return st.Abort != nil && st.Traffic.CanaryWeight == 0 && st.Traffic.StableWeight == 100 && acked(st)
	})
	run(append([]string{"status", "checkout", "-w", "--interval=50ms"}, as(alice)...), exitFailure, []string{"aborted by alice"})
	run(append([]string{"retry", "checkout"}, as(alice)...), exitOK, []string{"Retry: restarting from step 1"})
	waitFor("v3 paused at 20% again", pausedAt(1, 20))

	// status -w follows the rollout to its end.
	watched := make(chan int, 1)
	var watchOut strings.Builder
	go func() {
		code, stdout, stderr := runCLI(append([]string{"status", "checkout", "-w", "--interval=50ms"}, as(alice)...)...)
		watchOut.WriteString(stdout + stderr)
		watched <- code
	}()
	run(append([]string{"promote", "checkout", "--full"}, as(alice)...), exitOK, nil)
	select {
	case code := <-watched:
		if code != exitOK || !strings.Contains(watchOut.String(), "Healthy") {
			t.Fatalf("status -w: exit %d, want 0 after a promotion:\n%s", code, watchOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("status -w did not end when the rollout was promoted")
	}

	// history shows the Events the controller recorded, who did what
	// included; they reach the API server asynchronously.
	wantHistory := []string{"CommandPause", "alice ran Pause: paused", "alice ran Abort: aborted: 100% to stable", "RolloutPromoted"}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, stdout, _ := runCLI(append([]string{"history", "checkout", "--limit=200"}, as(alice)...)...)
		if !slices.ContainsFunc(wantHistory, func(w string) bool { return !strings.Contains(stdout, w) }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history lacks one of %q:\n%s", wantHistory, stdout)
		}
		time.Sleep(100 * time.Millisecond)
	}

	for _, f := range []struct {
		args []string
		code int
		want []string
	}{
		{append([]string{"promote", "nothing"}, as(alice)...), exitNotFound, []string{`"nothing" not found`}},
		{append([]string{"status", "nothing"}, as(alice)...), exitNotFound, []string{`"nothing" not found`}},
		{append([]string{"promote", "checkout"}, as(mallory)...), exitUnavailable, []string{`User "mallory" cannot patch`}},
		{append([]string{"status"}, as(mallory)...), exitUnavailable, []string{`User "mallory" cannot list`}},
		{append([]string{"promote", "checkout"}, as(nowhere)...), exitUnavailable, []string{"127.0.0.1:1"}},
		{append([]string{"history", "checkout"}, as(nowhere)...), exitUnavailable, []string{"127.0.0.1:1"}},
		{append([]string{"promote", "checkout", "--server", "http://127.0.0.1:1"}, as(alice)...), exitUsage, []string{"one or the other"}},
		{append([]string{"promote", "checkout", "--token", "t"}, as(alice)...), exitUsage, []string{"--token is for a sluice run server"}},
	} {
		run(f.args, f.code, f.want)
	}

	// Without a controller, nothing applies the command: the CLI says so.
	stopController()
	run(append([]string{"pause", "checkout", "--timeout=500ms"}, as(alice)...), exitUnavailable, []string{"is `sluice controller` running?"})

	checkControllerJSONLogs(t, alice, ns, kubetest.Namespace(t, c, "sluice-logs-"))
}
