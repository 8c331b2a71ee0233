package untrusted

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestText(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in string
		max      int
		want     string
	}{
		{"plain", "route app: unknown cluster", 100, "route app: unknown cluster"},
		{"terminal escape", "\x1b[2J\x1b[31mrogue", 100, `\x1b[2J\x1b[31mrogue`},
		{"forged line", "bad\nSluice: promoted", 100, `bad\nSluice: promoted`},
		{"right-to-left override", "abc\u202edef", 100, `abc\u202edef`},
		{"invalid UTF-8", "a\xffb", 100, "a\uFFFDb"},
		{"cut at a character", "ééééé", 6, "é…"},
		{"html is left to the renderer", "<script>x</script>", 100, "<script>x</script>"},
		{"cut", strings.Repeat("a", 50), 10, "aaaaaaa…"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Text(tc.in, tc.max); got != tc.want {
				t.Errorf("Text(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
			}
		})
	}
}

func FuzzText(f *testing.F) {
	for _, s := range []string{"", "a\x1b[0m", "é\n\u202e", "\xff\xfe", strings.Repeat("€", 40)} {
		f.Add(s, 16)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < len(Ellipsis) || max > 1<<16 {
			return
		}
		got := Text(s, max)
		if len(got) > max || !utf8.ValidString(got) {
			t.Fatalf("Text(%q, %d) = %q: %d bytes, valid %v", s, max, got, len(got), utf8.ValidString(got))
		}
		for _, r := range got {
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
				t.Fatalf("Text(%q, %d) = %q keeps control character %U", s, max, got, r)
			}
		}
	})
}
