package rolloutapi

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Follower is a Backend that pushes changes as they happen, for `sluice
// status -w`: a `sluice run` server through its event stream
// (GET /api/v1/watch, served from the Backend's Watcher), a cluster
// through a Kubernetes watch.
type Follower interface {
	// Follow returns a channel that receives after every change of what
	// List and Get return (changes that come close together may be
	// merged into one), from the call on. namespace and name narrow it
	// to one Rollout where the backend can ("" for all). The channel is
	// closed when ctx ends or the stream breaks; the caller then reads
	// again and follows anew, or falls back to polling.
	Follow(ctx context.Context, namespace, name string) (<-chan struct{}, error)
}

// Timing of the event stream.
const (
	// watchKeepAlive writes a comment to keep proxies from closing an
	// idle stream, and tells the client the server is still there.
	watchKeepAlive = 15 * time.Second
	// watchWriteTimeout bounds one write to a slow client; the
	// listener's own write timeout is for whole responses.
	watchWriteTimeout = 10 * time.Second
	// watchMinGap spaces events out when changes come in a burst (one
	// pass of the runner signals once, but passes may follow each other
	// closely): the first change goes out at once, the rest merge.
	watchMinGap = 50 * time.Millisecond
)

// watch serves GET /api/v1/watch: server-sent events, one "changed" event
// at once (so the client knows the stream is up before it reads) and one
// after every change the Backend signals as a Watcher. The events carry
// no data: the client reads what it shows through the API as usual, so
// the stream tells nothing a token could not read anyway.
func (h *handler) watch(w http.ResponseWriter, r *http.Request) {
	wt, ok := h.b.(Watcher)
	if !ok {
		writeError(w, fmt.Errorf("%w: this server cannot stream changes", ErrNotFound))
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	// nginx buffers responses unless told not to.
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	write := func(s string) error {
		_ = rc.SetWriteDeadline(time.Now().Add(watchWriteTimeout))
		if _, err := w.Write([]byte(s)); err != nil {
			return err
		}
		return rc.Flush()
	}
	ctx := r.Context()
	keepAlive := time.NewTicker(watchKeepAlive)
	defer keepAlive.Stop()
	// Take the signal before telling the client, so a change between
	// its read and the next event is not lost.
	changed := wt.Changed()
	if write("retry: 2000\n\nevent: changed\ndata: {}\n\n") != nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-keepAlive.C:
			if write(": keep-alive\n\n") != nil {
				return
			}
			continue
		case <-changed:
		}
		// The next signal is taken before the event goes out, so a change
		// the client's read misses still sends another; one that comes
		// within the gap is sent after it, merged with any others.
		changed = wt.Changed()
		if write("event: changed\ndata: {}\n\n") != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(watchMinGap):
		}
	}
}

// Follow implements Follower through the server's event stream. The
// first event (sent at once) is consumed before Follow returns, so a
// server that cannot stream fails here and the caller can fall back.
func (c *Client) Follow(ctx context.Context, _, _ string) (<-chan struct{}, error) {
	// The stream lives as long as ctx, or until Follow gives up on it.
	ctx, cancel := context.WithCancel(ctx)
	follows := false
	defer func() {
		if !follows {
			cancel()
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.BaseURL, "/")+"/api/v1/watch", nil)
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: GET %s/api/v1/watch: %v", ErrUnavailable, c.BaseURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, statusError(resp.StatusCode, "the server does not stream changes")
	}
	events := make(chan string)
	go func() {
		defer close(events)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		// Lines are short: event names, "data: {}", comments.
		sc.Buffer(make([]byte, 4096), 64<<10)
		for sc.Scan() {
			if name, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				select {
				case events <- name:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	select {
	case name, ok := <-events:
		if !ok || name != "changed" {
			return nil, fmt.Errorf("%w: the server's event stream ended at once", ErrUnavailable)
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	follows = true
	out := make(chan struct{}, 1)
	go func() {
		defer cancel()
		defer close(out)
		for name := range events {
			if name != "changed" {
				continue
			}
			// Buffered by one: a change while the caller redraws is
			// kept, and further ones merge into it.
			select {
			case out <- struct{}{}:
			default:
			}
		}
	}()
	return out, nil
}

// Live is a Backend kept live by its Follower, as a Watcher: one follow
// stream (a `sluice run` server's /api/v1/watch, a cluster's watch of
// Rollouts) for every page that waits on Changed, opened again a second
// after it ends. While no stream can be opened (the server cannot stream,
// the user may not watch), Changed is closed every poll instead, so pages
// look again at that pace, and the stream is tried again as often.
// `sluice dashboard` serves a server's or a cluster's Rollouts through it.
type Live struct {
	Backend
	f    Follower
	poll time.Duration

	mu        sync.Mutex
	changed   chan struct{}
	following bool
}

var _ Watcher = (*Live)(nil)

// liveRefollow is how long a Live waits before it follows again after a
// stream ended (the API server ends watches after a while; a server
// restarts), so that one that ends at once does not spin.
const liveRefollow = time.Second

// NewLive follows f (usually b itself) for as long as ctx lasts: every
// Rollout that b lists (Follow with no name).
func NewLive(ctx context.Context, b Backend, f Follower, poll time.Duration) *Live {
	l := &Live{Backend: b, f: f, poll: poll, changed: make(chan struct{})}
	go l.run(ctx)
	return l
}

// Changed implements Watcher.
func (l *Live) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// Following reports whether a follow stream is open now.
func (l *Live) Following() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.following
}

func (l *Live) signal(following bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.following = following
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *Live) run(ctx context.Context) {
	for {
		wait := l.poll
		ch, err := l.f.Follow(ctx, "", "")
		if err == nil {
			// What changed while no stream was open is read now.
			l.signal(true)
			for range ch {
				l.signal(true)
			}
			// The stream ended: read again, follow anew shortly.
			l.signal(false)
			wait = liveRefollow
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if err != nil {
			// No stream: pages look again at the poll's pace.
			l.signal(false)
		}
	}
}
