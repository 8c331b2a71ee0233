package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseDefaultsAndStrictness(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte("git:\n  url: file:///srv/rollouts.git\n  interval: 15s\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.StateDir != "sluice-state" || c.Namespace != "default" || c.Git.Branch != "main" ||
		c.XDS.Address != "127.0.0.1:18000" || c.HTTP.Address != "127.0.0.1:8080" ||
		c.Shutdown.DrainTimeout.Duration != 30*time.Second || c.Git.Interval.Duration != 15*time.Second {
		t.Fatalf("defaults not applied: %+v", c)
	}
	if err := c.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
	for _, bad := range []struct{ yaml, want string }{
		{"git:\n  url: x\n  branchh: main\n", `unknown field "branchh"`},
		{"git:\n  url: x\n  interval: often\n", "invalid duration"},
		{"stateDir: [1]\n", "cannot unmarshal"},
	} {
		if _, err := Parse([]byte(bad.yaml)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", bad.yaml, err, bad.want)
		}
	}
}

func TestCheckNamesEveryKey(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte(`
git:
  branch: main
  tag: v1
xds:
  address: nowhere
  clientCAFile: ca.pem
http:
  address: 127.0.0.1:8080
  webhookAddress: "8082"
  tls: {certFile: a.crt}
  tokens:
  - {name: alice, role: operate, sha256: 2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90}
  - {name: alice, role: admin, sha256: nope}
secrets:
  prom:
    token: {env: A, file: b}
`))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Check()
	if err == nil {
		t.Fatal("Check accepted a broken config")
	}
	for _, want := range []string{"git.url: required", "git: set exactly one of branch, tag and commit", `xds.address: "nowhere"`, "xds.clientCAFile: mutual TLS", "secrets: no longer read",
		`http.webhookAddress: "8082"`, "http.tls: certFile and keyFile", `http.tokens[1].role: "admin"`, `http.tokens[1].name: "alice" is used twice`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Check() = %v\nwant it to mention %q", err, want)
		}
	}
}

func TestValues(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLUICE_TEST_TOKEN", "from-env")
	cases := []struct {
		v    ValueFrom
		want string
		err  string
	}{
		{ValueFrom{File: file}, "from-file", ""},
		{ValueFrom{Env: "SLUICE_TEST_TOKEN"}, "from-env", ""},
		{ValueFrom{Env: "SLUICE_TEST_UNSET"}, "", "k: environment variable SLUICE_TEST_UNSET is not set"},
		{ValueFrom{File: filepath.Join(dir, "nope")}, "", "k: open"},
		{ValueFrom{Env: "A", File: file}, "", "k: set one of env and file, not both"},
	}
	for _, tc := range cases {
		got, err := tc.v.Read("k")
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("Read(%+v) error = %v, want %q", tc.v, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("Read(%+v) = %q, %v; want %q", tc.v, got, err, tc.want)
		}
	}
	var none *ValueFrom
	if v, err := none.Read("http.token"); v != "" || err != nil {
		t.Errorf("nil ValueFrom = %q, %v", v, err)
	}
}

func TestGitSourceReadsCredentials(t *testing.T) {
	dir := t.TempDir()
	known := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(known, []byte("git.example.com ssh-ed25519 AAAA\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SLUICE_TEST_GIT_TOKEN", "s3cret")
	g := Git{URL: "https://git.example.com/r.git", Branch: "main", Auth: GitAuth{Token: &ValueFrom{Env: "SLUICE_TEST_GIT_TOKEN"}, KnownHostsFile: known}}
	src, err := g.Source()
	if err != nil {
		t.Fatal(err)
	}
	if src.Auth.Token != "s3cret" || !strings.Contains(string(src.Auth.KnownHosts), "ssh-ed25519") {
		t.Fatalf("auth = %+v", src.Auth)
	}
	g.Auth.SSHKeyFile = filepath.Join(dir, "missing")
	if _, err := g.Source(); err == nil || !strings.Contains(err.Error(), "git.auth.sshKeyFile") {
		t.Fatalf("missing key file error = %v", err)
	}
}

func TestAPITokens(t *testing.T) {
	t.Setenv("SLUICE_TEST_API_TOKEN", "s3cret")
	t.Setenv("SLUICE_TEST_EMPTY", "")
	sum := "2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90"
	h := HTTP{Tokens: []APIToken{{Name: "ci", Role: "read", SHA256: sum}}, Token: &ValueFrom{Env: "SLUICE_TEST_API_TOKEN"}}
	toks, err := h.APITokens()
	if err != nil || len(toks) != 2 || toks[0].Name != "ci" || toks[1].Name != "api" || toks[1].Role != "operate" {
		t.Fatalf("APITokens = %+v, %v", toks, err)
	}
	h.Token = &ValueFrom{Env: "SLUICE_TEST_EMPTY"}
	if _, err := h.APITokens(); err == nil || !strings.Contains(err.Error(), "http.token: the value is empty") {
		t.Fatalf("empty token: %v", err)
	}
	if toks, err := (&HTTP{}).APITokens(); err != nil || len(toks) != 0 {
		t.Fatalf("no tokens: %+v %v", toks, err)
	}
}
