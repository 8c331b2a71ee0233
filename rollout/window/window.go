// Package window evaluates deployment windows: cron schedules that open for
// a duration and allow or deny step advancement. It is pure: the time is an
// argument, so the engine's callers can evaluate it at the engine's "now".
package window

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// parser accepts the five standard fields and descriptors such as @daily.
var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// maxTicks bounds the search for the end of overlapping windows; a schedule
// that ticks more often than its duration is open for good, and its end is
// reported as unknown rather than searched for ever.
const maxTicks = 2000

// Compiled is a parsed set of windows.
type Compiled struct {
	windows []compiled
}

type compiled struct {
	kind     v1alpha1.WindowKind
	sched    cron.Schedule
	dur      time.Duration
	loc      *time.Location
	describe string
}

// Compile parses windows, naming the field of the first bad one.
func Compile(ws []v1alpha1.DeploymentWindow) (*Compiled, error) {
	c := &Compiled{}
	for i, w := range ws {
		field := fmt.Sprintf("spec.windows[%d]", i)
		sched, err := parser.Parse(w.Schedule)
		if err != nil {
			return nil, fmt.Errorf("%s.schedule: %q: %w", field, w.Schedule, err)
		}
		loc := time.UTC
		if w.TimeZone != "" {
			if loc, err = time.LoadLocation(w.TimeZone); err != nil {
				return nil, fmt.Errorf("%s.timeZone: %q: %w", field, w.TimeZone, err)
			}
		}
		if w.Duration.Duration <= 0 {
			return nil, fmt.Errorf("%s.duration: must be positive", field)
		}
		desc := fmt.Sprintf("%s %q for %s", w.Kind, w.Schedule, w.Duration.Duration)
		if w.TimeZone != "" {
			desc += " in " + w.TimeZone
		}
		c.windows = append(c.windows, compiled{kind: w.Kind, sched: sched, dur: w.Duration.Duration, loc: loc, describe: desc})
	}
	return c, nil
}

// At evaluates the windows at now. Deny wins over allow; with allow windows
// present, advancement is allowed only inside one; with none, only deny
// windows hold it. NextChange is the earliest moment any window opens or
// closes, a hint for when to look again.
func (c *Compiled) At(now time.Time) engine.Window {
	var (
		next        time.Time
		haveAllow   bool
		allowOpen   bool
		denyReason  string
		allowReason string
	)
	consider := func(t time.Time) {
		if !t.IsZero() && t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, w := range c.windows {
		open, change := w.state(now)
		consider(change)
		switch w.kind {
		case v1alpha1.WindowDeny:
			if open && denyReason == "" {
				denyReason = "inside deny window " + w.describe
			}
		case v1alpha1.WindowAllow:
			haveAllow = true
			if open {
				allowOpen = true
			} else if allowReason == "" {
				allowReason = "outside allow window " + w.describe
			}
		}
	}
	switch {
	case denyReason != "":
		return engine.Window{Closed: true, Reason: denyReason, NextChange: next}
	case haveAllow && !allowOpen:
		return engine.Window{Closed: true, Reason: allowReason, NextChange: next}
	}
	return engine.Window{NextChange: next}
}

// state reports whether the window is open at now and when that changes
// (zero if unknown within maxTicks).
func (w compiled) state(now time.Time) (open bool, change time.Time) {
	local := now.In(w.loc)
	// The first tick after now-dur is the earliest that can still be open.
	first := w.sched.Next(local.Add(-w.dur))
	if first.IsZero() {
		return false, time.Time{}
	}
	if first.After(local) {
		return false, first
	}
	end := first.Add(w.dur)
	tick := first
	for range maxTicks {
		tick = w.sched.Next(tick)
		if tick.IsZero() || tick.After(end) {
			return true, end
		}
		end = tick.Add(w.dur)
	}
	return true, time.Time{}
}

// Evaluate is the engine's window observation for a Rollout's windows at
// now. Windows that do not compile (validation refuses them; one that got
// through anyway) hold advancement rather than let it happen outside the
// windows the user meant.
func Evaluate(ws []v1alpha1.DeploymentWindow, now time.Time) engine.Window {
	if len(ws) == 0 {
		return engine.Window{}
	}
	c, err := Compile(ws)
	if err != nil {
		return engine.Window{Closed: true, Reason: err.Error()}
	}
	return c.At(now)
}
