// Package untrusted makes text that came from outside Sluice (a proxy's
// NACK message, a commit message, a metric label, a router's error) safe to
// keep in status and to show: bounded in length, valid UTF-8, and without
// control characters, so it can neither bloat an object nor drive a
// terminal (ANSI escapes) or forge lines in a log or a CLI table. HTML
// escaping stays with whatever renders HTML.
package untrusted

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Ellipsis ends text that was cut.
const Ellipsis = "…"

// Text returns s with invalid UTF-8 replaced, every control or format
// character (newlines and tabs included) written as a Go escape such as
// \x1b or \u202e, and the result cut to at most max bytes at a character
// boundary, ending in Ellipsis when cut.
func Text(s string, max int) string {
	var b strings.Builder
	b.Grow(min(len(s), max))
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		} else {
			b.WriteRune(r)
		}
		if b.Len() > max {
			break
		}
	}
	return cut(b.String(), max)
}

// cut shortens s to max bytes without splitting a character.
func cut(s string, max int) string {
	if len(s) <= max {
		return s
	}
	n := max - len(Ellipsis)
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	if n < 0 {
		n = 0
	}
	return s[:n] + Ellipsis
}
