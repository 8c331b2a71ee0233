package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"

	"github.com/sluicehq/sluice/standalone/config"
)

// httpListener is one of `sluice run`'s HTTP listeners; a nil handler
// means the listener is not opened.
type httpListener struct {
	key     string // configuration key of the address, for errors
	addr    string
	handler http.Handler
}

// httpServer is an opened listener.
type httpServer struct {
	key  string
	addr string // as bound
	srv  *http.Server
	l    net.Listener
	tls  bool
}

func (s *httpServer) serve() error {
	if s.tls {
		return s.srv.ServeTLS(s.l, "", "")
	}
	return s.srv.Serve(s.l)
}

type httpServers []*httpServer

// Timeouts of every HTTP listener: slow or idle clients cannot hold
// connections open. Writes outlast a command's wait for the engine (30 s).
const (
	httpReadHeaderTimeout = 10 * time.Second
	httpReadTimeout       = 30 * time.Second
	httpWriteTimeout      = 45 * time.Second
	httpIdleTimeout       = 2 * time.Minute
	httpMaxHeaderBytes    = 64 << 10
)

// listenHTTP opens each listener with a handler, over TLS when the
// configuration says so.
func listenHTTP(cfg config.HTTP, ls []httpListener) (httpServers, error) {
	var tlsConf *tls.Config
	if t := cfg.TLS; t != nil {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("http.tls: %w", err)
		}
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	var out httpServers
	for _, l := range ls {
		if l.handler == nil {
			continue
		}
		nl, err := net.Listen("tcp", l.addr)
		if err != nil {
			out.close()
			return nil, fmt.Errorf("%s: %w", l.key, err)
		}
		out = append(out, &httpServer{key: l.key, addr: nl.Addr().String(), l: nl, tls: tlsConf != nil, srv: &http.Server{
			Handler:           l.handler,
			TLSConfig:         tlsConf,
			ReadHeaderTimeout: httpReadHeaderTimeout,
			ReadTimeout:       httpReadTimeout,
			WriteTimeout:      httpWriteTimeout,
			IdleTimeout:       httpIdleTimeout,
			MaxHeaderBytes:    httpMaxHeaderBytes,
		}})
	}
	return out, nil
}

func (ss httpServers) close() {
	for _, s := range ss {
		s.l.Close()
	}
}

func (ss httpServers) shutdown(ctx context.Context) {
	for _, s := range ss {
		_ = s.srv.Shutdown(ctx)
	}
}

// webhookAddr is where the webhook listens, or "off".
func (ss httpServers) webhookAddr() string {
	for _, s := range ss {
		if s.key == "http.webhookAddress" {
			return s.addr
		}
	}
	return "off"
}

// webhookMux serves POST /webhook only; nil when there is no webhook.
func webhookMux(h http.Handler) http.Handler {
	if h == nil {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("POST /webhook", h)
	return mux
}

// checkXDSExposure refuses an xDS listener reachable beyond this machine
// without mutual TLS: without client certificates node ids are whatever a
// client claims, so anyone on the network could read every route and
// answer for the proxies. --insecure-xds allows it, loudly.
func checkXDSExposure(x config.XDS, insecure bool, log logr.Logger) error {
	if loopbackOnly(x.Address) || (x.CertFile != "" && x.ClientCAFile != "") {
		return nil
	}
	if !insecure {
		return fmt.Errorf("xds.address: %s listens beyond loopback without mutual TLS, so node ids would be unverified and anyone who reaches it could read every route and forge acknowledgements; set xds.certFile, xds.keyFile and xds.clientCAFile (client certificates with the workload's spiffe:// ID), or pass --insecure-xds", x.Address)
	}
	log.Info("INSECURE: --insecure-xds: xDS listens beyond loopback without mutual TLS; node ids are unverified", "xds", x.Address)
	return nil
}

// loopbackOnly reports whether addr can only be reached from this machine.
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
