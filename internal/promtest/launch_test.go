package promtest

import (
	"os"
	"strings"
	"testing"
	"time"
)

// The scrape interval reaches the configuration in a form Prometheus
// reads (whole milliseconds), and one it cannot use is refused.
func TestWriteConfigEvery(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		scrape time.Duration
		want   string // a line of the file; "" for an error
	}{
		{"a second", time.Second, "scrape_interval: 1000ms"},
		{"a quarter second", 250 * time.Millisecond, "scrape_interval: 250ms"},
		{"its timeout follows", 250 * time.Millisecond, "scrape_timeout: 250ms"},
		{"zero", 0, ""},
		{"under a millisecond", time.Microsecond, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path, err := WriteConfigEvery(t.TempDir(), []string{"127.0.0.1:9090"}, tc.scrape)
			if tc.want == "" {
				if err == nil {
					t.Errorf("WriteConfigEvery(%v) = %s, want an error", tc.scrape, path)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), "\n  "+tc.want+"\n") {
				t.Errorf("config for %v lacks %q:\n%s", tc.scrape, tc.want, b)
			}
		})
	}
}
