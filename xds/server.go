package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	gcplog "github.com/envoyproxy/go-control-plane/pkg/log"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/rollout/plan"
)

// Options configure a Server.
type Options struct {
	// Address to listen on for ListenAndServe; default ":18000".
	Address string
	// TLS, when set, serves TLS (mutual TLS if it names a client CA).
	TLS *TLSFiles
	// Authenticator, when set, verifies every stream as it opens and
	// refuses those it cannot (see FirstOf, MutualTLS, BearerToken). When
	// nil, a verified client certificate binds the stream and a stream
	// without one is unauthenticated.
	Authenticator Authenticator
	// Endpoints is where revisions run; default an empty Static source.
	Endpoints EndpointSource
	// Translate holds the translator's options.
	Translate TranslateOptions
	// Registerer receives the server's metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// Logger; default slog.Default().
	Logger *slog.Logger
	// History is how many generations per group the tracker remembers to
	// recognise a version a node ACKed; default 64.
	History int
	// Authorization says which services each verified identity sees
	// (authz.go); the zero value is the default: its own namespace.
	Authorization Authorization
	// StageWithoutClients makes a publish with no stream open check the
	// plans (each changed plan translated and validated on its own, and
	// the set for conflicts) and keep them, without building or setting
	// any snapshot; the first node to identify gets them published whole
	// before its first watch reaches the cache. A controller whose plans
	// are acknowledged by another data plane (the Istio writer) while no
	// proxyless client is connected then pays for translating the
	// complete set only once someone can read it, instead of at every
	// plan change. While staged, Status answers for the staged set: its
	// versions are Published and Current. Off by default: Versions and
	// the metrics of pushes show only what was built.
	StageWithoutClients bool
}

// Server is Sluice's xDS control plane: one ADS endpoint, state of the
// world and delta, serving both client groups.
type Server struct {
	opts    Options
	log     *slog.Logger
	tracker *tracker
	metrics *metrics
	tls     *tlsReloader
	caches  map[Group]cachev3.SnapshotCache
	cache   cachev3.Cache
	codec   *responseCodec

	// pub serialises publishes; the fields below it are the last
	// published state.
	pub       sync.Mutex
	published bool
	plans     []plan.Plan
	gens      map[snapKey]*generation
	// views are the scopes of connected nodes other than everything
	// (authz_view.go); bases the last publish's complete translation per
	// group, from which a new view is cut.
	views map[string]scope
	bases map[Group]*base
	// served is what the last publish gave each service, which the next
	// one keeps clusters from (retain.go).
	served map[string]*served
	// frags are the last publish's translation of each plan, which the
	// next one reuses for the plans that did not change (fragment.go);
	// checked the hash of each resource it served, by the resource, so
	// that reused ones are not validated and hashed again.
	frags   map[string]*fragment
	checked map[types.Resource]string
	// staged is set while plans holds a set checked but not yet
	// published (Options.StageWithoutClients); stagedOwners is then the
	// plan version of each of its owners (services and hosts), which
	// Status reads without pub, and nil otherwise.
	staged       bool
	stagedOwners atomic.Pointer[map[ownerKey]string]
	// hook, for tests only, edits the translated resources before they
	// are versioned and validated, to build what the translator never
	// would (an invalid resource a client must NACK).
	hook func(Group, *GroupResources)
}

// New builds a server; nothing listens until Serve.
func New(opts Options) (*Server, error) {
	if opts.Address == "" {
		opts.Address = ":18000"
	}
	if opts.Endpoints == nil {
		opts.Endpoints = NewStatic()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.History <= 0 {
		opts.History = 64
	}
	if err := opts.Authorization.Check("xds.authorization"); err != nil {
		return nil, fmt.Errorf("xds: %w", err)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("xds: %w", err)
	}
	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		metrics: m,
		tracker: newTracker(opts.History, m, time.Now),
		gens:    map[snapKey]*generation{},
		views:   map[string]scope{},
		codec:   newResponseCodec(),
	}
	s.tracker.authz = opts.Authorization
	s.tracker.viewOpened, s.tracker.viewClosed = s.ensureView, s.releaseView
	s.tracker.authn = opts.Authenticator
	if opts.TLS != nil {
		if s.tls, err = newTLSReloader(*opts.TLS, opts.Logger); err != nil {
			return nil, fmt.Errorf("xds: %w", err)
		}
	}
	logger := gcpLogger(opts.Logger)
	s.caches = map[Group]cachev3.SnapshotCache{
		// ADS mode orders responses (clusters and endpoints before the
		// listeners and routes that use them) and waits until Envoy asks
		// for every route and endpoint resource by name, as Envoy does.
		GroupEnvoy: cachev3.NewSnapshotCache(true, viewHash{}, logger),
		// gRPC asks only for the hosts it dials, a subset of the
		// snapshot, which ADS mode would never answer.
		GroupGRPC: cachev3.NewSnapshotCache(false, viewHash{}, logger),
	}
	caches := map[string]cachev3.Cache{}
	for g, c := range s.caches {
		caches[string(g)] = c
	}
	s.cache = &cachev3.MuxCache{
		Classify:      func(r *cachev3.Request) string { return string(GroupOf(r.GetNode())) },
		ClassifyDelta: func(r *cachev3.DeltaRequest) string { return string(GroupOf(r.GetNode())) },
		Caches:        caches,
	}
	return s, nil
}

// ListenAndServe listens on Options.Address and serves until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context) error {
	lis, err := (&net.ListenConfig{}).Listen(ctx, "tcp", s.opts.Address)
	if err != nil {
		return fmt.Errorf("xds: listen: %w", err)
	}
	return s.Serve(ctx, lis)
}

// Serve serves ADS on lis until ctx ends, and re-publishes the current
// plans whenever the endpoint source reports a change. It returns nil
// after ctx ends.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	gopts := []grpc.ServerOption{
		// Find clients that vanished without closing their stream, so they
		// stop counting as subscribed.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// Streams sent the same resources share one encoding of them
		// (sharedresp.go).
		grpc.ForceServerCodecV2(s.codec),
	}
	if s.tls != nil {
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(s.tls.serverConfig())),
			// A TLS connection keeps the record it decrypts in its own
			// buffer, which gRPC's 32 KiB read buffer would copy again and
			// hold for the connection's life (on plaintext gRPC lends that
			// buffer from a pool instead). Without it a connection holds
			// about 30 KiB less, at the same CPU and push latency
			// (docs/performance.md, "2. xDS, same clients").
			grpc.ReadBufferSize(0))
	}
	gs := grpc.NewServer(gopts...)
	xs := serverv3.NewServer(ctx, s.cache, s.tracker, sotw.WithOrderedADS(), sotw.WithLogger(gcpLogger(s.log)))
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, xs)

	done := make(chan struct{})
	defer close(done)
	go s.watchEndpoints(ctx, done)
	go func() {
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		// The xDS server ends its streams when ctx ends, so a graceful
		// stop finishes quickly; the timer covers a stuck client.
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			gs.Stop()
		}
	}()
	s.log.Info("xds: serving", "addr", lis.Addr().String(), "tls", s.tls != nil)
	if s.opts.Authenticator == nil && (s.opts.TLS == nil || s.opts.TLS.ClientCAFile == "") {
		s.log.Warn("xds: streams need no verified identity, so each sees every service and its ACKs and NACKs count for every service; serve mutual TLS or set an authenticator to restrict nodes to what they may see")
	}
	err := gs.Serve(lis)
	if ctx.Err() != nil || errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("xds: serve: %w", err)
	}
	return nil
}

func (s *Server) watchEndpoints(ctx context.Context, done <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-s.opts.Endpoints.Changed():
		}
		s.pub.Lock()
		var err error
		// Before the first publish there is nothing to re-translate.
		if s.published {
			err = s.publishLocked(ctx, s.plans)
		}
		s.pub.Unlock()
		if err != nil {
			s.log.Error("xds: endpoints changed, republish failed; previous snapshot kept", "err", err)
		}
	}
}

// Publish makes plans the complete routing of the data plane: every
// service without a plan here is removed. It translates, versions,
// validates and checks consistency for both groups before setting either
// snapshot; on any error nothing changes and the error is returned. A
// publish that changes nothing pushes nothing.
func (s *Server) Publish(ctx context.Context, plans []plan.Plan) error {
	s.pub.Lock()
	defer s.pub.Unlock()
	return s.publishLocked(ctx, plans)
}

func (s *Server) publishLocked(ctx context.Context, plans []plan.Plan) error {
	fail := func(err error) error {
		s.metrics.publishes.WithLabelValues("error").Inc()
		return fmt.Errorf("xds publish: %w", err)
	}
	if s.opts.StageWithoutClients && s.hook == nil && s.tracker.idle() {
		if err := s.stage(plans); err != nil {
			return fail(err)
		}
		return nil
	}
	// A test's hook edits resources in place: nothing is reused then, and
	// it edits copies (hooked).
	frags, prevChecked := s.frags, s.checked
	if s.hook != nil {
		frags, prevChecked = nil, nil
	}
	res, err := translate(plans, s.opts.Endpoints, s.opts.Translate, s.keepable(plans), frags)
	if err != nil {
		return fail(err)
	}
	// Every group's translation is validated and hashed once; the view of
	// everything and each connected node's view are cut from it, and all
	// of them are built before any is set.
	type built struct {
		key  snapKey
		snap *cachev3.Snapshot
		gen  *generation
	}
	var out []built
	services := ownerServices(plans)
	bases := map[Group]*base{}
	views := slices.Sorted(maps.Keys(s.views))
	checked := make(map[types.Resource]string, len(s.checked))
	for _, g := range groups {
		if s.hook != nil {
			hooked(res.Group(g), func(r *GroupResources) { s.hook(g, r) })
		}
		b, err := buildBase(g, res.Group(g), services, prevChecked, checked)
		if err != nil {
			return fail(err)
		}
		bases[g] = b
		snap, gen, err := b.view(allView, allScope)
		if err != nil {
			return fail(err)
		}
		out = append(out, built{snapKey{g, allView}, snap, gen})
		for _, v := range views {
			snap, gen, err := b.view(v, s.views[v])
			if err != nil {
				return fail(fmt.Errorf("view %s: %w", v, err))
			}
			out = append(out, built{snapKey{g, v}, snap, gen})
		}
	}
	s.plans, s.published, s.bases, s.served, s.frags, s.checked = slices.Clone(plans), true, bases, res.served, res.frags, checked
	s.staged = false
	s.stagedOwners.Store(nil)
	changed := false
	// The snapshot is set even if ctx is cancelled half-way through
	// answering watches; a watch left unanswered would leave its node on
	// the old routing until the next change.
	setCtx := context.WithoutCancel(ctx)
	for _, o := range out {
		if o.gen.sameAs(s.gens[o.key]) {
			continue
		}
		if !changed {
			// Records of what this publish no longer serves go at the
			// next one.
			s.codec.records.rotate()
		}
		changed = true
		if err := s.setSnapshot(setCtx, o.key, o.snap, o.gen); err != nil {
			return fail(fmt.Errorf("set %s snapshot of view %s: %w", o.key.group, o.key.view, err))
		}
	}
	if changed {
		s.metrics.publishes.WithLabelValues("pushed").Inc()
	} else {
		s.metrics.publishes.WithLabelValues("unchanged").Inc()
	}
	return nil
}

// hooked runs a test's hook on copies of a group's resources, which the
// groups, the last publish and its fragments otherwise share.
func hooked(r *GroupResources, hook func(*GroupResources)) {
	r.Listeners = cloneAll(r.Listeners)
	r.Routes = cloneAll(r.Routes)
	r.Clusters = cloneAll(r.Clusters)
	r.Endpoints = cloneAll(r.Endpoints)
	hook(r)
}

func cloneAll[M proto.Message](ms []M) []M {
	out := make([]M, len(ms))
	for i, m := range ms {
		out[i] = proto.Clone(m).(M)
	}
	return out
}

// keepable is what the last publish served the services of plans, less
// those whose plan a node rejected: clusters are kept for the clients
// that applied the plan before (retain.go), and a client that could not
// apply it must not be sent its clusters again, or it would reject the
// next plan too.
//
// Asking about every plan on every publish made a wave of N plan changes
// cost O(N²); the tracker knows at once whether any node's last answer is
// a NACK, and only then are the plans asked about, all in one pass.
func (s *Server) keepable(plans []plan.Plan) map[string]*served {
	out := make(map[string]*served, len(plans))
	asks := map[string]string{}
	for i := range plans {
		key := PlanKey(&plans[i])
		if sv := s.served[key]; sv != nil {
			out[key] = sv
			asks[key] = sv.version
		}
	}
	if len(asks) == 0 || !s.tracker.anyNack() {
		return out
	}
	for key, st := range s.Statuses(asks) {
		if len(st.Rejected) > 0 {
			delete(out, key)
		}
	}
	return out
}

// Status answers for one plan version of a service (ServiceKey).
func (s *Server) Status(service, planVersion string) Status {
	owner := serviceOwner(service)
	st := s.tracker.statusOf(owner, planVersion)
	s.asStaged(&st, owner)
	st.Service = service
	return st
}

// asStaged answers for the staged set while there is one: a version it
// holds is published and current (it is what the first node will be
// served), any other is not current.
func (s *Server) asStaged(st *Status, owner ownerKey) {
	m := s.stagedOwners.Load()
	if m == nil {
		return
	}
	v, ok := (*m)[owner]
	st.Current = ok && v == st.PlanVersion
	st.Published = st.Published || st.Current
}

// HostStatus answers for one plan version of the service routing host,
// counting only the nodes that subscribe to that host.
func (s *Server) HostStatus(host, planVersion string) Status {
	owner := hostOwner(host)
	st := s.tracker.statusOf(owner, planVersion)
	s.asStaged(&st, owner)
	st.Host = host
	return st
}

// Wait blocks until every node subscribed to the service has applied
// planVersion (nil), a node rejected it (*RejectedError), no node is
// subscribed (ErrNoClients, at once if none is when Wait starts), another
// version was published (ErrSuperseded), or ctx ends (its error, wrapped).
// The returned Status is the state at that moment.
func (s *Server) Wait(ctx context.Context, service, planVersion string) (Status, error) {
	st, err := s.tracker.wait(ctx, serviceOwner(service), planVersion)
	st.Service = service
	if err != nil {
		return st, fmt.Errorf("xds wait for %s version %s: %w", service, planVersion, err)
	}
	return st, nil
}

// WaitHost is Wait for the nodes subscribed to one host.
func (s *Server) WaitHost(ctx context.Context, host, planVersion string) (Status, error) {
	st, err := s.tracker.wait(ctx, hostOwner(host), planVersion)
	st.Host = host
	if err != nil {
		return st, fmt.Errorf("xds wait for host %s version %s: %w", host, planVersion, err)
	}
	return st, nil
}

// StatusChanged returns a channel that is closed at the next change that
// may move any Status: a publish that changed a snapshot, or a node that
// connects, subscribes, ACKs, NACKs or disconnects. Take the channel
// before reading Status, and ask again once it is closed: then no change
// goes unseen. Many changes may close one channel; it says "look again",
// not what changed.
func (s *Server) StatusChanged() <-chan struct{} { return s.tracker.statusChanged() }

// Idle reports whether no stream is open: then every Status is one
// without clients, and asking for them can be skipped.
func (s *Server) Idle() bool { return s.tracker.idle() }

// Nodes lists the connected nodes and what each subscribed to and applied.
func (s *Server) Nodes() []NodeStatus { return s.tracker.nodes() }

// Versions returns the current version of each resource type (by type
// URL) in a group's snapshot; empty before the first publish.
func (s *Server) Versions(g Group) map[string]string {
	s.pub.Lock()
	defer s.pub.Unlock()
	out := map[string]string{}
	if gen := s.gens[snapKey{g, allView}]; gen != nil {
		for k := range numKinds {
			out[kindURL[k]] = gen.versions[k]
		}
	}
	return out
}

// gcpLogger routes go-control-plane's logs to slog. Its warnings are
// normal protocol events (an ADS request naming fewer resources than the
// snapshot holds is answered later), so only errors are above debug.
func gcpLogger(l *slog.Logger) gcplog.Logger {
	debug := func(format string, args ...any) {
		// Formatting costs more than the call itself on the push path
		// (once per watch); skip it unless someone reads debug logs.
		if l.Enabled(context.Background(), slog.LevelDebug) {
			l.Debug(fmt.Sprintf("go-control-plane: "+format, args...))
		}
	}
	return gcplog.LoggerFuncs{
		DebugFunc: debug,
		InfoFunc:  debug,
		WarnFunc:  debug,
		ErrorFunc: func(format string, args ...any) { l.Error(fmt.Sprintf("go-control-plane: "+format, args...)) },
	}
}
