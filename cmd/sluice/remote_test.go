package main

import (
	"errors"
	"testing"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
)

func TestTargetSelection(t *testing.T) {
	t.Parallel()
	const (
		home    = "home"     // ~/.kube/config exists
		pod     = "pod"      // running in a pod: service env and token
		podless = "env-only" // the service env without a token
	)
	for _, tc := range []struct {
		name      string
		args      []string
		env       map[string]string
		files     string
		cluster   bool
		wantUsage bool
		plugin    bool // run as kubectl sluice
	}{
		{name: "nothing: the local server"},
		{name: "SLUICE_SERVER", env: map[string]string{"SLUICE_SERVER": "http://s:8080"}, files: home},
		{name: "KUBECONFIG", env: map[string]string{"KUBECONFIG": "/k"}, cluster: true},
		{name: "~/.kube/config", files: home, cluster: true},
		{name: "in a pod", files: pod, env: map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}, cluster: true},
		{name: "service env without a token", files: podless, env: map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}},
		{name: "--server beats ~/.kube/config", args: []string{"--server=http://s"}, files: home, env: map[string]string{"KUBECONFIG": "/k"}},
		{name: "--kubeconfig beats SLUICE_SERVER", args: []string{"--kubeconfig=/k"}, env: map[string]string{"SLUICE_SERVER": "http://s"}, cluster: true},
		{name: "--context", args: []string{"--context=prod"}, cluster: true},
		{name: "--server and --context", args: []string{"--server=http://s", "--context=prod"}, wantUsage: true},
		{name: "--token against a cluster", args: []string{"--token=t"}, files: home, wantUsage: true},
		{name: "--token against a server", args: []string{"--token=t"}},
		{name: "kubectl plugin: the cluster, without a kubeconfig too", plugin: true, cluster: true},
		{name: "kubectl plugin: the cluster, whatever SLUICE_SERVER says", plugin: true, env: map[string]string{"SLUICE_SERVER": "http://s"}, cluster: true},
		{name: "kubectl plugin: --server", plugin: true, args: []string{"--server=http://s"}, files: home},
		{name: "kubectl plugin: --token needs --server", plugin: true, args: []string{"--token=t"}, wantUsage: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var tg target
			cmd := &cobra.Command{Use: "x"}
			tg.addFlags(cmd)
			if tc.plugin {
				root := &cobra.Command{Use: "sluice", Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: kubectlDisplayName}}
				root.AddCommand(cmd)
			}
			if err := cmd.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			exists := func(path string) bool {
				switch path {
				case clientcmd.RecommendedHomeFile:
					return tc.files == home
				case inClusterToken:
					return tc.files == pod
				}
				return false
			}
			cluster, err := tg.useCluster(func(k string) string { return tc.env[k] }, exists)
			var ue usageError
			if tc.wantUsage {
				if !errors.As(err, &ue) {
					t.Fatalf("useCluster = %v, %v; want a usage error", cluster, err)
				}
				return
			}
			if err != nil || cluster != tc.cluster {
				t.Fatalf("useCluster = %v, %v; want %v", cluster, err, tc.cluster)
			}
		})
	}
}
