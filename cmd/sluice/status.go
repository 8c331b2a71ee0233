package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

func init() {
	addCommand(newStatusCommand)
	addCommand(newHistoryCommand)
}

func newStatusCommand() *cobra.Command {
	var (
		t        target
		watch    bool
		output   string
		interval time.Duration
		events   int
	)
	cmd := &cobra.Command{
		Use:   "status [NAME]",
		Short: "Show rollouts, or one rollout's steps, traffic, analysis and events",
		Long: `Without NAME, status prints a table of every rollout (against a cluster,
those of the namespace; -A for all). With NAME, it shows that rollout's steps
(the current one marked), its traffic, analysis results per metric and its
last events.

With -w it redraws until the rollout ends: exit status 0 when the new
revision was promoted (or nothing was rolling), 1 when it ended aborted.
Other exit statuses: 2 usage error, 3 no such rollout, 4 server unreachable.`,
		Example: `  sluice status
  sluice status reviews -w
  sluice status reviews -o json`,
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			b, err := t.backend()
			if err != nil {
				return err
			}
			v := statusView{b: b, namespace: t.namespace, output: output, events: events}
			if len(args) == 1 {
				v.name = args[0]
			}
			if !watch {
				_, err := v.draw(cmd.Context(), cmd.OutOrStdout())
				return err
			}
			return v.watch(cmd.Context(), cmd.OutOrStdout(), interval)
		},
	}
	t.addFlags(cmd)
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "redraw until the rollout ends")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "how often -w redraws")
	cmd.Flags().IntVar(&events, "events", 8, "how many recent events to show")
	cmd.Flags().BoolVarP(&t.allNamespaces, "all-namespaces", "A", false, "without NAME, against a cluster: list every namespace, not just -n (a server always lists all)")
	return cmd
}

type statusView struct {
	b         rolloutapi.Backend
	namespace string
	name      string
	output    string
	events    int
}

// draw renders once and reports whether anything is still rolling (and if
// what ended, ended aborted).
func (v statusView) draw(ctx context.Context, w io.Writer) (state rollState, err error) {
	if v.name == "" {
		rs, err := v.b.List(ctx)
		if err != nil {
			return rollState{}, backendError(err)
		}
		for _, r := range rs {
			state.add(r.Status)
		}
		if v.output == "json" {
			return state, writeJSONTo(w, rs)
		}
		renderTable(w, rs)
		return state, nil
	}
	r, err := v.b.Get(ctx, v.namespace, v.name)
	if err != nil {
		return rollState{}, backendError(err)
	}
	state.add(r.Status)
	if v.output == "json" {
		return state, writeJSONTo(w, r)
	}
	var evs []rolloutapi.Event
	if v.events > 0 {
		if evs, err = v.b.History(ctx, v.namespace, v.name, v.events); err != nil {
			return rollState{}, backendError(err)
		}
	}
	renderRollout(w, r, evs)
	return state, nil
}

// watch redraws until nothing rolls. On a terminal it repaints in place;
// into a pipe it prints a frame only when it differs from the last one.
func (v statusView) watch(ctx context.Context, w io.Writer, every time.Duration) error {
	tty := isTerminal(w)
	var last []byte
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		var frame bytes.Buffer
		state, err := v.draw(ctx, &frame)
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
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// rollState summarises what -w waits for.
type rollState struct {
	rolling bool
	aborted bool
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
