package grpcecho

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
)

// SetFailPercent fails exactly the share of calls it is set to, from the
// call after the change, and the version is named on failures too: the
// peer benchmarks' SLO breach is that change.
func TestSetFailPercent(t *testing.T) {
	t.Parallel()
	e, err := Start(Options{Service: "echo", Version: "v2"})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	cc, err := grpc.NewClient(e.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := grpc_testing.NewTestServiceClient(cc)
	for _, tc := range []struct{ percent, calls, wantFailed int }{
		{0, 100, 0},
		{50, 100, 50},
		{100, 20, 20},
		{5, 100, 5},
		{0, 10, 0},
	} {
		e.SetFailPercent(tc.percent)
		failed := 0
		for range tc.calls {
			var trailer metadata.MD
			_, err := c.UnaryCall(context.Background(), &grpc_testing.SimpleRequest{}, grpc.Trailer(&trailer))
			if err != nil {
				failed++
			}
			if v := trailer.Get(VersionKey); len(v) != 1 || v[0] != "v2" {
				t.Fatalf("trailer %s = %v, want [v2]", VersionKey, v)
			}
		}
		if failed != tc.wantFailed {
			t.Errorf("at %d%%: %d of %d calls failed, want %d", tc.percent, failed, tc.calls, tc.wantFailed)
		}
	}
}
