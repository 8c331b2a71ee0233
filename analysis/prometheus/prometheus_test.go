package prometheus

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/sluicehq/sluice/analysis"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// fakeProm answers /api/v1/query and /api/v1/query_range with body and
// records the requests' headers.
type fakeProm struct {
	mu      sync.Mutex
	headers []http.Header
	peers   []string // client certificate CNs, "" without one
	body    string
	delay   time.Duration
}

func (f *fakeProm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.headers = append(f.headers, r.Header.Clone())
	peer := ""
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		peer = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	f.peers = append(f.peers, peer)
	body, delay := f.body, f.delay
	f.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if strings.Contains(body, `"status":"error"`) {
		w.WriteHeader(http.StatusBadRequest)
	}
	fmt.Fprint(w, body)
}

func (f *fakeProm) last() http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.headers[len(f.headers)-1]
}

const vectorBody = `{"status":"success","data":{"resultType":"vector","result":[
 {"metric":{"pod":"b"},"value":[1700000000,"0.5"]},
 {"metric":{"pod":"a"},"value":[1700000000,"0.25"]}]}}`

type secrets map[string]string

func (s secrets) SecretValue(_ context.Context, ns string, ref v1alpha1.SecretKeyRef) (string, error) {
	v, ok := s[ns+"/"+ref.Name+"/"+ref.Key]
	if !ok {
		return "", errors.New("not found")
	}
	return v, nil
}

func query(prov *v1alpha1.PrometheusProvider) analysis.Query {
	return analysis.Query{Metric: "m", Index: 3, At: time.Unix(1700000000, 0), Namespace: "shop", Provider: prov, Timeout: 2 * time.Second, Query: "up"}
}

func ref(name, key string) *v1alpha1.SecretKeyRef {
	return &v1alpha1.SecretKeyRef{Name: name, Key: key}
}

func TestRequests(t *testing.T) {
	t.Parallel()
	sec := secrets{"shop/prom/token": "s3cret", "shop/prom/user": "ann", "shop/prom/pass": "pw"}
	cases := []struct {
		name   string
		prov   v1alpha1.PrometheusProvider
		header string
		want   string
		err    string
	}{
		{"no auth", v1alpha1.PrometheusProvider{}, "Authorization", "", ""},
		{"user agent", v1alpha1.PrometheusProvider{}, "User-Agent", "sluice-test", ""},
		{"bearer", v1alpha1.PrometheusProvider{Auth: &v1alpha1.PrometheusAuth{BearerToken: ref("prom", "token")}}, "Authorization", "Bearer s3cret", ""},
		{"basic", v1alpha1.PrometheusProvider{Auth: &v1alpha1.PrometheusAuth{BasicUsername: ref("prom", "user"), BasicPassword: ref("prom", "pass")}},
			"Authorization", "Basic YW5uOnB3", ""},
		{"header", v1alpha1.PrometheusProvider{Headers: []v1alpha1.HTTPHeader{{Name: "x-scope-orgid", Value: "team-a"}}}, "X-Scope-Orgid", "team-a", ""},
		{"missing secret", v1alpha1.PrometheusProvider{Auth: &v1alpha1.PrometheusAuth{BearerToken: ref("prom", "nope")}}, "", "",
			"bearer token from Secret shop/prom key nope: not found"},
		{"authorization header and auth", v1alpha1.PrometheusProvider{
			Auth:    &v1alpha1.PrometheusAuth{BearerToken: ref("prom", "token")},
			Headers: []v1alpha1.HTTPHeader{{Name: "authorization", Value: "x"}},
		}, "", "", "header Authorization conflicts with auth"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeProm{body: vectorBody}
			srv := httptest.NewServer(f)
			defer srv.Close()
			m := New(Options{AllowTemplateAddresses: true, Secrets: sec, UserAgent: "sluice-test"})
			defer m.Close()
			tc.prov.Address = srv.URL
			res := m.Measure(context.Background(), query(&tc.prov))
			if tc.err != "" {
				if res.Err == nil || !strings.Contains(res.Err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", res.Err, tc.err)
				}
				return
			}
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			if got := f.last().Get(tc.header); got != tc.want {
				t.Errorf("%s: %q, want %q", tc.header, got, tc.want)
			}
			// Ordered by labels: pod a first.
			if res.Metric != "m" || res.Index != 3 || res.Value.Scalar || fmt.Sprint(res.Value.Values) != "[0.25 0.5]" {
				t.Errorf("result %+v", res)
			}
		})
	}
}

func TestResultShapes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, body string
		want       string // fmt of Value
		err        string
	}{
		{"scalar", `{"status":"success","data":{"resultType":"scalar","result":[1700000000,"0.75"]}}`, "{true [0.75]}", ""},
		{"empty vector", `{"status":"success","data":{"resultType":"vector","result":[]}}`, "{false []}", ""},
		{"NaN", `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"NaN"]}]}}`, "{false [NaN]}", ""},
		{"matrix", `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1700000000,"1"]]}]}}`, "", "range vector"},
		{"native histogram", `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"x"},"histogram":[1700000000,{"count":"2","sum":"3","buckets":[[0,"0","1","2"]]}]}]}}`, "", "native histogram"},
		{"bad query", `{"status":"error","errorType":"bad_data","error":"1:3: parse error: unexpected end of input"}`, "", "query failed: bad_data: 1:3: parse error: unexpected end of input"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(&fakeProm{body: tc.body})
			defer srv.Close()
			res := New(Options{AllowTemplateAddresses: true}).Measure(context.Background(), query(&v1alpha1.PrometheusProvider{Address: srv.URL}))
			if tc.err != "" {
				if res.Err == nil || !strings.Contains(res.Err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", res.Err, tc.err)
				}
				return
			}
			if res.Err != nil || fmt.Sprint(res.Value) != tc.want {
				t.Fatalf("(%v, %v), want %s", res.Value, res.Err, tc.want)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(&fakeProm{body: vectorBody, delay: time.Second})
	defer srv.Close()
	q := query(&v1alpha1.PrometheusProvider{Address: srv.URL})
	q.Timeout = 200 * time.Millisecond
	start := time.Now()
	res := New(Options{AllowTemplateAddresses: true}).Measure(context.Background(), q)
	if res.Err == nil || res.Err.Error() != "query timed out after 200ms" || time.Since(start) > 900*time.Millisecond {
		t.Fatalf("err %v after %s", res.Err, time.Since(start))
	}
}

// TestConvertString: client_golang cannot decode a string result from
// the wire, but convert must still refuse one it is given.
func TestConvertString(t *testing.T) {
	t.Parallel()
	if _, err := convert(&model.String{Value: "x"}); err == nil || !strings.Contains(err.Error(), "returns a string") {
		t.Fatalf("err %v", err)
	}
	if _, err := convert(nil); err == nil {
		t.Fatal("nil result accepted")
	}
}

// TestRotatedCredential: the client cache is keyed by the secret values,
// so a new token is used as soon as the resolver returns it.
func TestRotatedCredential(t *testing.T) {
	t.Parallel()
	f := &fakeProm{body: vectorBody}
	srv := httptest.NewServer(f)
	defer srv.Close()
	sec := secrets{"shop/prom/token": "one"}
	m := New(Options{AllowTemplateAddresses: true, Secrets: sec})
	prov := &v1alpha1.PrometheusProvider{Address: srv.URL, Auth: &v1alpha1.PrometheusAuth{BearerToken: ref("prom", "token")}}
	for _, tok := range []string{"one", "two"} {
		sec["shop/prom/token"] = tok
		if res := m.Measure(context.Background(), query(prov)); res.Err != nil {
			t.Fatal(res.Err)
		}
		if got := f.last().Get("Authorization"); got != "Bearer "+tok {
			t.Fatalf("Authorization %q, want Bearer %s", got, tok)
		}
	}
}

func TestCompareQueries(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		v := "1"
		if strings.Contains(r.Form.Get("query"), "canary") {
			v = "2"
		}
		if r.URL.Path != "/api/v1/query_range" || r.Form.Get("step") != "15" || r.Form.Get("start") != "1699999700" || r.Form.Get("end") != "1700000000" {
			http.Error(w, `{"status":"error","errorType":"bad_data","error":"unexpected request `+r.URL.String()+`"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"matrix","result":[
			{"metric":{"pod":"b"},"values":[[1699999985,"%[1]s"],[1700000000,"%[1]s"]]},
			{"metric":{"pod":"a"},"values":[[1700000000,"NaN"]]}]}}`, v)
	}))
	defer srv.Close()
	q := query(&v1alpha1.PrometheusProvider{Address: srv.URL})
	q.Compare = &analysis.CompareQuery{Stable: `x{subset="stable"}`, Canary: `x{subset="canary"}`, Window: 5 * time.Minute, Step: 15 * time.Second}
	res := New(Options{AllowTemplateAddresses: true}).Measure(context.Background(), q)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if fmt.Sprint(res.Stable) != "[NaN 1 1]" || fmt.Sprint(res.Canary) != "[NaN 2 2]" {
		t.Fatalf("stable %v canary %v", res.Stable, res.Canary)
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	caPEM, certPEM, keyPEM := clientCert(t)
	f := &fakeProm{body: vectorBody}
	srv := httptest.NewUnstartedServer(f)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	srv.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()
	serverCA := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	sec := secrets{"shop/tls/ca.crt": serverCA, "shop/tls/tls.crt": string(certPEM), "shop/tls/tls.key": string(keyPEM), "shop/tls/junk": "not pem"}

	cases := []struct {
		name     string
		tls      *v1alpha1.PrometheusTLS
		insecure bool
		err      string
		clientCN string
	}{
		{"unknown authority", nil, false, "certificate signed by unknown authority", ""},
		{"insecureSkipVerify", nil, true, "", ""},
		{"CA", &v1alpha1.PrometheusTLS{CA: ref("tls", "ca.crt")}, false, "", ""},
		{"server name checked", &v1alpha1.PrometheusTLS{CA: ref("tls", "ca.crt"), ServerName: "prometheus.example"}, false, "prometheus.example", ""},
		{"client certificate", &v1alpha1.PrometheusTLS{CA: ref("tls", "ca.crt"), Cert: ref("tls", "tls.crt"), Key: ref("tls", "tls.key")}, false, "", "sluice-client"},
		{"CA not PEM", &v1alpha1.PrometheusTLS{CA: ref("tls", "junk")}, false, "TLS CA: no PEM certificate found", ""},
	}
	// In sequence: each case checks the server's last request.
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := New(Options{AllowTemplateAddresses: true, Secrets: sec})
			defer m.Close()
			res := m.Measure(context.Background(), query(&v1alpha1.PrometheusProvider{Address: srv.URL, TLS: tc.tls, InsecureSkipVerify: tc.insecure}))
			if tc.err != "" {
				if res.Err == nil || !strings.Contains(res.Err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", res.Err, tc.err)
				}
				return
			}
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			f.mu.Lock()
			peer := f.peers[len(f.peers)-1]
			f.mu.Unlock()
			if peer != tc.clientCN {
				t.Errorf("client certificate %q, want %q", peer, tc.clientCN)
			}
		})
	}
}

// clientCert makes a self-signed CA and a client certificate it signs.
func clientCert(t *testing.T) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTpl, caTpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "sluice-client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, caTpl, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

// A Prometheus that redirects to another host never hands that host the
// credentials: the redirect is refused, and a request there carries none.
// So for a configured provider's and a template's own credentials alike.
func TestCredentialsStayWithTheirHost(t *testing.T) {
	t.Parallel()
	other := &fakeProm{body: vectorBody}
	elsewhere := httptest.NewServer(other)
	defer elsewhere.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	headers := []v1alpha1.HTTPHeader{{Name: "X-Scope-OrgID", Value: "team-a"}}
	m := New(Options{
		Providers:              []Provider{{Name: "main", Address: redirector.URL, BearerToken: value("s3cret"), Headers: headers}},
		AllowTemplateAddresses: true,
		Secrets:                secrets{"shop/prom/token": "s3cret"},
	})
	defer m.Close()
	for _, prov := range []*v1alpha1.PrometheusProvider{
		{Name: "main"},
		{Address: redirector.URL, Auth: &v1alpha1.PrometheusAuth{BearerToken: ref("prom", "token")}, Headers: headers},
	} {
		res := m.Measure(context.Background(), query(prov))
		if res.Err == nil || !strings.Contains(res.Err.Error(), "another host") {
			t.Errorf("measure through a cross-host redirect: %v, want the redirect refused", res.Err)
		}
	}
	other.mu.Lock()
	defer other.mu.Unlock()
	for _, h := range other.headers {
		if h.Get("Authorization") != "" || h.Get("X-Scope-Orgid") != "" {
			t.Fatalf("the other host received credentials: %v", h)
		}
	}
}

func value(v string) Secret { return func() (string, error) { return v, nil } }
