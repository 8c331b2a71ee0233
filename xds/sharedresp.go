package xds

import (
	"fmt"
	"sync"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// responseCodec is the ADS server's gRPC codec. It encodes a
// state-of-the-world response with its resources shared between every
// stream that is sent the same resource, instead of a copy per stream.
//
// go-control-plane's snapshot cache marshals every resource again for
// every stream it answers, and gRPC's proto codec copies the response
// once more into a buffer that the stream holds until the client has read
// it. When 1,000 clients connect at once (a fleet restart) or a large
// route configuration changes, every stream holds its own copies until
// its client catches up: at 100 services, about 93 KiB per client at
// connect, twice over (docs/performance.md, "2. xDS, same clients"). Here
// a resource's encoding is kept once, in records, and the stream's buffer
// only points at it; the stream's own marshalled copy is garbage as soon
// as it is encoded. Everything else (requests, delta responses, any other
// message) goes through gRPC's proto codec unchanged.
type responseCodec struct {
	proto   encoding.CodecV2
	records *records
}

func newResponseCodec() *responseCodec {
	return &responseCodec{proto: encoding.GetCodecV2(grpcproto.Name), records: newRecords()}
}

// Name is the proto codec's: clients negotiate nothing new.
func (c *responseCodec) Name() string { return grpcproto.Name }

func (c *responseCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return c.proto.Unmarshal(data, v)
}

func (c *responseCodec) Marshal(v any) (mem.BufferSlice, error) {
	r, ok := v.(*discoveryv3.DiscoveryResponse)
	if !ok || len(r.GetResources()) == 0 || !plainAnys(r.GetResources()) {
		return c.proto.Marshal(v)
	}
	head, err := marshalHead(r)
	if err != nil {
		return nil, err
	}
	out := make(mem.BufferSlice, 0, 1+len(r.Resources))
	out = append(out, mem.SliceBuffer(head))
	return c.records.appendShared(out, r.Resources), nil
}

// plainAnys tells whether every resource is an Any with nothing but its
// two fields, which is all a record encodes.
func plainAnys(rs []*anypb.Any) bool {
	for _, a := range rs {
		if a == nil || len(a.ProtoReflect().GetUnknown()) > 0 {
			return false
		}
	}
	return true
}

// marshalHead encodes every field of r but its resources. Protobuf lets
// fields come in any order, and a repeated field's elements keep theirs,
// so the head followed by the resource records decodes to r.
func marshalHead(r *discoveryv3.DiscoveryResponse) ([]byte, error) {
	head := &discoveryv3.DiscoveryResponse{}
	hm, resources := head.ProtoReflect(), r.ProtoReflect().Descriptor().Fields().ByNumber(responseResourcesField)
	r.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd != resources {
			hm.Set(fd, v)
		}
		return true
	})
	hm.SetUnknown(r.ProtoReflect().GetUnknown())
	b, err := proto.Marshal(head)
	if err != nil {
		return nil, fmt.Errorf("xds: encoding a response: %w", err)
	}
	return b, nil
}

// responseResourcesField is DiscoveryResponse's resources field number.
const responseResourcesField = 2

// records are the encodings of the resources sent lately, as they appear
// in a response (field tag, length, and the Any), by type URL and the
// resource's own encoding. The content is the key, so a stream is only
// ever pointed at bytes equal to its own; every record comes from a
// response the server built, so nothing a client sends grows the table.
//
// Two generations bound it: rotate, at every publish that changes
// something, makes the current generation the previous one and drops the
// one before. A record found in the previous generation moves to the
// current one, so what the new snapshot still serves stays shared and
// what it no longer serves goes at the next change.
type records struct {
	mu        sync.Mutex
	cur, prev map[string]map[string]mem.Buffer
}

func newRecords() *records {
	return &records{cur: map[string]map[string]mem.Buffer{}}
}

func (t *records) rotate() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.prev, t.cur = t.cur, map[string]map[string]mem.Buffer{}
}

// appendShared appends the record of every resource to out, making the
// ones not kept yet.
func (t *records) appendShared(out mem.BufferSlice, rs []*anypb.Any) mem.BufferSlice {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, a := range rs {
		out = append(out, t.record(a))
	}
	return out
}

// record is a's record; t.mu is held.
func (t *records) record(a *anypb.Any) mem.Buffer {
	cur := t.cur[a.TypeUrl]
	if rec, ok := cur[string(a.Value)]; ok {
		return rec
	}
	if cur == nil {
		cur = map[string]mem.Buffer{}
		t.cur[a.TypeUrl] = cur
	}
	rec, ok := t.prev[a.TypeUrl][string(a.Value)]
	if !ok {
		rec = mem.SliceBuffer(encodeRecord(a))
	}
	cur[string(a.Value)] = rec
	return rec
}

// encodeRecord encodes a as one element of a response's resources, as
// proto would (empty fields left out).
func encodeRecord(a *anypb.Any) []byte {
	anyLen := 0
	if a.TypeUrl != "" {
		anyLen += protowire.SizeTag(1) + protowire.SizeBytes(len(a.TypeUrl))
	}
	if len(a.Value) > 0 {
		anyLen += protowire.SizeTag(2) + protowire.SizeBytes(len(a.Value))
	}
	b := make([]byte, 0, protowire.SizeTag(responseResourcesField)+protowire.SizeBytes(anyLen))
	b = protowire.AppendTag(b, responseResourcesField, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(anyLen))
	if a.TypeUrl != "" {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, a.TypeUrl)
	}
	if len(a.Value) > 0 {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, a.Value)
	}
	return b
}
