package peerbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	discoveryv1ac "k8s.io/client-go/applyconfigurations/discovery/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// SluiceController is `sluice controller` as a traffic benchmark side:
// its configuration's Git source (a bare repository over file://, with
// the push webhook, as SluiceRun has it) holds the Rollout with its pod
// template, the VirtualService and DestinationRule Sluice edits (Istio
// writing on, the default), and the AnalysisTemplate; the proxyless
// gRPC clients get their routes from its xDS server. Its other settings
// are its defaults (10 workers, ack poll 2 s, client QPS 50), leader
// election off as for Argo Rollouts, xDS plaintext on loopback.
//
// The harness plays the ReplicaSet controller and kubelet (World, 100 ms)
// and the EndpointSlice controller: each revision Service Sluice makes
// gets an EndpointSlice with one ready endpoint per available replica of
// its ReplicaSet, at the address of the backend running the image's tag.
type SluiceController struct {
	Bin    string // path of sluice
	Cfg    *rest.Config
	Scheme *runtime.Scheme
	Log    io.Writer

	c       client.Client
	ns      string
	dir     string
	repo    *gitRemote
	plan    ReleasePlan
	secret  string
	webhook string
	p       *Process
	world   *World
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	rsTimes
}

func (*SluiceController) Name() string { return "sluice-controller" }

// Node: any id (plaintext xDS: no identity checked, every route served).
func (*SluiceController) Node(i int) GRPCNode {
	return GRPCNode{ID: fmt.Sprintf("peerbench-client-%d", i)}
}

func (s *SluiceController) host() string { return "echo." + s.ns + ".svc.cluster.local" }

func (s *SluiceController) Start(ctx context.Context, plan ReleasePlan) (string, string, error) {
	s.plan = plan
	var err error
	if s.c, err = client.New(noRateLimit(s.Cfg), client.Options{Scheme: s.Scheme}); err != nil {
		return "", "", err
	}
	if err := client.IgnoreAlreadyExists(s.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sluice-system"}})); err != nil {
		return "", "", err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "peer-traffic-"}}
	if err := s.c.Create(ctx, ns); err != nil {
		return "", "", err
	}
	s.ns = ns.Name
	if s.dir, err = os.MkdirTemp("", "peerbench-sluice-controller-"); err != nil {
		return "", "", err
	}
	if s.repo, err = newGitRemote(ctx, s.dir); err != nil {
		return "", "", err
	}
	if _, err := s.push(ctx, "v1", "echo v1"); err != nil {
		return "", "", err
	}
	run, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	if s.world, err = StartWorld(run, s.Cfg, s.Scheme, s.ns, 100*time.Millisecond); err != nil {
		return "", "", err
	}
	s.wg.Go(func() { s.publishEndpoints(run) })

	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = FreePort(); err != nil {
			return "", "", err
		}
	}
	kubeconfig, err := kubeconfigIn(s.Cfg, s.dir, "sluice-system")
	if err != nil {
		return "", "", err
	}
	s.secret = newSecret()
	s.webhook = fmt.Sprintf("http://127.0.0.1:%d/webhook", ports[1])
	xdsAddr := fmt.Sprintf("127.0.0.1:%d", ports[2])
	cfg := fmt.Sprintf(`namespace: sluice-system
defaultNamespace: %s
stateDir: %s
leaderElection:
  enabled: false
http:
  metricsAddress: 127.0.0.1:%d
  probeAddress: "0"
  webhookAddress: 127.0.0.1:%d
xds:
  address: %s
  insecurePlaintext: true
prometheus:
  address: %s
git:
  url: file://%s
  branch: main
  webhookSecret:
    env: PEERBENCH_WEBHOOK_SECRET
`, s.ns, filepath.Join(s.dir, "state"), ports[0], ports[1], xdsAddr, plan.PrometheusURL, s.repo.bare)
	path := filepath.Join(s.dir, "controller.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return "", "", err
	}
	if s.p, err = Start(s.Name(), s.Bin, []string{"controller", "--config", path, "--kubeconfig", kubeconfig},
		[]string{"PEERBENCH_WEBHOOK_SECRET=" + s.secret}, s.Log); err != nil {
		return "", "", err
	}
	err = s.world.WaitAll(ctx, 1, 3*time.Minute, &v1alpha1.RolloutList{}, AppLabel, func(obj client.Object, rs []*appsv1.ReplicaSet) (bool, string) {
		return Sluice{}.Done(obj, rs, "echo:v1")
	})
	if err != nil {
		return "", "", fmt.Errorf("sluice controller: v1: %w\n%s", err, s.p.Tail())
	}
	return xdsAddr, s.host(), nil
}

func (s *SluiceController) push(ctx context.Context, version, msg string) (time.Time, error) {
	files := map[string]string{"rollout.yaml": s.rollout(version), "istio.yaml": s.istio()}
	if s.plan.Analysis {
		files["analysis.yaml"] = sluiceAnalysis(s.plan)
	}
	return s.repo.push(ctx, files, msg)
}

func (s *SluiceController) rollout(version string) string {
	return fmt.Sprintf(`apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: echo
spec:
  service:
    name: echo
    hosts:
      - %s
    port: %d
    virtualService:
      name: echo
      routes:
        - primary
    destinationRule:
      name: echo
  replicas: 1
  template:
    metadata:
      labels:
        app: echo
    spec:
      containers:
        - name: echo
          image: echo:%s
          ports:
            - name: %s
              containerPort: %d
  strategy:
    canary:
      steps:
%s  rollback:
    onAnalysisFailure: Abort
`, s.host(), meshPort, version, grpcPortName, meshPort, sluiceSteps(s.plan))
}

// istio is the VirtualService (route primary, which Sluice manages) and
// the DestinationRule whose subsets' labels Sluice sets.
func (s *SluiceController) istio() string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: echo
spec:
  hosts:
    - %[1]s
  http:
    - name: primary
      route:
        - destination:
            host: %[1]s
            subset: stable
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: echo
spec:
  host: %[1]s
  subsets:
    - name: stable
    - name: canary
`, s.host())
}

// endpointsManager is the field manager of the harness's EndpointSlices.
const endpointsManager = "peerbench-endpointslice-controller"

// publishEndpoints applies, every 20 ms from the world's cache, an
// EndpointSlice for each revision Service Sluice made.
func (s *SluiceController) publishEndpoints(ctx context.Context) {
	applied := map[string]string{}
	for ctx.Err() == nil {
		_ = s.publishOnce(ctx, applied)
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *SluiceController) publishOnce(ctx context.Context, applied map[string]string) error {
	var rss appsv1.ReplicaSetList
	if err := s.world.Cache.List(ctx, &rss, client.InNamespace(s.ns)); err != nil {
		return err
	}
	byUID := map[string]*appsv1.ReplicaSet{}
	for i := range rss.Items {
		byUID[string(rss.Items[i].UID)] = &rss.Items[i]
		if replicas(&rss.Items[i]) > 0 {
			s.see(imageOf(&rss.Items[i]))
		}
	}
	var svcs corev1.ServiceList
	if err := s.world.Cache.List(ctx, &svcs, client.InNamespace(s.ns), client.MatchingLabels{workload.LabelManagedBy: workload.ManagedBy}); err != nil {
		return err
	}
	var errs []error
	for i := range svcs.Items {
		svc := &svcs.Items[i]
		ref := metav1.GetControllerOf(svc)
		if ref == nil || ref.Kind != "ReplicaSet" || len(svc.Spec.Ports) != 1 {
			continue
		}
		rs := byUID[string(ref.UID)]
		if rs == nil || len(rs.Spec.Template.Spec.Containers) == 0 {
			continue
		}
		_, tag, _ := strings.Cut(imageOf(rs), ":")
		e := s.plan.Backends[tag]
		if e == nil {
			errs = append(errs, fmt.Errorf("ReplicaSet %s runs %s, for which there is no backend", rs.Name, imageOf(rs)))
			continue
		}
		host, _, _ := net.SplitHostPort(e.Addr)
		ready := rs.Status.AvailableReplicas
		key := fmt.Sprintf("%s %d %d", host, e.Port, ready)
		name := svc.Name + "-peerbench"
		if applied[name] == key {
			continue
		}
		labels := maps.Clone(svc.Labels)
		labels[discoveryv1.LabelServiceName] = svc.Name
		labels[discoveryv1.LabelManagedBy] = endpointsManager
		es := discoveryv1ac.EndpointSlice(name, s.ns).
			WithLabels(labels).
			WithOwnerReferences(metav1ac.OwnerReference().
				WithAPIVersion("v1").WithKind("Service").WithName(svc.Name).WithUID(svc.UID).WithController(true)).
			WithAddressType(discoveryv1.AddressTypeIPv4).
			WithPorts(discoveryv1ac.EndpointPort().WithName(svc.Spec.Ports[0].Name).WithProtocol(corev1.ProtocolTCP).WithPort(e.Port))
		for i := range ready {
			es.WithEndpoints(discoveryv1ac.Endpoint().
				WithAddresses(host).
				WithConditions(discoveryv1ac.EndpointConditions().WithReady(true).WithServing(true).WithTerminating(false)).
				WithTargetRef(corev1ac.ObjectReference().WithKind("Pod").WithNamespace(s.ns).WithName(rs.Name + "-" + strconv.Itoa(int(i)))))
		}
		if err := s.c.Apply(ctx, es, client.FieldOwner(endpointsManager), client.ForceOwnership); err != nil {
			errs = append(errs, fmt.Errorf("apply EndpointSlice %s: %w", name, err))
			continue
		}
		applied[name] = key
		if ready > 0 {
			s.publish(imageOf(rs))
		}
	}
	return errors.Join(errs...)
}

// Release pushes v2 and sends the push webhook.
func (s *SluiceController) Release(ctx context.Context) (time.Time, error) {
	pushed, err := s.push(ctx, "v2", "echo v2")
	if err != nil {
		return pushed, err
	}
	return pushed, sendPushWebhook(ctx, s.webhook, s.secret, pushed)
}

// Aborted: the Rollout's Aborted condition.
func (s *SluiceController) Aborted(ctx context.Context) (bool, string, error) {
	ro := &v1alpha1.Rollout{}
	if err := s.c.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: "echo"}, ro); err != nil {
		return false, "", err
	}
	for _, c := range ro.Status.Conditions {
		if c.Type == v1alpha1.ConditionAborted && c.Status == metav1.ConditionTrue {
			return true, "", nil
		}
	}
	return false, fmt.Sprintf("phase %s, step %s: %s", ro.Status.Phase, ro.Status.StepDisplay, ro.Status.Message), nil
}

// FailedMeasurement reads the AnalysisRuns of the Rollout's namespace.
func (s *SluiceController) FailedMeasurement(ctx context.Context) (time.Time, error) {
	var runs v1alpha1.AnalysisRunList
	if err := s.c.List(ctx, &runs, client.InNamespace(s.ns)); err != nil {
		return time.Time{}, err
	}
	for _, ar := range runs.Items {
		for _, m := range ar.Status.Metrics {
			if at := firstFailed(m.Measurements); !at.IsZero() {
				return at, nil
			}
		}
	}
	return time.Time{}, nil
}

func (s *SluiceController) Stop() {
	if s.p != nil {
		s.p.Stop(10 * time.Second)
	}
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	if s.ns != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var errs []error
		for _, k := range slices.Concat([]struct{ apiVersion, kind string }{
			{"sluice.dev/v1alpha1", "AnalysisRun"}, {"sluice.dev/v1alpha1", "AnalysisTemplate"},
			{"discovery.k8s.io/v1", "EndpointSlice"},
		}, cleanedKinds) {
			errs = append(errs, deleteAll(ctx, s.c, s.ns, k.apiVersion, k.kind))
		}
		errs = append(errs, s.c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.ns}}))
		if err := errors.Join(errs...); err != nil && s.Log != nil {
			fmt.Fprintf(s.Log, "peerbench: cleanup of %s: %v\n", s.ns, err)
		}
	}
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
}
