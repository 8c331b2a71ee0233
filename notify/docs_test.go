package notify

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"testing"

	"sigs.k8s.io/yaml"
)

// The examples in docs/notifications.md parse, strictly, into the types
// they document, so the docs cannot drift from the code unnoticed.
func TestDocExamples(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/notifications.md")
	if err != nil {
		t.Fatal(err)
	}
	block := func(lang string) [][]byte {
		var out [][]byte
		for _, m := range regexp.MustCompile("(?s)```"+lang+"\n(.*?)```").FindAllSubmatch(doc, -1) {
			out = append(out, m[1])
		}
		return out
	}
	yamls, jsons := block("yaml"), block("json")
	if len(yamls) != 1 || len(jsons) != 2 {
		t.Fatalf("found %d yaml and %d json examples, want 1 and 2", len(yamls), len(jsons))
	}

	var file struct {
		Notifications Config `json:"notifications"`
	}
	if err := yaml.UnmarshalStrict(yamls[0], &file); err != nil {
		t.Fatalf("configuration example: %v", err)
	}
	env := func(string) (string, bool) { return "https://hooks.slack.com/services/x", true }
	// The file reference points outside the test; resolve the others.
	cfg := file.Notifications
	cfg.Targets[1].SecretRef = nil
	targets, err := cfg.Resolve(env)
	if err != nil {
		t.Fatalf("configuration example: %v", err)
	}
	nf, err := New(targets, Options{})
	if err != nil {
		t.Fatalf("configuration example: %v", err)
	}
	closeAll(t, nf)

	for i, v := range []any{&WebhookPayload{}, &slackMessage{}} {
		dec := json.NewDecoder(bytes.NewReader(jsons[i]))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			t.Errorf("payload example %d: %v", i+1, err)
		}
	}
}
