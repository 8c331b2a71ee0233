package analysis

import (
	"strings"
	"testing"
	"unicode/utf8"
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

// FuzzRenderBare puts an arbitrary value where a duration goes: Render
// must refuse anything that is not a single number or duration token.
func FuzzRenderBare(f *testing.F) {
	for _, s := range []string{"5m", "1h30m", "0.5", "5m] or vector(1", "-1", "", "1e3", "5m ", "Inf"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got, err := Render("rate(x[{{args.v}}]) > 0", map[string]string{"v": v})
		if err != nil {
			return
		}
		if got != "rate(x["+v+"]) > 0" {
			t.Fatalf("Render changed the value: %q", got)
		}
		for _, r := range v {
			if !(r >= '0' && r <= '9' || r == '.' || strings.ContainsRune("msmhdwy", r)) {
				t.Fatalf("value %q with %q was accepted outside quotes", v, r)
			}
		}
	})
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
