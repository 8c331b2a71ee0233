package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/user"
	"time"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

func init() {
	addCommand(func() *cobra.Command {
		return newManualCommand("promote", v1alpha1.CommandPromote,
			"Skip the current step (or, with --full, all of them) and clear a pause")
	})
	addCommand(func() *cobra.Command {
		return newManualCommand("abort", v1alpha1.CommandAbort, "Send all traffic back to the stable revision now")
	})
	addCommand(func() *cobra.Command {
		return newManualCommand("retry", v1alpha1.CommandRetry, "Start an aborted rollout again from step 1")
	})
	addCommand(func() *cobra.Command {
		return newManualCommand("pause", v1alpha1.CommandPause, "Hold the rollout at its current step")
	})
	addCommand(func() *cobra.Command {
		return newManualCommand("resume", v1alpha1.CommandResume, "Release a pause; after an inconclusive analysis, measure again")
	})
}

// newManualCommand builds one of the verbs that send a manual command.
func newManualCommand(verb string, kind v1alpha1.CommandKind, short string) *cobra.Command {
	var (
		t       target
		full    bool
		output  string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   verb + " NAME",
		Short: short,
		Long: short + `.

The command is applied by the engine at its next step; sluice waits for it and
prints what it did. Every command is recorded with who sent it and when.

Exit status: 0 applied, 1 refused by the engine (the message says why),
2 usage error, 3 no such rollout, 4 server or cluster unreachable, credentials
refused, or (against a cluster) the controller did not apply it in time.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			k := kind
			if full {
				k = v1alpha1.CommandPromoteFull
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			b, err := t.backend()
			if err != nil {
				return err
			}
			resp, err := b.Command(ctx, t.namespace, args[0], rolloutapi.CommandRequest{Kind: k, By: whoami()})
			if err != nil {
				return backendError(err)
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(resp); err != nil {
					return err
				}
			} else {
				fmt.Fprintln(out, rolloutapi.CommandLine(t.namespace, args[0], resp))
			}
			if resp.Refused {
				return exitError{code: exitFailure}
			}
			return nil
		},
	}
	t.addFlags(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the engine to apply the command")
	if kind == v1alpha1.CommandPromote {
		cmd.Flags().BoolVar(&full, "full", false, "skip all remaining steps and analysis: go to 100% now")
	}
	return cmd
}

// whoami names the person at the keyboard for the audit trail.
func whoami() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return ""
}
