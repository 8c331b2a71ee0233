package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// printer writes the demo's timeline: one line per event, stamped with
// the time since the demo started.
type printer struct {
	w     io.Writer
	start time.Time
	mu    sync.Mutex
}

func (p *printer) line(format string, args ...any) { p.lineAt(time.Now(), format, args...) }

// lineAt stamps the line with the time of the event it tells.
func (p *printer) lineAt(t time.Time, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%6.1fs  %s\n", t.Sub(p.start).Seconds(), fmt.Sprintf(format, args...))
}

// more continues the previous line's event, without a time stamp.
func (p *printer) more(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "         %s\n", fmt.Sprintf(format, args...))
}

// Plain writes text as is.
func (p *printer) Plain(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

func (p *printer) Baseline(s *segment) {
	p.line("%s serves alone: observed %s", s.Revision, observed(s))
}

func (p *printer) Pushed(hash, msg string) {
	p.Plain("\n")
	p.line("git push: %s %q", hash, msg)
}

func (p *printer) RolloutStarted(s *segment) {
	p.line("Sluice starts the canary rollout of %s (stable: %s)", s.Revision, s.Stable)
}

// Step prints a finished step with the traffic seen while it was current;
// a step that ended as soon as the proxy acknowledged it (setWeight) has
// no traffic of its own: the next step shows its weights.
func (p *printer) Step(s *segment) {
	label := strings.TrimPrefix(s.Label, "step ") // "step analysis x" reads oddly here
	head := fmt.Sprintf("  step %d/%d  %-30s", s.Index+1, s.Total, label)
	switch {
	case s.Split.Total > 0:
		p.line("%s observed %s", head, observed(s))
	case strings.HasPrefix(label, "setWeight"), strings.HasPrefix(label, "promote"):
		p.line("%s acknowledged by the proxy", head)
	default:
		p.line("%s over too soon to measure", head)
	}
	for _, r := range s.Runs {
		p.more("    analysis %s: %s", r.Name, r.Phase)
		for _, m := range r.Metrics {
			p.more("      %s: %s (%s), last value %s", m.Name, m.Phase, counts(m), m.LastValue)
		}
	}
}

func (p *printer) Aborted(e rolloutapi.Event) {
	p.lineAt(e.Time, "Sluice aborts (%s): %s", e.Reason, e.Message)
}

func (p *printer) Promoted(s *segment) {
	p.line("%s promoted, now stable: observed %s", s.Revision, observed(s))
}

func (p *printer) BackToStable(s *segment) {
	p.line("traffic is back on %s alone: observed %s", s.Stable, observed(s))
}

func (p *printer) Reverted(message, log string) {
	subject, _, _ := strings.Cut(message, "\n")
	p.line("Sluice pushed a revert commit: %q; git log --oneline -3:", subject)
	for _, l := range strings.Split(log, "\n") {
		p.more("  %s", l)
	}
}

func (p *printer) Restored(s *segment) {
	p.line("Sluice applied its revert commit: Git names %s again, and %s is %s", s.Revision, rollout, s.Status.Phase)
}

// observed reads "v1 89.7% / v2 10.3% (1,234 calls in 5.0s; v3: 31% failed)".
func observed(s *segment) string {
	sp := s.Split
	if sp.Total == 0 {
		return "no calls measured"
	}
	var failed []string
	vs := make([]string, 0, len(sp.Failed))
	for v := range sp.Failed {
		vs = append(vs, v)
	}
	sort.Strings(vs)
	for _, v := range vs {
		if n := sp.Failed[v]; n > 0 {
			name := v
			if name == "" {
				name = "unanswered"
			}
			failed = append(failed, fmt.Sprintf("%s: %.0f%% failed", name, 100*float64(n)/float64(sp.Calls[v])))
		}
	}
	extra := ""
	if len(failed) > 0 {
		extra = "; " + strings.Join(failed, ", ")
	}
	return fmt.Sprintf("%s  (%d calls in %.1fs%s)", sp, sp.Total, sp.To.Sub(sp.From).Seconds(), extra)
}

func counts(m v1alpha1.MetricSummary) string {
	parts := []string{}
	for _, c := range []struct {
		n    int32
		name string
	}{{m.Successful, "successful"}, {m.Failed, "failed"}, {m.Inconclusive, "inconclusive"}, {m.Error, "error"}} {
		if c.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c.n, c.name))
		}
	}
	if len(parts) == 0 {
		return "no measurements"
	}
	return strings.Join(parts, ", ")
}
