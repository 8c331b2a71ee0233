package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// kubeconfigFor writes a kubeconfig whose contexts each name a cluster at
// one address; the first is the current context.
func kubeconfigFor(t *testing.T, dir string, contexts ...[2]string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Config\ncurrent-context: %s\nusers:\n- name: u\n  user: {token: t}\nclusters:\n", contexts[0][0])
	for _, c := range contexts {
		fmt.Fprintf(&b, "- name: %s\n  cluster: {server: %q}\n", c[0], c[1])
	}
	b.WriteString("contexts:\n")
	for _, c := range contexts {
		fmt.Fprintf(&b, "- name: %s\n  context: {cluster: %s, user: u}\n", c[0], c[0])
	}
	p := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestKubectlPlugin runs the built binary under the names krew and kubectl
// give it, as kubectl would: kubectl-sluice with the arguments after
// `kubectl sluice`, and kubectl_complete-sluice for completion.
func TestKubectlPlugin(t *testing.T) {
	t.Parallel()
	bin := sluiceBinary(t)
	dir := t.TempDir()
	link := func(name string) string {
		p := filepath.Join(dir, name)
		if runtime.GOOS == "windows" {
			p += ".exe"
		}
		if err := os.Symlink(bin, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plugin, completer := link(kubectlPluginName), link(kubectlCompleteName)
	// Nothing from the machine's own setup: no ~/.kube/config, no server.
	home := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "HOME", "KUBECONFIG", "SLUICE_SERVER", "SLUICE_TOKEN":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+home)
	kubeconfig := kubeconfigFor(t, t.TempDir(), [2]string{"main", "https://127.0.0.1:1"}, [2]string{"other", "https://127.0.0.1:3"})
	other := kubeconfigFor(t, t.TempDir(), [2]string{"third", "https://127.0.0.1:4"})
	exe := func(path string, extraEnv []string, args ...string) (code int, stdout, stderr string) {
		t.Helper()
		cmd := exec.Command(path, args...)
		cmd.Env = append(append([]string(nil), env...), extraEnv...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%s %v: %v", path, args, err)
		}
		return code, out.String(), errOut.String()
	}
	withKubeconfig := []string{"KUBECONFIG=" + kubeconfig, "SLUICE_SERVER=http://127.0.0.1:2"}

	for _, tc := range []struct {
		name   string
		path   string
		env    []string
		args   []string
		code   int
		want   []string // in stdout+stderr
		absent []string
	}{
		{"version", plugin, nil, []string{"version"}, exitOK, []string{"kubectl sluice " + "", "go "}, nil},
		{"--version", plugin, nil, []string{"--version"}, exitOK, []string{"kubectl sluice "}, nil},
		{"--help", plugin, nil, []string{"--help"}, exitOK,
			[]string{"Usage:\n  kubectl sluice [flags]\n  kubectl sluice [command]", `Use "kubectl sluice [command] --help"`}, []string{"  sluice "}},
		{"a verb's help", plugin, nil, []string{"promote", "--help"}, exitOK, []string{"kubectl sluice promote NAME [flags]"}, nil},
		{"examples", plugin, nil, []string{"status", "--help"}, exitOK, []string{"\n  kubectl sluice status reviews -w\n"}, nil},
		{"an unknown verb", plugin, nil, []string{"promot"}, exitUsage, []string{`for "kubectl sluice"`, "Run 'kubectl sluice --help' for usage."}, nil},
		// kubectl's cluster from KUBECONFIG, even with SLUICE_SERVER set.
		{"KUBECONFIG", plugin, withKubeconfig, []string{"status"}, exitUnavailable, []string{"127.0.0.1:1"}, []string{"127.0.0.1:2"}},
		// kubectl passes its flags after the plugin's name, before the verb.
		{"--context and -n before the verb", plugin, withKubeconfig, []string{"--context", "other", "-n", "shop", "status", "x"}, exitUnavailable,
			[]string{"127.0.0.1:3", "rollout shop/x"}, nil},
		{"--kubeconfig", plugin, withKubeconfig, []string{"--kubeconfig=" + other, "history", "x"}, exitUnavailable, []string{"127.0.0.1:4"}, nil},
		{"no such context", plugin, withKubeconfig, []string{"--context", "prod", "status"}, exitUsage, []string{`"prod"`}, nil},
		{"--server still names a sluice run server", plugin, withKubeconfig, []string{"status", "--server", "http://127.0.0.1:5"}, exitUnavailable,
			[]string{"127.0.0.1:5"}, nil},
		// The same binary as sluice keeps its own rule: SLUICE_SERVER first.
		{"as sluice", bin, withKubeconfig, []string{"status"}, exitUnavailable, []string{"127.0.0.1:2"}, []string{"127.0.0.1:1"}},
		{"kubectl's completion helper", completer, nil, []string{"stat"}, exitOK, []string{"status\t", ":4"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := exe(tc.path, tc.env, tc.args...)
			all := stdout + stderr
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, all)
			}
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("output lacks %q:\n%s", w, all)
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(all, a) {
					t.Errorf("output has %q:\n%s", a, all)
				}
			}
		})
	}

	t.Run("version JSON matches go version -m", func(t *testing.T) {
		code, stdout, stderr := exe(plugin, nil, "version", "-o", "json")
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var got versionInfo
		dec := json.NewDecoder(strings.NewReader(stdout))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("version -o json: %v\n%s", err, stdout)
		}
		want := goVersionM(t, bin)
		if got != want {
			t.Errorf("version -o json = %+v\ngo version -m says %+v", got, want)
		}
	})
}

// goVersionM reads a binary's build information with the toolchain's own
// `go version -m`, as versionInfo.
func goVersionM(t *testing.T, bin string) versionInfo {
	t.Helper()
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	v := versionInfo{Platform: runtime.GOOS + "/" + runtime.GOARCH}
	first, rest, _ := strings.Cut(string(out), "\n")
	_, v.GoVersion, _ = strings.Cut(first, ": ")
	v.GoVersion = strings.TrimSpace(v.GoVersion)
	for _, l := range strings.Split(rest, "\n") {
		f := strings.Split(strings.TrimSpace(l), "\t")
		switch {
		case len(f) >= 3 && f[0] == "mod":
			v.Version = f[2]
		case len(f) == 2 && f[0] == "build":
			k, val, _ := strings.Cut(f[1], "=")
			switch k {
			case "vcs.revision":
				v.Revision = val
			case "vcs.time":
				v.Time = val
			case "vcs.modified":
				v.Modified = val == "true"
			}
		}
	}
	return v
}

// The krew manifest names the plugin and its binary as the code expects,
// with a pinned version and a checksum for every archive.
func TestKrewManifest(t *testing.T) {
	t.Parallel()
	path := filepath.Join("..", "..", "deploy", "krew", "sluice.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec struct {
			Version          string `json:"version"`
			Homepage         string `json:"homepage"`
			Caveats          string `json:"caveats"`
			ShortDescription string `json:"shortDescription"`
			Description      string `json:"description"`
			Platforms        []struct {
				Selector struct {
					MatchLabels map[string]string `json:"matchLabels"`
				} `json:"selector"`
				URI    string `json:"uri"`
				SHA256 string `json:"sha256"`
				Bin    string `json:"bin"`
				Files  []struct {
					From string `json:"from"`
					To   string `json:"to"`
				} `json:"files"`
			} `json:"platforms"`
		} `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(data, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if m.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || m.Kind != "Plugin" {
		t.Errorf("%s: apiVersion %q kind %q, want krew's v1alpha2 Plugin", path, m.APIVersion, m.Kind)
	}
	// krew links the binary as kubectl-NAME: the name the code answers to.
	if "kubectl-"+m.Metadata.Name != kubectlPluginName {
		t.Errorf("%s: metadata.name %q: krew would install kubectl-%s, the binary answers to %s", path, m.Metadata.Name, m.Metadata.Name, kubectlPluginName)
	}
	if !regexp.MustCompile(`^v\d+\.\d+\.\d+$`).MatchString(m.Spec.Version) {
		t.Errorf("%s: spec.version %q is not vMAJOR.MINOR.PATCH", path, m.Spec.Version)
	}
	if m.Spec.ShortDescription == "" || len(m.Spec.ShortDescription) > 60 || m.Spec.Description == "" {
		t.Errorf("%s: spec.shortDescription (%d characters, krew wants at most 60) and spec.description are required", path, len(m.Spec.ShortDescription))
	}
	if len(m.Spec.Platforms) == 0 {
		t.Fatalf("%s: no platforms", path)
	}
	sum := regexp.MustCompile(`^[0-9a-f]{64}$`)
	for i, p := range m.Spec.Platforms {
		field := fmt.Sprintf("%s: spec.platforms[%d]", path, i)
		osName := p.Selector.MatchLabels["os"]
		if osName == "" || p.Selector.MatchLabels["arch"] == "" {
			t.Errorf("%s.selector: os and arch required", field)
		}
		if !strings.Contains(p.URI, "/"+m.Spec.Version+"/") || !strings.Contains(p.URI, osName+"_"+p.Selector.MatchLabels["arch"]) {
			t.Errorf("%s.uri %q: not the archive of %s for %s/%s", field, p.URI, m.Spec.Version, osName, p.Selector.MatchLabels["arch"])
		}
		if !sum.MatchString(p.SHA256) {
			t.Errorf("%s.sha256 %q: not 64 hex digits", field, p.SHA256)
		}
		var shipsBin bool
		for _, f := range p.Files {
			shipsBin = shipsBin || f.From == p.Bin
		}
		if p.Bin == "" || !shipsBin {
			t.Errorf("%s: bin %q is not among its files", field, p.Bin)
		}
	}
}
