package main

import (
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
)

// The names the binary answers to besides sluice. Krew installs a plugin
// as kubectl-NAME, and kubectl runs it for `kubectl NAME ...`; kubectl
// (1.26 and later) completes a plugin's arguments by running
// kubectl_complete-NAME, a link to the same binary.
const (
	kubectlPluginName   = "kubectl-sluice"
	kubectlCompleteName = "kubectl_complete-sluice"
	kubectlDisplayName  = "kubectl sluice"
)

// invocation works out from argv[0] how the program was called: the name
// help and errors use, and the arguments to run. As kubectl's completion
// helper it answers cobra's completion request for the same arguments.
func invocation(argv0 string, args []string) (name string, runArgs []string) {
	base := strings.TrimSuffix(filepath.Base(argv0), ".exe")
	switch base {
	case kubectlPluginName:
		return kubectlDisplayName, args
	case kubectlCompleteName:
		return kubectlDisplayName, append([]string{cobra.ShellCompRequestCmd}, args...)
	}
	return "sluice", args
}

// isKubectlPlugin reports whether cmd's program runs as kubectl's plugin.
func isKubectlPlugin(cmd *cobra.Command) bool {
	return cmd.Root().DisplayName() == kubectlDisplayName
}

// renameExamples makes the examples of every command start with the name
// the program was called by, so they can be pasted as they are.
func renameExamples(root *cobra.Command, name string) {
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Example != "" {
			lines := strings.Split(c.Example, "\n")
			for i, l := range lines {
				trimmed := strings.TrimLeft(l, " ")
				if rest, ok := strings.CutPrefix(trimmed, "sluice "); ok {
					lines[i] = l[:len(l)-len(trimmed)] + name + " " + rest
				}
			}
			c.Example = strings.Join(lines, "\n")
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
