package playerhttp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"slices"

	"github.com/hashicorp/go-hclog"

	"github.com/pixelstream/nomad-driver-pixelstream/config"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling"
)

// Config configures the player port. The zero value of every optional field
// means its default.
type Config struct {
	// Listen is the "host:port" of the player port. Port 0 picks a free port.
	Listen string
	// Router takes the player WebSockets this port accepts; its limits
	// (HTTP timeouts, header and connection caps) govern this port too.
	Router *signalling.Server
	// PlayerToken, when set, is required from players on the page, the REST
	// API and the WebSocket.
	PlayerToken string
	// HTTPRoot, when set, is a directory served at / instead of the embedded
	// page: only regular files inside it (symlinks resolved within it), no
	// dotfiles, no directory listings.
	HTTPRoot string
	// Homepage names the file of HTTPRoot served at / ("" = index.html,
	// else player.html, as Epic's frontend build names its page).
	Homepage string
	// Frontend picks the embedded player page (config.Frontends); "" means
	// config.FrontendUE57. Not used with HTTPRoot.
	Frontend string
	// TLS, when set, makes the player port HTTPS/WSS only
	// (CertReloader.TLSConfig: certificates reload when their files change).
	TLS *tls.Config
	// AllowedOrigins lists the origins ("https://app.example.com") whose pages
	// may open a player WebSocket besides the page's own origin (same host);
	// "*" allows every origin. Requests without an Origin header (streamers,
	// CLI tools) are not browsers acting for someone and are always allowed.
	AllowedOrigins []string
	// SessionID tells this server's token cookie apart from those of other
	// sessions on the same host (browsers send cookies to every port of a
	// host). "" means the bound player port.
	SessionID string
	// Claim makes the session part of a gateway's pool (claim.go).
	Claim ClaimConfig
	// StatusExtra adds fields to /api/status (the session's time left, say).
	StatusExtra func() map[string]any
	// Logger receives the server's logs; nil means a default hclog logger.
	Logger hclog.Logger
}

// Server is a session's player port: the player page, the player WebSocket
// (handed to the router), /healthz, /readyz, /metrics, the REST API and,
// for a gateway's pool session, /api/claim.
type Server struct {
	cfg    Config
	router *signalling.Server
	log    hclog.Logger
	page   http.Handler

	ln        net.Listener
	hs        *http.Server
	root      *os.Root        // http_root, opened once; nil for the embedded page
	cookieID  string          // ends the token cookie's name (auth.go)
	anyOrigin bool            // AllowedOrigins holds "*"
	origins   map[string]bool // AllowedOrigins, normalised
	claims    *claims         // nil unless the session is in a gateway's pool (claim.go)
}

// New validates cfg and returns a player port that Start will bind.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("player port config: %w", err)
	}
	s := &Server{cfg: cfg, router: cfg.Router, log: cfg.Logger}
	if s.log == nil {
		s.log = hclog.New(&hclog.LoggerOptions{Name: "player-http"})
	}
	claims, err := newClaims(cfg.Claim)
	if err != nil {
		return nil, err
	}
	s.claims = claims
	s.cfg.Claim.Secret = "" // the claim key is derived; the secret is not kept
	s.origins = make(map[string]bool, len(cfg.AllowedOrigins))
	for _, o := range cfg.AllowedOrigins {
		o, _ = parseOrigin(o) // validated above
		s.anyOrigin = s.anyOrigin || o == anyOrigin
		s.origins[o] = true
	}
	page, err := s.pageHandler()
	if err != nil {
		return nil, err
	}
	s.page = page
	return s, nil
}

func (c *Config) validate() error {
	var errs []error
	if c.Router == nil {
		errs = append(errs, errors.New("field Router is required (the signalling router that takes the players)"))
	}
	if c.Listen == "" {
		errs = append(errs, errors.New("field Listen is required (host:port, e.g. 127.0.0.1:0)"))
	} else if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("field Listen %q is not host:port: %w", c.Listen, err))
	}
	if c.HTTPRoot != "" {
		fi, err := os.Stat(c.HTTPRoot)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("HTTPRoot: %w", err))
		case !fi.IsDir():
			errs = append(errs, fmt.Errorf("HTTPRoot %q is not a directory", c.HTTPRoot))
		}
	}
	if c.Homepage != "" {
		switch {
		case c.HTTPRoot == "":
			errs = append(errs, fmt.Errorf("field Homepage %q needs HTTPRoot: the embedded page has its own", c.Homepage))
		case !fs.ValidPath(c.Homepage) || c.Homepage == "." || hiddenPath(c.Homepage):
			errs = append(errs, fmt.Errorf("field Homepage %q must be a file name inside HTTPRoot, such as %q (no leading /, no .. or dotfiles)", c.Homepage, DefaultHomepage))
		}
	}
	if c.Frontend != "" && !slices.Contains(config.Frontends, c.Frontend) {
		errs = append(errs, fmt.Errorf("field Frontend %q is not an embedded player page; use one of %q", c.Frontend, config.Frontends))
	}
	for i, o := range c.AllowedOrigins {
		if _, err := parseOrigin(o); err != nil {
			errs = append(errs, fmt.Errorf("AllowedOrigins[%d]: %w", i, err))
		}
	}
	if c.SessionID != "" && !cookieSafe(c.SessionID) {
		errs = append(errs, fmt.Errorf("SessionID %q: use letters, digits, '-' and '_' only (it names a cookie)", c.SessionID))
	}
	return errors.Join(errs...)
}

// Start binds the player port (with the router's per-address and total
// connection caps) and serves it in the background.
func (s *Server) Start() error {
	ln, err := s.router.ListenPlayers(s.cfg.Listen)
	if err != nil {
		return err
	}
	s.cookieID = s.cfg.SessionID
	if s.cookieID == "" {
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		s.cookieID = port
	}
	if s.cfg.TLS != nil {
		// HTTPS/WSS only: a plain HTTP request fails the handshake (Go's
		// server answers it with a 400 that says so).
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	s.ln = ln
	s.hs = signalling.NewHTTPServer(s.router.Limits(), s.playerMux(), s.log)
	go func() {
		if err := s.hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", "addr", ln.Addr().String(), "error", err)
		}
	}()
	s.log.Info("player port listening", "addr", ln.Addr().String())
	return nil
}

// Addr is the bound player port.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shutdown stops accepting and waits for HTTP requests in progress until
// ctx ends. Player WebSockets belong to the router: shut it down after this.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	if s.hs != nil {
		if e := s.hs.Shutdown(ctx); e != nil {
			err = fmt.Errorf("stop player http server: %w", e)
		}
	}
	if s.root != nil {
		_ = s.root.Close()
	}
	return err
}

// Event takes the router's events (signalling.Hooks.Event): a pool
// session's claim follows its visitor's players. It must see every event.
func (s *Server) Event(e signalling.Event) {
	if s.claims != nil && (e.Kind == signalling.PlayerConnected || e.Kind == signalling.PlayerDisconnected) {
		s.claims.playersChanged(e.Players)
	}
	if s.claims != nil && (e.Kind == signalling.StreamerIdentified || e.Kind == signalling.StreamerDisconnected) {
		s.claims.readinessChanged()
	}
}

// frontend is the embedded page's frontend line.
func (s *Server) frontend() string {
	if s.cfg.Frontend == "" {
		return config.FrontendUE57
	}
	return s.cfg.Frontend
}

// homepage is the page served at / (for /api/config).
func (s *Server) homepage() string {
	if s.root == nil {
		return "index.html"
	}
	return homepageOf(s.root.FS(), s.cfg.Homepage)
}

// reject counts a refused player request in the router's metrics.
func (s *Server) reject(reason string) { s.router.CountRejectedPlayer(reason) }
