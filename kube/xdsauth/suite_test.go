package xdsauth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"k8s.io/client-go/kubernetes"
	"log/slog"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/xds"
)

// One envtest control plane (a real kube-apiserver, which answers
// TokenRequest and TokenReview, and etcd) serves the package.
var env = kubetest.NewEnv()

func TestMain(m *testing.M) { os.Exit(env.Run(m)) }

func clientset(t *testing.T) kubernetes.Interface {
	t.Helper()
	cfg, _ := env.Start(t)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// serveXDS runs an xDS server with opts on 127.0.0.1 until the test ends.
func serveXDS(t *testing.T, opts xds.Options) (*xds.Server, string) {
	t.Helper()
	opts.Logger = slog.New(slog.DiscardHandler)
	srv, err := xds.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv, lis.Addr().String()
}

// openADS opens an ADS stream as a proxy does, over TLS trusting roots,
// with token (if any) as its bearer token, and sends its first request
// naming nodeID. It returns the error that ended the stream, or nil if
// the node is still connected once the server lists it.
func openADS(t *testing.T, srv *xds.Server, addr string, roots *x509.CertPool, serverName, token, nodeID string) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12,
	})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	node := &corev3.Node{Id: nodeID, Cluster: "test", UserAgentName: "envoy"}
	if err := s.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster"}); err != nil {
		if errors.Is(err, io.EOF) {
			// The server ended the stream first (a refusal can be that
			// quick): Send says only EOF, Recv says why.
			_, err = s.Recv()
		}
		return err
	}
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := s.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-ended:
			return err
		case <-ctx.Done():
			t.Fatalf("node %s neither refused nor listed", nodeID)
		case <-tick.C:
			for _, n := range srv.Nodes() {
				if n.Node.ID == nodeID {
					return nil
				}
			}
		}
	}
}

// clock is a settable clock shared by the CA and the clients' checks.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}
