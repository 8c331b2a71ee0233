package dashboard

import (
	"bytes"
	"context"
	"errors"
	"html/template"
	"net/http"
	"time"

	"github.com/sluicehq/sluice/rolloutapi"
)

// Timing of the event streams.
const (
	// streamMinGap spaces out renders when changes come fast.
	streamMinGap = 100 * time.Millisecond
	// streamKeepAlive writes a comment to keep proxies from closing an
	// idle stream.
	streamKeepAlive = 15 * time.Second
	// streamWriteTimeout bounds one write to a slow client.
	streamWriteTimeout = 10 * time.Second
)

// stream serves a page's live part as server-sent events: the fragment
// once at once, then again whenever it renders differently, as soon as
// the backend signals a change (rolloutapi.Watcher) or at least every
// Options.Refresh. A viewer whose session has ended gets a "login" event
// and the stream ends; the page then reloads into the login form.
func (d *Dashboard) stream(render func(*http.Request, *session) ([]byte, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-store")
		// nginx buffers responses unless told not to.
		h.Set("X-Accel-Buffering", "no")
		rc := http.NewResponseController(w)
		write := func(b []byte) error {
			// The listener's write timeout is for whole responses; a
			// stream sets one per write instead.
			_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
			if _, err := w.Write(b); err != nil {
				return err
			}
			return rc.Flush()
		}
		s, err := d.session(r)
		if err != nil {
			w.WriteHeader(http.StatusOK)
			_ = write([]byte("event: login\ndata: session ended\n\n"))
			return
		}
		if err := write([]byte("retry: 2000\n\n")); err != nil {
			return
		}
		ctx := r.Context()
		var last []byte
		keepAlive := time.NewTicker(streamKeepAlive)
		defer keepAlive.Stop()
		for {
			// Take the signal before rendering, so a change during the
			// render (or the gap after it) is not lost.
			waitCtx, cancel := context.WithCancel(ctx)
			changed := rolloutapi.ChangedOrTick(waitCtx, s.viewer.Backend(), d.o.Refresh)
			err := d.streamOnce(r, &s, render, &last, write)
			if err == nil {
				// A lone change goes out at once; the gap spaces out
				// the renders of changes that follow it closely.
				select {
				case <-ctx.Done():
					err = ctx.Err()
				case <-time.After(streamMinGap):
					err = waitChange(ctx, changed, d.o.Refresh, keepAlive.C, write)
				}
			}
			cancel()
			if err != nil {
				return
			}
		}
	}
}

// errSessionEnded ends a stream whose viewer's session ended.
var errSessionEnded = errors.New("session ended")

// streamOnce renders the fragment and sends it if it changed.
func (d *Dashboard) streamOnce(r *http.Request, s *session, render func(*http.Request, *session) ([]byte, error), last *[]byte, write func([]byte) error) error {
	if _, err := d.session(r); err != nil {
		_ = write([]byte("event: login\ndata: session ended\n\n"))
		return errSessionEnded
	}
	frag, err := render(r, s)
	if err != nil {
		frag = []byte(`<p class="error">` + template.HTMLEscapeString(err.Error()) + `</p>`)
	}
	if bytes.Equal(frag, *last) {
		return nil
	}
	*last = frag
	return write(event("update", frag))
}

// waitChange waits for a change, the refresh or the end of the request,
// keeping the stream alive meanwhile.
func waitChange(ctx context.Context, changed <-chan struct{}, every time.Duration, keepAlive <-chan time.Time, write func([]byte) error) error {
	refresh := time.NewTimer(every)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
			return nil
		case <-refresh.C:
			return nil
		case <-keepAlive:
			if err := write([]byte(": keep-alive\n\n")); err != nil {
				return err
			}
		}
	}
}

// event encodes one server-sent event; every line of data gets its own
// "data:" field.
func event(name string, data []byte) []byte {
	var b bytes.Buffer
	b.WriteString("event: " + name + "\n")
	for line := range bytes.SplitSeq(bytes.ReplaceAll(data, []byte("\r"), nil), []byte("\n")) {
		b.WriteString("data: ")
		b.Write(line)
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	return b.Bytes()
}
