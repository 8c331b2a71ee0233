package main

import (
	"context"
	"errors"
	"fmt"
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

// versionKey is the response metadata naming the revision that answered.
// It is sent as a trailer, which gRPC delivers with errors too, so a
// failed call is still counted for the version that failed it.
const versionKey = "x-demo-version"

// backend is one revision of the demo's echo service: a gRPC server that
// answers UnaryCall with its version, and an HTTP server exposing its
// request counters for Prometheus, as a real service would.
type backend struct {
	grpc_testing.UnimplementedTestServiceServer

	Version string
	// Addr is the gRPC address, MetricsAddr the one Prometheus scrapes.
	Addr, MetricsAddr string
	// failPercent of the calls fail with UNAVAILABLE.
	failPercent uint64

	calls    atomic.Uint64
	requests *prometheus.CounterVec
	gs       *grpc.Server
	hs       *http.Server
}

// startBackend serves one revision on two free ports of 127.0.0.1.
// failPercent of its calls fail, spread evenly rather than at random, so
// every run of the demo sees the same error ratio.
func startBackend(service, version string, failPercent int) (*backend, error) {
	b := &backend{Version: version, failPercent: uint64(failPercent)}
	reg := prometheus.NewRegistry()
	b.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "demo_rpcs_total",
		Help:        "RPCs answered by this demo backend, by gRPC status code.",
		ConstLabels: prometheus.Labels{"service": service, "version": version},
	}, []string{"code"})
	reg.MustRegister(b.requests)
	// Export both series at 0 from the start, as a service should: the
	// first rate() after the first calls then has the whole window, not
	// just the scrapes since the series appeared.
	b.requests.WithLabelValues(codes.OK.String())
	b.requests.WithLabelValues(codes.Unavailable.String())

	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("backend %s: listen: %w", version, err)
	}
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		gl.Close()
		return nil, fmt.Errorf("backend %s: listen for metrics: %w", version, err)
	}
	b.Addr, b.MetricsAddr = gl.Addr().String(), hl.Addr().String()
	b.gs = grpc.NewServer()
	grpc_testing.RegisterTestServiceServer(b.gs, b)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	b.hs = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = b.gs.Serve(gl) }()
	go func() {
		if err := b.hs.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Printf("backend %s: metrics server: %v\n", version, err)
		}
	}()
	return b, nil
}

// UnaryCall answers with the backend's version, or fails as configured.
func (b *backend) UnaryCall(ctx context.Context, _ *grpc_testing.SimpleRequest) (*grpc_testing.SimpleResponse, error) {
	_ = grpc.SetTrailer(ctx, metadata.Pairs(versionKey, b.Version))
	n := b.calls.Add(1) - 1
	// Call n fails when the running count of due failures steps up: exactly
	// failPercent of any 100 consecutive calls, evenly spread.
	if (n+1)*b.failPercent/100 > n*b.failPercent/100 {
		b.requests.WithLabelValues(codes.Unavailable.String()).Inc()
		return nil, status.Errorf(codes.Unavailable, "%s is failing on purpose", b.Version)
	}
	b.requests.WithLabelValues(codes.OK.String()).Inc()
	return &grpc_testing.SimpleResponse{Hostname: b.Version}, nil
}

// Stop ends both servers at once: the demo is over, nobody waits for them.
func (b *backend) Stop() {
	b.gs.Stop()
	_ = b.hs.Close()
}
