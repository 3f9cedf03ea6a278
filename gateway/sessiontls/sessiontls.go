// Package sessiontls is how the gateway reaches sessions that serve TLS
// (a task's `tls` block): HTTPS and WSS, verified against a CA file the
// gateway is given. The file is re-read when it changes, so a Nomad
// template that renders it from Vault PKI or a Nomad variable can rotate
// the CA without a restart.
package sessiontls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// Dialer dials sessions over TLS. A nil *Dialer means plain HTTP.
type Dialer struct {
	caFile     string
	serverName string
	net        net.Dialer

	mu   sync.Mutex
	pool *x509.CertPool
	mod  time.Time
	size int64
}

// New reads caFile (PEM, one or more CA certificates). serverName, when
// set, is the name every session's certificate must carry; otherwise the
// address the gateway dials (the registration's IP or host) must be in it.
func New(caFile, serverName string) (*Dialer, error) {
	d := &Dialer{caFile: caFile, serverName: serverName, net: net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}}
	if _, err := d.roots(); err != nil {
		return nil, err
	}
	return d, nil
}

// Scheme is "https" for a Dialer, "http" for nil.
func (d *Dialer) Scheme() string {
	if d == nil {
		return "http"
	}
	return "https"
}

// WSScheme is "wss" for a Dialer, "ws" for nil.
func (d *Dialer) WSScheme() string {
	if d == nil {
		return "ws"
	}
	return "wss"
}

// roots returns the CA pool, re-reading the file when it changed; a file
// being rewritten (unreadable, empty) keeps the last good pool.
func (d *Dialer) roots() (*x509.CertPool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fi, err := os.Stat(d.caFile)
	if err != nil {
		return d.stale(fmt.Errorf("session_tls.ca_file: %w", err))
	}
	if d.pool != nil && fi.ModTime().Equal(d.mod) && fi.Size() == d.size {
		return d.pool, nil
	}
	b, err := os.ReadFile(d.caFile)
	if err != nil {
		return d.stale(fmt.Errorf("session_tls.ca_file: %w", err))
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		return d.stale(fmt.Errorf("session_tls.ca_file %s: no PEM certificate in it", d.caFile))
	}
	d.pool, d.mod, d.size = p, fi.ModTime(), fi.Size()
	return p, nil
}

func (d *Dialer) stale(err error) (*x509.CertPool, error) {
	if d.pool != nil {
		return d.pool, nil
	}
	return nil, err
}

// DialTLSContext is an http.Transport's DialTLSContext: TCP, then a TLS
// handshake verified against the CA file for the session's name.
func (d *Dialer) DialTLSContext(ctx context.Context, network, addr string) (net.Conn, error) {
	roots, err := d.roots()
	if err != nil {
		return nil, err
	}
	name := d.serverName
	if name == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("session address %q: %w", addr, err)
		}
		name = host
	}
	raw, err := d.net.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, &tls.Config{RootCAs: roots, ServerName: name, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.HandshakeContext(hctx); err != nil {
		_ = raw.Close()
		var unknown x509.UnknownAuthorityError
		if errors.As(err, &unknown) {
			return nil, fmt.Errorf("session %s: certificate not signed by session_tls.ca_file: %w", addr, err)
		}
		return nil, fmt.Errorf("session %s: TLS: %w", addr, err)
	}
	return c, nil
}
