package peerbench

import (
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// APIProxy stands between one product and the API server and counts its
// requests by verb and resource, as the API server sees them: whatever
// client-side caches, rate limiters and retries the product has, every
// request it sends passes here. The product talks plain HTTP to the proxy
// on loopback; the proxy forwards with the API server's credentials
// (cfg's), as an authenticating proxy would. Watches are streamed through.
type APIProxy struct {
	srv *http.Server
	lis net.Listener

	mu    sync.Mutex
	count map[string]int
}

// NewAPIProxy starts a proxy to the API server of cfg on 127.0.0.1.
func NewAPIProxy(cfg *rest.Config) (*APIProxy, error) {
	target, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, fmt.Errorf("api proxy: %w", err)
	}
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("api proxy: %w", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &APIProxy{lis: lis, count: map[string]int{}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = target.Host
		},
		Transport:     rt,
		FlushInterval: -1, // watch events as they come
		ErrorLog:      nil,
	}
	p.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			kind := RequestKind(r)
			p.mu.Lock()
			p.count[kind]++
			p.mu.Unlock()
			rp.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = p.srv.Serve(lis) }()
	return p, nil
}

// URL is the proxy's address, for a kubeconfig.
func (p *APIProxy) URL() string { return "http://" + p.lis.Addr().String() }

// Kubeconfig writes a kubeconfig that points at the proxy into dir and
// returns its path.
func (p *APIProxy) Kubeconfig(dir, namespace string) (string, error) {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["bench"] = &clientcmdapi.Cluster{Server: p.URL()}
	kc.AuthInfos["bench"] = &clientcmdapi.AuthInfo{}
	kc.Contexts["bench"] = &clientcmdapi.Context{Cluster: "bench", AuthInfo: "bench", Namespace: namespace}
	kc.CurrentContext = "bench"
	path := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return "", err
	}
	return path, os.Chmod(path, 0o600)
}

// Reset forgets the requests counted so far.
func (p *APIProxy) Reset() {
	p.mu.Lock()
	p.count = map[string]int{}
	p.mu.Unlock()
}

// Counts are the requests counted since the last Reset, by RequestKind.
func (p *APIProxy) Counts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.count)
}

// Close stops the proxy; open watches end.
func (p *APIProxy) Close() error { return p.srv.Close() }

// Verbs are the request verbs reported per rollout, in report order.
var Verbs = []string{"GET", "LIST", "WATCH", "POST", "PUT", "PATCH", "DELETE"}

// ByVerb sums counts by verb.
func ByVerb(counts map[string]int) map[string]int {
	out := map[string]int{}
	for kind, n := range counts {
		verb, _, _ := strings.Cut(kind, " ")
		out[verb] += n
	}
	return out
}

// Table lists counts by kind, most first, with the number per unit (per
// rollout), on one line: "PATCH rollouts/status 2895 (14.47); ...".
func Table(counts map[string]int, per int) string {
	kinds := slices.Collect(maps.Keys(counts))
	slices.SortFunc(kinds, func(a, b string) int {
		if counts[a] != counts[b] {
			return counts[b] - counts[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%s %d (%.2f)", k, counts[k], float64(counts[k])/float64(max(per, 1)))
	}
	return strings.Join(parts, "; ")
}

// RequestKind names a request the way the API server's audit log does:
// the Kubernetes verb (GET of one object, LIST, WATCH, POST, PUT, PATCH,
// DELETE) and the resource with its subresource, e.g. "PATCH
// rollouts/status". Discovery and other non-resource paths keep their
// path ("GET /apis").
func RequestKind(req *http.Request) string {
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return req.Method + " " + req.URL.Path
	}
	if len(parts) >= 3 && parts[0] == "namespaces" {
		parts = parts[2:]
	}
	resource, named := parts[0], len(parts) > 1
	if len(parts) > 2 {
		resource += "/" + parts[2]
	}
	verb := req.Method
	switch {
	case verb == http.MethodGet && req.URL.Query().Get("watch") == "true":
		verb = "WATCH"
	case verb == http.MethodGet && !named:
		verb = "LIST"
	}
	return verb + " " + resource
}

// DirectKubeconfig writes a kubeconfig for the API server of cfg itself
// (its address and client credentials, no proxy) into dir/kubeconfig.
func DirectKubeconfig(cfg *rest.Config, dir string) (string, error) {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["bench"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["bench"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["bench"] = &clientcmdapi.Context{Cluster: "bench", AuthInfo: "bench"}
	kc.CurrentContext = "bench"
	path := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return "", err
	}
	return path, os.Chmod(path, 0o600)
}
