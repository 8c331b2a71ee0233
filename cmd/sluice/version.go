package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func init() { addCommand(newVersionCommand) }

// versionInfo is what the binary knows of its own build. Only the Go
// toolchain writes it (runtime/debug.ReadBuildInfo): there is no version
// file to forget to bump.
type versionInfo struct {
	// Version is the main module's version: a tag (v1.2.0) or a
	// pseudo-version (v0.0.0-20261206235000-446570c1b2a3+dirty) when built
	// in a Git checkout, "(devel)" when the toolchain could not tell.
	Version string `json:"version"`
	// Revision, Time and Modified describe the Git commit of the build:
	// empty without VCS information (go build -buildvcs=false, or a
	// source tree without .git, as in a container build).
	Revision string `json:"revision,omitempty"`
	Time     string `json:"time,omitempty"`
	Modified bool   `json:"modified"`
	// GoVersion is the toolchain that built the binary, Platform its
	// GOOS/GOARCH.
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// readVersion reads the build information the toolchain embedded.
func readVersion() versionInfo { return versionOf(debug.ReadBuildInfo()) }

// versionOf turns build information into versionInfo; ok false (a binary
// built without module support) leaves what the runtime knows.
func versionOf(bi *debug.BuildInfo, ok bool) versionInfo {
	v := versionInfo{Version: "(devel)", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if !ok || bi == nil {
		return v
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		v.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func newVersionCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, Git revision and Go toolchain of this binary",
		Long: `Version prints what the Go toolchain recorded when it built this binary: the
module version (a release tag, or a pseudo-version naming the commit), the Git
revision and commit time, whether the checkout had uncommitted changes, and
the Go version. A binary built without Git information (go build
-buildvcs=false, or from a source tree without .git) shows no revision.`,
		Example: `  sluice version
  sluice version -o json`,
		Args:              usageArgs(cobra.NoArgs),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			v := readVersion()
			out := cmd.OutOrStdout()
			if output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			fmt.Fprintf(out, "%s %s\n", cmd.Root().DisplayName(), v.Version)
			if v.Revision != "" {
				rev := v.Revision
				if v.Modified {
					rev += " (modified)"
				}
				fmt.Fprintf(out, "  revision  %s\n", rev)
			}
			if v.Time != "" {
				fmt.Fprintf(out, "  committed %s\n", v.Time)
			}
			fmt.Fprintf(out, "  go        %s %s\n", v.GoVersion, v.Platform)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}
