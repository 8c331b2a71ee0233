package gitsync

import (
	"errors"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

func TestEditBackend(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		in        string
		namespace string
		version   string
		endpoints []string
		labels    map[string]string
		want      string
		err       string
	}{
		{
			name: "same number of endpoints: token by token, comments kept",
			in: `# Reviews, standalone.
apiVersion: v1
kind: ConfigMap # another object first
metadata: {name: x}
---
apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: reviews
spec:
  backend:
    version: v2   # bumped by CI
    endpoints:
      # primary
      - 10.0.0.2:9080
      - "10.0.0.3:9080"  # secondary
    labels: {zone: a}
  strategy: {}
---
# trailing document
apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: other
spec:
  backend:
    version: v2
`,
			version: "v1", endpoints: []string{"10.0.0.1:9080", "10.0.0.3:9080"}, labels: map[string]string{"zone": "a"},
			want: `# Reviews, standalone.
apiVersion: v1
kind: ConfigMap # another object first
metadata: {name: x}
---
apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: reviews
spec:
  backend:
    version: v1   # bumped by CI
    endpoints:
      # primary
      - 10.0.0.1:9080
      - "10.0.0.3:9080"  # secondary
    labels: {zone: a}
  strategy: {}
---
# trailing document
apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: other
spec:
  backend:
    version: v2
`,
		},
		{
			name: "different number of endpoints: list rewritten, following comments kept",
			in: `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: reviews
spec:
  backend:
    version: 'v2'
    endpoints:
    -   a:1
    -   b:1
    -   c:1
    # the end of the list

  strategy: {}
`,
			version: "v1", endpoints: []string{"x:1"},
			want: `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: reviews
spec:
  backend:
    version: 'v1'
    endpoints:
    -   x:1
    # the end of the list

  strategy: {}
`,
		},
		{
			name: "flow list, double-quoted version, last in the file without newline",
			in: `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {name: reviews, namespace: shop}
spec:
  backend: {version: "v2", endpoints: ["a:1", 'b:1']}`,
			namespace: "shop", version: "v1", endpoints: []string{"x:1"},
			want: `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {name: reviews, namespace: shop}
spec:
  backend: {version: "v1", endpoints: ["x:1"]}`,
		},
		{
			name: "a version that would read as a number is quoted",
			in: `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: reviews
spec:
  backend:
    version: v2.0
    endpoints: [a:1]
`,
			version: "1.10", endpoints: []string{"a:1"},
			want: `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: reviews
spec:
  backend:
    version: "1.10"
    endpoints: [a:1]
`,
		},
		{
			name:    "CRLF line endings are kept",
			in:      "apiVersion: sluice.dev/v1alpha1\r\nkind: Rollout\r\nmetadata:\r\n  name: reviews\r\nspec:\r\n  backend:\r\n    version: v2\r\n    endpoints:\r\n      - a:1\r\n  strategy: {}\r\n",
			version: "v1", endpoints: []string{"x:1", "y:1"},
			want: "apiVersion: sluice.dev/v1alpha1\r\nkind: Rollout\r\nmetadata:\r\n  name: reviews\r\nspec:\r\n  backend:\r\n    version: v1\r\n    endpoints:\r\n      - x:1\r\n      - y:1\r\n  strategy: {}\r\n",
		},
		{
			name: "the namespace picks the document",
			in: `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {name: reviews, namespace: a}
spec: {backend: {version: v2, endpoints: [a:1]}}
---
apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {name: reviews, namespace: b}
spec: {backend: {version: v2, endpoints: [a:1]}}
`,
			namespace: "b", version: "v1", endpoints: []string{"a:1"},
			want: `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {name: reviews, namespace: a}
spec: {backend: {version: v2, endpoints: [a:1]}}
---
apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {name: reviews, namespace: b}
spec: {backend: {version: v1, endpoints: [a:1]}}
`,
		},
		{
			name: "labels added after the backend's last line",
			in: `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {name: reviews}
spec:
  backend:
    version: v2
    endpoints:
      - a:1
    # end of backend
  strategy: {}
`,
			version: "v2", endpoints: []string{"a:1"}, labels: map[string]string{"zone": "a", "topology.kubernetes.io/region": "eu"},
			want: `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {name: reviews}
spec:
  backend:
    version: v2
    endpoints:
      - a:1
    labels:
      topology.kubernetes.io/region: eu
      zone: a
    # end of backend
  strategy: {}
`,
		},
		{
			name: "labels replaced, then removed",
			in: `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {name: reviews}
spec:
  backend:
    labels:
      zone: b
      canary: "true"
    version: v2
    endpoints: [a:1]
`,
			version: "v2", endpoints: []string{"a:1"}, labels: map[string]string{"zone": "a"},
			want: `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {name: reviews}
spec:
  backend:
    labels:
      zone: a
    version: v2
    endpoints: [a:1]
`,
		},
		{
			name: "labels removed",
			in: `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {name: reviews}
spec:
  backend:
    version: v2
    labels:
      zone: b
    endpoints: [a:1]
`,
			version: "v2", endpoints: []string{"a:1"},
			want: `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {name: reviews}
spec:
  backend:
    version: v2
    endpoints: [a:1]
`,
		},
		{
			name: "flow labels",
			in: `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {name: reviews}
spec:
  backend: {version: v2, endpoints: [a:1], labels: {zone: b}}
`,
			version: "v1", endpoints: []string{"a:1"}, labels: map[string]string{"zone": "a", "rack": "1"},
			want: `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {name: reviews}
spec:
  backend: {version: v1, endpoints: [a:1], labels: {rack: "1", zone: a}}
`,
		},
		{
			name: "an alias is refused",
			in: `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {name: reviews}
spec:
  backend: &b {version: v2, endpoints: [a:1]}
`,
			version: "v1", endpoints: []string{"a:1"},
			err: "anchor or alias",
		},
		{
			name:    "rollout not in the file",
			in:      "apiVersion: sluice.dev/v1alpha1\nkind: Rollout\nmetadata: {name: other}\n",
			version: "v1", endpoints: []string{"a:1"},
			err: "Rollout reviews not found",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := editBackend([]byte(tt.in), "reviews", tt.namespace,
				&v1alpha1.Backend{Version: tt.version, Endpoints: tt.endpoints, Labels: tt.labels})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestEditTemplate(t *testing.T) {
	t.Parallel()
	// The stable version was written with four-space indentation and a
	// comment; the current file uses two and has a second document.
	old := `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
    name: reviews
spec:
    replicas: 3
    template:
        metadata:
            labels: {app: reviews}
        spec:
            containers:
                # stable image
                - name: reviews
                  image: reviews:v1
                  args:
                    - |
                      # not a comment: script text
                      run
    strategy: {}
`
	cur := `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: reviews
spec:
  replicas: 3
  template:
    metadata:
      labels: {app: reviews}
    spec:
      containers:
        - name: reviews
          image: reviews:v2
  # a comment at the key's level, after the template
  strategy: {}
---
kind: Unrelated
`
	// The block moves as a whole: its own nesting (four spaces a level)
	// is kept, which is valid YAML and keeps the diff to the template.
	want := `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: reviews
spec:
  replicas: 3
  template:
    metadata:
        labels: {app: reviews}
    spec:
        containers:
            # stable image
            - name: reviews
              image: reviews:v1
              args:
                - |
                  # not a comment: script text
                  run
  # a comment at the key's level, after the template
  strategy: {}
---
kind: Unrelated
`
	got, err := editTemplate([]byte(cur), []byte(old), "reviews", "")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}

	flow := strings.Replace(cur, "  template:\n    metadata:\n      labels: {app: reviews}\n    spec:\n      containers:\n        - name: reviews\n          image: reviews:v2\n",
		"  template: {spec: {containers: [{name: reviews, image: reviews:v2}]}}\n", 1)
	if _, err := editTemplate([]byte(flow), []byte(old), "reviews", ""); !errors.Is(err, errShape) {
		t.Errorf("flow-style template: err = %v, want errShape", err)
	}
}

func TestRenderScalar(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in    string
		style yaml.Style
		want  string
	}{
		{"v1", 0, "v1"},
		{"1.10", 0, `"1.10"`},
		{"true", 0, `"true"`},
		{"10.0.0.1:80", 0, "10.0.0.1:80"},
		{"it's", yaml.SingleQuotedStyle, "'it''s'"},
		{`a"b`, yaml.DoubleQuotedStyle, `"a\"b"`},
		{"two\nlines", yaml.SingleQuotedStyle, `"two\nlines"`},
	}
	for _, tt := range tests {
		if got := renderScalar(tt.in, tt.style); got != tt.want {
			t.Errorf("renderScalar(%q, %v) = %s, want %s", tt.in, tt.style, got, tt.want)
		}
	}
}
