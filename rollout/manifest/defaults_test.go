package manifest

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/sluicehq/sluice/crds"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// defaultsRollout is a controller-mode Rollout; container is spliced in as
// the lines of its one container after name and image, and spec as lines
// of the spec.
func defaultsRollout(container, spec string) string {
	return `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  service: {name: web, hosts: [web], port: 80}
  replicas: 2
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: web:1
` + container + `  strategy: {canary: {steps: [{setWeight: 50}]}}
` + spec
}

func loadRollout(t *testing.T, doc string) *v1alpha1.Rollout {
	t.Helper()
	res := loadDoc(t, doc)
	checkProblems(t, res.Problems, nil)
	if len(res.Rollouts()) != 1 {
		t.Fatalf("%d Rollouts, want 1", len(res.Rollouts()))
	}
	return res.Rollouts()[0]
}

func TestLoadAppliesCRDDefaults(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name            string
		container, spec string
		check           func(*v1alpha1.RolloutSpec, corev1.Container) string
	}{{
		name: "spec fields",
		check: func(s *v1alpha1.RolloutSpec, _ corev1.Container) string {
			if ptr.Deref(s.ProgressDeadlineSeconds, 0) != 600 || ptr.Deref(s.ScaleDownDelaySeconds, 0) != 30 ||
				s.Rollback.OnAnalysisFailure != v1alpha1.ActionAbort || s.Rollback.OnNack != v1alpha1.ActionAbort {
				return "progressDeadlineSeconds, scaleDownDelaySeconds or rollback not defaulted"
			}
			return ""
		},
	}, {
		name: "values written are kept",
		spec: "  progressDeadlineSeconds: 120\n  rollback: {onNack: Pause}\n",
		check: func(s *v1alpha1.RolloutSpec, _ corev1.Container) string {
			if ptr.Deref(s.ProgressDeadlineSeconds, 0) != 120 || s.Rollback.OnNack != v1alpha1.ActionPause ||
				s.Rollback.OnAnalysisFailure != v1alpha1.ActionAbort {
				return "a written value was replaced, or a sibling not defaulted"
			}
			return ""
		},
	}, {
		name:      "port protocol",
		container: "          ports: [{containerPort: 8080}, {containerPort: 53, protocol: UDP}]\n",
		check: func(_ *v1alpha1.RolloutSpec, c corev1.Container) string {
			if c.Ports[0].Protocol != corev1.ProtocolTCP || c.Ports[1].Protocol != corev1.ProtocolUDP {
				return "protocols are not TCP (default) and UDP (written)"
			}
			return ""
		},
	}, {
		// A null may not stand where the schema has a default; an empty
		// string is omitted from the JSON the server gets, so defaulted.
		name:      "null and empty protocol",
		container: "          ports: [{containerPort: 8080, protocol: null}, {containerPort: 9090, protocol: \"\"}]\n",
		check: func(_ *v1alpha1.RolloutSpec, c corev1.Container) string {
			if c.Ports[0].Protocol != corev1.ProtocolTCP || c.Ports[1].Protocol != corev1.ProtocolTCP {
				return "protocols not TCP"
			}
			return ""
		},
	}, {
		// Of the env sources, only fileKeyRef defaults optional; the
		// others default name to "", which Go omits anyway.
		name: "env sources",
		container: `          env:
            - {name: A, valueFrom: {configMapKeyRef: {name: cm, key: a}}}
            - {name: B, valueFrom: {fileKeyRef: {volumeName: v, path: p, key: b}}}
`,
		check: func(_ *v1alpha1.RolloutSpec, c corev1.Container) string {
			if c.Env[0].ValueFrom.ConfigMapKeyRef.Optional != nil {
				return "configMapKeyRef.optional was set"
			}
			if o := c.Env[1].ValueFrom.FileKeyRef.Optional; o == nil || *o {
				return "fileKeyRef.optional is not set to false"
			}
			return ""
		},
	}, {
		name:      "grpc probe service",
		container: "          readinessProbe: {grpc: {port: 9090}}\n",
		check: func(_ *v1alpha1.RolloutSpec, c corev1.Container) string {
			if s := c.ReadinessProbe.GRPC.Service; s == nil || *s != "" {
				return "grpc.service is not set to \"\""
			}
			return ""
		},
	}, {
		name: "session affinity cookie",
		spec: "  service: {name: web, hosts: [web], port: 80, sessionAffinity: {cookie: {}}}\n",
		check: func(s *v1alpha1.RolloutSpec, _ corev1.Container) string {
			if s.Service.SessionAffinity.Cookie.Name != "sluice-canary" {
				return "cookie name is not sluice-canary"
			}
			return ""
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc := defaultsRollout(tc.container, "")
			if tc.spec != "" {
				// A later key would be a duplicate; replace the line.
				key, _, _ := strings.Cut(strings.TrimSpace(tc.spec), ":")
				if strings.Contains(doc, "\n  "+key+":") {
					doc = replaceLine(doc, "  "+key+":", tc.spec)
				} else {
					doc += tc.spec
				}
			}
			ro := loadRollout(t, doc)
			if msg := tc.check(&ro.Spec, ro.Spec.Template.Spec.Containers[0]); msg != "" {
				t.Errorf("%s: %+v", msg, ro.Spec)
			}
		})
	}
}

// replaceLine replaces the line of doc starting with prefix by with.
func replaceLine(doc, prefix, with string) string {
	lines := strings.SplitAfter(doc, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			lines[i] = with
		}
	}
	return strings.Join(lines, "")
}

// TestLoadDefaultsAfterStrictDecoding: defaults fill in only what decoded
// cleanly; a misspelt field stays an error instead of being defaulted
// around.
func TestLoadDefaultsAfterStrictDecoding(t *testing.T) {
	t.Parallel()
	res := loadDoc(t, defaultsRollout("          ports: [{containerPort: 8080, protocl: TCP}]\n", ""))
	checkProblems(t, res.Problems, []want{
		{"f.yaml:13: spec.template.spec.containers[0].ports[0].protocl", `unknown field "protocl"`},
	})
}

// TestLoadReportsFieldsTheCRDDrops: the pod template's metadata is
// metav1.ObjectMeta in Go, but the CRD keeps only some of its fields;
// the API server would silently drop the others, so Git would declare a
// template the cluster does not run.
func TestLoadReportsFieldsTheCRDDrops(t *testing.T) {
	t.Parallel()
	doc := strings.Replace(defaultsRollout("", ""), "metadata: {labels: {app: web}}",
		"metadata:\n      labels: {app: web}\n      generateName: web-", 1)
	res := loadDoc(t, doc)
	checkProblems(t, res.Problems, []want{
		{"f.yaml:10: spec.template.metadata.generateName", "the Rollout CRD has no such field, so the API server would drop it"},
	})
	if len(res.Objects) != 0 {
		t.Errorf("objects %+v, want none", res.Objects)
	}
}

func TestBuildSchemas(t *testing.T) {
	t.Parallel()
	rolloutCRD, err := crds.CRD(KindRollout)
	if err != nil {
		t.Fatal(err)
	}
	templateCRD, err := crds.CRD(KindAnalysisTemplate)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		crd  func(kind string) ([]byte, error)
		want string
	}{{
		name: "embedded",
		crd:  crds.CRD,
	}, {
		name: "missing",
		crd:  func(string) ([]byte, error) { return nil, errors.New("no such file") },
		want: "no such file",
	}, {
		name: "not YAML",
		crd:  func(string) ([]byte, error) { return []byte("{"), nil },
		want: "CRD of Rollout: error converting YAML to JSON",
	}, {
		name: "another kind's CRD",
		crd:  func(string) ([]byte, error) { return templateCRD, nil },
		want: `CRD of Rollout: defines AnalysisTemplate in group "sluice.dev"`,
	}, {
		name: "no v1alpha1",
		crd: func(kind string) ([]byte, error) {
			return []byte(strings.ReplaceAll(string(rolloutCRD), "name: v1alpha1", "name: v1beta1")), nil
		},
		want: "CRD of Rollout: no version v1alpha1",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := buildSchemas(tc.crd)
			if tc.want == "" {
				if err != nil || s[KindRollout] == nil || s[KindAnalysisTemplate] == nil {
					t.Fatalf("schemas %v, err %v", s, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
