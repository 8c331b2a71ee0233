package peerbench

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

// The bootstrap carries the node's metadata, which istiod's gRPC
// generator needs (GENERATOR), and leaves it out when there is none.
func TestGRPCBootstrap(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		node GRPCNode
		want map[string]any
	}{
		{"istiod", GRPCNode{ID: "sidecar~10.0.0.1~c.ns~ns.svc.cluster.local", Metadata: map[string]any{"GENERATOR": "grpc"}},
			map[string]any{"GENERATOR": "grpc"}},
		{"sluice", GRPCNode{ID: "client-1"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := grpcBootstrap("127.0.0.1:15010", tc.node)
			if err != nil {
				t.Fatal(err)
			}
			var got struct {
				Servers []struct {
					URI string `json:"server_uri"`
				} `json:"xds_servers"`
				Node struct {
					ID       string         `json:"id"`
					Metadata map[string]any `json:"metadata"`
				} `json:"node"`
			}
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if len(got.Servers) != 1 || got.Servers[0].URI != "127.0.0.1:15010" || got.Node.ID != tc.node.ID {
				t.Errorf("bootstrap %s: servers %v, node %q", b, got.Servers, got.Node.ID)
			}
			if len(got.Node.Metadata) != len(tc.want) || got.Node.Metadata["GENERATOR"] != tc.want["GENERATOR"] {
				t.Errorf("metadata %v, want %v", got.Node.Metadata, tc.want)
			}
		})
	}
}

// The clients' records answer the benchmarks' questions: each client's
// first call to a version, and the last call any client sent to it.
func TestGRPCClientsRecords(t *testing.T) {
	t.Parallel()
	t0 := time.Now().Add(-time.Hour)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	g := &GRPCClients{clients: []*grpcClient{
		{calls: []answered{{at(0), "v1", false}, {at(10), "v2", false}, {at(30), "v2", true}, {at(40), "v1", false}}},
		{calls: []answered{{at(5), "v1", false}, {at(25), "v2", true}, {at(35), "v2", false}}},
	}}
	ctx := context.Background()
	first, all, err := g.WaitFirst(ctx, "v2", at(1), time.Second)
	if err != nil || !first.Equal(at(10)) || !all.Equal(at(25)) {
		t.Errorf("WaitFirst v2 = %v, %v, %v; want +10ms, +25ms", first.Sub(t0), all.Sub(t0), err)
	}
	first, all, err = g.WaitFirstFailure(ctx, "v2", at(1), time.Second)
	if err != nil || !first.Equal(at(25)) || !all.Equal(at(30)) {
		t.Errorf("WaitFirstFailure v2 = %v, %v, %v; want +25ms, +30ms", first.Sub(t0), all.Sub(t0), err)
	}
	if _, _, err := g.WaitFirst(ctx, "v3", at(0), 10*time.Millisecond); err == nil {
		t.Error("WaitFirst v3: no error, but no client called v3")
	}
	last, n, err := g.WaitGone(ctx, "v2", at(20), 0, time.Second)
	if err != nil || !last.Equal(at(35)) || n != 3 {
		t.Errorf("WaitGone v2 = %v, %d, %v; want +35ms, 3 calls", last.Sub(t0), n, err)
	}
	if share, calls := g.Share("v1", at(0), at(40)); calls != 7 || share != 3.0/7 {
		t.Errorf("Share v1 = %v of %d, want 3/7 of 7", share, calls)
	}
	if got := g.LastOf("v2", at(20)); len(got) != 2 || !got[0].Equal(at(30)) || !got[1].Equal(at(35)) {
		t.Errorf("LastOf v2 since +20ms = %v, want [+30ms +35ms]", got)
	}
	if got := g.LastOf("v2", at(36)); len(got) != 2 || !got[0].IsZero() || !got[1].IsZero() {
		t.Errorf("LastOf v2 since +36ms = %v, want none for either client", got)
	}
}
