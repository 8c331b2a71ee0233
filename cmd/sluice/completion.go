package main

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/clientcmd"
)

// completionTimeout bounds one shell completion's request: a shell that
// waits longer for a Tab than this is worse than no suggestion.
const completionTimeout = 5 * time.Second

// addCompletion offers, for a command that talks to a Sluice, the names
// of the target's rollouts as its NAME argument and the kubeconfig's
// contexts for --context. Shells get them from cobra's completion
// scripts (sluice completion SHELL), which run `sluice __complete ...`.
func (t *target) addCompletion(cmd *cobra.Command) {
	if cmd.ValidArgsFunction == nil {
		if strings.Contains(cmd.Use, "NAME") {
			cmd.ValidArgsFunction = t.completeNames
		} else {
			cmd.ValidArgsFunction = cobra.NoFileCompletions
		}
	}
	// Errors only for a flag that does not exist or a second registration,
	// both mistakes of this file that the completion test would show.
	_ = cmd.RegisterFlagCompletionFunc("context", completeContexts)
}

// completeNames lists the rollouts of the namespace the command would
// use, through the very backend the command would use: the same flags,
// environment, kubeconfig and credentials.
func (t *target) completeNames(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completionTimeout)
	defer cancel()
	b, err := t.backend()
	if err != nil {
		// Completion has no place for errors; BASH_COMP_DEBUG_FILE (any
		// shell) collects them.
		cobra.CompDebugln(fmt.Sprintf("rollout names: %v", err), false)
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	rs, err := b.List(ctx)
	if err != nil {
		cobra.CompDebugln(fmt.Sprintf("rollout names: %v", err), false)
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []cobra.Completion
	for _, r := range rs {
		// A server lists every namespace, a cluster perhaps all of them
		// (-A); the command works in one.
		if r.Namespace != t.namespace || !strings.HasPrefix(r.Name, toComplete) {
			continue
		}
		// The shell reads suggestions line by line, name and description
		// split by a tab, and may evaluate them: what a server sends that
		// is not a Kubernetes name, or a phase, is not passed on.
		if len(validation.IsDNS1123Subdomain(r.Name)) > 0 {
			continue
		}
		desc := string(r.Status.Phase)
		if desc == "" {
			desc = "no status yet"
		} else if !phaseWord.MatchString(desc) {
			desc = "unknown phase"
		}
		names = append(names, cobra.CompletionWithDesc(r.Name, desc))
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// phaseWord is what a phase can be (Healthy, Progressing, ...).
var phaseWord = regexp.MustCompile(`^[A-Za-z]{1,32}$`)

// completeContexts lists the contexts of the kubeconfig the command would
// read (--kubeconfig, else $KUBECONFIG, else ~/.kube/config).
func completeContexts(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if p, err := cmd.Flags().GetString("kubeconfig"); err == nil {
		rules.ExplicitPath = p
	}
	raw, err := rules.Load()
	if err != nil {
		cobra.CompDebugln(fmt.Sprintf("kubeconfig contexts: %v", err), false)
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []cobra.Completion
	for name := range raw.Contexts {
		if strings.HasPrefix(name, toComplete) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names, cobra.ShellCompDirectiveNoFileComp
}

// flagValues are the values of flags that take one of a few words, for
// completion, wherever in the tree the flag is.
var flagValues = map[string][]cobra.Completion{
	"log-format": {"text", "json"},
	"log-level":  {"debug", "info", "warn", "error"},
	"role":       {"read", "operate"},
}

// addValueCompletion registers the values of flagValues, and text or json
// for every --output that offers those, on each command of the tree.
func addValueCompletion(c *cobra.Command) {
	for name, values := range flagValues {
		if c.Flags().Lookup(name) != nil {
			_ = c.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
		}
	}
	if f := c.Flags().Lookup("output"); f != nil && strings.Contains(f.Usage, "text or json") {
		_ = c.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]cobra.Completion{"text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	}
	for _, sub := range c.Commands() {
		addValueCompletion(sub)
	}
}
