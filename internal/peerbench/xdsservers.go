package peerbench

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// XDSServer is a control plane under measurement, serving Envoy-like ADS
// clients (a Fleet) the routes of the same services: svc-000 … in
// namespace MeshNamespace, each with two revisions (v1 stable, v2 canary)
// of two endpoints each, and one weighted route, 95/5 at the start.
type XDSServer interface {
	Name() string
	// Start starts the server for services services and returns its
	// plaintext ADS address.
	Start(ctx context.Context, services int, dir string, log io.Writer) (*Process, string, error)
	// Node is client i's node, as the server expects an Envoy sidecar's.
	Node(i int) *corev3.Node
	// Change makes one weight change: svc-000's canary to w%.
	Change(ctx context.Context, w int32) error
}

// MeshNamespace holds the services of the xDS benchmark.
const MeshNamespace = "mesh"

// InitialCanary is every service's canary weight at the start.
const InitialCanary = 5

// ServiceName is the name of service i.
func ServiceName(i int) string { return fmt.Sprintf("svc-%03d", i) }

// SluiceXDS is Sluice's xDS server (package xds) run by
// internal/peerbench/xdsserver: the plans published directly, as the
// engine's runner publishes them after a step.
type SluiceXDS struct {
	Bin  string   // the xdsserver binary
	Args []string // more flags for it
	// FullNode sends an Envoy's whole node (fillEnvoyNode), not only its
	// id, cluster and agent.
	FullNode bool
	// TLS serves TLS with a certificate made for the run (ServingCert);
	// ClientTLS is then what the clients dial with.
	TLS       bool
	ClientTLS *tls.Config
	control   string
}

func (*SluiceXDS) Name() string { return "sluice" }

func (s *SluiceXDS) Start(_ context.Context, services int, dir string, log io.Writer) (*Process, string, error) {
	ready := make(chan string, 1)
	args := append([]string{"-services", strconv.Itoa(services), "-namespace", MeshNamespace,
		"-canary", strconv.Itoa(InitialCanary)}, s.Args...)
	if s.TLS {
		cert, key, client, err := ServingCert(dir)
		if err != nil {
			return nil, "", err
		}
		s.ClientTLS = client
		args = append(args, "-tls-cert", cert, "-tls-key", key)
	}
	p, err := Start("sluice-xds", s.Bin, args, nil, log)
	if err != nil {
		return nil, "", err
	}
	p.OnLine(func(line string) {
		if strings.HasPrefix(line, "xds ") {
			select {
			case ready <- line:
			default:
			}
		}
	})
	select {
	case line := <-ready:
		p.OnLine(nil)
		var addr string
		if _, err := fmt.Sscanf(line, "xds %s control %s", &addr, &s.control); err != nil {
			p.Stop(time.Second)
			return nil, "", fmt.Errorf("xdsserver said %q: %w", line, err)
		}
		return p, addr, nil
	case <-time.After(time.Minute):
		p.Stop(time.Second)
		return nil, "", fmt.Errorf("xdsserver not ready in a minute:\n%s", p.Tail())
	}
}

func (s *SluiceXDS) Node(i int) *corev3.Node {
	n := &corev3.Node{Id: fmt.Sprintf("client-%d", i), Cluster: "bench", UserAgentName: "envoy"}
	if s.FullNode {
		fillEnvoyNode(n)
	}
	return n
}

// fillEnvoyNode adds what an Envoy sends in its node besides id and
// cluster, in kind if not in count: its build, client features, a few
// metadata fields and the extensions it was built with (synthetic names,
// fullNodeExtensions of them).
func fillEnvoyNode(n *corev3.Node) {
	n.UserAgentVersionType = &corev3.Node_UserAgentVersion{UserAgentVersion: "1.36.2"}
	n.ClientFeatures = []string{"envoy.config.require-any-fields-contain-struct", "envoy.lb.does_not_support_overprovisioning", "xds.config.resource-in-sotw"}
	n.Locality = &corev3.Locality{Region: "bench", Zone: "bench-a"}
	n.Metadata, _ = structpb.NewStruct(map[string]any{"NAMESPACE": MeshNamespace, "WORKLOAD_NAME": n.GetId(), "CLUSTER_ID": "bench", "LABELS": map[string]any{"app": n.GetId(), "version": "v1"}})
	for e := range fullNodeExtensions {
		n.Extensions = append(n.Extensions, &corev3.Extension{
			Name:     fmt.Sprintf("envoy.filters.http.extension_%03d", e),
			Category: "envoy.filters.http",
			TypeUrls: []string{fmt.Sprintf("envoy.extensions.filters.http.extension_%03d.v3.Config", e)},
		})
	}
}

// fullNodeExtensions is how many extensions fillEnvoyNode lists.
const fullNodeExtensions = 100

func (s *SluiceXDS) Change(ctx context.Context, w int32) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		fmt.Sprintf("http://%s/weight?service=%s&canary=%d", s.control, ServiceName(0), w), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("weight change: %s: %s", resp.Status, body)
	}
	return nil
}

// Memory reads the server's own runtime figures (xdsserver's GET /memory,
// after a collection): heap objects, goroutine stacks, goroutines and
// the runtime's starting stack size, by xdsserver's names.
func (s *SluiceXDS) Memory(ctx context.Context) (map[string]uint64, error) {
	body, err := s.get(ctx, "/memory")
	if err != nil {
		return nil, err
	}
	var m map[string]uint64
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("xdsserver /memory: %w", err)
	}
	return m, nil
}

// WriteHeapProfile writes the server's heap profile (after a collection)
// to path.
func (s *SluiceXDS) WriteHeapProfile(ctx context.Context, path string) error {
	body, err := s.get(ctx, "/heap")
	if err != nil {
		return err
	}
	return os.WriteFile(path, body, 0o600)
}

func (s *SluiceXDS) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.control+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("xdsserver %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("xdsserver %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("xdsserver %s: %s", path, resp.Status)
	}
	return body, nil
}

var xdsBuild struct {
	once    sync.Once
	path    string
	version string
	err     error
}

// BuildXDSServer builds internal/peerbench/xdsserver once per process, as
// BuildSluice builds sluice.
func BuildXDSServer(ctx context.Context) (path, version string, err error) {
	xdsBuild.once.Do(func() {
		xdsBuild.path, xdsBuild.version, xdsBuild.err = buildSluice(ctx, "./internal/peerbench/xdsserver", "xdsserver")
	})
	return xdsBuild.path, xdsBuild.version, xdsBuild.err
}

// Istiod is istiod (bin/pilot-discovery) against the benchmark's API
// server, with default settings (debounce 100 ms, push throttle,
// every service pushed to every sidecar: no Sidecar resource), serving
// plaintext xDS on its gRPC port. The services are Kubernetes Services
// with Pods and EndpointSlices, each with a DestinationRule (subsets by
// the pods' version label) and a VirtualService with the weighted route.
type Istiod struct {
	Bin string
	C   client.Client // unlimited, for setup and the change
}

func (*Istiod) Name() string { return "istiod" }

func (d *Istiod) Start(ctx context.Context, services int, dir string, log io.Writer) (*Process, string, error) {
	if err := d.setup(ctx, services); err != nil {
		return nil, "", err
	}
	return StartIstiod(d.Bin, dir, log)
}

// StartIstiod starts istiod (pilot-discovery discovery) with its defaults
// against the API server of dir/kubeconfig, serving plaintext xDS on a
// free port of loopback, and waits until it is ready. It returns the
// process and that xDS address.
func StartIstiod(bin, dir string, log io.Writer) (*Process, string, error) {
	ports := make([]int, 5)
	for i := range ports {
		p, err := FreePort()
		if err != nil {
			return nil, "", err
		}
		ports[i] = p
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if _, err := os.Stat(kubeconfig); err != nil {
		return nil, "", fmt.Errorf("istiod needs %s: %w", kubeconfig, err)
	}
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	httpAddr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	args := []string{"discovery",
		"--kubeconfig", kubeconfig,
		"--grpcAddr", grpcAddr,
		"--secureGRPCAddr", fmt.Sprintf("127.0.0.1:%d", ports[2]),
		"--httpAddr", httpAddr,
		"--httpsAddr", fmt.Sprintf("127.0.0.1:%d", ports[3]),
		"--monitoringAddr", fmt.Sprintf("127.0.0.1:%d", ports[4]),
		"--meshConfig", filepath.Join(dir, "mesh"), // none: the defaults
		"--networksConfig", filepath.Join(dir, "meshNetworks"),
	}
	env := []string{"POD_NAMESPACE=istio-system", "POD_NAME=istiod-bench", "REVISION=default"}
	p, err := Start("istiod", bin, args, env, log)
	if err != nil {
		return nil, "", err
	}
	p.MetricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", ports[4])
	deadline := time.Now().Add(3 * time.Minute)
	for {
		resp, err := http.Get("http://" + httpAddr + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, grpcAddr, nil
			}
		}
		if ok, perr := p.Exited(); ok {
			return nil, "", fmt.Errorf("istiod exited (%v):\n%s", perr, p.Tail())
		}
		if time.Now().After(deadline) {
			p.Stop(5 * time.Second)
			return nil, "", fmt.Errorf("istiod not ready in 3 minutes:\n%s", p.Tail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Node is an Envoy sidecar's node as istio-agent presents it.
func (*Istiod) Node(i int) *corev3.Node {
	ip := fmt.Sprintf("10.200.%d.%d", i/250, 1+i%250)
	name := fmt.Sprintf("client-%d", i)
	md, _ := structpb.NewStruct(map[string]any{
		"NAMESPACE":         MeshNamespace,
		"NAME":              name,
		"ISTIO_VERSION":     "1.31.0",
		"CLUSTER_ID":        "Kubernetes",
		"MESH_ID":           "cluster.local",
		"INTERCEPTION_MODE": "REDIRECT",
		"INSTANCE_IPS":      ip,
		"LABELS":            map[string]any{"app": "client"},
		"WORKLOAD_NAME":     "client",
	})
	return &corev3.Node{
		Id:            fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.cluster.local", ip, name, MeshNamespace, MeshNamespace),
		Cluster:       "client." + MeshNamespace,
		Metadata:      md,
		UserAgentName: "envoy",
	}
}

func (d *Istiod) Change(ctx context.Context, w int32) error {
	return mergePatch(ctx, d.C, unstructuredOf("networking.istio.io/v1", "VirtualService", MeshNamespace, ServiceName(0)),
		fmt.Sprintf(`{"spec":%s}`, vsSpecJSON(ServiceName(0), w)))
}

func vsSpecJSON(svc string, w int32) string {
	host := svc + "." + MeshNamespace + ".svc.cluster.local"
	return fmt.Sprintf(`{"hosts":[%q],"http":[{"name":"primary","route":[`+
		`{"destination":{"host":%q,"subset":"stable"},"weight":%d},`+
		`{"destination":{"host":%q,"subset":"canary"},"weight":%d}]}]}`, host, host, 100-w, host, w)
}

// setup creates the mesh: per service a Service, four Pods (two per
// revision) made running, their EndpointSlice, a DestinationRule and a
// VirtualService. Existing objects are kept (a later sub-benchmark with
// as many services or fewer reuses them).
func (d *Istiod) setup(ctx context.Context, services int) error {
	for _, ns := range []string{MeshNamespace, "istio-system"} {
		if err := client.IgnoreAlreadyExists(d.C.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})); err != nil {
			return err
		}
		// No controller-manager creates it; pods need it.
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}
		if err := client.IgnoreAlreadyExists(d.C.Create(ctx, sa)); err != nil {
			return err
		}
	}
	// The pods' node, for their locality (istiod looks it up).
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-0"}}
	if err := client.IgnoreAlreadyExists(d.C.Create(ctx, node)); err != nil {
		return err
	}
	names := make([]string, services)
	for i := range names {
		names[i] = ServiceName(i)
	}
	errs := make(chan error, services)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, svc := range names {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := d.createService(ctx, i, svc); err != nil {
				errs <- fmt.Errorf("%s: %w", svc, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func (d *Istiod) createService(ctx context.Context, i int, svc string) error {
	create := func(obj client.Object) error { return client.IgnoreAlreadyExists(d.C.Create(ctx, obj)) }
	if err := create(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: MeshNamespace, Name: svc},
		Spec: corev1.ServiceSpec{Selector: map[string]string{AppLabel: svc},
			Ports: []corev1.ServicePort{{Name: "http", Port: 9080}}},
	}); err != nil {
		return err
	}
	var endpoints []discoveryv1.Endpoint
	for r, rev := range []string{"v1", "v2"} {
		for k := range 2 {
			name := fmt.Sprintf("%s-%s-%d", svc, rev, k)
			ip := fmt.Sprintf("10.%d.%d.%d", 1+i/250, i%250, 1+2*r+k)
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: MeshNamespace, Name: name,
					Labels: map[string]string{AppLabel: svc, "version": rev}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:" + rev}},
					NodeName: "node-0", AutomountServiceAccountToken: ptr.To(false)},
			}
			if err := create(pod); err != nil {
				return err
			}
			pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
				Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
			if err := d.C.Status().Update(ctx, pod); err != nil {
				return err
			}
			endpoints = append(endpoints, discoveryv1.Endpoint{
				Addresses:  []string{ip},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: MeshNamespace, Name: name},
			})
		}
	}
	if err := create(&discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: MeshNamespace, Name: svc + "-0",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   endpoints,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](9080)}},
	}); err != nil {
		return err
	}
	host := svc + "." + MeshNamespace + ".svc.cluster.local"
	dr := unstructuredOf("networking.istio.io/v1", "DestinationRule", MeshNamespace, svc)
	dr.Object["spec"] = map[string]any{"host": host, "subsets": []any{
		map[string]any{"name": "stable", "labels": map[string]any{"version": "v1"}},
		map[string]any{"name": "canary", "labels": map[string]any{"version": "v2"}},
	}}
	if err := create(dr); err != nil {
		return err
	}
	vs := unstructuredOf("networking.istio.io/v1", "VirtualService", MeshNamespace, svc)
	var spec map[string]any
	if err := json.Unmarshal([]byte(vsSpecJSON(svc, InitialCanary)), &spec); err != nil {
		return err
	}
	vs.Object["spec"] = spec
	if err := create(vs); err != nil {
		return err
	}
	// Whatever an earlier run left: the initial weights.
	return mergePatch(ctx, d.C, vs, fmt.Sprintf(`{"spec":%s}`, vsSpecJSON(svc, InitialCanary)))
}
