package xds

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/internal/untrusted"
)

// tracker follows every ADS stream through the server's callbacks: what
// each node subscribes to, which response it ACKed or NACKed, and which
// generations (snapshots) were published, so it can answer which plan
// versions a node has applied. It implements serverv3.Callbacks.
//
// One mutex guards everything. Callbacks do constant work per stream plus
// one re-evaluation of that stream per active Wait, so the lock is held
// briefly even with thousands of streams.
type tracker struct {
	mu sync.Mutex
	// kept is how many generations each snapshot's history remembers.
	kept int
	now  func() time.Time
	// sleep waits out a NACK backoff, outside mu.
	sleep   func(time.Duration)
	metrics *metrics

	// hist is each snapshot's (group and view) history; seq numbers
	// the publishes of all of them.
	hist    map[snapKey]*history
	seq     uint64
	streams map[int64]*stream
	// nacking counts the streams' resource types whose last answer was a
	// NACK: while it is zero no plan can be rejected, which spares a
	// publish from asking about every plan (Server.keepable).
	nacking int
	watches map[*watch]struct{}
	// changed is closed at the next change of what Status answers (see
	// statusChanged); nil while nobody waits for one, so the ACK path
	// allocates nothing when no one listens.
	changed chan struct{}
	// scratch is judge's reusable buffer; judge runs under mu.
	scratch []bool
	// authn verifies each stream as it opens (Options.Authenticator).
	authn Authenticator
	// authz gives each identified stream its view; views counts the
	// identified streams of each. viewOpened and viewClosed, called
	// outside mu, tell the server a view got its first stream or lost
	// its last.
	authz      Authorization
	views      map[string]int
	viewOpened func(key string, sc scope)
	viewClosed func(key string)
	// served is the node each snapshot's streams carry to the caches.
	served map[snapKey]*corev3.Node
	// names are the published resources' names, each the one copy every
	// stream's requests share (intern.go); namesAdded counts those added
	// since the table was last rebuilt.
	names      map[string]string
	namesAdded int
	// sets are the SotW subscriptions streams share (nameset.go).
	sets nameSets
}

// stream is one ADS stream: one node as far as counting goes.
type stream struct {
	id    int64
	delta bool
	// identity is who the stream proved to be when it opened (zero on an
	// unauthenticated server); the node id must belong to it.
	identity Identity
	node     *corev3.Node
	group    Group
	// view is the key of what the identity may see; served is the node
	// of its group and view (servedNode), which every request carries to
	// the caches instead of the client's.
	view   string
	served *corev3.Node
	// known is false until the first request names the node; until then
	// the stream counts nowhere.
	known bool
	kinds [numKinds]*kindState
}

// kindState is a stream's state for one resource type.
type kindState struct {
	// Subscription. names is replaced, never mutated, so an ACK can keep a
	// reference to the set it was given for.
	wildcard  bool
	names     map[string]bool
	everNamed bool
	// set holds names while they are a SotW subscription shared with
	// other streams (nameset.go); nil for a delta stream's own.
	set *nameSet

	// SotW: the version last ACKed, its content, and the subscription at
	// that moment.
	ackVersion  string
	ackContent  content
	ackWildcard bool
	ackNames    map[string]bool
	// Delta: resource name → hash last ACKed (or reported on reconnect).
	deltaAcked map[string]string

	// sent are responses not yet answered, oldest first.
	sent []sentResponse
	nack *nackState
	// nacksInRow counts NACKs since the last ACK, for the backoff.
	nacksInRow int
	// silentSince is when the oldest response the node has not answered
	// was sent; zero when it answered everything (stale.go).
	silentSince time.Time
}

// A client that rejects what it is sent is answered ever more slowly: a
// NACK makes the server send the current version again, and a client that
// rejects every version would otherwise get a response per round trip. The
// first NACK in a row is answered at once (it may have been transient);
// from the second on the stream's next request is processed after a delay
// doubling from nackBackoffBase up to nackBackoffMax. An ACK resets it.
// The delay holds that stream only, so a fixed plan reaches the client
// within nackBackoffMax at worst.
const (
	nackBackoffBase = 250 * time.Millisecond
	nackBackoffMax  = 10 * time.Second
)

func nackBackoff(inRow int) time.Duration {
	if inRow < 2 {
		return 0
	}
	d := nackBackoffBase
	for i := 2; i < inRow && d < nackBackoffMax; i++ {
		d *= 2
	}
	return min(d, nackBackoffMax)
}

// maxUnanswered bounds a stream's memory of responses it has not answered;
// clients answer in order, so older ones will never be answered.
const maxUnanswered = 4

type sentResponse struct {
	nonce   string
	version string
	at      time.Time
	// Delta only: the resources sent (name → hash) and those removed.
	resources map[string]string
	removed   []string
}

type nackState struct {
	version string
	// The content that was rejected: name → hash for delta, the type
	// version's content for state of the world.
	hashes  map[string]string
	content content
	message string
	at      time.Time
}

// hash is the rejected content's hash of the named resource.
func (n *nackState) hash(name string) (string, bool) {
	if n.hashes != nil {
		h, ok := n.hashes[name]
		return h, ok
	}
	return n.content.hash(name)
}

// each calls f with every resource of the rejected content.
func (n *nackState) each(f func(name string) bool) {
	if n.hashes != nil {
		for name := range n.hashes {
			if !f(name) {
				return
			}
		}
		return
	}
	n.content.each(func(name, _ string) bool { return f(name) })
}

// setNack records a stream type's last answer, keeping nacking's count.
func (t *tracker) setNack(ks *kindState, n *nackState) {
	switch {
	case ks.nack == nil && n != nil:
		t.nacking++
	case ks.nack != nil && n == nil:
		t.nacking--
	}
	ks.nack = n
}

func newTracker(kept int, m *metrics, now func() time.Time) *tracker {
	return &tracker{
		kept:    kept,
		now:     now,
		metrics: m,
		hist:    map[snapKey]*history{},
		served:  map[snapKey]*corev3.Node{},
		views:   map[string]int{},
		streams: map[int64]*stream{},
		watches: map[*watch]struct{}{},
		sleep:   time.Sleep,
	}
}

var _ serverv3.Callbacks = (*tracker)(nil)

// publish records a new generation of a snapshot, forgetting what only
// generations beyond the history bound held, and re-evaluates the
// waiters.
func (t *tracker) publish(gen *generation) {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := gen.key()
	h := t.hist[key]
	if h == nil {
		h = newHistory(t.kept)
		t.hist[key] = h
	}
	t.seq++
	h.add(gen, t.seq)
	t.internNames(gen)
	for w := range t.watches {
		w.rebuild(t)
	}
	t.notifyLocked()
}

// statusChanged returns a channel closed at the next change that may move
// a Status: a published generation, or a stream that identifies itself,
// subscribes, ACKs, NACKs or closes. Everyone asking before that change
// gets the same channel.
func (t *tracker) statusChanged() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.changed == nil {
		t.changed = make(chan struct{})
	}
	return t.changed
}

// notifyLocked announces a change to statusChanged's listeners.
func (t *tracker) notifyLocked() {
	if t.changed != nil {
		close(t.changed)
		t.changed = nil
	}
}

// idle reports whether no stream is open, identified or not.
func (t *tracker) idle() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.streams) == 0
}

// anyNack reports whether some stream's last answer for a type is a
// NACK: if none is, no plan is rejected.
func (t *tracker) anyNack() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nacking > 0
}

// latest is a snapshot's current generation, or nil.
func (t *tracker) latest(key snapKey) *generation {
	if h := t.hist[key]; h != nil {
		return h.latest
	}
	return nil
}

// OnStreamOpen implements serverv3.Callbacks.
func (t *tracker) OnStreamOpen(ctx context.Context, id int64, typeURL string) error {
	return t.open(ctx, id, typeURL, false)
}

// OnDeltaStreamOpen implements serverv3.Callbacks.
func (t *tracker) OnDeltaStreamOpen(ctx context.Context, id int64, typeURL string) error {
	return t.open(ctx, id, typeURL, true)
}

// errNotADS refuses single-type streams: responses and ACKs are counted
// per stream, which only works when one stream carries all types.
var errNotADS = errors.New("sluice serves aggregated discovery (ADS) only")

func (t *tracker) open(ctx context.Context, id int64, typeURL string, delta bool) error {
	if typeURL != "" {
		return errNotADS
	}
	identity, err := authenticate(ctx, t.authn)
	if err != nil {
		t.metrics.refused.WithLabelValues(refusalReason(err)).Inc()
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	// SotW and delta number their streams independently; delta streams
	// take negative ids so the two never collide.
	if delta {
		id = -id
	}
	t.streams[id] = &stream{id: id, delta: delta, identity: identity}
	return nil
}

// OnStreamClosed implements serverv3.Callbacks.
func (t *tracker) OnStreamClosed(id int64, _ *corev3.Node) { t.close(id) }

// OnDeltaStreamClosed implements serverv3.Callbacks.
func (t *tracker) OnDeltaStreamClosed(id int64, _ *corev3.Node) { t.close(-id) }

func (t *tracker) close(id int64) {
	if closed := t.closeLocked(id); closed != "" && t.viewClosed != nil {
		t.viewClosed(closed)
	}
}

// closeLocked forgets a stream; it returns the stream's view if it was
// the view's last.
func (t *tracker) closeLocked(id int64) (lastOfView string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.streams[id]
	if !ok {
		return ""
	}
	delete(t.streams, id)
	for _, ks := range s.kinds {
		if ks != nil {
			t.setNack(ks, nil)
		}
	}
	if s.known {
		t.metrics.connectedBy[s.group].Dec()
		t.notifyLocked()
		if t.views[s.view]--; t.views[s.view] <= 0 {
			delete(t.views, s.view)
			lastOfView = s.view
		}
	}
	for w := range t.watches {
		w.forget(s.id)
	}
	return lastOfView
}

// identify records the node from the first request that names it, if
// the stream's identity may claim it, and gives the stream its view; an
// error closes the stream. A later request naming another node id is
// refused too: the node a stream counts as is fixed. opened is set when
// the stream is its view's first.
func (t *tracker) identify(s *stream, node *corev3.Node) (opened *scope, err error) {
	if node == nil {
		return nil, nil
	}
	if s.known {
		if node != s.node && node != s.served && node.GetId() != s.node.GetId() {
			t.metrics.refused.WithLabelValues(ReasonMismatch).Inc()
			return nil, status.Errorf(codes.PermissionDenied, "xds: the stream is node %q; a request may not name another node", s.node.GetId())
		}
		return nil, nil
	}
	if err := checkNode(s.identity, node.GetId()); err != nil {
		t.metrics.refused.WithLabelValues(ReasonMismatch).Inc()
		return nil, err
	}
	sc := t.authz.scopeOf(s.identity)
	s.node, s.group, s.known = node, GroupOf(node), true
	s.view = sc.key()
	if s.served = t.served[s.key()]; s.served == nil {
		s.served = servedNode(s.group, s.view)
		t.served[s.key()] = s.served
	}
	t.metrics.connectedBy[s.group].Inc()
	if t.views[s.view]++; t.views[s.view] == 1 {
		opened = &sc
	}
	trimNode(node)
	return opened, nil
}

// trimNode drops, in place, all of an identified client's node but what
// the tracker reads from then on (id and cluster): go-control-plane keeps
// the node of a stream's first request for the stream's life, and the
// caches get the view's node (served) instead, so the rest is never read
// again. An Envoy's node lists its build, extensions and metadata,
// kilobytes per stream.
func trimNode(n *corev3.Node) {
	id, cluster := n.GetId(), n.GetCluster()
	proto.Reset(n)
	n.Id, n.Cluster = id, cluster
}

// key is the snapshot the stream is served from.
func (s *stream) key() snapKey { return snapKey{s.group, s.view} }

// opened tells the server about a view's first stream, outside mu and
// before the stream's request reaches the cache, so its snapshot is there
// when the watch is made.
func (t *tracker) opened(s *stream, sc *scope) {
	if sc != nil && t.viewOpened != nil {
		t.viewOpened(s.view, *sc)
	}
}

// viewInUse reports whether any identified stream has the view.
func (t *tracker) viewInUse(view string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.views[view] > 0
}

// dropView forgets a view's generations once its last stream is gone.
func (t *tracker) dropView(view string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, g := range groups {
		delete(t.hist, snapKey{g, view})
		delete(t.served, snapKey{g, view})
	}
}

func (s *stream) kind(k kind) *kindState {
	if s.kinds[k] == nil {
		s.kinds[k] = &kindState{}
	}
	return s.kinds[k]
}

// OnStreamRequest implements serverv3.Callbacks: a SotW request is a
// subscription, and with a known nonce also an ACK or a NACK. After a run
// of NACKs it returns late (nackBackoff), which holds the stream's next
// response back.
func (t *tracker) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	wait, err := t.onStreamRequest(id, req)
	if wait > 0 {
		t.sleep(wait)
	}
	return err
}

func (t *tracker) onStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) (wait time.Duration, err error) {
	t.mu.Lock()
	s, ok := t.streams[id]
	if !ok {
		t.mu.Unlock()
		// Not opened (refused): the caches must not answer it either.
		req.Node = nil
		return 0, nil
	}
	opened, err := t.identify(s, req.GetNode())
	if err == nil {
		wait = t.sotwRequest(s, req)
		// The caches serve the view of the stream's identity, whatever
		// the client wrote in its node.
		req.Node = s.served
	}
	t.mu.Unlock()
	t.opened(s, opened)
	return wait, err
}

// sotwRequest records a SotW request: a subscription, and with a known
// nonce an ACK or a NACK. Caller holds mu.
func (t *tracker) sotwRequest(s *stream, req *discoveryv3.DiscoveryRequest) (wait time.Duration) {
	k, ok := kindOf(req.GetTypeUrl())
	if !ok || !s.known {
		return 0
	}
	ks := s.kind(k)
	sent, answered := ks.take(req.GetResponseNonce())
	if answered {
		t.intern(req, &sent)
	} else {
		t.intern(req, nil)
	}
	ks.subscribeSotW(req.GetResourceNames(), &t.sets)
	if answered {
		if d := req.GetErrorDetail(); d != nil {
			wait = t.rejected(s, k, ks, sent, d.GetMessage())
		} else {
			ks.nacksInRow = 0
			ks.ackVersion, ks.ackWildcard, ks.ackNames = sent.version, ks.wildcard, ks.names
			// The ACK stays readable after the version leaves the
			// history, for the resources that did not change since.
			ks.ackContent = t.contentOf(s.key(), k, sent.version)
			t.setNack(ks, nil)
			t.metrics.ackDelayBy[s.group][k].Observe(t.now().Sub(sent.at).Seconds())
		}
	}
	t.reevaluate(s)
	return wait
}

// subscribeSotW follows go-control-plane's legacy wildcard rule: no names
// means everything until the stream has once named resources; "*" always
// means everything.
func (ks *kindState) subscribeSotW(names []string, sets *nameSets) {
	ks.wildcard = slices.Contains(names, "*") || (len(names) == 0 && !ks.everNamed)
	// Most requests are ACKs naming what the stream already has: the set
	// it has is kept (never mutated, so an ACK's reference stays valid).
	if sameNames(ks.names, names) {
		return
	}
	ks.set = sets.share(names)
	ks.names = ks.set.names
	if len(ks.names) > 0 {
		ks.everNamed = true
	}
}

// sameNames reports whether names, less "*", are the set had.
func sameNames(had map[string]bool, names []string) bool {
	if had == nil {
		return false
	}
	n := 0
	for _, name := range names {
		if name == "*" {
			continue
		}
		if !had[name] {
			return false
		}
		n++
	}
	// A name listed twice counts twice in n: then the sets may still be
	// equal, but a new set costs nothing worse than before.
	return n == len(had)
}

// take removes and returns the unanswered response with this nonce. A
// nonce seen before (a SotW client re-sends its last nonce when it only
// changes its subscription) is not found, so it is not a second ACK.
func (ks *kindState) take(nonce string) (sentResponse, bool) {
	if nonce == "" {
		return sentResponse{}, false
	}
	i := slices.IndexFunc(ks.sent, func(r sentResponse) bool { return r.nonce == nonce })
	if i < 0 {
		return sentResponse{}, false
	}
	r := ks.sent[i]
	// Responses before this one are superseded: the client skips them.
	ks.sent = slices.Delete(ks.sent, 0, i+1)
	// An answer, ACK or NACK, is not silence; responses sent after this
	// one are younger and wait their turn.
	ks.silentSince = time.Time{}
	if len(ks.sent) > 0 {
		ks.silentSince = ks.sent[0].at
	}
	return r, true
}

// maxNackMessage bounds a NACK's error text as the tracker keeps it.
const maxNackMessage = 1024

func (t *tracker) rejected(s *stream, k kind, ks *kindState, sent sentResponse, msg string) time.Duration {
	n := &nackState{version: sent.version, hashes: sent.resources}
	if !s.delta {
		n.hashes, n.content = nil, t.contentOf(s.key(), k, sent.version)
	}
	// The message is the client's: kept bounded and free of control
	// characters, whoever shows it later.
	n.message, n.at = untrusted.Text(msg, maxNackMessage), t.now()
	t.setNack(ks, n)
	t.metrics.nacksBy[s.group][k].Inc()
	ks.nacksInRow++
	return nackBackoff(ks.nacksInRow)
}

// OnStreamResponse implements serverv3.Callbacks.
func (t *tracker) OnStreamResponse(_ context.Context, id int64, req *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	t.sent(id, req.GetTypeUrl(), sentResponse{nonce: resp.GetNonce(), version: resp.GetVersionInfo()})
}

// OnStreamDeltaResponse implements serverv3.Callbacks.
func (t *tracker) OnStreamDeltaResponse(id int64, req *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	r := sentResponse{
		nonce:     resp.GetNonce(),
		version:   resp.GetSystemVersionInfo(),
		resources: make(map[string]string, len(resp.GetResources())),
		removed:   resp.GetRemovedResources(),
	}
	for _, res := range resp.GetResources() {
		r.resources[res.GetName()] = res.GetVersion()
	}
	t.sent(-id, req.GetTypeUrl(), r)
}

func (t *tracker) sent(id int64, typeURL string, r sentResponse) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.streams[id]
	k, known := kindOf(typeURL)
	if !ok || !known || !s.known {
		return
	}
	r.at = t.now()
	ks := s.kind(k)
	if ks.silentSince.IsZero() {
		ks.silentSince = r.at
	}
	ks.sent = append(ks.sent, r)
	if len(ks.sent) > maxUnanswered {
		ks.sent = slices.Delete(ks.sent, 0, len(ks.sent)-maxUnanswered)
	}
	t.metrics.pushesBy[s.group][k].Inc()
}

// OnStreamDeltaRequest implements serverv3.Callbacks; NACKs back off as
// for state of the world.
func (t *tracker) OnStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	wait, err := t.onStreamDeltaRequest(id, req)
	if wait > 0 {
		t.sleep(wait)
	}
	return err
}

func (t *tracker) onStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) (wait time.Duration, err error) {
	t.mu.Lock()
	s, ok := t.streams[-id]
	if !ok {
		t.mu.Unlock()
		req.Node = nil
		return 0, nil
	}
	opened, err := t.identify(s, req.GetNode())
	if err == nil {
		wait = t.deltaRequest(s, req)
		req.Node = s.served
	}
	t.mu.Unlock()
	t.opened(s, opened)
	return wait, err
}

// deltaRequest records a delta request. Caller holds mu.
func (t *tracker) deltaRequest(s *stream, req *discoveryv3.DeltaDiscoveryRequest) (wait time.Duration) {
	k, ok := kindOf(req.GetTypeUrl())
	if !ok || !s.known {
		return 0
	}
	first := s.kinds[k] == nil
	ks := s.kind(k)
	ks.subscribeDelta(first, req.GetResourceNamesSubscribe(), req.GetResourceNamesUnsubscribe())
	// On a new stream the client says what it already has; the server
	// will not resend those, so they count as applied.
	for n, v := range req.GetInitialResourceVersions() {
		ks.deltaAcked[n] = v
	}
	if sent, ok := ks.take(req.GetResponseNonce()); ok {
		if d := req.GetErrorDetail(); d != nil {
			wait = t.rejected(s, k, ks, sent, d.GetMessage())
		} else {
			ks.nacksInRow = 0
			for n, h := range sent.resources {
				ks.deltaAcked[n] = h
			}
			for _, n := range sent.removed {
				delete(ks.deltaAcked, n)
			}
			ks.ackVersion = sent.version
			t.setNack(ks, nil)
			t.metrics.ackDelayBy[s.group][k].Observe(t.now().Sub(sent.at).Seconds())
		}
	}
	t.reevaluate(s)
	return wait
}

// subscribeDelta applies a delta subscription change: the first request
// with no names is a legacy wildcard, "*" subscribes to everything
// explicitly and unsubscribing "*" ends it.
func (ks *kindState) subscribeDelta(first bool, sub, unsub []string) {
	if ks.deltaAcked == nil {
		ks.deltaAcked = map[string]string{}
	}
	if first && len(sub) == 0 {
		ks.wildcard = true
	}
	// An ACK changes no subscription: the set is kept as it is.
	if len(sub) == 0 && len(unsub) == 0 && ks.names != nil {
		return
	}
	m := make(map[string]bool, len(ks.names)+len(sub))
	for n := range ks.names {
		m[n] = true
	}
	for _, n := range sub {
		if n == "*" {
			ks.wildcard = true
			continue
		}
		m[n] = true
	}
	for _, n := range unsub {
		if n == "*" {
			ks.wildcard = false
			continue
		}
		delete(m, n)
		delete(ks.deltaAcked, n)
	}
	ks.names, ks.set = m, nil
}

// OnFetchRequest implements serverv3.Callbacks; REST is not served.
func (t *tracker) OnFetchRequest(context.Context, *discoveryv3.DiscoveryRequest) error {
	return errNotADS
}

// OnFetchResponse implements serverv3.Callbacks.
func (t *tracker) OnFetchResponse(*discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {}

// subscribes reports whether the stream asked for the named resource.
func (ks *kindState) subscribes(name string) bool {
	return ks != nil && (ks.wildcard || ks.names[name])
}

// acked returns the hash of the named resource as the stream last ACKed
// it.
func (t *tracker) acked(s *stream, k kind, name string) (string, bool) {
	ks := s.kinds[k]
	if ks == nil {
		return "", false
	}
	if s.delta {
		h, ok := ks.deltaAcked[name]
		return h, ok
	}
	if !(ks.ackWildcard || ks.ackNames[name]) {
		return "", false
	}
	return ks.ackContent.hash(name)
}

// reevaluate updates every waiter's view of one stream, and tells
// statusChanged's listeners that it may have moved.
func (t *tracker) reevaluate(s *stream) {
	for w := range t.watches {
		w.update(t, s)
	}
	t.notifyLocked()
}
