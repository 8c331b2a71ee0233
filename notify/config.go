package notify

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Config is the `notifications:` section of the `sluice run` and the
// `sluice controller` configuration files (JSON tags: read it with
// sigs.k8s.io/yaml like the manifests). See docs/notifications.md.
type Config struct {
	Targets []TargetConfig `json:"targets,omitempty"`
}

// TargetConfig is one target as configured. Credentials may be written
// inline or, better, referenced: a Slack webhook URL is itself a secret.
type TargetConfig struct {
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// URL or URLRef; exactly one.
	URL    string     `json:"url,omitempty"`
	URLRef *ValueFrom `json:"urlRef,omitempty"`
	// Secret or SecretRef, at most one: the HMAC key of a webhook target.
	Secret    string     `json:"secret,omitempty"`
	SecretRef *ValueFrom `json:"secretRef,omitempty"`
	// Events selects what is sent; see ParseFilter.
	Events []string `json:"events,omitempty"`
}

// ValueFrom reads a value from an environment variable, a file (whose
// trailing whitespace is dropped, as editors and `echo` add a newline), or
// in controller mode a key of a Kubernetes Secret: exactly one of them.
type ValueFrom struct {
	Env  string `json:"env,omitempty"`
	File string `json:"file,omitempty"`
	// SecretKeyRef reads a key of a Secret in the controller's own
	// namespace (`sluice controller` only), trailing whitespace dropped.
	SecretKeyRef *SecretKeyRef `json:"secretKeyRef,omitempty"`
}

// SecretKeyRef names a key of a Secret.
type SecretKeyRef struct {
	Name string `json:"name"`
	Key  string `json:"key"`
}

// Lookup reads what references point at.
type Lookup struct {
	// Env looks up an environment variable; nil means os.LookupEnv.
	Env func(string) (string, bool)
	// Secret reads the value of key in the Secret name; nil refuses
	// secretKeyRef (`sluice run`, which has no cluster to read from).
	Secret func(name, key string) (string, error)
}

// Resolve reads the referenced values and returns the targets for New.
// lookupEnv is os.LookupEnv when nil. secretKeyRef is refused: it is for
// ResolveWith with a Lookup that reads Secrets.
func (c Config) Resolve(lookupEnv func(string) (string, bool)) ([]Target, error) {
	return c.ResolveWith(Lookup{Env: lookupEnv})
}

// ResolveWith reads the referenced values through l and returns the
// targets for New.
func (c Config) ResolveWith(l Lookup) ([]Target, error) {
	if l.Env == nil {
		l.Env = os.LookupEnv
	}
	var out []Target
	var errs []error
	for i, tc := range c.Targets {
		t, err := tc.resolve(l)
		if err != nil {
			errs = append(errs, fmt.Errorf("notifications.targets[%d] (%s): %w", i, tc.Name, err))
			continue
		}
		out = append(out, t)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func (tc TargetConfig) resolve(l Lookup) (Target, error) {
	u, err := pick("url", tc.URL, tc.URLRef, l)
	if err != nil {
		return Target{}, err
	}
	if u == "" {
		return Target{}, errors.New("url or urlRef is required")
	}
	secret, err := pick("secret", tc.Secret, tc.SecretRef, l)
	if err != nil {
		return Target{}, err
	}
	t := Target{Name: tc.Name, Kind: tc.Kind, URL: u, Events: tc.Events}
	if secret != "" {
		t.Secret = []byte(secret)
	}
	return t, nil
}

// pick returns the inline value or the referenced one; both is an error,
// neither is "".
func pick(field, inline string, from *ValueFrom, l Lookup) (string, error) {
	if from == nil {
		return inline, nil
	}
	if inline != "" {
		return "", fmt.Errorf("%s: set the value or a reference, not both", field)
	}
	ref := from.SecretKeyRef
	switch {
	case ref != nil && (from.Env != "" || from.File != ""):
		return "", fmt.Errorf("%s: reference one of env, file and secretKeyRef, not several", field)
	case from.Env != "" && from.File != "":
		return "", fmt.Errorf("%s: reference either env or file, not both", field)
	case from.Env != "":
		v, ok := l.Env(from.Env)
		if !ok || v == "" {
			return "", fmt.Errorf("%s: environment variable %s is not set", field, from.Env)
		}
		return v, nil
	case from.File != "":
		b, err := os.ReadFile(from.File)
		if err != nil {
			return "", fmt.Errorf("%s: %w", field, err)
		}
		v := strings.TrimRight(string(b), " \t\r\n")
		if v == "" {
			return "", fmt.Errorf("%s: file %s is empty", field, from.File)
		}
		return v, nil
	case ref != nil:
		return secretValue(field, ref, l.Secret)
	}
	return "", fmt.Errorf("%s: reference names neither env nor file (nor, in controller mode, secretKeyRef)", field)
}

// secretValue reads a secretKeyRef through read.
func secretValue(field string, ref *SecretKeyRef, read func(name, key string) (string, error)) (string, error) {
	switch {
	case read == nil:
		return "", fmt.Errorf("%s: secretKeyRef reads a Kubernetes Secret, which only sluice controller can; use env or file", field)
	case ref.Name == "" || ref.Key == "":
		return "", fmt.Errorf("%s: secretKeyRef needs a name and a key", field)
	}
	v, err := read(ref.Name, ref.Key)
	if err != nil {
		return "", fmt.Errorf("%s: %w", field, err)
	}
	v = strings.TrimRight(v, " \t\r\n")
	if v == "" {
		return "", fmt.Errorf("%s: key %s of Secret %s is empty", field, ref.Key, ref.Name)
	}
	return v, nil
}
