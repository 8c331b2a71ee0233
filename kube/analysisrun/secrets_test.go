package analysisrun

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

func TestSecretReader(t *testing.T) {
	t.Parallel()
	c := cluster(t)
	ns := newNamespace(t, c)
	for name, data := range map[string]map[string][]byte{
		"prom":  {"token": []byte("s3cret"), "user": []byte("alice")},
		"empty": nil,
	} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: data}
		if err := c.Create(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	r := SecretReader{Reader: c}
	cases := []struct {
		name      string
		namespace string
		ref       v1alpha1.SecretKeyRef
		want      string
		wantErr   string
	}{
		{name: "a key's value", namespace: ns, ref: v1alpha1.SecretKeyRef{Name: "prom", Key: "token"}, want: "s3cret"},
		{name: "another key", namespace: ns, ref: v1alpha1.SecretKeyRef{Name: "prom", Key: "user"}, want: "alice"},
		{name: "a missing Secret", namespace: ns, ref: v1alpha1.SecretKeyRef{Name: "nope", Key: "token"}, wantErr: "not found"},
		{name: "another namespace's Secret is not read", namespace: "default", ref: v1alpha1.SecretKeyRef{Name: "prom", Key: "token"}, wantErr: "not found"},
		{name: "a missing key names the keys there are", namespace: ns, ref: v1alpha1.SecretKeyRef{Name: "prom", Key: "password"}, wantErr: "no such key; the Secret has token, user"},
		{name: "a Secret without data", namespace: ns, ref: v1alpha1.SecretKeyRef{Name: "empty", Key: "token"}, wantErr: "no such key: the Secret has no data"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := r.SecretValue(context.Background(), tc.namespace, tc.ref)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
