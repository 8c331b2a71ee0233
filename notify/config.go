package notify

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Config is the `notifications:` section of the `sluice run` configuration
// file (JSON tags: read it with sigs.k8s.io/yaml like the manifests). See
// docs/notifications.md.
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

// ValueFrom reads a value from an environment variable or a file (whose
// trailing whitespace is dropped, as editors and `echo` add a newline).
type ValueFrom struct {
	Env  string `json:"env,omitempty"`
	File string `json:"file,omitempty"`
}

// Resolve reads the referenced values and returns the targets for New.
// lookupEnv is os.LookupEnv when nil.
func (c Config) Resolve(lookupEnv func(string) (string, bool)) ([]Target, error) {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	var out []Target
	var errs []error
	for i, tc := range c.Targets {
		t, err := tc.resolve(lookupEnv)
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

func (tc TargetConfig) resolve(lookupEnv func(string) (string, bool)) (Target, error) {
	u, err := pick("url", tc.URL, tc.URLRef, lookupEnv)
	if err != nil {
		return Target{}, err
	}
	if u == "" {
		return Target{}, errors.New("url or urlRef is required")
	}
	secret, err := pick("secret", tc.Secret, tc.SecretRef, lookupEnv)
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
func pick(field, inline string, from *ValueFrom, lookupEnv func(string) (string, bool)) (string, error) {
	if from == nil {
		return inline, nil
	}
	if inline != "" {
		return "", fmt.Errorf("%s: set the value or a reference, not both", field)
	}
	switch {
	case from.Env != "" && from.File != "":
		return "", fmt.Errorf("%s: reference either env or file, not both", field)
	case from.Env != "":
		v, ok := lookupEnv(from.Env)
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
	}
	return "", fmt.Errorf("%s: reference names neither env nor file", field)
}
