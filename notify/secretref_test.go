package notify

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// secretKeyRef reads a Secret through the Lookup controller mode gives;
// sluice run, which has none, refuses it and says what to use instead.
func TestResolveSecretKeyRef(t *testing.T) {
	t.Parallel()
	secrets := map[string]map[string]string{"sluice-notify": {"url": "https://hooks.example.com/T0/B0/xyz\n", "hmac": "s3cret", "blank": " \n"}}
	read := func(name, key string) (string, error) {
		v, ok := secrets[name][key]
		if !ok {
			return "", errors.New("no key " + key + " in Secret " + name)
		}
		return v, nil
	}
	ref := func(name, key string) *ValueFrom {
		return &ValueFrom{SecretKeyRef: &SecretKeyRef{Name: name, Key: key}}
	}
	for _, tc := range []struct {
		name    string
		cfg     TargetConfig
		lookup  Lookup
		want    Target
		wantErr string
	}{
		{name: "url and secret from a Secret", lookup: Lookup{Secret: read},
			cfg:  TargetConfig{Name: "audit", Kind: KindWebhook, URLRef: ref("sluice-notify", "url"), SecretRef: ref("sluice-notify", "hmac")},
			want: Target{Name: "audit", Kind: KindWebhook, URL: "https://hooks.example.com/T0/B0/xyz", Secret: []byte("s3cret")}},
		{name: "sluice run", lookup: Lookup{},
			cfg: TargetConfig{Name: "chat", Kind: KindSlack, URLRef: ref("sluice-notify", "url")}, wantErr: "only sluice controller can; use env or file"},
		{name: "missing key", lookup: Lookup{Secret: read},
			cfg: TargetConfig{Name: "chat", Kind: KindSlack, URLRef: ref("sluice-notify", "nope")}, wantErr: "url: no key nope in Secret sluice-notify"},
		{name: "blank value", lookup: Lookup{Secret: read},
			cfg: TargetConfig{Name: "chat", Kind: KindSlack, URLRef: ref("sluice-notify", "blank")}, wantErr: "key blank of Secret sluice-notify is empty"},
		{name: "no key", lookup: Lookup{Secret: read},
			cfg: TargetConfig{Name: "chat", Kind: KindSlack, URLRef: ref("sluice-notify", "")}, wantErr: "needs a name and a key"},
		{name: "env and secretKeyRef", lookup: Lookup{Secret: read},
			cfg:     TargetConfig{Name: "chat", Kind: KindSlack, URLRef: &ValueFrom{Env: "X", SecretKeyRef: &SecretKeyRef{Name: "a", Key: "b"}}},
			wantErr: "one of env, file and secretKeyRef"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Config{Targets: []TargetConfig{tc.cfg}}.ResolveWith(tc.lookup)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "notifications.targets[0]") {
					t.Fatalf("ResolveWith = %v, want an error at targets[0] containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "hooks.example.com") {
					t.Fatalf("the error quotes the URL: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, []Target{tc.want}) {
				t.Fatalf("ResolveWith = %+v, want %+v", got, tc.want)
			}
		})
	}
}
