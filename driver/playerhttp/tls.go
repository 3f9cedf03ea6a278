package playerhttp

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// certCheckInterval bounds how often a handshake looks at the files: a stat
// of two files per second at most, whatever the handshake rate.
const certCheckInterval = time.Second

// CertReloader serves a certificate from a cert and key file pair (files a
// Nomad template wrote, renewed from Vault's PKI, say) and picks up new
// files on the next handshake after they change, judged by inode, size and
// modification time. Connections already open keep the certificate they
// were made with. A new pair that does not load (a half-written renewal: the
// new cert with the old key) is logged and the previous certificate kept;
// the pair is tried again when either file changes again.
type CertReloader struct {
	certFile, keyFile string
	log               hclog.Logger
	now               func() time.Time

	mu        sync.Mutex
	cert      *tls.Certificate
	seen      [2]fileID // of the pair last tried, loaded or not
	lastCheck time.Time
}

// fileID tells one version of a file from another.
type fileID struct {
	ino, dev uint64
	size     int64
	mtime    time.Time
}

func statID(path string) (fileID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}, err
	}
	id := fileID{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.ino, id.dev = st.Ino, uint64(st.Dev) //nolint:unconvert // Dev is int32 on some platforms
	}
	return id, nil
}

// NewCertReloader loads the pair once; an error names the files and why they
// do not make a certificate.
func NewCertReloader(certFile, keyFile string, log hclog.Logger) (*CertReloader, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	r := &CertReloader{certFile: certFile, keyFile: keyFile, log: log, now: time.Now}
	ids, err := r.stat()
	if err != nil {
		return nil, err
	}
	cert, err := r.load()
	if err != nil {
		return nil, err
	}
	r.cert, r.seen, r.lastCheck = cert, ids, r.now()
	return r, nil
}

func (r *CertReloader) stat() ([2]fileID, error) {
	c, err := statID(r.certFile)
	if err != nil {
		return [2]fileID{}, fmt.Errorf("tls.cert_file: %w", err)
	}
	k, err := statID(r.keyFile)
	if err != nil {
		return [2]fileID{}, fmt.Errorf("tls.key_file: %w", err)
	}
	return [2]fileID{c, k}, nil
}

func (r *CertReloader) load() (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %s and %s are not a PEM certificate and its private key: %w", r.certFile, r.keyFile, err)
	}
	if cert.Leaf == nil && len(cert.Certificate) > 0 {
		if leaf, err := x509.ParseCertificate(cert.Certificate[0]); err == nil {
			cert.Leaf = leaf
		}
	}
	return &cert, nil
}

// Certificate returns the certificate in use, reloading the files first if
// they changed since the last look (at most once per certCheckInterval).
func (r *CertReloader) Certificate() *tls.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if now.Sub(r.lastCheck) < certCheckInterval {
		return r.cert
	}
	r.lastCheck = now
	ids, err := r.stat()
	if err != nil {
		// A template re-rendering may replace a file by rename: gone for a
		// moment. Keep serving; the next look finds it.
		if ids != r.seen {
			r.log.Warn("certificate files unreadable; keeping the current certificate", "error", err)
			r.seen = ids
		}
		return r.cert
	}
	if ids == r.seen {
		return r.cert
	}
	r.seen = ids
	cert, err := r.load()
	if err != nil {
		r.log.Warn("new certificate files do not load; keeping the current certificate until they change again", "error", err)
		return r.cert
	}
	r.cert = cert
	fields := []any{"cert_file", r.certFile}
	if cert.Leaf != nil {
		fields = append(fields, "subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	r.log.Info("certificate reloaded", fields...)
	return r.cert
}

// GetCertificate is a tls.Config.GetCertificate.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := r.Certificate(); c != nil {
		return c, nil
	}
	return nil, errors.New("no certificate")
}

// TLSConfig is the server side TLS configuration for the player port:
// TLS 1.2 or newer, HTTP/1.1 only (browsers open WebSockets over HTTP/1.1).
func (r *CertReloader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
		NextProtos:     []string{"http/1.1"},
	}
}
