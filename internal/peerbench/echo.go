package peerbench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

	"github.com/sluicehq/sluice/internal/grpcecho"
)

// Echo is one revision of the echo service of the traffic benchmarks,
// the same for every product: grpcecho's protocol (its version in a
// trailer, its calls counted in grpcecho.MetricName by code), with a
// failure share that can change while it runs, which is what the SLO
// breach benchmark needs (grpcecho.Backend fixes it at the start).
type Echo struct {
	grpc_testing.UnimplementedTestServiceServer

	Version string
	// Addr is the gRPC address, MetricsAddr the one Prometheus scrapes.
	Addr, MetricsAddr string
	// Port is Addr's port.
	Port int32

	failPercent atomic.Uint64
	calls       atomic.Uint64
	requests    *prometheus.CounterVec
	gs          *grpc.Server
	hs          *http.Server
}

// StartEcho serves version of service on two free ports of host (an
// address an EndpointSlice may hold: see grpcecho.PodAddress).
func StartEcho(service, version, host string) (*Echo, error) {
	e := &Echo{Version: version}
	e.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        grpcecho.MetricName,
		Help:        "RPCs answered by this echo backend, by gRPC status code.",
		ConstLabels: prometheus.Labels{"service": service, "version": version},
	}, []string{"code"})
	reg := prometheus.NewRegistry()
	if err := reg.Register(e.requests); err != nil {
		return nil, fmt.Errorf("echo %s: metrics: %w", version, err)
	}
	// Both series from the start, so the first rate() has its window.
	e.requests.WithLabelValues(codes.OK.String())
	e.requests.WithLabelValues(codes.Unavailable.String())
	gl, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("echo %s: listen: %w", version, err)
	}
	hl, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		gl.Close()
		return nil, fmt.Errorf("echo %s: listen for metrics: %w", version, err)
	}
	e.Addr, e.MetricsAddr = gl.Addr().String(), hl.Addr().String()
	e.Port = int32(gl.Addr().(*net.TCPAddr).Port)
	e.gs = grpc.NewServer()
	grpc_testing.RegisterTestServiceServer(e.gs, e)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	e.hs = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = e.gs.Serve(gl) }()
	go func() {
		if err := e.hs.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("echo backend: metrics server stopped", "version", version, "err", err)
		}
	}()
	return e, nil
}

// SetFailPercent makes p% of the later calls fail with UNAVAILABLE,
// evenly spread.
func (e *Echo) SetFailPercent(p int) { e.failPercent.Store(uint64(min(max(p, 0), 100))) }

// UnaryCall answers with the version, or fails as set.
func (e *Echo) UnaryCall(ctx context.Context, _ *grpc_testing.SimpleRequest) (*grpc_testing.SimpleResponse, error) {
	_ = grpc.SetTrailer(ctx, metadata.Pairs(grpcecho.VersionKey, e.Version))
	n := e.calls.Add(1) - 1
	fail := e.failPercent.Load()
	if (n+1)*fail/100 > n*fail/100 {
		e.requests.WithLabelValues(codes.Unavailable.String()).Inc()
		return nil, status.Errorf(codes.Unavailable, "%s is failing on purpose", e.Version)
	}
	e.requests.WithLabelValues(codes.OK.String()).Inc()
	return &grpc_testing.SimpleResponse{Hostname: e.Version}, nil
}

// Stop ends both servers.
func (e *Echo) Stop() {
	e.gs.Stop()
	_ = e.hs.Close()
}
