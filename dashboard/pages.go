package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/sluicehq/sluice/rolloutapi"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets/*
var assetFS embed.FS

// pageNames are the pages, one template file each, every one rendered in
// templates/layout.html with templates/parts.html.
var pageNames = []string{"table", "rollout", "confirm", "login", "error"}

// pages holds the parsed templates and the embedded assets.
type pages struct {
	byName map[string]*template.Template
	assets map[string]asset
}

type asset struct {
	data    []byte
	ctype   string
	version string
}

func loadPages() (*pages, error) {
	p := &pages{byName: map[string]*template.Template{}, assets: map[string]asset{}}
	entries, err := fs.ReadDir(assetFS, "assets")
	if err != nil {
		return nil, fmt.Errorf("dashboard: assets: %w", err)
	}
	for _, e := range entries {
		data, err := assetFS.ReadFile("assets/" + e.Name())
		if err != nil {
			return nil, fmt.Errorf("dashboard: asset %s: %w", e.Name(), err)
		}
		sum := sha256.Sum256(data)
		p.assets[e.Name()] = asset{data: data, ctype: mime.TypeByExtension(path.Ext(e.Name())), version: hex.EncodeToString(sum[:6])}
	}
	base, err := template.New("layout").Funcs(p.funcs()).ParseFS(templateFS, "templates/layout.html", "templates/parts.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard: templates: %w", err)
	}
	for _, name := range pageNames {
		t, err := template.Must(base.Clone()).ParseFS(templateFS, "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("dashboard: template %s: %w", name, err)
		}
		p.byName[name] = t
	}
	return p, nil
}

func (p *pages) funcs() template.FuncMap {
	return template.FuncMap{
		// asset is an asset's URL with its content's version, so a new
		// binary's assets are never taken from a cache.
		"asset": func(root, name string) string {
			return root + "assets/" + name + "?v=" + p.assets[name].version
		},
		"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"clock":   func(t time.Time) string { return t.UTC().Format("15:04:05") },
		"stamp":   func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"dur":     humanDuration,
		"short":   shortSHA,
		"verb":    rolloutapi.Verb,
		"inc":     func(i int) int { return i + 1 },
		"lower":   strings.ToLower,
		"path":    pathEscape,
		"tn":      timeAt,
	}
}

// at is a time with the page's now, for the "ago" and "left" parts.
type at struct{ T, Now time.Time }

// timeAt pairs a time (or a pointer to one) with now.
func timeAt(t any, now time.Time) (at, error) {
	switch t := t.(type) {
	case time.Time:
		return at{T: t, Now: now}, nil
	case *time.Time:
		if t != nil {
			return at{T: *t, Now: now}, nil
		}
	}
	return at{}, fmt.Errorf("tn: %T is not a time", t)
}

// serveAsset serves an embedded file.
func (p *pages) serveAsset(w http.ResponseWriter, r *http.Request) {
	a, ok := p.assets[r.PathValue("file")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", a.ctype)
	if r.URL.Query().Get("v") == a.version {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	_, _ = w.Write(a.data)
}

// base is what every page has.
type base struct {
	Title string
	// Root leads back to the dashboard's root from this page.
	Root string
	// Who is logged in; nil on the login page.
	Who      *rolloutapi.Identity
	CSRF     string
	ReadOnly bool
	Now      time.Time
}

func (d *Dashboard) base(r *http.Request, s *session, title string) base {
	b := base{Title: title, Root: root(r), ReadOnly: d.o.ReadOnly, Now: d.o.Now()}
	if s != nil {
		who := s.viewer.Identity()
		b.Who, b.CSRF = &who, s.csrf
	}
	return b
}

// render writes a whole page.
func (d *Dashboard) render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := d.pages.byName[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		http.Error(w, "dashboard: render "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fragment renders the live part of a page, for server-sent events.
func (d *Dashboard) fragment(page, name string, data any) ([]byte, error) {
	var buf bytes.Buffer
	if err := d.pages.byName[page].ExecuteTemplate(&buf, name, data); err != nil {
		return nil, fmt.Errorf("dashboard: render %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

type errorPage struct {
	base
	Status  int
	Message string
}

func (d *Dashboard) errorPage(w http.ResponseWriter, r *http.Request, s *session, status int, msg string) {
	d.render(w, status, "error", errorPage{base: d.base(r, s, http.StatusText(status)), Status: status, Message: msg})
}

func pathEscape(s string) string { return url.PathEscape(s) }

// redirect sends the browser to to, which may be relative: unlike
// http.Redirect it leaves a relative URL as it is, to be resolved against
// the URL the browser asked for, whatever prefix a proxy took off.
func redirect(w http.ResponseWriter, to string, code int) {
	w.Header().Set("Location", to)
	w.WriteHeader(code)
}

func shortSHA(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// humanDuration rounds a duration for people: 45s, 3m20s, 2h5m, 3d4h.
func humanDuration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Round(time.Second)/time.Second))
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	case d < 48*time.Hour:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	d = d.Round(time.Hour)
	return fmt.Sprintf("%dd%dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}
