// Package config is the gateway's configuration: an HCL file
// (`-config gateway.hcl`) and a flag for every field, flags winning, so the
// gateway runs the same way as a Nomad job and by hand.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hclsimple"

	"github.com/pixelstream/nomad-driver-pixelstream/gateway/clientaddr"
)

// Routes: how a visitor reaches the session.
const (
	RouteProxy    = "proxy"    // the gateway proxies page, API and WebSocket under its origin
	RouteRedirect = "redirect" // the browser goes to the session's own URL with the one-time token
)

// Auth modes for visitors.
const (
	AuthNone  = "none"
	AuthToken = "token"
	AuthJWT   = "jwt"
)

// Config is the whole gateway configuration.
type Config struct {
	// Listen is the visitors' address ("host:port").
	Listen string `hcl:"listen,optional"`
	// NomadAddr is the Nomad HTTP API; NomadToken its ACL token (default
	// $NOMAD_TOKEN, which a job's workload identity can provide).
	NomadAddr  string `hcl:"nomad_addr,optional"`
	NomadToken string `hcl:"nomad_token,optional"`
	Namespace  string `hcl:"namespace,optional"`
	// Job is the parameterized session job the gateway dispatches.
	Job string `hcl:"job,optional"`
	// Service is the name of the sessions' `provider = "nomad"` service.
	Service string `hcl:"service,optional"`
	// PeerService is the gateway's own service: of its replicas (run as a
	// Nomad job, $NOMAD_ALLOC_ID set) the one with the lowest allocation id
	// dispatches. "" = every replica dispatches.
	PeerService string `hcl:"peer_service,optional"`
	// Secret authenticates the gateway's claims at the sessions and signs
	// the visitors' session cookies; every replica needs the same one
	// (default $PIXELSTREAM_GATEWAY_SECRET). Never logged.
	Secret string `hcl:"secret,optional"`
	// MinFree ready, unclaimed sessions are kept warm; never more than
	// MaxSessions sessions in all (starting ones included).
	MinFree     int `hcl:"min_free,optional"`
	MaxSessions int `hcl:"max_sessions,optional"`
	// MaxQueue visitors may wait; past it they get 503 with Retry-After.
	MaxQueue int    `hcl:"max_queue,optional"`
	Route    string `hcl:"route,optional"`
	// StateInterval is how often the gateway asks each session its claim
	// state (free, claimed, busy); registrations come from blocking queries.
	StateInterval string `hcl:"state_interval,optional"`
	// DispatchMeta is added to every dispatch's meta.
	DispatchMeta map[string]string `hcl:"dispatch_meta,optional"`
	LogLevel     string            `hcl:"log_level,optional"`

	// OperatorListen is the operator endpoints' address (/api/sessions,
	// /api/queue, /metrics), apart from the visitors'; OperatorToken opens
	// them (Authorization: Bearer; default $PIXELSTREAM_OPERATOR_TOKEN), and
	// is not the fleet secret. Never logged.
	OperatorListen string `hcl:"operator_listen,optional"`
	OperatorToken  string `hcl:"operator_token,optional"`

	// Per-visitor limits. Addresses are the visitors' TCP peers.
	// MaxClaimsPerAddress: live sessions held by visitors at one address
	// (a family or an office behind one NAT); MaxWaitingPerAddress: waiting
	// pages from one address; MaxEventStreams: waiting pages in all.
	MaxClaimsPerAddress  int `hcl:"max_claims_per_address,optional"`
	MaxWaitingPerAddress int `hcl:"max_waiting_per_address,optional"`
	MaxEventStreams      int `hcl:"max_event_streams,optional"`
	// TrustedProxies are the load balancers or proxies in front of the
	// gateway (addresses or CIDRs): for a request from one of them, the
	// visitor's address is the nearest untrusted one in X-Forwarded-For.
	TrustedProxies []string `hcl:"trusted_proxies,optional"`
	// FrameAncestors are the sites that may embed the gateway's pages in a
	// frame, besides the gateway itself (CSP frame-ancestors).
	FrameAncestors []string `hcl:"frame_ancestors,optional"`

	TLS  *TLSConfig  `hcl:"tls,block"`
	Auth *AuthConfig `hcl:"auth,block"`
	// SessionTLS: the sessions serve TLS (their task's tls block); the
	// gateway reaches them over HTTPS, verified against CAFile.
	SessionTLS *SessionTLSConfig `hcl:"session_tls,block"`
}

// SessionTLSConfig is how the gateway verifies sessions' certificates.
type SessionTLSConfig struct {
	// CAFile is the PEM CA (or CAs) the sessions' certificates chain to;
	// re-read when it changes (a Nomad template from Vault PKI).
	CAFile string `hcl:"ca_file"`
	// ServerName, when set, is the name every session certificate carries;
	// otherwise the registration's address must be in it.
	ServerName string `hcl:"server_name,optional"`
}

// TLSConfig is the visitors' listener certificate.
type TLSConfig struct {
	CertFile string `hcl:"cert_file"`
	KeyFile  string `hcl:"key_file"`
}

// AuthConfig says who may get a session.
type AuthConfig struct {
	Mode string `hcl:"mode,optional"`
	// Token is the static visitor token (mode "token").
	Token string `hcl:"token,optional"`
	// JWT settings (mode "jwt"): HS256 with HMACKey, or RS256 with the PEM
	// public key in PublicKeyFile; issuer and audience are required claims.
	Algorithm     string `hcl:"algorithm,optional"`
	HMACKey       string `hcl:"hmac_key,optional"`
	PublicKeyFile string `hcl:"public_key_file,optional"`
	Issuer        string `hcl:"issuer,optional"`
	Audience      string `hcl:"audience,optional"`
	// Cookie and Query name where the visitor's credential comes from
	// (default "pixelstream_auth" and "auth"); Authorization: Bearer works too.
	Cookie string `hcl:"cookie,optional"`
	Query  string `hcl:"query,optional"`
}

// Defaults are the values of fields neither the file nor a flag set.
func Defaults() Config {
	return Config{
		Listen:        "127.0.0.1:8080",
		NomadAddr:     "http://127.0.0.1:4646",
		Namespace:     "default",
		Job:           "pixelstream-session",
		Service:       "pixelstream-session",
		PeerService:   "pixelstream-gateway",
		MinFree:       1,
		MaxSessions:   10,
		MaxQueue:      1000,
		Route:         RouteProxy,
		StateInterval: "1s",
		LogLevel:      "info",

		OperatorListen:       "127.0.0.1:8081",
		MaxClaimsPerAddress:  4,
		MaxWaitingPerAddress: 4,
		MaxEventStreams:      2000,
		Auth:                 &AuthConfig{Mode: AuthNone, Cookie: "pixelstream_auth", Query: "auth"},
	}
}

// Load reads args: `-config FILE` first (any position), then every other
// flag over it. Environment variables fill the secret and the Nomad token
// when neither the file nor a flag did.
func Load(args []string, stderr io.Writer) (*Config, error) {
	cfg := Defaults()
	if path := configPath(args); path != "" {
		if err := decodeFile(path, &cfg); err != nil {
			return nil, err
		}
	}
	if cfg.Auth == nil {
		cfg.Auth = &AuthConfig{}
	}
	if cfg.TLS == nil {
		cfg.TLS = &TLSConfig{}
	}
	if cfg.SessionTLS == nil {
		cfg.SessionTLS = &SessionTLSConfig{}
	}
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.String("config", "", "HCL configuration file (flags override it)")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "visitors' address, host:port")
	fs.StringVar(&cfg.NomadAddr, "nomad-addr", cfg.NomadAddr, "Nomad HTTP API address")
	fs.Var(&secretFlag{&cfg.NomadToken}, "nomad-token", "Nomad ACL token (default $NOMAD_TOKEN)")
	fs.StringVar(&cfg.Namespace, "namespace", cfg.Namespace, "Nomad namespace of the session job")
	fs.StringVar(&cfg.Job, "job", cfg.Job, "parameterized session job to dispatch")
	fs.StringVar(&cfg.Service, "service", cfg.Service, "Nomad service name the sessions register")
	fs.StringVar(&cfg.PeerService, "peer-service", cfg.PeerService, "the gateway's own Nomad service; its lowest-alloc replica dispatches (\"\": all do)")
	fs.Var(&secretFlag{&cfg.Secret}, "secret", "fleet secret shared with the sessions (default $PIXELSTREAM_GATEWAY_SECRET)")
	fs.StringVar(&cfg.OperatorListen, "operator-listen", cfg.OperatorListen, "operator endpoints' address (/api/sessions, /api/queue, /metrics), host:port")
	fs.Var(&secretFlag{&cfg.OperatorToken}, "operator-token", "Bearer token for the operator endpoints (default $PIXELSTREAM_OPERATOR_TOKEN)")
	fs.IntVar(&cfg.MaxClaimsPerAddress, "max-claims-per-address", cfg.MaxClaimsPerAddress, "most live sessions held by visitors at one address")
	fs.IntVar(&cfg.MaxWaitingPerAddress, "max-waiting-per-address", cfg.MaxWaitingPerAddress, "most waiting pages from one address")
	fs.IntVar(&cfg.MaxEventStreams, "max-event-streams", cfg.MaxEventStreams, "most waiting pages' event streams in all")
	fs.Var(&listFlag{&cfg.TrustedProxies}, "trusted-proxy", "a proxy or load balancer in front of the gateway, address or CIDR, whose X-Forwarded-For is believed (repeatable)")
	fs.Var(&listFlag{&cfg.FrameAncestors}, "frame-ancestor", "a site that may embed the gateway in a frame, e.g. https://portal.example.com (repeatable)")
	fs.IntVar(&cfg.MinFree, "min-free", cfg.MinFree, "ready, unclaimed sessions to keep warm")
	fs.IntVar(&cfg.MaxSessions, "max-sessions", cfg.MaxSessions, "most sessions at once, starting ones included")
	fs.IntVar(&cfg.MaxQueue, "max-queue", cfg.MaxQueue, "most visitors waiting; past it 503 with Retry-After")
	fs.StringVar(&cfg.Route, "route", cfg.Route, `"proxy" (one origin) or "redirect" (the session's own URL)`)
	fs.StringVar(&cfg.StateInterval, "state-interval", cfg.StateInterval, "how often each session's claim state is read")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "trace, debug, info, warn or error")
	fs.StringVar(&cfg.TLS.CertFile, "tls-cert-file", cfg.TLS.CertFile, "certificate for the visitors' listener (PEM)")
	fs.StringVar(&cfg.TLS.KeyFile, "tls-key-file", cfg.TLS.KeyFile, "key for -tls-cert-file (PEM)")
	fs.StringVar(&cfg.SessionTLS.CAFile, "session-ca-file", cfg.SessionTLS.CAFile, "sessions serve TLS: the CA their certificates chain to (PEM); the gateway then speaks HTTPS to them")
	fs.StringVar(&cfg.SessionTLS.ServerName, "session-server-name", cfg.SessionTLS.ServerName, "with -session-ca-file: the name in every session's certificate (default: the session's address)")
	fs.StringVar(&cfg.Auth.Mode, "auth-mode", cfg.Auth.Mode, `visitor auth: "none", "token" or "jwt"`)
	fs.Var(&secretFlag{&cfg.Auth.Token}, "auth-token", "static visitor token (auth-mode token)")
	fs.StringVar(&cfg.Auth.Algorithm, "auth-jwt-algorithm", cfg.Auth.Algorithm, `"HS256" or "RS256"`)
	fs.Var(&secretFlag{&cfg.Auth.HMACKey}, "auth-jwt-hmac-key", "HS256 key")
	fs.StringVar(&cfg.Auth.PublicKeyFile, "auth-jwt-public-key-file", cfg.Auth.PublicKeyFile, "RS256 public key (PEM)")
	fs.StringVar(&cfg.Auth.Issuer, "auth-jwt-issuer", cfg.Auth.Issuer, "required JWT issuer (iss)")
	fs.StringVar(&cfg.Auth.Audience, "auth-jwt-audience", cfg.Auth.Audience, "required JWT audience (aud)")
	fs.StringVar(&cfg.Auth.Cookie, "auth-cookie", cfg.Auth.Cookie, "cookie holding the visitor's credential")
	fs.StringVar(&cfg.Auth.Query, "auth-query", cfg.Auth.Query, "query parameter holding the visitor's credential")
	meta := &metaFlag{m: cfg.DispatchMeta}
	fs.Var(meta, "dispatch-meta", "KEY=VALUE added to every dispatch's meta (repeatable)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q; every setting is a -flag", fs.Arg(0))
	}
	cfg.DispatchMeta = meta.m
	if cfg.Secret == "" {
		cfg.Secret = os.Getenv("PIXELSTREAM_GATEWAY_SECRET")
	}
	if cfg.NomadToken == "" {
		cfg.NomadToken = os.Getenv("NOMAD_TOKEN")
	}
	if cfg.OperatorToken == "" {
		cfg.OperatorToken = os.Getenv("PIXELSTREAM_OPERATOR_TOKEN")
	}
	if cfg.Auth.Cookie == "" {
		cfg.Auth.Cookie = "pixelstream_auth"
	}
	if cfg.Auth.Query == "" {
		cfg.Auth.Query = "auth"
	}
	if cfg.Auth.Mode == "" {
		cfg.Auth.Mode = AuthNone
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

func configPath(args []string) string {
	for i, a := range args {
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "config" {
			continue
		}
		if hasVal {
			return val
		}
		if i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func decodeFile(path string, cfg *Config) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read gateway config: %w", err)
	}
	// The file's blocks replace the defaults' blocks: keep the defaults
	// for fields a block leaves out.
	defAuth := *cfg.Auth
	cfg.Auth = nil
	if err := hclsimple.Decode(path, src, nil, cfg); err != nil {
		return fmt.Errorf("gateway config %s: %w", path, err)
	}
	if cfg.Auth == nil {
		cfg.Auth = &defAuth
	}
	return nil
}

// Validate reports every bad field at once, each by its name.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen: %q is not host:port (e.g. \"0.0.0.0:8080\"): %v", c.Listen, err)
	}
	if u, err := url.Parse(c.NomadAddr); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("nomad_addr: %q must be an http:// or https:// URL such as \"http://127.0.0.1:4646\"", c.NomadAddr)
	}
	if c.Job == "" {
		bad("job: name the parameterized session job to dispatch (e.g. \"pixelstream-session\")")
	}
	if c.Service == "" {
		bad("service: name the sessions' Nomad service (e.g. \"pixelstream-session\")")
	}
	if len(c.Secret) < 16 {
		bad("secret: set the gateway secret the sessions' gateway block has (at least 16 characters; -secret or $PIXELSTREAM_GATEWAY_SECRET)")
	}
	if c.OperatorListen != "" {
		if _, _, err := net.SplitHostPort(c.OperatorListen); err != nil {
			bad("operator_listen: %q is not host:port (e.g. \"127.0.0.1:8081\"; \"\" turns the operator endpoints off): %v", c.OperatorListen, err)
		}
	}
	if c.OperatorToken != "" && len(c.OperatorToken) < 16 {
		bad("operator_token: use at least 16 characters (e.g. `openssl rand -hex 32`)")
	}
	if c.OperatorToken != "" && c.OperatorToken == c.Secret {
		bad("operator_token: must not be the fleet secret (the secret never opens anything); use a token of its own")
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"max_claims_per_address", c.MaxClaimsPerAddress}, {"max_waiting_per_address", c.MaxWaitingPerAddress}, {"max_event_streams", c.MaxEventStreams}} {
		if f.v < 1 {
			bad("%s: %d must be at least 1", f.name, f.v)
		}
	}
	if _, err := clientaddr.New(c.TrustedProxies); err != nil {
		bad("%v", err)
	}
	for _, a := range c.FrameAncestors {
		if u, err := url.Parse(a); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" || strings.ContainsAny(a, " ;,'") {
			bad("frame_ancestors: %q must be an origin such as \"https://portal.example.com\"", a)
		}
	}
	if c.MaxSessions < 1 {
		bad("max_sessions: %d must be at least 1", c.MaxSessions)
	}
	if c.MinFree < 0 || c.MinFree > c.MaxSessions {
		bad("min_free: %d must be from 0 to max_sessions (%d)", c.MinFree, c.MaxSessions)
	}
	if c.MaxQueue < 0 {
		bad("max_queue: %d must be 0 (no queue) or more", c.MaxQueue)
	}
	if c.Route != RouteProxy && c.Route != RouteRedirect {
		bad("route: %q must be %q or %q", c.Route, RouteProxy, RouteRedirect)
	}
	if d, err := time.ParseDuration(c.StateInterval); err != nil || d < 100*time.Millisecond || d > time.Minute {
		bad("state_interval: %q must be a duration from 100ms to 1m, such as \"1s\"", c.StateInterval)
	}
	switch strings.ToLower(c.LogLevel) {
	case "trace", "debug", "info", "warn", "error":
	default:
		bad("log_level: %q must be trace, debug, info, warn or error", c.LogLevel)
	}
	if c.TLS != nil && (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls: set both cert_file and key_file, or neither")
	}
	if c.SessionTLS != nil && c.SessionTLS.CAFile == "" && c.SessionTLS.ServerName != "" {
		bad("session_tls.server_name: needs session_tls.ca_file (the CA the sessions' certificates chain to)")
	}
	for k := range c.DispatchMeta {
		if k == "" || strings.ContainsAny(k, " =") {
			bad("dispatch_meta: %q is not a meta key (the session job's meta_optional names the keys it takes)", k)
		}
	}
	errs = append(errs, c.Auth.validate()...)
	return errors.Join(errs...)
}

func (a *AuthConfig) validate() []error {
	var errs []error
	bad := func(format string, v ...any) { errs = append(errs, fmt.Errorf(format, v...)) }
	switch a.Mode {
	case AuthNone:
	case AuthToken:
		if len(a.Token) < 16 {
			bad("auth.token: mode \"token\" needs a token of at least 16 characters")
		}
	case AuthJWT:
		switch a.Algorithm {
		case "HS256":
			if len(a.HMACKey) < 32 {
				bad("auth.hmac_key: HS256 needs a key of at least 32 bytes")
			}
		case "RS256":
			if a.PublicKeyFile == "" {
				bad("auth.public_key_file: RS256 needs the issuer's public key (PEM)")
			}
		default:
			bad("auth.algorithm: %q must be \"HS256\" or \"RS256\"", a.Algorithm)
		}
		if a.Issuer == "" {
			bad("auth.issuer: mode \"jwt\" checks the token's issuer; set the one you expect")
		}
		if a.Audience == "" {
			bad("auth.audience: mode \"jwt\" checks the token's audience; set the one you expect")
		}
	default:
		bad("auth.mode: %q must be \"none\", \"token\" or \"jwt\"", a.Mode)
	}
	return errs
}

// StateEvery is StateInterval parsed; Validate has checked it.
func (c *Config) StateEvery() time.Duration {
	d, _ := time.ParseDuration(c.StateInterval)
	return d
}

// metaFlag collects repeated KEY=VALUE flags.
type metaFlag struct{ m map[string]string }

func (f *metaFlag) String() string { return "" }

func (f *metaFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("dispatch-meta: %q is not KEY=VALUE", v)
	}
	if f.m == nil {
		f.m = map[string]string{}
	}
	f.m[k] = val
	return nil
}

// secretFlag is a string flag whose value never shows: usage text prints
// each flag's value as its default, and a secret set in the config file
// would be printed on any flag error.
type secretFlag struct{ p *string }

func (f *secretFlag) String() string {
	if f == nil || f.p == nil || *f.p == "" {
		return ""
	}
	return "(set)"
}

func (f *secretFlag) Set(v string) error { *f.p = v; return nil }

// listFlag collects a repeatable flag's values.
type listFlag struct{ p *[]string }

func (f *listFlag) String() string {
	if f == nil || f.p == nil {
		return ""
	}
	return strings.Join(*f.p, ",")
}

func (f *listFlag) Set(v string) error { *f.p = append(*f.p, v); return nil }
