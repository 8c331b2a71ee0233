// Package notify sends notifications about rollouts (steps, promotions,
// aborts, rollbacks) to HTTP endpoints: a generic JSON webhook, optionally
// HMAC-signed, and Slack-compatible incoming webhooks.
//
// The engine loop must never wait for a chat service, so Notify only puts
// the notification on a bounded in-memory queue per target and returns. One
// worker per target delivers its queue in order, retrying with exponential
// backoff and jitter (honouring Retry-After), and gives up after a bounded
// number of attempts. When a queue is full the OLDEST notification is
// dropped: the newest says where the rollout is now, which is what a reader
// needs; each drop increments sluice_notify_dropped_total.
//
// This package keeps nothing on disk: what Notify queued is lost in a
// crash. Durable delivery is the caller's, through Send, which reports when
// every target is done with a notification: `sluice run` keeps an outbox in
// its state file, controller mode keeps status.pendingNotifications, and
// both send again, under the same delivery ID, what a crash left unsent.
package notify

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Notification is one thing that happened to a Rollout, with the context a
// reader needs. The runner fills it from an engine.Event and the status the
// event came with (FromEvent).
type Notification struct {
	Namespace string
	Rollout   string
	Type      engine.EventType
	Reason    string
	Message   string
	Time      time.Time
	// StableRevision and CanaryRevision are empty when unknown or none.
	StableRevision string
	CanaryRevision string
	// Step is status.stepDisplay ("2/5"), empty outside a rollout.
	Step         string
	StableWeight int32
	CanaryWeight int32
	// Commit is the Git commit the spec came from, when known.
	Commit string
	// ID, when set, is the delivery ID sent with every attempt to every
	// target (header and payload), so a receiver can drop a notification
	// it has seen: delivery is at least once, and a sender that restarts
	// sends again what it could not confirm. Empty: a fresh random ID.
	ID string
}

// FromEvent builds the notification for an event the engine emitted in the
// step that produced st. st may be nil.
func FromEvent(namespace, name string, ev engine.Event, st *v1alpha1.RolloutStatus, at time.Time) Notification {
	n := Notification{
		Namespace: namespace, Rollout: name,
		Type: ev.Type, Reason: ev.Reason, Message: ev.Message, Time: at,
	}
	if st == nil {
		return n
	}
	n.StableRevision, n.CanaryRevision, n.Step = st.StableRevision, st.CanaryRevision, st.StepDisplay
	n.StableWeight, n.CanaryWeight = st.Traffic.StableWeight, st.Traffic.CanaryWeight
	if st.Git != nil {
		n.Commit = st.Git.Commit
	}
	return n
}

// Kind is the format of a target.
type Kind string

const (
	// KindWebhook posts the generic JSON payload, optionally signed.
	KindWebhook Kind = "webhook"
	// KindSlack posts a Slack incoming-webhook message (text plus a
	// coloured attachment), which Mattermost and Rocket.Chat accept too.
	KindSlack Kind = "slack"
)

// Target is one destination.
type Target struct {
	// Name identifies the target in metrics and logs.
	Name string
	Kind Kind
	URL  string
	// Secret, when set, signs webhook bodies (see SignatureHeader).
	Secret []byte
	// Events selects what is sent; see ParseFilter. Empty means
	// DefaultEvents.
	Events []string
}

// Options tune a Notifier. The zero value is ready to use.
type Options struct {
	// QueueSize bounds each target's queue; zero means 256.
	QueueSize int
	// MaxAttempts bounds the deliveries tried per notification; zero
	// means 5.
	MaxAttempts int
	// BaseBackoff is the wait after the first failure, doubled after each
	// further one up to MaxBackoff; zero means 1s and 1m. The actual wait
	// is drawn from [d/2, d] so that targets failing together do not
	// retry together.
	BaseBackoff time.Duration
	MaxBackoff  time.Duration
	// MaxRetryAfter is the longest Retry-After honoured; a receiver asking
	// for more makes the notification fail at once rather than hold the
	// queue behind it. Zero means 5m.
	MaxRetryAfter time.Duration
	// RequestTimeout bounds each HTTP request; zero means 10s.
	RequestTimeout time.Duration
	// Client sends the requests; nil means a client with a connection pool
	// of its own (see newTransport), which the notifier closes on Close. A
	// client given here should not use http.DefaultTransport either.
	Client *http.Client
	// Registerer receives the metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	Log        logr.Logger
	// Now and Sleep replace the clock in tests. Sleep must return early
	// with an error when ctx ends.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	// NewID makes delivery IDs; nil means random ones.
	NewID func() string
}

func (o *Options) defaults() {
	setDefault(&o.QueueSize, 256)
	setDefault(&o.MaxAttempts, 5)
	setDefault(&o.BaseBackoff, time.Second)
	setDefault(&o.MaxBackoff, time.Minute)
	setDefault(&o.MaxRetryAfter, 5*time.Minute)
	setDefault(&o.RequestTimeout, 10*time.Second)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	if o.NewID == nil {
		o.NewID = rand.Text
	}
}

// newTransport is the connection pool of a notifier given no client: a
// copy of http.DefaultTransport's settings (proxy from the environment,
// dial and TLS timeouts, HTTP/2), but not its pool. Anything in the process
// may call http.DefaultTransport.CloseIdleConnections (every
// httptest.Server.Close does), and the HTTP/1 transport puts a connection
// back in the idle pool just before it hands a body-less answer to the
// caller (readLoop in net/http/transport.go, Go 1.26); closing it in that
// gap fails a request the receiver has already answered with "HTTP/1.x
// transport connection broken: http: CloseIdleConnections called". deliver
// would take that for a network error and post again: a duplicate
// notification, or a second attempt after a 400.
func newTransport() *http.Transport {
	if dt, ok := http.DefaultTransport.(*http.Transport); ok {
		return dt.Clone()
	}
	return &http.Transport{Proxy: http.ProxyFromEnvironment}
}

func setDefault[T int | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Notifier delivers notifications to its targets. It is safe for
// concurrent use.
type Notifier struct {
	opts Options
	// transport is the connection pool of the default client, nil when
	// Options.Client was given: Close releases only what it owns.
	transport *http.Transport
	targets   []*target
	m         *metrics

	// ctx ends when Close gives up; it aborts requests and backoffs.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// aborted counts deliveries cut short by Close.
	aborted atomic.Int64
}

// item is a queued notification.
type item struct {
	n        Notification
	id       string
	enqueued time.Time
	// sent, shared by the targets of one Send, reports back once all of
	// them are finished with the notification; nil for Notify.
	sent *sending
}

// sending counts the targets still holding one notification of Send.
type sending struct {
	left atomic.Int32
	// lost is set when a target dropped it undelivered (full queue,
	// Close) rather than delivering it or giving up on it.
	lost atomic.Bool
	done func(error)
}

// finish is called once per target; the last call reports.
func (s *sending) finish(lost bool) {
	if s == nil {
		return
	}
	if lost {
		s.lost.Store(true)
	}
	if s.left.Add(-1) == 0 {
		if s.lost.Load() {
			s.done(ErrNotSent)
			return
		}
		s.done(nil)
	}
}

// ErrNotSent tells Send's caller that a target dropped the notification
// (its queue was full, or the notifier closed) before trying it: send it
// again later.
var ErrNotSent = errors.New("notification dropped before delivery")

type target struct {
	Target
	filter Filter
	queue  queue
	// wake has room for one signal: "the queue changed".
	wake chan struct{}
}

// New validates the targets, registers the metrics and starts one worker
// per target.
func New(targets []Target, opts Options) (*Notifier, error) {
	opts.defaults()
	var own *http.Transport
	if opts.Client == nil {
		own = newTransport()
		opts.Client = &http.Client{Transport: own}
	}
	var ts []*target
	seen := map[string]bool{}
	for _, tc := range targets {
		t, err := newTarget(tc, opts.QueueSize)
		if err != nil {
			return nil, err
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("notification target %q: defined twice", t.Name)
		}
		seen[t.Name] = true
		ts = append(ts, t)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	nf := &Notifier{opts: opts, transport: own, targets: ts, m: m, ctx: ctx, cancel: cancel}
	for _, t := range ts {
		m.init(t.Name)
		nf.wg.Add(1)
		go nf.run(t)
	}
	return nf, nil
}

func newTarget(tc Target, size int) (*target, error) {
	if tc.Name == "" {
		return nil, errors.New("notification target without a name")
	}
	if tc.Kind != KindWebhook && tc.Kind != KindSlack {
		return nil, fmt.Errorf("notification target %q: kind %q is not webhook or slack", tc.Name, tc.Kind)
	}
	u, err := url.Parse(tc.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The URL itself may hold a credential (Slack's does): never echo it.
		return nil, fmt.Errorf("notification target %q: url must be an absolute http(s) URL", tc.Name)
	}
	if tc.Kind == KindSlack && len(tc.Secret) > 0 {
		return nil, fmt.Errorf("notification target %q: slack messages are not signed; drop the secret", tc.Name)
	}
	f, err := ParseFilter(tc.Events)
	if err != nil {
		return nil, fmt.Errorf("notification target %q: %w", tc.Name, err)
	}
	return &target{Target: tc, filter: f, queue: newQueue(size), wake: make(chan struct{}, 1)}, nil
}

// Notify queues n for every target whose filter selects it, and returns at
// once: it never waits for the network or a full queue.
func (nf *Notifier) Notify(n Notification) { nf.send(n, nil) }

// Selects reports whether any target's filter selects n: a caller that
// records notifications durably (an outbox) need not record one that no
// target would be sent.
func (nf *Notifier) Selects(n Notification) bool {
	for _, t := range nf.targets {
		if t.filter.Match(n.Type, n.Reason) {
			return true
		}
	}
	return false
}

// Send is Notify for a caller that keeps notifications durably until they
// are sent (an outbox): done is called once, when every target selecting
// n has delivered it or given up after its attempts (nil), or when one
// dropped it untried (ErrNotSent: send it again later). Set n.ID to the
// outbox entry's ID so that a repeat is recognisable.
func (nf *Notifier) Send(n Notification, done func(error)) {
	var sel int32
	for _, t := range nf.targets {
		if t.filter.Match(n.Type, n.Reason) {
			sel++
		}
	}
	if sel == 0 {
		done(nil)
		return
	}
	s := &sending{done: done}
	s.left.Store(sel)
	nf.send(n, s)
}

func (nf *Notifier) send(n Notification, s *sending) {
	now := nf.opts.Now()
	id := n.ID
	if id == "" {
		id = nf.opts.NewID()
	}
	for _, t := range nf.targets {
		if !t.filter.Match(n.Type, n.Reason) {
			continue
		}
		pushed, dropped := t.queue.push(item{n: n, id: id, enqueued: now, sent: s})
		if dropped != nil {
			nf.m.dropped.WithLabelValues(t.Name).Inc()
			dropped.sent.finish(true)
		}
		if !pushed {
			continue
		}
		nf.m.queued.WithLabelValues(t.Name).Set(float64(t.queue.len()))
		select {
		case t.wake <- struct{}{}:
		default: // already signalled
		}
	}
}

// Close stops taking notifications and delivers what is queued until ctx
// ends; then it aborts requests in flight and drops the rest. It returns
// an error naming how many were not delivered, if any.
func (nf *Notifier) Close(ctx context.Context) error {
	if nf.transport != nil {
		// Every return below comes after the workers have stopped, so no
		// request is using the pool any more.
		defer nf.transport.CloseIdleConnections()
	}
	for _, t := range nf.targets {
		t.queue.close()
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
	done := make(chan struct{})
	go func() { nf.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	nf.cancel()
	select {
	case <-done:
		// Flushed, even if ctx happened to end at the same moment.
		if nf.aborted.Load() == 0 {
			return nil
		}
	default:
	}
	<-done // workers stop at once: their requests and sleeps see nf.ctx
	lost := int(nf.aborted.Load())
	for _, t := range nf.targets {
		dropped := t.queue.drain()
		k := len(dropped)
		for _, it := range dropped {
			it.sent.finish(true)
		}
		nf.m.dropped.WithLabelValues(t.Name).Add(float64(k))
		nf.m.queued.WithLabelValues(t.Name).Set(0)
		lost += k
	}
	if lost == 0 {
		return nil
	}
	return fmt.Errorf("close notifier: %d notification(s) not delivered: %w", lost, ctx.Err())
}

// run is a target's worker: it delivers the queue in order until the queue
// is closed and empty, or the notifier is cancelled.
func (nf *Notifier) run(t *target) {
	defer nf.wg.Done()
	for {
		it, ok, closed := t.queue.pop()
		if ok {
			nf.m.queued.WithLabelValues(t.Name).Set(float64(t.queue.len()))
			nf.deliver(t, it)
			if nf.ctx.Err() != nil {
				return
			}
			continue
		}
		if closed {
			return
		}
		select {
		case <-t.wake:
		case <-nf.ctx.Done():
			return
		}
	}
}

// queue is a bounded FIFO that drops its oldest entry when full.
type queue struct {
	mu     sync.Mutex
	buf    []item
	head   int
	n      int
	closed bool
}

func newQueue(size int) queue { return queue{buf: make([]item, size)} }

// push adds it; pushed is false once the queue is closed (it is then
// dropped), dropped is the item lost, if one was: it, or the oldest.
func (q *queue) push(it item) (pushed bool, dropped *item) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false, &it
	}
	if q.n == len(q.buf) {
		old := q.buf[q.head]
		dropped = &old
		q.buf[q.head] = item{}
		q.head = (q.head + 1) % len(q.buf)
		q.n--
	}
	q.buf[(q.head+q.n)%len(q.buf)] = it
	q.n++
	return true, dropped
}

func (q *queue) pop() (it item, ok, closed bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 {
		return item{}, false, q.closed
	}
	it = q.buf[q.head]
	q.buf[q.head] = item{}
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return it, true, q.closed
}

func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
}

// drain empties the queue and returns what it held.
func (q *queue) drain() []item {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]item, 0, q.n)
	for i := range q.n {
		out = append(out, q.buf[(q.head+i)%len(q.buf)])
	}
	clear(q.buf)
	q.head, q.n = 0, 0
	return out
}
