package main

import (
	"context"
	"io"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// placeholder is what a backquoted word in a flag's description may be:
// a metavariable such as DIR, which pflag shows in place of the type.
// Anything else in backquotes (`sluice run`) ends up there by mistake.
var placeholder = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

var (
	quoted      = regexp.MustCompile(`"[^"]*"`)
	defaultWord = regexp.MustCompile(`\bdefault\b`)
)

// commandPaths lists the arguments that reach every command of the tree
// below c, c's own first.
func commandPaths(c *cobra.Command, path []string) [][]string {
	out := [][]string{path}
	for _, sub := range c.Commands() {
		out = append(out, commandPaths(sub, append(append([]string(nil), path...), sub.Name()))...)
	}
	return out
}

// TestHelpTexts renders every command's --help, under both names of the
// program, and fails on what careless flag descriptions turn into: a
// backquoted phrase that pflag makes the value's placeholder, two
// defaults on one flag, a secret from the environment shown as a default,
// and usage or examples that name the program otherwise than it was
// called. Not parallel: it sets SLUICE_TOKEN.
func TestHelpTexts(t *testing.T) {
	const secret = "sluice_helptest_not_for_display"
	t.Setenv("SLUICE_TOKEN", secret)
	for _, name := range []string{"sluice", kubectlDisplayName} {
		root := newRootCommand(name, io.Discard, io.Discard)
		paths := commandPaths(root, nil)
		if len(paths) < 15 {
			t.Fatalf("%s: only %d commands in the tree: %v", name, len(paths), paths)
		}
		for _, path := range paths {
			cmd, _, err := root.Find(path)
			if err != nil {
				t.Fatalf("%v: %v", path, err)
			}
			t.Run(name+" "+strings.Join(path, " "), func(t *testing.T) {
				var out, errOut strings.Builder
				code := runAs(context.Background(), name, append(append([]string(nil), path...), "--help"), &out, &errOut)
				help := out.String()
				if code != exitOK || errOut.Len() > 0 {
					t.Fatalf("--help: exit %d, stderr %q", code, errOut.String())
				}
				checkHelp(t, name, cmd, help, secret)
			})
		}
	}
}

func checkHelp(t *testing.T, name string, cmd *cobra.Command, help, secret string) {
	t.Helper()
	if strings.Contains(help, "`") {
		t.Errorf("help has a backtick:\n%s", help)
	}
	if strings.Contains(help, secret) {
		t.Errorf("help shows $SLUICE_TOKEN:\n%s", help)
	}
	if !strings.Contains(help, "Usage:\n  "+name+" ") {
		t.Errorf("usage does not start with %q:\n%s", name, help)
	}
	if _, examples, ok := strings.Cut(help, "Examples:\n"); ok {
		examples, _, _ = strings.Cut(examples, "\n\n")
		for _, l := range strings.Split(examples, "\n") {
			if l = strings.TrimSpace(l); strings.HasPrefix(l, "sluice ") && name != "sluice" {
				t.Errorf("example %q does not start with %q", l, name)
			}
		}
	}
	lines := strings.Split(help, "\n")
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		if strings.Contains(f.Usage, "`") {
			if ph, _ := pflag.UnquoteUsage(f); !placeholder.MatchString(ph) {
				t.Errorf("--%s: %q in backquotes becomes the placeholder of its value: %q", f.Name, ph, f.Usage)
			}
		}
		var line string
		for _, l := range lines {
			if strings.Contains(l, "--"+f.Name+" ") || strings.HasSuffix(l, "--"+f.Name) {
				line = l
				break
			}
		}
		if line == "" {
			t.Errorf("--%s: not in the help", f.Name)
			return
		}
		// Quoted text is a value ("default" is a namespace), not a default.
		if n := len(defaultWord.FindAllString(quoted.ReplaceAllString(line, `""`), -1)); n > 1 {
			t.Errorf("--%s names %d defaults: %q", f.Name, n, strings.TrimSpace(line))
		}
	})
}
