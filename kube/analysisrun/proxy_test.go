package analysisrun

import (
	"bytes"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"testing"
)

// promProxy forwards to a real Prometheus and records the instant queries
// it forwards: the evaluation time of each (a measurement's slot) and the
// Authorization header it came with.
type promProxy struct {
	URL string

	mu    sync.Mutex
	times map[string]int // evaluation time → queries for it
	auth  map[string]bool
}

func newProxy(t *testing.T, upstream string) *promProxy {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &promProxy{times: map[string]int{}, auth: map[string]bool{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/api/v1/query" {
			// client_golang POSTs the parameters as a form; read it and put
			// it back for the proxy.
			body, err := io.ReadAll(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			req.Body = io.NopCloser(bytes.NewReader(body))
			form, _ := url.ParseQuery(string(body))
			at := form.Get("time")
			if at == "" {
				at = req.URL.Query().Get("time")
			}
			p.mu.Lock()
			p.times[at]++
			p.auth[req.Header.Get("Authorization")] = true
			p.mu.Unlock()
		}
		rp.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// queries returns how many evaluation times were queried and how many
// queries there were in all.
func (p *promProxy) queries() (distinct, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, n := range p.times {
		total += n
	}
	return len(p.times), total
}

func (p *promProxy) sawAuthorization(v string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.auth[v]
}

// hangingServer accepts connections and never answers: a Prometheus that
// hangs. Connections are held until the test ends.
func hangingServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + l.Addr().String()
}

func (p *promProxy) authorizations() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Sorted(maps.Keys(p.auth))
}

// sawOnlyAuthorization: every query came with Authorization v.
func (p *promProxy) sawOnlyAuthorization(v string) bool {
	got := p.authorizations()
	return len(got) == 1 && got[0] == v
}
