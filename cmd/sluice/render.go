package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/internal/untrusted"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// renderTable prints one line per rollout.
func renderTable(w io.Writer, rs []rolloutapi.Rollout) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tSTRATEGY\tPHASE\tSTEP\tWEIGHT\tSTABLE\tCANARY\tGIT\tMESSAGE")
	for _, r := range rs {
		st := r.Status
		step := st.StepDisplay
		if step == "" {
			step = "-"
		}
		canary := st.CanaryRevision
		if canary == "" {
			canary = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n",
			r.Namespace, r.Name, r.Strategy, st.Phase, step, st.Traffic.CanaryWeight, st.StableRevision, canary, gitWord(st.GitSync), oneLine(st.Message, 80))
	}
	tw.Flush()
}

// renderRolloutAt prints the detail view of one rollout as of now: where
// it is, its pods and Git state, its steps with the current one marked
// (and a timed pause's time left), the traffic, analysis per metric and
// the last events. It reports whether a pause is counting down.
func renderRolloutAt(w io.Writer, r rolloutapi.Rollout, events []rolloutapi.Event, now time.Time) (countdown bool) {
	st := r.Status
	fmt.Fprintf(w, "Rollout %s  (%s)\n", r.Key(), r.Strategy)
	fmt.Fprintf(w, "  Phase:    %s\n", st.Phase)
	fmt.Fprintf(w, "  Message:  %s\n", st.Message)
	canary := st.CanaryRevision
	if canary == "" {
		canary = "-"
	}
	fmt.Fprintf(w, "  Stable:   %s    Canary: %s\n", st.StableRevision, canary)
	if line := podsLine(st); line != "" {
		fmt.Fprintf(w, "  Pods:     %s\n", line)
	}
	fmt.Fprintf(w, "  Traffic:  %s\n", trafficLine(st.Traffic))
	for _, line := range gitLines(st.Git, st.GitSync) {
		fmt.Fprintln(w, line)
	}
	if lr := st.LastRollout; lr != nil {
		line := fmt.Sprintf("%s %s at %s", lr.Revision, strings.ToLower(string(lr.Outcome)), lr.At.UTC().Format(time.RFC3339))
		if lr.Reason != "" {
			line += ": " + lr.Reason + ": " + oneLine(lr.Message, 100)
		}
		fmt.Fprintf(w, "  Last:     %s\n", line)
	}
	if lc := st.LastCommand; lc != nil {
		by := lc.By
		if by == "" {
			by = "someone"
		}
		fmt.Fprintf(w, "  Command:  %s by %s at %s: %s\n", lc.Kind, by, lc.At.UTC().Format(time.RFC3339), lc.Result)
	}

	if st.CanaryRevision != "" && len(r.Steps) > 0 {
		cur := -1
		if st.CurrentStepIndex != nil {
			cur = int(*st.CurrentStepIndex)
		}
		timeline := rolloutapi.Timeline(r, events)
		fmt.Fprintf(w, "\nSteps  %s\n", progressBar(cur, len(r.Steps), st.Abort != nil))
		for i, label := range r.Steps {
			mark := "  "
			switch {
			case i < cur:
				mark = "✔ "
			case i == cur && st.Abort != nil:
				mark = "✘ "
			case i == cur:
				mark = "▶ "
			}
			if i == cur && i < len(timeline) && timeline[i].PauseEnds != nil {
				label += "  (" + timeLeft(timeline[i].PauseEnds.Sub(now)) + ")"
				countdown = true
			}
			fmt.Fprintf(w, "  %s%2d  %s\n", mark, i+1, label)
		}
	}

	if len(st.Analysis) > 0 {
		fmt.Fprintln(w, "\nAnalysis")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  RUN\tKIND\tPHASE\tMETRIC\tLAST\tOK\tFAIL\tINCONCL\tERR\tREASON")
		for _, run := range st.Analysis {
			phase := string(run.Phase)
			if run.Terminated {
				phase += " (stopped)"
			}
			if len(run.Metrics) == 0 {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t-\t\t\t\t\t\t%s\n", run.Name, run.Kind, phase, oneLine(run.Message, 60))
				continue
			}
			for i, m := range run.Metrics {
				name, kind, ph := run.Name, string(run.Kind), phase
				if i > 0 {
					name, kind, ph = "", "", ""
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n",
					name, kind, ph, m.Name, m.LastValue, m.Successful, m.Failed, m.Inconclusive, m.Error, oneLine(m.Message, 60))
			}
		}
		tw.Flush()
	}

	if len(events) > 0 {
		fmt.Fprintln(w, "\nEvents")
		for _, e := range events {
			fmt.Fprintf(w, "  %s  %-8s %-26s %s\n", e.Time.UTC().Format("15:04:05"), e.Type, e.Reason, e.Message)
		}
	}
	return countdown
}

// timeLeft is a pause's remaining time in whole seconds.
func timeLeft(d time.Duration) string {
	if d <= 0 {
		return "ending"
	}
	return d.Round(time.Second).String() + " left"
}

// podsLine is the desired and ready pods of each revision (controller
// mode: the status the controller writes from the ReplicaSets); "" when
// the Rollout runs no pods of its own.
func podsLine(st v1alpha1.RolloutStatus) string {
	var parts []string
	for _, p := range []struct {
		name string
		r    *v1alpha1.RevisionReplicas
	}{{"stable", st.StableReplicas}, {"canary", st.CanaryReplicas}} {
		if p.r != nil {
			parts = append(parts, fmt.Sprintf("%s %d/%d ready", p.name, p.r.Ready, p.r.Desired))
		}
	}
	return strings.Join(parts, ", ")
}

func trafficLine(t v1alpha1.TrafficStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "stable %d%% / canary %d%%", t.StableWeight, t.CanaryWeight)
	for _, sub := range t.Subsets {
		if sub.Name != plan.Stable && sub.Name != plan.Canary {
			fmt.Fprintf(&b, " / %s (%s) %d%%", sub.Name, short(sub.Revision, 12), sub.Weight)
		}
	}
	if t.MirrorPercent > 0 {
		fmt.Fprintf(&b, ", mirror %d%%", t.MirrorPercent)
	}
	if len(t.Routes) > 0 {
		fmt.Fprintf(&b, ", match routes: %s", strings.Join(t.Routes, ", "))
	}
	if r := t.Replicas; r != nil {
		// No router: the weights above are the canary's share of the pods.
		if r.Canary == 0 && r.Weight == 0 {
			fmt.Fprintf(&b, ", by pods: %d stable", r.Stable)
		} else {
			fmt.Fprintf(&b, ", by pods: setWeight %d → %d of %d pods", r.Weight, r.Canary, r.Canary+r.Stable)
		}
	}
	if t.PlanVersion != "" {
		state := "waiting for acknowledgement"
		switch {
		case t.Replicas != nil:
			state = "in force, no router"
		case t.AcknowledgedVersion == t.PlanVersion:
			state = "acknowledged"
		}
		if t.RejectedVersion == t.PlanVersion {
			state = "REJECTED: " + t.Rejection
		}
		fmt.Fprintf(&b, "  (plan %s %s)", short(t.PlanVersion, 8), state)
	}
	if sn := t.StaleNodes; sn != nil {
		// Node ids are the proxies' words: escaped here too, whatever
		// wrote the status.
		names := make([]string, len(sn.Nodes))
		for i, n := range sn.Nodes {
			names[i] = untrusted.Text(n, 80)
		}
		what := "holding the step"
		if sn.Excluded {
			what = "left out of the count"
		}
		fmt.Fprintf(&b, "; %d stale data-plane node(s), %s: %s", sn.Count, what, strings.Join(names, ", "))
		if more := int(sn.Count) - len(sn.Nodes); more > 0 {
			fmt.Fprintf(&b, " and %d more", more)
		}
	}
	return b.String()
}

// progressBar draws done steps as # out of n, e.g. [####------] 4/10.
func progressBar(cur, n int, aborted bool) string {
	const width = 20
	done := max(cur, 0)
	filled := done * width / n
	bar := strings.Repeat("#", filled) + strings.Repeat("-", width-filled)
	s := fmt.Sprintf("[%s] %d/%d", bar, min(cur+1, n), n)
	if aborted {
		s += "  aborted"
	}
	return s
}

func short(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func oneLine(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len([]rune(s)) > n {
		return string([]rune(s)[:n-1]) + "…"
	}
	return s
}

// gitWord is a Rollout's Git state in the table's one word.
func gitWord(g *v1alpha1.GitSyncStatus) string {
	switch {
	case g == nil:
		return "-"
	case g.InSync():
		return "synced"
	case g.Rejected != nil && g.Rejected.Commit == g.HeadCommit:
		return "rejected"
	case g.HeadCommit == "":
		return "unknown"
	case g.Message != "":
		return "error"
	}
	return "applying"
}

// gitLines describe where the spec came from and its source's state: the
// head, the commit in force, and a rejected commit with its problems.
// File names and reasons come from Git: bounded and escaped.
func gitLines(prov *v1alpha1.GitProvenance, g *v1alpha1.GitSyncStatus) []string {
	var out []string
	if prov != nil {
		out = append(out, fmt.Sprintf("  Git:      %s %s", short(prov.Commit, 12), untrusted.Text(prov.Path, 200)))
	}
	if g == nil {
		return out
	}
	return append(out, syncLines("  Source:   ", "            ", g)...)
}

// syncLines are a source's state: the first line after first, the others
// (the rejected commit's problems) after indent.
func syncLines(first, indent string, g *v1alpha1.GitSyncStatus) []string {
	var line string
	switch why := rolloutapi.NotSynced(g); {
	case why == "":
		line = "in sync: head " + rolloutapi.ShortSHA(g.HeadCommit) + " is in force"
	default:
		line = "NOT SYNCED: " + why
	}
	if g.Source != "" {
		line += "  (GitSource " + untrusted.Text(g.Source, 320) + ")"
	}
	out := []string{first + line}
	if r := g.Rejected; r != nil {
		when := ""
		if r.At != nil {
			when = " at " + r.At.UTC().Format(time.RFC3339)
		}
		out = append(out, indent+"rejected "+rolloutapi.ShortSHA(r.Commit)+when+":")
		for _, p := range rolloutapi.RejectionLines(r) {
			out = append(out, indent+"  "+p)
		}
	}
	return out
}

// renderSources prints the state of each Git source after the table.
func renderSources(w io.Writer, srcs []rolloutapi.GitSource) {
	if len(srcs) == 0 {
		return
	}
	fmt.Fprintln(w, "\nGit")
	for _, src := range srcs {
		name := sourceName(src.Source)
		if src.Repository != "" {
			name += " " + untrusted.Text(src.Repository, 200)
		}
		fmt.Fprintf(w, "  %s\n", name)
		g := src.GitSyncStatus
		g.Source = "" // named above
		for _, line := range syncLines("    ", "    ", &g) {
			fmt.Fprintln(w, line)
		}
	}
}

// sourceName names a Git source by its GitSyncStatus.Source.
func sourceName(source string) string {
	if source == "" {
		return "git source"
	}
	return "GitSource " + untrusted.Text(source, 320)
}
