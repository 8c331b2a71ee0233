package analysis

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/prometheus/promql/parser"
)

// FuzzRenderQuoted renders an arbitrary value into each kind of PromQL
// string and reads the result back with an independent PromQL lexer: the
// query must keep exactly its structure (the same code around one string)
// and the string must decode to the value. Only values that are not valid
// UTF-8 may be refused.
func FuzzRenderQuoted(f *testing.F) {
	for _, s := range []string{"", "api", `"} or vector(1) #`, `'} or vector(1) #`, "a\\", "\\\"", "\n", "\x00\x7f", "\u2028", "{{args.v}}", "}}", "`", "é"} {
		f.Add(s)
	}
	templates := []struct{ before, after string }{
		{`sum(rate(http_requests_total{service="`, `",code=~"5.."}[1m]))`},
		{`label_replace(up, "dst", '`, `', "src", "(.*)")`},
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, tpl := range templates {
			q := tpl.before + "{{args.v}}" + tpl.after
			got, err := Render(q, map[string]string{"v": v})
			if err != nil {
				if utf8.ValidString(v) {
					t.Fatalf("Render(%q) with v=%q: %v", q, v, err)
				}
				continue
			}
			wantToks, err := lexQuery(tpl.before + "X" + tpl.after)
			if err != nil {
				t.Fatal(err)
			}
			gotToks, err := lexQuery(got)
			if err != nil {
				t.Fatalf("rendered query %q does not lex: %v", got, err)
			}
			if len(gotToks) != len(wantToks) {
				t.Fatalf("v=%q changed the query's structure:\n%s", v, got)
			}
			for i := range wantToks {
				w, g := wantToks[i], gotToks[i]
				switch {
				case g.str != w.str:
					t.Fatalf("v=%q changed the query's structure:\n%s", v, got)
				case !w.str && g.text != w.text:
					t.Fatalf("v=%q changed code %q into %q", v, w.text, g.text)
				case w.str && w.text == "X" && g.text != v:
					t.Fatalf("string decodes to %q, want %q", g.text, v)
				}
			}
			if strings.ContainsAny(got, "\n\r") {
				t.Fatalf("rendered query has a raw line break: %q", got)
			}
		}
	})
}

// FuzzRenderBare puts an arbitrary value where PromQL code goes (a range,
// a grouping label, a threshold, a metric name, a subquery) and reads the
// result with Prometheus's own lexer: whatever Render accepts must be one
// token of a kind that cannot join expressions (a number, duration or
// name, or an aggregation), with every other token of the query as it was.
func FuzzRenderBare(f *testing.F) {
	for _, s := range []string{"5m", "1h30m", "0.5", "5m] or vector(1", "-1", "", "1e3", "1e-3", ".5", "5m ", "Inf",
		"job", "or", "OR", "offset", "bool", "sum", "a:b", "x # c", "x{a=\"b\"}", "5m:1m", "on", "1_000", "0x1f"} {
		f.Add(s)
	}
	positions := []struct {
		query, ref string // ref: a value that is surely one token there
	}{
		{`rate(x{a="b"}[{{args.v}}]) > 0`, "5m"},
		{`max_over_time(rate(x[1m])[{{args.v}}:1m]) > 0`, "5m"},
		{`sum by ({{args.v}}) (rate(x[5m])) > 0`, "job"},
		{`rate(x[5m]) > {{args.v}}`, "1"},
		{`{{args.v}}{job="api"} == 1`, "up"},
		{`x * on({{args.v}}) group_left y`, "job"},
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, pos := range positions {
			got, err := Render(pos.query, map[string]string{"v": v})
			if err != nil {
				continue
			}
			want := lexItems(strings.ReplaceAll(pos.query, "{{args.v}}", pos.ref))
			have := lexItems(got)
			at := slices.IndexFunc(want, func(it parser.Item) bool { return it.Val == pos.ref })
			if at < 0 {
				t.Fatalf("reference value %q not found in %v", pos.ref, want)
			}
			if len(have) != len(want) {
				t.Fatalf("value %q in %s changed the number of tokens:\n%s\n%v", v, pos.query, got, have)
			}
			for i := range want {
				if i == at {
					continue
				}
				if have[i].Typ != want[i].Typ || have[i].Val != want[i].Val {
					t.Fatalf("value %q in %s changed token %d from %v to %v:\n%s", v, pos.query, i, want[i], have[i], got)
				}
			}
			tok := have[at]
			switch {
			case tok.Val != v:
				t.Fatalf("value %q in %s lexes as %q", v, pos.query, tok.Val)
			case tok.Typ == parser.NUMBER, tok.Typ == parser.DURATION, tok.Typ == parser.IDENTIFIER,
				tok.Typ == parser.METRIC_IDENTIFIER, tok.Typ.IsAggregator():
			default:
				t.Fatalf("value %q in %s was accepted but lexes as %v", v, pos.query, tok.Typ)
			}
		}
	})
}

// lexItems lexes a query with the PromQL lexer, up to the end or the
// first error (included).
func lexItems(q string) []parser.Item {
	l := parser.Lex(q)
	var out []parser.Item
	for {
		var it parser.Item
		l.NextItem(&it)
		if it.Typ == parser.EOF {
			return out
		}
		out = append(out, it)
		if it.Typ == parser.ERROR {
			return out
		}
	}
}

// FuzzRender feeds arbitrary templates and values: Render must never
// panic, and a template without placeholders must come out unchanged.
func FuzzRender(f *testing.F) {
	f.Add(`up{a="{{args.v}}"} # {{args.v}}`, "x")
	f.Add("x[{{args.v}}] `{{args.v}}` '{{args.v}}'", "5m")
	f.Add(`"\`, "")
	f.Fuzz(func(t *testing.T, q, v string) {
		got, err := Render(q, map[string]string{"v": v})
		if err == nil && !strings.Contains(q, "{{") && got != q {
			t.Fatalf("Render(%q) = %q, want it unchanged", q, got)
		}
	})
}
