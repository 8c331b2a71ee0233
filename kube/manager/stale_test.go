package manager_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/sluicehq/sluice/internal/grpcecho"
	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/xdstest"
	"github.com/sluicehq/sluice/kube/controller"
	"github.com/sluicehq/sluice/kube/manager"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/xds"
)

// Issue 13's stalling client in controller mode, end to end: `sluice
// controller` as manager.New builds it (its reconciler, its xDS plane and
// server, its Event recorder and metrics), the test playing the kubelet
// and the EndpointSlice controller (kubelet_test.go), a proxyless grpc-go
// client that answers, and a raw ADS stream that subscribes and never
// answers (xdstest.SilentNode). The ack poll is a minute: only the
// plane's wakes on partial answers can bring a step to its deadline
// within the test's bounds, as docs/controller.md promises.

// staleDeadline is the Rollouts' spec.dataPlane.ackDeadlineSeconds.
const staleDeadline = time.Second

// staleEnv is one controller serving one Rollout, reviews, v1 stable,
// with the answering client connected.
type staleEnv struct {
	admin client.Client
	ns    string
	key   types.NamespacedName
	host  string
	ctrl  *manager.Controller
	addr  string // the controller's xDS server
	// calls makes n RPCs through the answering client and counts the
	// backends (v1, v2) that served them.
	calls func(n int) map[string]int
}

func newStaleEnv(t *testing.T, policy v1alpha1.SilentProxyPolicy, steps ...v1alpha1.CanaryStep) *staleEnv {
	t.Helper()
	admin, ctrlCfg := cluster(t)
	ns := kubetest.Namespace(t, admin, "stale-")
	e := &staleEnv{admin: admin, ns: ns, key: types.NamespacedName{Namespace: ns, Name: "reviews"}, host: "reviews." + ns + ".svc.cluster.local"}

	ip := podIP(t)
	backends := map[string]*grpcecho.Backend{}
	for _, tag := range []string{"v1", "v2"} {
		b, err := grpcecho.Start(grpcecho.Options{Service: "reviews", Version: tag, Host: ip})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Stop)
		backends[tag] = b
	}
	k := &kubelet{c: admin, ns: ns, backends: backends, applied: map[string]string{}}
	bg, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { k.run(bg) })
	t.Cleanup(func() { stop(); wg.Wait() })

	cfg, err := manager.ParseConfig(fmt.Appendf(nil, `namespace: %s
stateDir: %s
watchNamespaces: [%s]
leaderElection: {enabled: false}
istio: {enabled: false}
http: {metricsAddress: "0", probeAddress: "0", webhookAddress: "0"}
xds:
  address: 127.0.0.1:0
  insecurePlaintext: true
  replicaName: %s
reconcile:
  ackPollInterval: 1m
`, controllerNamespace, t.TempDir(), ns, ns))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = lis.Addr().String()
	e.ctrl, err = manager.New(manager.Options{Config: cfg, RestConfig: ctrlCfg, Log: logger(ns), Registerer: prometheus.NewRegistry(),
		XDSListener: lis, SkipNameValidation: true})
	if err != nil {
		lis.Close()
		t.Fatal(err)
	}
	kubetest.Start(t, "controller", e.ctrl)

	ro := staleRollout(ns, e.host, policy, steps)
	if err := admin.Create(context.Background(), ro); err != nil {
		t.Fatal(err)
	}
	// v1's plan counts once a client applied it: the answering one.
	e.waitFor(t, "v1's plan published", func(ro *v1alpha1.Rollout) bool { return ro.Status.Traffic.PlanVersion != "" })
	cl, _ := xdstest.Client(t, e.addr, "answering", e.host)
	e.calls = func(n int) map[string]int { return xdstest.Calls(t, cl, n) }
	e.waitFor(t, "v1 healthy", func(ro *v1alpha1.Rollout) bool {
		tr := ro.Status.Traffic
		return ro.Status.Phase == v1alpha1.PhaseHealthy && tr.AcknowledgedVersion == tr.PlanVersion
	})
	return e
}

// staleRollout is reviews, imageRepo:v1 on two replicas, with the
// deadline, the policy and the steps.
func staleRollout(ns, host string, policy v1alpha1.SilentProxyPolicy, steps []v1alpha1.CanaryStep) *v1alpha1.Rollout {
	return &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"},
		Spec: v1alpha1.RolloutSpec{
			Service:  v1alpha1.ServiceSpec{Name: "reviews", Hosts: []string{host}, Port: 50051},
			Replicas: ptr.To[int32](2),
			Template: &corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "reviews"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "reviews", Image: imageRepo + ":v1",
					Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: 50051}}}}},
			},
			DataPlane: v1alpha1.DataPlanePolicy{AckDeadlineSeconds: ptr.To(int32(staleDeadline / time.Second)), SilentProxies: policy},
			Strategy:  v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: steps}},
		},
	}
}

func (e *staleEnv) get(t *testing.T) *v1alpha1.Rollout {
	t.Helper()
	ro := &v1alpha1.Rollout{}
	if err := e.admin.Get(context.Background(), e.key, ro); err != nil {
		t.Fatal(err)
	}
	return ro
}

// waitFor polls the Rollout until cond holds and returns it.
func (e *staleEnv) waitFor(t *testing.T, what string, cond func(*v1alpha1.Rollout) bool) *v1alpha1.Rollout {
	t.Helper()
	var ro *v1alpha1.Rollout
	if !poll.Holds(poll.Timeout, poll.Interval, func() bool { ro = e.get(t); return cond(ro) }) {
		t.Fatalf("timed out waiting for %s: phase %s, step %s: %s; traffic %+v", what, ro.Status.Phase, ro.Status.StepDisplay, ro.Status.Message, ro.Status.Traffic)
	}
	return ro
}

// release changes the image to v2.
func (e *staleEnv) release(t *testing.T) {
	t.Helper()
	ro := e.get(t)
	ro.Spec.Template.Spec.Containers[0].Image = imageRepo + ":v2"
	if err := e.admin.Update(context.Background(), ro); err != nil {
		t.Fatal(err)
	}
}

func (e *staleEnv) promote(t *testing.T, id string) {
	t.Helper()
	p, err := controller.CommandPatch(controller.Command{ID: id, Kind: v1alpha1.CommandPromote, By: "alice", At: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.admin.Patch(context.Background(), e.get(t), client.RawPatch(types.MergePatchType, p)); err != nil {
		t.Fatal(err)
	}
}

// staleMetric reads sluice_rollout_stale_nodes of the Rollout from
// controller-runtime's registry, which the manager serves on /metrics.
func (e *staleEnv) staleMetric(t *testing.T) float64 {
	t.Helper()
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "sluice_rollout_stale_nodes" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := metricLabels(m)
			if labels["namespace"] == e.ns && labels["rollout"] == e.key.Name {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no sluice_rollout_stale_nodes series for %s", e.key)
	return 0
}

// staleEvent returns the message of the Rollout's StaleProxies Event, as
// the API server has it.
func (e *staleEnv) staleEvent(t *testing.T) (string, bool) {
	t.Helper()
	var evs corev1.EventList
	if err := e.admin.List(context.Background(), &evs, client.InNamespace(e.ns)); err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs.Items {
		if ev.InvolvedObject.Name == e.key.Name && ev.Reason == v1alpha1.ReasonStaleProxies {
			return ev.Message, true
		}
	}
	return "", false
}

// checkStale fails unless status names exactly the silent node, with
// excluded as given, the metric counts it, and a StaleProxies Event
// (Warning) names it.
func (e *staleEnv) checkStale(t *testing.T, ro *v1alpha1.Rollout, excluded bool) {
	t.Helper()
	sn := ro.Status.Traffic.StaleNodes
	if sn == nil || sn.Count != 1 || !slices.Equal(sn.Nodes, []string{"silent"}) || sn.Excluded != excluded {
		t.Errorf("status.traffic.staleNodes = %+v, want the silent node, excluded %v", sn, excluded)
	}
	// The gauge is set after the status write that a reader of the API
	// server may see first.
	var v float64
	if !poll.Holds(10*time.Second, poll.Interval, func() bool { v = e.staleMetric(t); return v == 1 }) {
		t.Errorf("sluice_rollout_stale_nodes = %v, want 1", v)
	}
	var msg string
	if !poll.Holds(10*time.Second, poll.Interval, func() (ok bool) { msg, ok = e.staleEvent(t); return ok }) {
		t.Errorf("no %s Event for %s", v1alpha1.ReasonStaleProxies, e.key)
	} else if !strings.Contains(msg, "silent") {
		t.Errorf("%s Event %q does not name the silent node", v1alpha1.ReasonStaleProxies, msg)
	}
}

// stepAtPause is whether the Rollout pauses at step i with weight w.
func stepAtPause(i, w int32) func(*v1alpha1.Rollout) bool {
	return func(ro *v1alpha1.Rollout) bool {
		st := ro.Status
		return st.Phase == v1alpha1.PhasePaused && st.CurrentStepIndex != nil && *st.CurrentStepIndex == i && st.Traffic.CanaryWeight == w
	}
}

// With Hold (the default), a node that joins during a pause and never
// answers keeps the next step waiting past the deadline, although the
// answering client applied it; status, the Progressing condition, the
// metric and an Event say why. Once the silent node goes away the
// rollout goes on.
func TestControllerSilentProxyHoldsTheStep(t *testing.T) {
	t.Parallel()
	e := newStaleEnv(t, v1alpha1.SilentHold,
		v1alpha1.CanaryStep{SetWeight: ptr.To[int32](20)}, v1alpha1.CanaryStep{Pause: &v1alpha1.PauseStep{}},
		v1alpha1.CanaryStep{SetWeight: ptr.To[int32](60)}, v1alpha1.CanaryStep{Pause: &v1alpha1.PauseStep{}})
	e.release(t)
	e.waitFor(t, "the pause at 20%", stepAtPause(1, 20))
	quiet := xdstest.SilentNode(t, e.addr, "silent", e.host)
	e.promote(t, "promote-1")

	ro := e.waitFor(t, "the silent node reported stale at step 3", func(ro *v1alpha1.Rollout) bool {
		i := ro.Status.CurrentStepIndex
		return i != nil && *i == 2 && ro.Status.Traffic.StaleNodes != nil
	})
	poll.Until(t, "the answering client applied 60%", func() bool {
		return e.ctrl.XDS().Status(xds.ServiceKey(e.ns, "reviews"), ro.Status.Traffic.PlanVersion).Acked == 1
	})
	// Well past the deadline, and after the answering client applied the
	// plan, the step still waits, and says why.
	time.Sleep(2 * staleDeadline)
	ro = e.get(t)
	if i := ro.Status.CurrentStepIndex; i == nil || *i != 2 || ro.Status.StepAcknowledgedAt != nil {
		t.Fatalf("step %v, acknowledged at %v: want step 3 (setWeight 60) held", i, ro.Status.StepAcknowledgedAt)
	}
	c := meta.FindStatusCondition(ro.Status.Conditions, v1alpha1.ConditionProgressing)
	if c == nil || c.Reason != v1alpha1.ReasonStaleProxies || !strings.Contains(c.Message, "silent") {
		t.Errorf("Progressing %+v: want %s naming the silent node", c, v1alpha1.ReasonStaleProxies)
	}
	e.checkStale(t, ro, false)

	quiet()
	ro = e.waitFor(t, "the rollout going on without the silent node", stepAtPause(3, 60))
	if ro.Status.Traffic.StaleNodes != nil {
		t.Errorf("staleNodes %+v after the silent node left; want none", ro.Status.Traffic.StaleNodes)
	}
	var v float64
	if !poll.Holds(10*time.Second, poll.Interval, func() bool { v = e.staleMetric(t); return v == 0 }) {
		t.Errorf("sluice_rollout_stale_nodes = %v after the silent node left, want 0", v)
	}
}

// With Exclude, a node that never answers, there from the start, is left
// out of the count once past the deadline: each of two setWeight steps
// counts within a few seconds of its deadline, not at the next ack poll
// (a minute), and the silent node stays reported.
func TestControllerSilentProxyExcluded(t *testing.T) {
	t.Parallel()
	e := newStaleEnv(t, v1alpha1.SilentExclude,
		v1alpha1.CanaryStep{SetWeight: ptr.To[int32](20)}, v1alpha1.CanaryStep{SetWeight: ptr.To[int32](60)},
		v1alpha1.CanaryStep{Pause: &v1alpha1.PauseStep{}})
	xdstest.SilentNode(t, e.addr, "silent", e.host)
	released := time.Now()
	e.release(t)

	ro := e.waitFor(t, "both steps counted without the silent node", stepAtPause(2, 60))
	took := time.Since(released)
	t.Logf("two setWeight steps took %s", took.Round(time.Millisecond))
	// Each step waits the deadline, then the reconcile the engine asked
	// for; the slack is for a loaded machine, far below a poll.
	if limit := 2*staleDeadline + 10*time.Second; took > limit {
		t.Errorf("two setWeight steps took %s, want under %s", took, limit)
	}
	e.checkStale(t, ro, true)
	poll.Until(t, "the answering client routing to v2", func() bool { return e.calls(50)["v2"] > 0 })
}
