// Package grpcecho is a real gRPC service to roll out and a real
// proxyless client to watch the rollout from, shared by the demo
// (examples/demo), the end-to-end tests of controller mode (kube/manager)
// and, through internal/xdstest, the tests of xDS serving:
//
//   - Backend is one revision of an echo service: a gRPC server answering
//     grpc.testing.TestService/UnaryCall with its version (in a trailer,
//     so failed calls are attributed too) and an HTTP server exposing its
//     request counters for Prometheus, as a real service would. It can be
//     told to fail a share of its calls, which is what an analysis has to
//     catch.
//   - Dial connects a proxyless gRPC client of xds:///target: grpc-go's
//     own xDS client fetches routes and endpoints from Sluice, picks a
//     revision for every call by the route's weights, and ACKs each plan
//     version. Load calls through one at a steady rate and records which
//     version answered each call, so the split of any time window can be
//     counted afterwards.
//
// Nothing here imports testing: the demo is an ordinary program.
package grpcecho

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// VersionKey is the response metadata naming the version that answered.
// It is sent as a trailer, which gRPC delivers with errors too, so a
// failed call is still counted for the version that failed it.
const VersionKey = "x-demo-version"

// MetricName is the backends' request counter, labelled with the
// Options' Service, Version and Labels and with the call's gRPC status
// code (code="OK", code="Unavailable"). examples/quickstart/analysis.yaml
// queries it by this name.
const MetricName = "demo_rpcs_total"

// Options describe one revision.
type Options struct {
	// Service and Version label the counter and Version answers calls.
	Service, Version string
	// FailPercent of the calls (0-100) fail with UNAVAILABLE, spread
	// evenly rather than at random, so every run sees the same ratio.
	FailPercent int
	// Labels are more constant labels of the counter, such as the
	// revision a pod would read from its own labels through the downward
	// API (controller mode names revisions by a hash of the pod template).
	Labels map[string]string
	// Host is the IP address to listen on; default 127.0.0.1. The API
	// server refuses loopback addresses in EndpointSlices, so a backend
	// standing in for a pod listens on one of the machine's other
	// addresses.
	Host string
}

// Backend is one running revision.
type Backend struct {
	grpc_testing.UnimplementedTestServiceServer

	Version string
	// Addr is the gRPC address, MetricsAddr the one Prometheus scrapes;
	// both host:port on Options.Host.
	Addr, MetricsAddr string
	// Port is Addr's port (an EndpointSlice's or ServiceEntry's).
	Port int32

	failPercent atomic.Uint64
	calls       atomic.Uint64
	requests    *prometheus.CounterVec
	gs          *grpc.Server
	hs          *http.Server
}

// Start serves one revision on two free ports of Options.Host. The
// caller must Stop it.
func Start(o Options) (*Backend, error) {
	if o.FailPercent < 0 || o.FailPercent > 100 {
		return nil, fmt.Errorf("backend %s: FailPercent %d is not between 0 and 100", o.Version, o.FailPercent)
	}
	b := &Backend{Version: o.Version}
	b.failPercent.Store(uint64(o.FailPercent))
	constLabels := prometheus.Labels{"service": o.Service, "version": o.Version}
	maps.Copy(constLabels, o.Labels)
	b.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        MetricName,
		Help:        "RPCs answered by this echo backend, by gRPC status code.",
		ConstLabels: constLabels,
	}, []string{"code"})
	reg := prometheus.NewRegistry()
	if err := reg.Register(b.requests); err != nil {
		return nil, fmt.Errorf("backend %s: metrics: %w", o.Version, err)
	}
	// Export both series at 0 from the start, as a service should: the
	// first rate() after the first calls then has the whole window, not
	// just the scrapes since the series appeared.
	b.requests.WithLabelValues(codes.OK.String())
	b.requests.WithLabelValues(codes.Unavailable.String())

	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	gl, err := net.Listen("tcp", net.JoinHostPort(o.Host, "0"))
	if err != nil {
		return nil, fmt.Errorf("backend %s: listen: %w", o.Version, err)
	}
	hl, err := net.Listen("tcp", net.JoinHostPort(o.Host, "0"))
	if err != nil {
		gl.Close()
		return nil, fmt.Errorf("backend %s: listen for metrics: %w", o.Version, err)
	}
	b.Addr, b.MetricsAddr = gl.Addr().String(), hl.Addr().String()
	b.Port = int32(gl.Addr().(*net.TCPAddr).Port)
	b.gs = grpc.NewServer()
	grpc_testing.RegisterTestServiceServer(b.gs, b)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	b.hs = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = b.gs.Serve(gl) }()
	go func() {
		if err := b.hs.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("echo backend: metrics server stopped", "version", o.Version, "err", err)
		}
	}()
	return b, nil
}

// ErrNoPodAddress is PodAddress's error on a machine with no address
// besides loopback and link-local.
var ErrNoPodAddress = errors.New("no IPv4 address besides loopback and link-local on this machine")

// PodAddress is an address of this machine that an EndpointSlice may hold
// (Options.Host for a backend standing in for a pod): its first global
// unicast IPv4 address. The API server refuses loopback and link-local
// addresses in EndpointSlices ("may not be in the loopback range"); any
// other address of this machine is as reachable from it as 127.0.0.1.
func PodAddress() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", fmt.Errorf("addresses of this machine: %w", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			return n.IP.String(), nil
		}
	}
	return "", ErrNoPodAddress
}

// UnaryCall answers with the backend's version, or fails as configured.
func (b *Backend) UnaryCall(ctx context.Context, _ *grpc_testing.SimpleRequest) (*grpc_testing.SimpleResponse, error) {
	_ = grpc.SetTrailer(ctx, metadata.Pairs(VersionKey, b.Version))
	n := b.calls.Add(1) - 1
	// Call n fails when the running count of due failures steps up: exactly
	// failPercent of any 100 consecutive calls, evenly spread.
	fail := b.failPercent.Load()
	if (n+1)*fail/100 > n*fail/100 {
		b.requests.WithLabelValues(codes.Unavailable.String()).Inc()
		return nil, status.Errorf(codes.Unavailable, "%s is failing on purpose", b.Version)
	}
	b.requests.WithLabelValues(codes.OK.String()).Inc()
	return &grpc_testing.SimpleResponse{Hostname: b.Version}, nil
}

// SetFailPercent makes p% (clamped to 0-100) of the later calls fail with
// UNAVAILABLE, evenly spread: an SLO breach that starts while the backend
// serves.
func (b *Backend) SetFailPercent(p int) { b.failPercent.Store(uint64(min(max(p, 0), 100))) }

// Calls is how many calls the backend answered so far.
func (b *Backend) Calls() uint64 { return b.calls.Load() }

// Stop ends both servers at once: whoever stops a backend is done with it
// and waits for no call in flight.
func (b *Backend) Stop() {
	b.gs.Stop()
	_ = b.hs.Close()
}
