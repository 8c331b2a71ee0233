package main

import (
	"slices"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

// checkClusterCompletion completes rollout names against the cluster of
// TestVerbsAgainstCluster, where ns holds one Rollout, checkout: with the
// kubeconfig and namespace the command would use, under both of the
// program's names, and the kubeconfig's contexts for --context.
func checkClusterCompletion(t *testing.T, ns, kubeconfig, nowhere string) {
	t.Helper()
	for _, tc := range []struct {
		program string
		args    []string
		want    []string
	}{
		{"sluice", []string{"promote", "--kubeconfig", kubeconfig, "-n", ns, ""}, []string{"checkout"}},
		{"sluice", []string{"status", "--kubeconfig", kubeconfig, "-n", ns, "ch"}, []string{"checkout"}},
		{kubectlDisplayName, []string{"history", "--kubeconfig", kubeconfig, "--namespace", ns, ""}, []string{"checkout"}},
		{"sluice", []string{"promote", "--kubeconfig", kubeconfig, "-n", ns, "x"}, nil},
		{"sluice", []string{"promote", "--kubeconfig", kubeconfig, "-n", ns + "-other", ""}, nil},
		{"sluice", []string{"promote", "--kubeconfig", nowhere, "-n", ns, ""}, nil},
	} {
		got, directive := complete(t, tc.program, tc.args...)
		var names []string
		for _, s := range got {
			name, _, _ := strings.Cut(s, "\t")
			names = append(names, name)
		}
		if !slices.Equal(names, tc.want) || directive != ":4" {
			t.Errorf("%s __complete %q = %q %s; want %q :4", tc.program, tc.args, got, directive, tc.want)
		}
	}

	kc, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	var contexts []string
	for name := range kc.Contexts {
		contexts = append(contexts, name)
	}
	slices.Sort(contexts)
	if got, _ := complete(t, "sluice", "status", "--kubeconfig", kubeconfig, "--context", ""); len(contexts) == 0 || !slices.Equal(got, contexts) {
		t.Errorf("--context completes to %q, want the kubeconfig's contexts %q", got, contexts)
	}
}
