package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes shared by every verb.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and found something wrong
	exitUsage   = 2 // the command could not run as asked
)

// commands lists the constructors of the verbs. A new verb lives in a file
// of its own and adds itself from init with addCommand, so verbs never
// touch each other's files.
var commands []func() *cobra.Command

func addCommand(newCmd func() *cobra.Command) { commands = append(commands, newCmd) }

// newRootCommand builds a fresh command tree, so tests can run commands in
// parallel without sharing flag state. name is how help and errors name
// the program: "sluice", or "kubectl sluice" as kubectl's plugin.
func newRootCommand(name string, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "sluice",
		Short: "GitOps progressive delivery: canary, blue-green and dark releases",
		Long: `Sluice moves the traffic of a service from its stable version to a new one
step by step, gates every step on analysis, and rolls back on its own when an
SLO is breached.`,
		// Runnable with any arguments, so that an unknown verb reaches RunE
		// and becomes a usage error rather than help text and success.
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += fmt.Sprintf("; did you mean %q?", s[0])
			}
			return usageError{errors.New(msg)}
		},
		SilenceErrors: true,
		SilenceUsage:  true,
		Version:       readVersion().Version,
		// Help, errors and completion scripts name the program as typed.
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: name},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	// Before the completion command is added: it keeps the writer it
	// finds then.
	root.SetOut(stdout)
	root.SetErr(stderr)
	// Declared here rather than left to cobra, which would also take -v:
	// kubectl users read -v as verbosity.
	root.Flags().Bool("version", false, "print the version and exit (the version command tells more)")
	root.SetVersionTemplate("{{.DisplayName}} {{.Version}}\n")
	cmds := make([]*cobra.Command, 0, len(commands))
	for _, newCmd := range commands {
		cmds = append(cmds, newCmd())
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].Name() < cmds[j].Name() })
	root.AddCommand(cmds...)
	// Added now rather than at Execute, so that the help test walks them.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	addValueCompletion(root)
	strictGroups(root)
	if name != "sluice" {
		renameExamples(root, name)
	}
	return root
}

// strictGroups makes a command that only groups others (cobra's
// completion) refuse an unknown subcommand, as the root does, instead of
// printing its help and succeeding: `sluice completion tcsh` is a
// mistake a script should see.
func strictGroups(c *cobra.Command) {
	for _, sub := range c.Commands() {
		if !sub.Runnable() && sub.HasAvailableSubCommands() {
			sub.Args = cobra.ArbitraryArgs
			sub.RunE = func(cmd *cobra.Command, args []string) error {
				if len(args) == 0 {
					return cmd.Help()
				}
				names := make([]string, 0, len(cmd.Commands()))
				for _, s := range cmd.Commands() {
					if s.IsAvailableCommand() {
						names = append(names, s.Name())
					}
				}
				return usageError{fmt.Errorf("unknown command %q for %q; it takes one of: %s", args[0], cmd.CommandPath(), strings.Join(names, ", "))}
			}
		}
		strictGroups(sub)
	}
}

// run executes the command line and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr)
}

// runContext is run with a context whose end stops a command that runs
// until interrupted (tests).
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runAs(ctx, "sluice", args, stdout, stderr)
}

// runAs is runContext for the program called name (see invocation).
func runAs(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	root := newRootCommand(name, stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(stderr, "sluice:", ee.msg)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "sluice:", err)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", root.DisplayName())
		return exitUsage
	}
	return exitFailure
}

// usageError marks a command line that cannot be run as given.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitError ends a command with a code after it has printed its own
// output; msg, if any, goes to stderr.
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return fmt.Sprintf("exit %d: %s", e.code, e.msg) }

// usageArgs makes argument-count errors usage errors.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}
