package xds

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
)

// TLSFiles configures TLS for the xDS server from PEM files, or from
// memory (GetCertificate).
type TLSFiles struct {
	// CertFile and KeyFile are the server's certificate chain and key.
	CertFile string
	KeyFile  string
	// GetCertificate, when set, supplies the serving certificate at each
	// handshake instead of CertFile and KeyFile: a certificate Sluice
	// issues and rotates itself, or one read from a Secret.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// ClientCAFile turns on mutual TLS: every client must present a
	// certificate signed by one of these CAs.
	ClientCAFile string
	// ClientCertOptional lets a client without a certificate connect,
	// for servers that also accept service-account tokens; a certificate
	// that is presented must still verify against ClientCAFile.
	ClientCertOptional bool
}

// tlsReloader serves the files' current content: certificates are rotated
// on disk (cert-manager, SPIRE) while ADS streams live for days, so every
// handshake checks whether the files changed and reloads them if so. A
// failed reload keeps the last good configuration.
type tlsReloader struct {
	files TLSFiles
	log   *slog.Logger

	mu    sync.Mutex
	stamp string
	conf  *tls.Config
}

func newTLSReloader(files TLSFiles, log *slog.Logger) (*tlsReloader, error) {
	if files.GetCertificate == nil && (files.CertFile == "" || files.KeyFile == "") {
		return nil, errors.New("tls: certificate and key files are both required")
	}
	r := &tlsReloader{files: files, log: log}
	stamp, err := r.fileStamp()
	if err != nil {
		return nil, err
	}
	conf, err := r.load()
	if err != nil {
		return nil, err
	}
	r.stamp, r.conf = stamp, conf
	return r, nil
}

// serverConfig is what the gRPC server is given; the real configuration
// comes from GetConfigForClient.
func (r *tlsReloader) serverConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: r.forClient}
}

func (r *tlsReloader) forClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	stamp, err := r.fileStamp()
	if err != nil || stamp == r.stamp {
		if err != nil {
			r.log.Warn("xds tls: cannot stat certificate files; keeping the loaded ones", "err", err)
		}
		return r.conf, nil
	}
	conf, err := r.load()
	if err != nil {
		r.log.Warn("xds tls: reload failed; keeping the loaded certificates", "err", err)
		return r.conf, nil
	}
	r.stamp, r.conf = stamp, conf
	r.log.Info("xds tls: certificates reloaded")
	return conf, nil
}

func (r *tlsReloader) load() (*tls.Config, error) {
	conf := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The config returned per client replaces the one gRPC prepared,
		// so it must offer HTTP/2 itself or gRPC clients refuse the
		// connection for lack of ALPN.
		NextProtos: []string{"h2"},
	}
	if r.files.GetCertificate != nil {
		conf.GetCertificate = r.files.GetCertificate
	} else {
		cert, err := tls.LoadX509KeyPair(r.files.CertFile, r.files.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: load key pair: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	if r.files.ClientCAFile != "" {
		pem, err := os.ReadFile(r.files.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: read client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls: no certificate in client CA file %s", r.files.ClientCAFile)
		}
		conf.ClientCAs = pool
		conf.ClientAuth = tls.RequireAndVerifyClientCert
		if r.files.ClientCertOptional {
			conf.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}
	return conf, nil
}

// fileStamp summarises the files' sizes and modification times.
func (r *tlsReloader) fileStamp() (string, error) {
	var b strings.Builder
	files := []string{r.files.ClientCAFile}
	if r.files.GetCertificate == nil {
		files = append(files, r.files.CertFile, r.files.KeyFile)
	}
	for _, f := range files {
		if f == "" {
			continue
		}
		fi, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("tls: %w", err)
		}
		fmt.Fprintf(&b, "%s:%d:%d;", f, fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String(), nil
}
