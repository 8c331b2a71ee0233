package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/rollout/manifest"
)

func init() { addCommand(newValidateCommand) }

func newValidateCommand() *cobra.Command {
	var (
		output      string
		elsewhereOK bool
	)
	cmd := &cobra.Command{
		Use:   "validate DIR...",
		Short: "Check Rollout and AnalysisTemplate manifests",
		Long: `Validate reads every .yaml, .yml and .json file under each DIR (or the files
named), skipping hidden files and folders, and checks every Sluice object in
them: schema, the rules the API server would apply, and what only Sluice
knows (schedules, time zones, regexes, step order, analysis arguments).
Objects of other kinds are skipped. An AnalysisTemplate a Rollout names must
be among the files given (in the Rollout's namespace): a misspelt name would
otherwise pass here and abort the rollout at its analysis step. With
--templates-elsewhere (templates applied to a cluster apart from these files)
that check is off.

Every query a Rollout's analyses would send is rendered as the run renders
it (the Rollout's arguments, the templates' defaults, sample revisions) and
parsed with Prometheus's parser; an argument value outside quotes must be a
single number, duration or name, and a success or failure condition must
stay within the CEL cost limit on the largest result a condition takes.

Each problem is printed as file:line: field: reason. Warnings (a setting that
is valid but not honoured by every data plane, such as mirroring, which
proxyless gRPC clients do not do) go to standard error as
file:line: field: warning: reason, and never change the exit status.

Exit status: 0 if all is well, 1 if there are problems, 2 if the command
could not run (bad arguments, unreadable DIR, a limit exceeded).`,
		Example: `  sluice validate deploy/
  sluice validate -o json deploy/ > problems.json`,
		Args: usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return usageError{fmt.Errorf("--output must be text or json, not %q", output)}
			}
			opts := []manifest.Option{manifest.CheckGitSources(), manifest.CheckQueries()}
			if !elsewhereOK {
				opts = append(opts, manifest.RequireTemplates())
			}
			res, err := manifest.LoadDirs(args, opts...)
			if err != nil {
				return exitError{code: exitUsage, msg: err.Error()}
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				err = writeJSON(out, res)
			} else {
				err = writeText(out, cmd.ErrOrStderr(), res)
			}
			if err != nil {
				return fmt.Errorf("write output: %w", err)
			}
			if n := len(res.Problems); n > 0 {
				return exitError{code: exitFailure, msg: fmt.Sprintf("%s found", plural(n, "problem", "problems"))}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().BoolVar(&elsewhereOK, "templates-elsewhere", false, "do not require the AnalysisTemplates that Rollouts name to be among the files")
	return cmd
}

func writeText(w, warn io.Writer, res *manifest.Result) error {
	for _, p := range res.Warnings {
		p.Reason = "warning: " + p.Reason
		if _, err := fmt.Fprintln(warn, p.String()); err != nil {
			return err
		}
	}
	for _, p := range res.Problems {
		if _, err := fmt.Fprintln(w, p.String()); err != nil {
			return err
		}
	}
	if len(res.Problems) > 0 {
		return nil
	}
	_, err := fmt.Fprintf(w, "ok: %s, %s in %s%s\n",
		plural(res.Count(manifest.KindRollout), "Rollout", "Rollouts"),
		plural(res.Count(manifest.KindAnalysisTemplate), "AnalysisTemplate", "AnalysisTemplates"),
		plural(res.Files, "file", "files"),
		skippedNote(res.Skipped))
	return err
}

func skippedNote(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (%s of other kinds skipped)", plural(n, "document", "documents"))
}

// validateReport is the -o json output.
type validateReport struct {
	Problems          []manifest.Problem `json:"problems"`
	Warnings          []manifest.Problem `json:"warnings"`
	Files             int                `json:"files"`
	Rollouts          int                `json:"rollouts"`
	AnalysisTemplates int                `json:"analysisTemplates"`
	Skipped           int                `json:"skipped"`
}

func writeJSON(w io.Writer, res *manifest.Result) error {
	rep := validateReport{
		Problems:          res.Problems,
		Warnings:          res.Warnings,
		Files:             res.Files,
		Rollouts:          res.Count(manifest.KindRollout),
		AnalysisTemplates: res.Count(manifest.KindAnalysisTemplate),
		Skipped:           res.Skipped,
	}
	if rep.Problems == nil {
		rep.Problems = []manifest.Problem{}
	}
	if rep.Warnings == nil {
		rep.Warnings = []manifest.Problem{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}
