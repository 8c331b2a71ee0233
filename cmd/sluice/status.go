package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/untrusted"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

func init() {
	addCommand(newStatusCommand)
	addCommand(newHistoryCommand)
}

// exitNotSynced is status --require-synced's verdict when a head commit
// is not the commit in force (rejected, or not applied yet).
const exitNotSynced = 5

func newStatusCommand() *cobra.Command {
	var (
		t             target
		watch         bool
		output        string
		interval      time.Duration
		events        int
		requireSynced bool
		commit        string
	)
	cmd := &cobra.Command{
		Use:   "status [NAME]",
		Short: "Show rollouts, or one rollout's steps, traffic, analysis and events",
		Long: `Without NAME, status prints a table of every rollout (against a cluster,
those of the namespace; -A for all) and the state of the Git sources. With
NAME, it shows that rollout's steps (the current one marked), its traffic,
pods, analysis results per metric, its Git state and its last events.

The Git state is the commit the source's branch points at (head), the
commit in force, and a commit that was rejected (every invalid manifest as
file:line: field: reason) until a later commit applies.

With -w it follows changes as they happen (the server's event stream, or a
Kubernetes watch), counting a pause down, until the rollout ends: exit
status 0 when the new revision was promoted (or nothing was rolling), 1
when it ended aborted.

With --require-synced it exits 5 when a head commit is not the commit in
force (rejected, not applied yet, or the source cannot be fetched), or NAME
was not applied from Git, naming why, and 0 when every one is: a check for
CI after a push. --commit SHA also requires that commit (or a commit
whose hash begins with SHA) to be the one in force everywhere: a pipeline
that pushed SHA learns whether its own commit is live, not a later or an
earlier one.

Other exit statuses: 2 usage error, 3 no such rollout, 4 server unreachable.`,
		Example: `  sluice status
  sluice status reviews -w
  sluice status reviews -o json
  sluice status --require-synced
  sluice status --require-synced --commit "$(git rev-parse HEAD)"`,
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if watch && requireSynced {
				return usageError{errors.New("--require-synced checks once; it does not go with -w")}
			}
			if commit != "" {
				if !requireSynced {
					return usageError{errors.New("--commit goes with --require-synced")}
				}
				if !isCommitPrefix(commit) {
					return usageError{fmt.Errorf("--commit %q: want 4 to 40 hexadecimal digits of a commit hash", untrusted.Text(commit, 80))}
				}
				commit = strings.ToLower(commit)
			}
			b, err := t.backend()
			if err != nil {
				return err
			}
			v := statusView{b: b, namespace: t.namespace, output: output, events: events, commit: commit}
			if len(args) == 1 {
				v.name = args[0]
			}
			if !watch {
				state, err := v.draw(cmd.Context(), cmd.OutOrStdout(), time.Now())
				if err != nil || !requireSynced {
					return err
				}
				return state.synced()
			}
			return v.watch(cmd.Context(), cmd.OutOrStdout(), interval)
		},
	}
	t.addFlags(cmd)
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "follow changes until the rollout ends")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "how often -w reads again when the server cannot stream changes")
	cmd.Flags().IntVar(&events, "events", 8, "how many recent events to show")
	cmd.Flags().BoolVarP(&t.allNamespaces, "all-namespaces", "A", false, "without NAME, against a cluster: list every namespace, not just -n (a server always lists all)")
	cmd.Flags().BoolVar(&requireSynced, "require-synced", false, "exit 5 unless the head commit of every Git source shown is the commit in force")
	cmd.Flags().StringVar(&commit, "commit", "", "with --require-synced: exit 5 unless the commit in force is this one (a hash or its first digits)")
	return cmd
}

type statusView struct {
	b         rolloutapi.Backend
	namespace string
	name      string
	output    string
	events    int
	// commit is --commit: the commit --require-synced wants in force.
	commit string
}

// draw reads once and renders as of now (fetch, then render).
func (v statusView) draw(ctx context.Context, w io.Writer, now time.Time) (rollState, error) {
	snap, err := v.fetch(ctx)
	if err != nil {
		return rollState{}, err
	}
	return v.render(w, snap, now)
}

// statusData is what one read of the backend returned.
type statusData struct {
	list   []rolloutapi.Rollout // without NAME
	srcs   []rolloutapi.GitSource
	one    rolloutapi.Rollout // with NAME
	events []rolloutapi.Event
}

// fetch reads what the view shows.
func (v statusView) fetch(ctx context.Context) (statusData, error) {
	var d statusData
	var err error
	if v.name == "" {
		if d.list, err = v.b.List(ctx); err != nil {
			return d, backendError(err)
		}
		d.srcs = v.gitSources(ctx)
		return d, nil
	}
	if d.one, err = v.b.Get(ctx, v.namespace, v.name); err != nil {
		return d, backendError(err)
	}
	if v.events > 0 && v.output != "json" {
		if d.events, err = v.b.History(ctx, v.namespace, v.name, v.events); err != nil {
			return d, backendError(err)
		}
	}
	return d, nil
}

// render prints d as of now and reports whether anything is still
// rolling (and if what ended, ended aborted), whether a pause is counting
// down, and what is out of sync with Git.
func (v statusView) render(w io.Writer, d statusData, now time.Time) (state rollState, err error) {
	state.commit = v.commit
	if v.name == "" {
		for _, r := range d.list {
			state.add(r.Status)
			if g := r.Status.GitSync; g != nil {
				state.git(r.Key(), g)
			}
		}
		for _, src := range d.srcs {
			state.git(sourceName(src.Source), &src.GitSyncStatus)
		}
		if v.output == "json" {
			return state, writeJSONTo(w, d.list)
		}
		renderTable(w, d.list)
		renderSources(w, d.srcs)
		return state, nil
	}
	r := d.one
	state.add(r.Status)
	state.git(r.Key(), r.Status.GitSync)
	if v.output == "json" {
		return state, writeJSONTo(w, r)
	}
	state.countdown = renderRolloutAt(w, r, d.events, now)
	return state, nil
}

// gitSources lists the backend's Git sources when it can; a source that
// cannot be listed (a cluster that forbids it) leaves the Rollouts' own
// state to tell.
func (v statusView) gitSources(ctx context.Context) []rolloutapi.GitSource {
	gr, ok := v.b.(rolloutapi.GitReporter)
	if !ok {
		return nil
	}
	srcs, err := gr.GitSources(ctx)
	if err != nil {
		return nil
	}
	return srcs
}

// watch redraws at every change until nothing rolls. On a terminal it
// repaints in place, and once a second while a pause counts down; into a
// pipe it prints a frame only when it differs from the last one. Changes
// come from the backend (rolloutapi.Follower); a backend that cannot
// push them is read again every interval.
func (v statusView) watch(ctx context.Context, w io.Writer, every time.Duration) error {
	// The follows (an HTTP stream, Kubernetes watches) end with the
	// watch, not with the process: a caller may go on (tests, a plugin).
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tty := isTerminal(w)
	var last []byte
	var changes <-chan struct{}
	var refollow time.Time
	var data statusData
	read := true
	for {
		if read {
			// Follow before reading, so a change during the read is
			// not missed.
			if changes == nil && !time.Now().Before(refollow) {
				changes = v.follow(ctx)
			}
			var err error
			if data, err = v.fetch(ctx); err != nil {
				return err
			}
		}
		var frame bytes.Buffer
		state, err := v.render(&frame, data, time.Now())
		if err != nil {
			return err
		}
		if !bytes.Equal(frame.Bytes(), last) {
			if tty {
				fmt.Fprint(w, "\033[H\033[2J")
			} else if last != nil {
				fmt.Fprintln(w, "---")
			}
			if _, err := w.Write(frame.Bytes()); err != nil {
				return err
			}
			last = frame.Bytes()
		}
		if !state.rolling {
			if state.aborted {
				return exitError{code: exitFailure}
			}
			return nil
		}
		var poll, countdown <-chan time.Time
		if changes == nil {
			poll = time.After(every)
		}
		if tty && state.countdown {
			// Only the countdown's text changes: a local tick.
			countdown = time.After(time.Second)
		}
		read = true
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-changes:
			if !ok {
				// The stream ended (a server restart, the API server's
				// watch timeout): read again now, follow again after
				// an interval.
				changes, refollow = nil, time.Now().Add(every)
			}
		case <-poll:
		case <-countdown:
			// Only the time left changed: drawn again from the last
			// read, without asking the backend.
			read = false
		}
	}
}

// follow returns the backend's change stream, or nil when it has none or
// it cannot be opened (then -w polls).
func (v statusView) follow(ctx context.Context) <-chan struct{} {
	f, ok := v.b.(rolloutapi.Follower)
	if !ok {
		return nil
	}
	ch, err := f.Follow(ctx, v.namespace, v.name)
	if err != nil {
		return nil
	}
	return ch
}

// rollState summarises what -w waits for and what --require-synced
// checks.
type rollState struct {
	rolling bool
	aborted bool
	// countdown: a timed pause is running, whose time left is shown.
	countdown bool
	// gitSeen counts the Git states looked at; notSynced says why those
	// that are not in sync are not, each reason once with what it is
	// about (the Rollouts of one source share its state).
	gitSeen   int
	notSynced []string
	about     map[string][]string
	// commit, when set, is the commit every Git state must have in force.
	commit string
}

// git adds the Git state of what (a Rollout, a source); nil is a Rollout
// no Git source applied.
func (s *rollState) git(what string, g *v1alpha1.GitSyncStatus) {
	s.gitSeen++
	why := rolloutapi.NotSynced(g)
	if why == "" && s.commit != "" && !strings.HasPrefix(g.AppliedCommit, s.commit) {
		why = fmt.Sprintf("commit %s is not in force; %s is", s.commit, rolloutapi.ShortSHA(g.AppliedCommit))
	}
	if why == "" {
		return
	}
	if s.about == nil {
		s.about = map[string][]string{}
	}
	if _, ok := s.about[why]; !ok {
		s.notSynced = append(s.notSynced, why)
	}
	s.about[why] = append(s.about[why], what)
}

// isCommitPrefix says whether s can be (the start of) a commit hash;
// the shortest prefix Git itself accepts is four digits.
func isCommitPrefix(s string) bool {
	if len(s) < 4 || len(s) > 40 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

// synced is --require-synced's verdict.
func (s rollState) synced() error {
	switch {
	case len(s.notSynced) > 0:
		lines := make([]string, len(s.notSynced))
		for i, why := range s.notSynced {
			lines[i] = strings.Join(s.about[why], ", ") + ": " + why
		}
		return exitError{code: exitNotSynced, msg: "not synced with Git: " + strings.Join(lines, "; ")}
	case s.gitSeen == 0:
		return exitError{code: exitNotSynced, msg: "not synced with Git: no Git source and no rollout applied from Git"}
	}
	return nil
}

func (s *rollState) add(st v1alpha1.RolloutStatus) {
	switch {
	case st.Abort != nil:
		s.aborted = true
	case st.CanaryRevision == "" && st.Phase == v1alpha1.PhaseDegraded:
		// The data plane rejected the stable plan: nothing to wait for,
		// and not a success.
		s.aborted = true
	case st.CanaryRevision != "":
		s.rolling = true
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func writeJSONTo(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newHistoryCommand() *cobra.Command {
	var (
		t      target
		output string
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "history NAME",
		Short: "Show what happened to a rollout: steps, analysis, commands, aborts, promotions",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			b, err := t.backend()
			if err != nil {
				return err
			}
			evs, err := b.History(cmd.Context(), t.namespace, args[0], limit)
			if err != nil {
				return backendError(err)
			}
			w := cmd.OutOrStdout()
			if output == "json" {
				return writeJSONTo(w, evs)
			}
			for _, e := range evs {
				fmt.Fprintf(w, "%s  %-8s %-26s %s\n", e.Time.UTC().Format(time.RFC3339), e.Type, e.Reason, e.Message)
			}
			return nil
		},
	}
	t.addFlags(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().IntVar(&limit, "limit", 50, "how many events, newest last")
	return cmd
}
