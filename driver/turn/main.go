package turn

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"
)

// Main runs the TURN server standalone (the `turn` subcommand) until
// SIGTERM or SIGINT, and returns the process exit code.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return run(ctx, args, os.Stdout, os.Stderr)
}

const secretEnv = "PIXELSTREAM_TURN_SECRET"

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("turn", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: nomad-driver-pixelstream turn --listen ADDR --realm R --secret S [--relay-ip IP] [--public-ip IP]\n"+
			"         [--relay-ports MIN-MAX] [--allow-peer IP[:PORT]|CIDR]... [--tls-cert F --tls-key F] [--quota-player N] [--quota-session N] [--quota-lifetime N] [--tcp-max N] [--tcp-per-address N] [--log-level L]\n\n"+
			"The secret may come from $%s instead of --secret (keeps it out of ps).\n"+
			"Peers are denied by default: list the addresses relayed traffic may reach with --allow-peer.\n\n", secretEnv)
		fs.PrintDefaults()
	}
	var (
		cfg        Config
		secret     string
		relayPorts string
		logLevel   string
		cpuProfile string
		allow      allowPeerFlag
	)
	fs.StringVar(&cfg.Listen, "listen", "", "UDP and TCP `address` to listen on, ip:port (required)")
	fs.StringVar(&cfg.Realm, "realm", DefaultRealm, "TURN `realm`")
	fs.StringVar(&secret, "secret", "", "TURN REST shared `secret` (required, or $"+secretEnv+")")
	fs.StringVar(&cfg.RelayIP, "relay-ip", "", "local `IP` relay sockets bind to (default: the listen IP)")
	fs.StringVar(&cfg.PublicIP, "public-ip", "", "`IP` given to clients as relay address (default: the listen IP)")
	fs.StringVar(&relayPorts, "relay-ports", "", "relay port `range` MIN-MAX (default: ephemeral ports)")
	fs.Var(&allow, "allow-peer", "peer `IP[:PORT]|CIDR` relayed traffic may reach (repeatable)")
	fs.StringVar(&cfg.CertFile, "tls-cert", "", "TLS certificate `file` for turns: on the same TCP port")
	fs.StringVar(&cfg.KeyFile, "tls-key", "", "TLS key `file`")
	fs.IntVar(&cfg.Sockets, "sockets", 0, "UDP sockets (SO_REUSEPORT) and relay loops (default: one per CPU, at most 4)")
	fs.IntVar(&cfg.Quotas.PerPlayer, "quota-player", 0, "concurrent allocations per username's id (default 12)")
	fs.IntVar(&cfg.Quotas.PerSession, "quota-session", 0, "concurrent allocations in total (default 200)")
	fs.IntVar(&cfg.Quotas.Lifetime, "quota-lifetime", 0, "allocations one username's id may create over its life (default 500)")
	fs.IntVar(&cfg.MaxTCPConns, "tcp-max", 0, "concurrent TCP/TLS connections (default 1024)")
	fs.IntVar(&cfg.MaxTCPConnsPerAddr, "tcp-per-address", 0, "concurrent TCP/TLS connections per client IPv4 address or IPv6 /64 (default 32)")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile (pprof) to `file` until shutdown")
	fs.StringVar(&logLevel, "log-level", "info", "log `level`: trace, debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "turn: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if secret == "" {
		secret = os.Getenv(secretEnv)
	}
	if cfg.Listen == "" || secret == "" {
		fmt.Fprintln(stderr, "turn: --listen and --secret are required")
		fs.Usage()
		return 2
	}
	cfg.Secret = []byte(secret)
	if relayPorts != "" {
		lo, hi, ok := strings.Cut(relayPorts, "-")
		a, err1 := strconv.ParseUint(lo, 10, 16)
		b, err2 := strconv.ParseUint(hi, 10, 16)
		if !ok || err1 != nil || err2 != nil {
			fmt.Fprintf(stderr, "turn: --relay-ports %q: want MIN-MAX, e.g. 49152-65535\n", relayPorts)
			return 2
		}
		cfg.RelayPortMin, cfg.RelayPortMax = uint16(a), uint16(b)
	}
	cfg.AllowPeers, cfg.AllowPeerAddrs = allow.prefixes, allow.addrs
	level := hclog.LevelFromString(logLevel)
	if level == hclog.NoLevel {
		fmt.Fprintf(stderr, "turn: --log-level %q: want trace, debug, info, warn or error\n", logLevel)
		return 2
	}
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "turn", Level: level, Output: stderr})

	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "turn: --cpuprofile: %v\n", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "turn: --cpuprofile: %v\n", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}
	srv, err := New(cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if err := srv.Start(); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "turn: listening on udp %s and tcp %s (tls: %v), relaying from %s, urls %s\n",
		srv.Addr(), srv.Addr(), srv.tlsOn, srv.cfg.relayIP, strings.Join(srv.URLs(), " "))
	if len(allow.prefixes)+len(allow.addrs) == 0 {
		fmt.Fprintln(stdout, "turn: no --allow-peer given: every peer is refused")
	}
	<-ctx.Done()
	fmt.Fprintln(stdout, "turn: shutting down")
	if err := srv.Close(); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

// allowPeerFlag collects --allow-peer IP, IP:PORT or CIDR.
type allowPeerFlag struct {
	prefixes []netip.Prefix
	addrs    []netip.AddrPort
}

func (f *allowPeerFlag) String() string { return "" }

func (f *allowPeerFlag) Set(v string) error {
	p, ap, err := ParseAllowPeer(v)
	if err != nil {
		return err
	}
	if ap.IsValid() {
		f.addrs = append(f.addrs, ap)
	} else {
		f.prefixes = append(f.prefixes, p)
	}
	return nil
}

// ParseAllowPeer parses an allow-list entry: "IP" or "CIDR" (all ports,
// returned as a prefix) or "IP:PORT" / "[IPv6]:PORT" (one port, returned as
// an address).
func ParseAllowPeer(v string) (netip.Prefix, netip.AddrPort, error) {
	if p, err := netip.ParsePrefix(v); err == nil {
		return p.Masked(), netip.AddrPort{}, nil
	}
	if ip, err := netip.ParseAddr(v); err == nil && ip.Zone() == "" {
		return netip.PrefixFrom(ip, ip.BitLen()), netip.AddrPort{}, nil
	}
	if ap, err := netip.ParseAddrPort(v); err == nil && ap.Port() != 0 && ap.Addr().Zone() == "" {
		return netip.Prefix{}, ap, nil
	}
	return netip.Prefix{}, netip.AddrPort{}, fmt.Errorf("%q is not IP, IP:PORT ([v6]:PORT) or CIDR (e.g. 10.0.0.5, 10.0.0.5:8888, 10.0.0.0/24)", v)
}
