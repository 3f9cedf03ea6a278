package signalling

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestAddrKey: the per-address cap counts IPv4 addresses and IPv6 /64s.
func TestAddrKey(t *testing.T) {
	key := func(s string) string {
		a, err := net.ResolveTCPAddr("tcp", s)
		if err != nil {
			t.Fatal(err)
		}
		p, ok := addrKey(a)
		if !ok {
			t.Fatalf("%s has no key", s)
		}
		return p.String()
	}
	cases := []struct {
		a, b string
		same bool
	}{
		{"192.0.2.1:1000", "192.0.2.1:2000", true},
		{"192.0.2.1:1000", "192.0.2.2:1000", false},
		{"[2001:db8:1:2::1]:1", "[2001:db8:1:2:ffff:ffff:ffff:ffff]:2", true},
		{"[2001:db8:1:2::1]:1", "[2001:db8:1:3::1]:1", false},
		{"[::ffff:192.0.2.1]:1", "192.0.2.1:2", true},
		{"[fe80::1%lo]:1", "[fe80::2]:1", true},
	}
	for _, c := range cases {
		if got := key(c.a) == key(c.b); got != c.same {
			t.Errorf("%s (%s) and %s (%s): same key %v, want %v", c.a, key(c.a), c.b, key(c.b), got, c.same)
		}
	}
}

// emfileListener stands in for a kernel out of file descriptors: its first
// accepts fail with EMFILE.
type emfileListener struct {
	net.Listener
	fails atomic.Int32
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestAcceptSurvivesEMFILE: the accept loop backs off and continues; Close
// ends a backoff. (hostile/http_test.go runs a real descriptor shortage.)
func TestAcceptSurvivesEMFILE(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fake := &emfileListener{Listener: inner}
	fake.fails.Store(3)
	m, err := newListenerMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ln := newCapListener(fake, "player", connCaps{}, m, hclog.NewNullLogger())
	defer ln.Close()
	go func() {
		if nc, err := net.Dial("tcp", inner.Addr().String()); err == nil {
			defer nc.Close()
			_, _ = io.Copy(io.Discard, nc)
		}
	}()
	nc, err := ln.Accept()
	if err != nil {
		t.Fatalf("Accept after EMFILE: %v", err)
	}
	_ = nc.Close()
	if n := testutil.ToFloat64(m.acceptErrors.WithLabelValues("player")); n != 3 {
		t.Fatalf("accept errors counted: %v, want 3", n)
	}

	fake.fails.Store(1 << 30)
	done := make(chan error, 1)
	go func() { _, err := ln.Accept(); done <- err }()
	eventually(t, "the accept loop backing off", func() bool { return fake.fails.Load() < 1<<30-2 })
	_ = ln.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Close did not end an Accept that was backing off")
	}
}
