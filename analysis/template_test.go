package analysis

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestRender(t *testing.T) {
	t.Parallel()
	const injection = `"} or vector(1) #`
	cases := []struct {
		name  string
		query string
		v     string
		want  string
		err   string
	}{
		{"label value", `up{job="{{args.v}}"}`, "api", `up{job="api"}`, ""},
		{"spaces in placeholder", `up{job="{{ args.v }}"}`, "api", `up{job="api"}`, ""},
		{"injection in double quotes", `up{job="{{args.v}}"}`, injection, `up{job="\"} or vector(1) #"}`, ""},
		{"injection in single quotes", `up{job='{{args.v}}'}`, `'} or vector(1) #`, `up{job='\'} or vector(1) #'}`, ""},
		{"other quote left alone", `up{job='{{args.v}}'}`, `a"b`, `up{job='a"b'}`, ""},
		{"backslash", `up{job="{{args.v}}"}`, `a\"b`, `up{job="a\\\"b"}`, ""},
		{"line break", `up{job="{{args.v}}"}`, "a\nb\r\tc", `up{job="a\nb\r\tc"}`, ""},
		{"control characters", `up{job="{{args.v}}"}`, "a\x00b\x1f\x7f", `up{job="a\x00b\x1f\x7f"}`, ""},
		{"line separator", `up{job="{{args.v}}"}`, "a\u2028b", `up{job="a\u2028b"}`, ""},
		{"unicode kept", `up{job="{{args.v}}"}`, "café-🚀", `up{job="café-🚀"}`, ""},
		{"escaped quote before placeholder", `up{job="\"{{args.v}}"}`, injection, `up{job="\"\"} or vector(1) #"}`, ""},
		{"escaped backslash then placeholder", `up{job="\\{{args.v}}"}`, "x", `up{job="\\x"}`, ""},
		{"after a string closes", `up{a="x"}[{{args.v}}]`, "5m", `up{a="x"}[5m]`, ""},
		{"duration", `rate(x[{{args.v}}])`, "1h30m", `rate(x[1h30m])`, ""},
		{"milliseconds", `rate(x[{{args.v}}])`, "500ms", `rate(x[500ms])`, ""},
		{"number", `x > {{args.v}}`, "0.5", `x > 0.5`, ""},
		{"injection outside quotes", `rate(x[{{args.v}}])`, "5m]) or vector(1", "", "outside a quoted string"},
		{"negative number outside quotes", `x {{args.v}}`, "-1", "", "outside a quoted string"},
		{"empty outside quotes", `x[{{args.v}}]`, "", "", "outside a quoted string"},
		{"grouping label", `sum by ({{args.v}}) (x)`, "job", `sum by (job) (x)`, ""},
		{"metric name", `{{args.v}}{a="b"}`, "job:http_requests:rate5m", `job:http_requests:rate5m{a="b"}`, ""},
		{"aggregation", `{{args.v}}(x)`, "max", `max(x)`, ""},
		{"exponent", `x > {{args.v}}`, "1e-3", `x > 1e-3`, ""},
		{"name after a range closes", `x[5m] > {{args.v}}`, "job", `x[5m] > job`, ""},
		{"keyword", `x > {{args.v}}`, "or", "", "keyword or"},
		{"keyword in capitals", `x * {{args.v}}(job) y`, "ON", "", "keyword on"},
		{"name inside brackets", `rate(x[{{args.v}}])`, "job", "", "inside [ ]"},
		{"subquery in brackets", `x[{{args.v}}]`, "5m:1m", "", "inside [ ]"},
		{"units out of order", `x[{{args.v}}]`, "5m1h", "", "inside [ ]"},
		{"expression outside quotes", `x > {{args.v}}`, "1 or vector(1)", "", "outside a quoted string"},
		{"comment outside quotes", `x > {{args.v}}`, "1#", "", "outside a quoted string"},
		{"braces outside quotes", `{{args.v}} > 0`, `x{a="b"}`, "", "outside a quoted string"},
		{"raw string", "up{job=~`{{args.v}}`}", `a.*\d`, "up{job=~`a.*\\d`}", ""},
		{"backquote in raw string", "up{job=~`{{args.v}}`}", "a`} or vector(1) #", "", "backquote"},
		{"comment", "up # for {{args.v}}\n", "api", "up # for api\n", ""},
		{"line break in comment", "up # for {{args.v}}\n", "x\nor vector(1)", "", "line break"},
		{"quote in comment does not open a string", "up # it's {{args.v}}\n> {{args.v}}", "5", "up # it's 5\n> 5", ""},
		{"invalid UTF-8", `up{job="{{args.v}}"}`, "a\xffb", "", "UTF-8"},
		{"missing argument", `up{job="{{args.w}}"}`, "x", "", `argument "w" has no value`},
		{"not an argument", `up{job="{{ .v }}"}`, "x", "", "must have the form {{args.NAME}}"},
		{"unterminated", `up{job="{{args.v}"}`, "x", "", "without a matching }}"},
		{"two placeholders", `x{a="{{args.v}}",b='{{args.v}}'}[{{args.w5}}]`, "q", `x{a="q",b='q'}[5m]`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Render(tc.query, map[string]string{"v": tc.v, "w5": "5m"})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Render = (%q, %v), want an error containing %q", got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("Render = %s\nwant     %s", got, tc.want)
			}
		})
	}
}

// token is a piece of a PromQL query as the PromQL lexer splits it: a
// string literal (decoded) or a run of everything else.
type token struct {
	str  bool
	text string
}

// lexQuery splits a query into strings and the rest, decoding strings the
// way Prometheus does (promql/parser lexEscape and util/strutil.Unquote):
// it is an independent reading of the rendered query, to check Render
// against.
func lexQuery(q string) ([]token, error) {
	var toks []token
	var code strings.Builder
	flush := func() {
		if code.Len() > 0 {
			toks = append(toks, token{text: code.String()})
			code.Reset()
		}
	}
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == '#':
			end := strings.IndexByte(q[i:], '\n')
			if end < 0 {
				end = len(q) - i
			}
			code.WriteString(q[i : i+end])
			i += end
		case c == '"' || c == '\'' || c == '`':
			flush()
			s, n, err := lexString(q[i:])
			if err != nil {
				return nil, fmt.Errorf("at %d: %w", i, err)
			}
			toks = append(toks, token{str: true, text: s})
			i += n
		default:
			code.WriteByte(c)
			i++
		}
	}
	flush()
	return toks, nil
}

// lexString decodes the string literal at the start of q and returns it
// with the number of bytes it spans.
func lexString(q string) (string, int, error) {
	quote := q[0]
	var b strings.Builder
	for i := 1; i < len(q); {
		r, size := utf8.DecodeRuneInString(q[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			return "", 0, errors.New("invalid UTF-8")
		case r == rune(quote):
			return b.String(), i + 1, nil
		case quote == '`':
			b.WriteRune(r)
			i += size
			continue
		case r == '\n':
			return "", 0, errors.New("line break in a quoted string")
		case r != '\\':
			b.WriteRune(r)
			i += size
			continue
		}
		if i+1 >= len(q) {
			return "", 0, errors.New("unterminated escape")
		}
		e := q[i+1]
		simple := map[byte]rune{'a': '\a', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t', 'v': '\v', '\\': '\\', quote: rune(quote)}
		if r, ok := simple[e]; ok {
			b.WriteRune(r)
			i += 2
			continue
		}
		digits, base := 0, 0
		switch e {
		case 'x':
			digits, base = 2, 16
		case 'u':
			digits, base = 4, 16
		case 'U':
			digits, base = 8, 16
		default:
			return "", 0, fmt.Errorf("unknown escape \\%c", e)
		}
		if i+2+digits > len(q) {
			return "", 0, errors.New("short escape")
		}
		v, err := strconv.ParseUint(q[i+2:i+2+digits], base, 32)
		if err != nil {
			return "", 0, err
		}
		if e == 'x' {
			b.WriteByte(byte(v))
		} else {
			b.WriteRune(rune(v))
		}
		i += 2 + digits
	}
	return "", 0, errors.New("unterminated string")
}

func TestLexQueryReadsRenderedStrings(t *testing.T) {
	t.Parallel()
	toks, err := lexQuery(`sum(x{a="\"} or vector(1) #",b='it\'s'}) # "not a string`)
	if err != nil {
		t.Fatal(err)
	}
	want := []token{{false, "sum(x{a="}, {true, `"} or vector(1) #`}, {false, ",b="}, {true, "it's"}, {false, `}) # "not a string`}}
	if fmt.Sprint(toks) != fmt.Sprint(want) {
		t.Fatalf("lexQuery = %+v, want %+v", toks, want)
	}
	for _, bad := range []string{`x{a="unterminated}`, "x{a=\"line\nbreak\"}", `x{a="\q"}`} {
		if _, err := lexQuery(bad); err == nil {
			t.Errorf("lexQuery(%q) succeeded, want an error", bad)
		}
	}
}
