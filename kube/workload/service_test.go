package workload

import (
	"maps"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

func TestServiceName(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 60)
	tests := []struct {
		service, revision string
		want              string // "" checks only validity and length
	}{
		{"reviews", "5d8f9c7b6a", "reviews-5d8f9c7b6a"},
		{"9lives", "5d8f9c7b6a", "s-9lives-5d8f9c7b6a"},
		{long, "5d8f9c7b6a", ""},
		{long + "b", "5d8f9c7b6a", ""},
		{strings.Repeat("a-", 31) + "a", "5d8f9c7b6a", ""},
	}
	seen := map[string]string{}
	for _, tc := range tests {
		got := ServiceName(tc.service, tc.revision)
		if tc.want != "" && got != tc.want {
			t.Errorf("ServiceName(%q, %q) = %q, want %q", tc.service, tc.revision, got, tc.want)
		}
		if errs := validation.IsDNS1035Label(got); len(errs) > 0 {
			t.Errorf("ServiceName(%q, %q) = %q: not a Service name: %v", tc.service, tc.revision, got, errs)
		}
		if prev, ok := seen[got]; ok {
			t.Errorf("ServiceName(%q) = ServiceName(%q) = %q", tc.service, prev, got)
		}
		seen[got] = tc.service
		if again := ServiceName(tc.service, tc.revision); again != got {
			t.Errorf("ServiceName(%q, %q) is not stable: %q then %q", tc.service, tc.revision, got, again)
		}
	}
	if got := ServiceName(long, "5d8f9c7b6a"); !regexp.MustCompile(`^a+-[0-9a-f]{8}$`).MatchString(got) {
		t.Errorf("long name %q: want a prefix of the name and an 8-digit hash", got)
	}
}

func TestService(t *testing.T) {
	t.Parallel()
	ro := rollout()
	ro.Spec.Service.Name, ro.Spec.Service.Port = "web", 8080
	withPorts := func(ports ...corev1.ContainerPort) *appsv1.ReplicaSet {
		rs := ReplicaSet(ro, "abc", 2)
		rs.UID = types.UID("rs-uid")
		rs.Spec.Template.Spec.Containers[0].Ports = ports
		return rs
	}
	tests := []struct {
		name     string
		rs       *appsv1.ReplicaSet
		wantPort string
	}{
		{"no container ports: unnamed", withPorts(), ""},
		{"named container port of that number", withPorts(
			corev1.ContainerPort{Name: "metrics", ContainerPort: 9090},
			corev1.ContainerPort{Name: "grpc-web", ContainerPort: 8080}), "grpc-web"},
		{"UDP port of that number is not it", withPorts(
			corev1.ContainerPort{Name: "dns", ContainerPort: 8080, Protocol: corev1.ProtocolUDP}), ""},
		{"unnamed container port", withPorts(corev1.ContainerPort{ContainerPort: 8080}), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			svc, err := Service(ro, tc.rs)
			if err != nil {
				t.Fatal(err)
			}
			if svc.Name != "web-abc" || svc.Namespace != "shop" {
				t.Errorf("name %s/%s", svc.Namespace, svc.Name)
			}
			wantLabels := map[string]string{LabelService: "web", LabelRevision: "abc", LabelManagedBy: ManagedBy}
			if !maps.Equal(svc.Labels, wantLabels) {
				t.Errorf("labels %v, want %v", svc.Labels, wantLabels)
			}
			if !maps.Equal(svc.Spec.Selector, tc.rs.Spec.Selector.MatchLabels) {
				t.Errorf("selector %v, want the ReplicaSet's %v", svc.Spec.Selector, tc.rs.Spec.Selector.MatchLabels)
			}
			if svc.Spec.ClusterIP != corev1.ClusterIPNone {
				t.Errorf("clusterIP %q, want headless", svc.Spec.ClusterIP)
			}
			want := corev1.ServicePort{Name: tc.wantPort, Protocol: corev1.ProtocolTCP, Port: 8080, TargetPort: intstr.FromInt32(8080)}
			if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0] != want {
				t.Errorf("ports %+v, want [%+v]", svc.Spec.Ports, want)
			}
			if ref := metav1.GetControllerOf(svc); ref == nil || ref.UID != "rs-uid" || ref.Kind != "ReplicaSet" || ref.APIVersion != "apps/v1" {
				t.Errorf("controller %+v, want the ReplicaSet", ref)
			}
		})
	}
}

func TestServiceRefusesWhatCannotBeAService(t *testing.T) {
	t.Parallel()
	ro := rollout()
	ro.Spec.Service.Name, ro.Spec.Service.Port = "web", 8080
	tests := []struct {
		name string
		edit func(*appsv1.ReplicaSet)
		want string
	}{
		{"no revision label", func(rs *appsv1.ReplicaSet) { delete(rs.Labels, LabelRevision) }, LabelRevision},
		{"no selector", func(rs *appsv1.ReplicaSet) { rs.Spec.Selector = nil }, "selector"},
		{"expression selector", func(rs *appsv1.ReplicaSet) {
			rs.Spec.Selector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpExists}}
		}, "expressions"},
	}
	for _, tc := range tests {
		rs := ReplicaSet(ro, "abc", 1)
		tc.edit(rs)
		if _, err := Service(ro, rs); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %q", tc.name, err, tc.want)
		}
	}
}
