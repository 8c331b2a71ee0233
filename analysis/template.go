package analysis

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Render replaces every {{args.NAME}} in a PromQL query with the value of
// NAME, escaped for where the placeholder stands, so that no value can
// change the structure of the query:
//
//   - inside a "double-quoted" or 'single-quoted' string (a label matcher
//     value, a label_replace argument), the value becomes the string's
//     content: backslashes, the quote and control characters are escaped
//     the way the PromQL lexer reads them back;
//   - inside a `raw string`, which has no escapes, a value containing a
//     backquote is refused;
//   - inside a # comment, a value with a line break is refused;
//   - anywhere else the value is PromQL code and must be exactly one token
//     that fits there: inside [ ] (a range like [{{args.window}}]) an
//     unsigned number or a duration such as 5m or 1h30m; elsewhere (a
//     threshold, a metric or label name) also a name, but not a keyword
//     that joins expressions (or, and, unless, offset, by, on, bool...).
//     A value with spaces, operators, braces or a comment is refused (see
//     bareValue), so no value can add to the query's structure.
//
// Values must be valid UTF-8. Inside a regex matcher (=~, !~) the value is
// still a regular expression: escaping keeps the query's structure, not the
// meaning of regex metacharacters.
//
// Render scans the query with the rules of the PromQL lexer (strings,
// escapes, comments) and needs nothing else of PromQL.
func Render(query string, args map[string]string) (string, error) {
	var b strings.Builder
	b.Grow(len(query))
	st := lexCode
	// brackets is how deep in [ ] the scanner stands in code: the tokens
	// allowed there are fewer.
	brackets := 0
	for i := 0; i < len(query); {
		if strings.HasPrefix(query[i:], "{{") {
			end := strings.Index(query[i+2:], "}}")
			if end < 0 {
				return "", fmt.Errorf("query has {{ without a matching }} at offset %d", i)
			}
			name, err := placeholderName(query[i+2 : i+2+end])
			if err != nil {
				return "", err
			}
			v, ok := args[name]
			if !ok {
				return "", fmt.Errorf("argument %q has no value", name)
			}
			esc, err := escapeFor(st, v, brackets > 0)
			if err != nil {
				return "", &ArgError{Name: name, Value: v, Bare: st == lexCode, Err: err}
			}
			b.WriteString(esc)
			i += 2 + end + 2
			continue
		}
		c := query[i]
		b.WriteByte(c)
		i++
		switch st {
		case lexCode:
			switch c {
			case '"':
				st = lexDouble
			case '\'':
				st = lexSingle
			case '`':
				st = lexRaw
			case '#':
				st = lexComment
			case '[':
				brackets++
			case ']':
				brackets = max(brackets-1, 0)
			}
		case lexDouble, lexSingle:
			if c == '\\' && i < len(query) {
				// The escaped byte cannot end the string; copying it here
				// keeps \" from being read as the closing quote.
				b.WriteByte(query[i])
				i++
			} else if c == st.quote() {
				st = lexCode
			}
		case lexRaw:
			if c == '`' {
				st = lexCode
			}
		case lexComment:
			if c == '\n' {
				st = lexCode
			}
		}
	}
	return b.String(), nil
}

// lexState is where in a PromQL query the scanner stands.
type lexState int

const (
	lexCode lexState = iota
	lexDouble
	lexSingle
	lexRaw
	lexComment
)

func (s lexState) quote() byte {
	switch s {
	case lexDouble:
		return '"'
	case lexSingle:
		return '\''
	case lexRaw:
		return '`'
	}
	return 0
}

var (
	placeholderNameRE = regexp.MustCompile(`^\s*args\.([a-zA-Z_][a-zA-Z0-9_]*)\s*$`)
)

func placeholderName(inner string) (string, error) {
	m := placeholderNameRE.FindStringSubmatch(inner)
	if m == nil {
		return "", fmt.Errorf("placeholder {{%s}} must have the form {{args.NAME}}", inner)
	}
	return m[1], nil
}

func escapeFor(st lexState, v string, inBrackets bool) (string, error) {
	if !utf8.ValidString(v) {
		return "", fmt.Errorf("value %q is not valid UTF-8", v)
	}
	switch st {
	case lexDouble, lexSingle:
		return escapeQuoted(v, st.quote()), nil
	case lexRaw:
		if strings.Contains(v, "`") {
			return "", fmt.Errorf("value %q contains a backquote, which cannot appear in a `raw string`; use a quoted string in the query", v)
		}
		return v, nil
	case lexComment:
		if strings.ContainsAny(v, "\n\r") {
			return "", fmt.Errorf("value %q contains a line break, which would end the # comment it is in", v)
		}
		return v, nil
	}
	if err := bareValue(v, inBrackets); err != nil {
		return "", err
	}
	return v, nil
}

// escapeQuoted escapes v as the content of a PromQL string opened with
// quote. The PromQL lexer accepts \a \b \f \n \r \t \v \\ \xNN \uNNNN and
// the opening quote after a backslash; a raw line break ends the string
// with an error, so every control character is escaped.
func escapeQuoted(v string, quote byte) string {
	var b strings.Builder
	b.Grow(len(v) + 2)
	for _, r := range v {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == rune(quote):
			b.WriteByte('\\')
			b.WriteByte(quote)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r == 0x2028 || r == 0x2029:
			// Line and paragraph separators are not line breaks to
			// PromQL, but they are to many log viewers and editors.
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
