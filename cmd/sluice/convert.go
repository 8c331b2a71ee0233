package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/convert/argo"
)

func init() { addCommand(newConvertCommand) }

func newConvertCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "convert",
		Short: "Convert another tool's manifests into Sluice's",
		Long: `Convert turns the manifests of another progressive-delivery tool into
Sluice's. One converter so far: argo (Argo Rollouts).`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newConvertArgoCommand())
	return cmd
}

func newConvertArgoCommand() *cobra.Command {
	var (
		outDir  string
		report  string
		verbose bool
	)
	cmd := &cobra.Command{
		Use:   "argo FILE|DIR...",
		Short: "Convert Argo Rollouts manifests (Rollout, AnalysisTemplate) into Sluice's",
		Long: `Convert reads every .yaml, .yml and .json file under each DIR (or the files
named), skipping hidden files and folders, and converts the Argo Rollouts
objects in them, all as one set:

  Rollout (canary with Istio or without traffic routing, blueGreen)
                        → sluice.dev/v1alpha1 Rollout
  AnalysisTemplate, ClusterAnalysisTemplate (Prometheus metrics)
                        → sluice.dev/v1alpha1 AnalysisTemplate, with the
                          conditions translated from Argo's expr into CEL

A DestinationRule whose subsets Argo named otherwise gets them renamed
stable and canary. Every other document of those files is written as it
was, and comments stay with the fields they describe. The Services,
VirtualServices and Deployments among the files tell a Rollout its port,
hosts and pod template, so convert a whole folder at once.

The converted files go to standard output (each after a comment naming it),
or with -o to DIR, each at its path below the folder given (a file named
by itself at its base name). Files without Argo Rollouts objects are not
written.

Every field that could not be carried over exactly is reported on standard
error as file:line: field: level: message, the level being
  approximated    converted, with a difference the message states
  no equivalent   left out of the output
and, with -v, also
  note            not needed in Sluice, or renamed
followed by a summary. docs/migrating-from-argo-rollouts.md compares the
two APIs.

Exit status: 0 if everything converted, 1 if something has no equivalent
(what could be converted is still written), 2 if the command could not run.`,
		Example: `  sluice convert argo rollouts/ -o sluice/
  sluice convert argo rollout.yaml analysis.yaml > converted.yaml
  sluice convert argo -o sluice/ --report json rollouts/ > report.json
  sluice validate sluice/`,
		Args: usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if report != "text" && report != "json" {
				return usageError{fmt.Errorf("--report must be text or json, not %q", report)}
			}
			if report == "json" && outDir == "" {
				return usageError{errors.New("--report json writes to standard output, which holds the manifests without -o DIR")}
			}
			files, err := argo.ReadPaths(args)
			if err != nil {
				return exitError{code: exitUsage, msg: err.Error()}
			}
			res := argo.Convert(files)
			if err := writeConverted(cmd.OutOrStdout(), outDir, res); err != nil {
				return exitError{code: exitUsage, msg: err.Error()}
			}
			if report == "json" {
				err = writeConvertJSON(cmd.OutOrStdout(), res)
			} else {
				err = writeConvertReport(cmd.ErrOrStderr(), res, verbose)
			}
			if err != nil {
				return fmt.Errorf("write report: %w", err)
			}
			if !res.Complete() {
				return exitError{code: exitFailure}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&outDir, "output-dir", "o", "", "write the converted files below `DIR` instead of to standard output")
	cmd.Flags().StringVar(&report, "report", "text", "report format: text (standard error) or json (standard output; needs -o)")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "also report notes (fields not needed in Sluice, renames)")
	return cmd
}

func writeConverted(stdout io.Writer, dir string, res *argo.Result) error {
	for i, f := range res.Files {
		if dir == "" {
			sep := ""
			if i > 0 {
				sep = "---\n"
			}
			if _, err := fmt.Fprintf(stdout, "%s# sluice convert argo: %s\n%s", sep, f.Path, f.Data); err != nil {
				return err
			}
			continue
		}
		rel := filepath.FromSlash(f.Rel)
		if !filepath.IsLocal(rel) {
			return fmt.Errorf("%s: refusing to write outside %s", f.Rel, dir)
		}
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func writeConvertReport(w io.Writer, res *argo.Result, verbose bool) error {
	for _, f := range res.Findings {
		if f.Level == argo.Note && !verbose {
			continue
		}
		if _, err := fmt.Fprintln(w, f.String()); err != nil {
			return err
		}
	}
	counts := map[string]int{}
	for _, o := range res.Objects {
		counts[o.Outcome()]++
	}
	var parts []string
	for _, k := range []string{"clean", "approximated", "partial", "not converted"} {
		if counts[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "no Argo Rollouts objects found")
	}
	_, err := fmt.Fprintf(w, "%s: %s in %s\n", plural(len(res.Objects), "object", "objects"), strings.Join(parts, ", "), plural(len(res.Files), "file written", "files written"))
	return err
}

// convertReport is the --report json output.
type convertReport struct {
	Objects  []convertObject `json:"objects"`
	Findings []argo.Finding  `json:"findings"`
	Complete bool            `json:"complete"`
}

type convertObject struct {
	argo.Object
	Outcome string `json:"outcome"`
}

func writeConvertJSON(w io.Writer, res *argo.Result) error {
	rep := convertReport{Objects: []convertObject{}, Findings: res.Findings, Complete: res.Complete()}
	for _, o := range res.Objects {
		rep.Objects = append(rep.Objects, convertObject{o, o.Outcome()})
	}
	if rep.Findings == nil {
		rep.Findings = []argo.Finding{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}
