// Package gateway is the fleet's front door: the one URL visitors open. It
// learns sessions from Nomad's service discovery, keeps a warm pool by
// dispatching the parameterized session job, claims one session per
// visitor through the session's own /api/claim, queues visitors when the
// fleet is full, and proxies page, API and player WebSocket under its own
// origin. It never imports the driver: it talks to Nomad and to sessions
// over HTTP only. Media never passes through it.
package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pixelstream/nomad-driver-pixelstream/claim"
	"github.com/pixelstream/nomad-driver-pixelstream/gateway/auth"
	"github.com/pixelstream/nomad-driver-pixelstream/gateway/clientaddr"
	"github.com/pixelstream/nomad-driver-pixelstream/gateway/config"
	"github.com/pixelstream/nomad-driver-pixelstream/gateway/metrics"
	"github.com/pixelstream/nomad-driver-pixelstream/gateway/nomad"
	"github.com/pixelstream/nomad-driver-pixelstream/gateway/pool"
	"github.com/pixelstream/nomad-driver-pixelstream/gateway/proxy"
	"github.com/pixelstream/nomad-driver-pixelstream/gateway/queue"
	"github.com/pixelstream/nomad-driver-pixelstream/gateway/sessiontls"
	"github.com/pixelstream/nomad-driver-pixelstream/quality"
)

// Cookie names of the gateway's own cookies (never sent on to sessions,
// never set by them). Under TLS they carry the __Host- prefix: the
// browser then keeps them to this host, Secure, Path=/.
const (
	visitorCookie = "pixelstream_visitor"
	bindingCookie = "pixelstream_session"
	hostPrefix    = "__Host-"
)

// cookieName is a gateway cookie's name for r's scheme.
func cookieName(base string, r *http.Request) string {
	if r.TLS != nil {
		return hostPrefix + base
	}
	return base
}

// bindingTTL bounds a binding cookie; the session's own lifecycle ends it
// far sooner, a visitor JWT's exp sooner still, and a binding to a gone
// session is dropped at the next visit.
const bindingTTL = 24 * time.Hour

// rejoinGrace is how long a waiter whose waiting page disconnected keeps
// its place (a reload, a network blip); a closed tab leaves after it.
const rejoinGrace = 3 * time.Second

// positionEvery rate-limits position updates to one waiting page.
const positionEvery = time.Second

//go:embed web/waiting.html
var webFS embed.FS

// Gateway is one gateway replica.
type Gateway struct {
	cfg      *config.Config
	log      hclog.Logger
	m        *metrics.Metrics
	pool     *pool.Pool
	queue    *queue.Queue
	visitors *auth.Visitor
	keys     *auth.Keys
	proxy    http.Handler
	waiting  []byte
	csp      string
	addrs    *clientaddr.Resolver
	// sessionTLS reaches sessions over HTTPS (nil: HTTP).
	sessionTLS *sessiontls.Dialer

	mu       sync.Mutex
	pending  map[string]*pool.Assignment // assigned, not yet picked up by the waiting page
	waiters  map[*queue.Waiter]*waiterConns
	streams  map[string]int           // open event streams by address pseudonym
	nstreams int                      // open event streams in all
	inflight map[string]chan struct{} // claims in flight, by visitor and by subject

	panicLogged atomic.Bool
}

type waiterConns struct {
	n      int
	lostAt time.Time
	addr   string // the waiter's address pseudonym
}

// New builds a gateway from cfg.
func New(cfg *config.Config, log hclog.Logger) (*Gateway, error) {
	va, err := auth.NewVisitor(*cfg.Auth)
	if err != nil {
		return nil, err
	}
	page, err := webFS.ReadFile("web/waiting.html")
	if err != nil {
		return nil, fmt.Errorf("waiting page: %w", err)
	}
	m := metrics.New()
	var stls *sessiontls.Dialer
	if cfg.SessionTLS != nil && cfg.SessionTLS.CAFile != "" {
		if stls, err = sessiontls.New(cfg.SessionTLS.CAFile, cfg.SessionTLS.ServerName); err != nil {
			return nil, err
		}
	}
	addrs, err := clientaddr.New(cfg.TrustedProxies)
	if err != nil {
		return nil, err
	}
	nc := nomad.New(cfg.NomadAddr, cfg.NomadToken, cfg.Namespace)
	p := pool.New(pool.Config{TLS: stls, Job: cfg.Job, Namespace: cfg.Namespace, Service: cfg.Service, Secret: cfg.Secret, MinFree: cfg.MinFree,
		MaxSessions: cfg.MaxSessions, StateEvery: cfg.StateEvery(), DispatchMeta: cfg.DispatchMeta,
		Logger: log.Named("pool"), Metrics: m, Self: os.Getenv("NOMAD_ALLOC_ID"), Peers: cfg.PeerService}, nc)
	g := &Gateway{cfg: cfg, log: log, m: m, pool: p, queue: queue.New(cfg.MaxQueue), visitors: va,
		keys: auth.NewKeys(cfg.Secret), waiting: page, addrs: addrs,
		csp:     "frame-ancestors " + strings.Join(append([]string{"'self'"}, cfg.FrameAncestors...), " "),
		pending: map[string]*pool.Assignment{}, waiters: map[*queue.Waiter]*waiterConns{},
		streams: map[string]int{}, inflight: map[string]chan struct{}{}}
	g.proxy = proxy.New(log.Named("proxy"), g.gatewayCookie, cfg.Auth.Query, g.proxyError, stls)
	g.sessionTLS = stls
	if err := m.Registry.Register(metrics.NewQualityCollector(g.nodeQuality)); err != nil {
		return nil, fmt.Errorf("gateway metrics: %w", err)
	}
	return g, nil
}

// nodeQuality merges the sessions' player quality per node.
func (g *Gateway) nodeQuality() map[string]quality.Session {
	out := map[string]quality.Session{}
	for _, s := range g.pool.Sessions() {
		if s.Quality != nil && s.Quality.Players > 0 {
			out[s.NodeID] = quality.Merge(out[s.NodeID], *s.Quality)
		}
	}
	return out
}

// gatewayCookie says whether a cookie is the gateway's own: the proxy
// neither sends it to a session nor lets a session set it.
func (g *Gateway) gatewayCookie(name string) bool {
	name = strings.TrimPrefix(name, hostPrefix)
	return name == visitorCookie || name == bindingCookie || name == g.cfg.Auth.Cookie
}

// Run serves visitors on ln (and operators on op, when not nil) until ctx
// ends.
func (g *Gateway) Run(ctx context.Context, ln, op net.Listener) error {
	go g.pool.Run(ctx)
	go g.assignLoop(ctx)
	go g.reapWaiters(ctx)
	if op != nil {
		osrv := &http.Server{Handler: g.OperatorHandler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
			ErrorLog: g.log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})}
		go func() { _ = osrv.Serve(op) }()
		defer osrv.Close()
	}
	srv := &http.Server{
		Handler:           g.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          g.log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	errc := make(chan error, 1)
	go func() {
		if g.cfg.TLS != nil && g.cfg.TLS.CertFile != "" {
			errc <- srv.ServeTLS(ln, g.cfg.TLS.CertFile, g.cfg.TLS.KeyFile)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return nil
	}
}

// Handler is the visitors' HTTP handler. Operator endpoints are not on
// it: they are OperatorHandler's, on a listener of their own.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /gateway/queue/events", g.queueEvents)
	mux.HandleFunc("POST /gateway/enter", g.enter)
	mux.HandleFunc("/", g.visit)
	return g.recoverer(g.framing(mux))
}

// OperatorHandler serves the operator endpoints, each behind the operator
// token (never the fleet secret).
func (g *Gateway) OperatorHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz)
	mux.Handle("GET /metrics", g.operator(promhttp.HandlerFor(g.m.Registry, promhttp.HandlerOpts{})))
	mux.Handle("GET /api/sessions", g.operator(http.HandlerFunc(g.apiSessions)))
	mux.Handle("GET /api/queue", g.operator(http.HandlerFunc(g.apiQueue)))
	return g.recoverer(mux)
}

func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n")
}

// framing lets only the gateway itself (and the configured sites) frame
// its pages, proxied session pages included: a visitor cannot be made to
// claim or play inside someone else's page. A session's own CSP header is
// added to this one, and browsers enforce both.
func (g *Gateway) framing(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Content-Security-Policy", g.csp)
		next.ServeHTTP(w, r)
	})
}

// recoverer is the per-request recover boundary: a bug drops that
// request, never the gateway; the first stack is logged, all are counted.
func (g *Gateway) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler { //nolint:errorlint // the sentinel is compared as net/http does
				panic(v)
			}
			g.m.Panics.Inc()
			if g.panicLogged.CompareAndSwap(false, true) {
				g.log.Error("panic serving a request; request dropped", "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			}
			http.Error(w, "500 internal error", http.StatusInternalServerError)
		}()
		next.ServeHTTP(w, r)
	})
}

// visit routes a visitor: to their session when they have one, else to
// a free session, else into the queue.
func (g *Gateway) visit(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	nav := isNavigation(r)
	vid, known := g.visitorOf(r)
	if b := g.binding(r, vid, known); b != nil {
		if s, ok := g.pool.Lookup(b.AllocID); ok {
			g.proxy.ServeHTTP(w, proxy.WithTarget(r, proxy.Target{AllocID: b.AllocID, Addr: s.Addr, Token: g.pool.Token(b.AllocID, b.Claim)}))
			return
		}
		if !nav {
			writeText(w, http.StatusGone, "410 gone: your session has ended; reload the page for a new one\n")
			return
		}
		// The session ended or its node is gone: a fresh one, same URL.
		g.log.Info("visitor's session is gone; finding another", "alloc", b.AllocID, "visitor", g.keys.Pseudonym("v", vid))
		clearCookie(w, r, bindingCookie)
	} else if !nav {
		writeText(w, http.StatusNotFound, "404 not found: no session yet; open / first\n")
		return
	}

	id, err := g.visitors.Identify(r)
	if err == nil && !id.Expires.IsZero() && !id.Expires.After(arrived) {
		err = fmt.Errorf("%w: the credential has expired (exp)", auth.ErrUnauthorized)
	}
	if err != nil {
		g.m.Visitors.WithLabelValues("unauthorized").Inc()
		g.log.Info("visitor refused", "address", g.keys.Pseudonym("a", g.clientIP(r)), "reason", err)
		w.Header().Set("WWW-Authenticate", `Bearer realm="pixelstream-gateway"`)
		writeText(w, http.StatusUnauthorized, "401 unauthorized: "+err.Error()+"\n")
		return
	}
	if id.FromQuery {
		http.SetCookie(w, g.visitors.Cookie(g.visitors.QueryValue(r), r.TLS != nil))
	}
	if !known {
		vid = g.newVisitor(w, r) // a missing or self-minted id is replaced, never trusted
	}
	if !directNavigation(r) {
		// A cross-site link, form or frame must not spend a session: the
		// visitor's own click on this page (same-origin) does.
		g.m.Visitors.WithLabelValues("cross_site").Inc()
		writeHTML(w, http.StatusOK, clickPage(r.URL.RequestURI()))
		return
	}
	req := claim.Request{Visitor: g.keys.Pseudonym("v", vid), Subject: id.Subject, Address: g.keys.Pseudonym("a", g.clientIP(r))}
	if a, ok := g.pool.Holding(req.Visitor, req.Subject); ok {
		// One visitor (and one subject), one session: a second page load,
		// a second tab or a dropped binding cookie gets the same one back.
		g.m.Visitors.WithLabelValues("same_session").Inc()
		g.log.Info("visitor already holds a session; routing back to it", "visitor", req.Visitor, "alloc", a.Session.AllocID)
		g.route(w, r, vid, id.Expires, a)
		return
	}
	if g.queue.Len() == 0 {
		if n := g.pool.ClaimsFrom(req.Address); n >= g.cfg.MaxClaimsPerAddress {
			g.m.Visitors.WithLabelValues("address_limit").Inc()
			g.log.Info("visitor refused: its address holds enough sessions", "address", req.Address, "sessions", n)
			w.Header().Set("Retry-After", "60")
			writeText(w, http.StatusTooManyRequests, fmt.Sprintf("429 too many requests: %d sessions are already in use from your network address; close one and reload\n", n))
			return
		}
		a, err := g.claimFor(r.Context(), req)
		if err == nil {
			g.m.Visitors.WithLabelValues("assigned").Inc()
			g.m.AssignSeconds.Observe(time.Since(arrived).Seconds())
			g.log.Info("visitor assigned", "visitor", req.Visitor, "subject", req.Subject, "alloc", a.Session.AllocID, "node", a.Session.NodeID)
			g.route(w, r, vid, id.Expires, a)
			return
		}
	}
	if g.queue.Len() >= g.cfg.MaxQueue {
		g.m.Visitors.WithLabelValues("queue_full").Inc()
		w.Header().Set("Retry-After", strconv.Itoa(g.retryAfter()))
		writeText(w, http.StatusServiceUnavailable, "503 service unavailable: every session is taken and the queue is full; try again later\n")
		return
	}
	g.m.Visitors.WithLabelValues("queued").Inc()
	writeHTML(w, http.StatusOK, g.waiting)
}

// claimFor claims a session for one visitor, one claim at a time per
// visitor and per subject at this replica: concurrent page loads of one
// visitor wait for the first and get its session.
func (g *Gateway) claimFor(ctx context.Context, req claim.Request) (*pool.Assignment, error) {
	keys := []string{"v\x00" + req.Visitor}
	if req.Subject != "" {
		keys = append(keys, "s\x00"+req.Subject)
	}
	for {
		g.mu.Lock()
		var wait chan struct{}
		for _, k := range keys {
			if ch, ok := g.inflight[k]; ok {
				wait = ch
				break
			}
		}
		if wait == nil {
			mine := make(chan struct{})
			for _, k := range keys {
				g.inflight[k] = mine
			}
			g.mu.Unlock()
			defer func() {
				g.mu.Lock()
				for _, k := range keys {
					delete(g.inflight, k)
				}
				g.mu.Unlock()
				close(mine)
			}()
			return g.pool.Claim(ctx, req)
		}
		g.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if a, ok := g.pool.Holding(req.Visitor, req.Subject); ok {
			return a, nil
		}
	}
}

// route sends an assigned visitor on: proxied (the binding cookie and
// this very request to the session) or redirected to the session's URL.
func (g *Gateway) route(w http.ResponseWriter, r *http.Request, visitor string, credExpires time.Time, a *pool.Assignment) {
	if g.cfg.Route == config.RouteRedirect {
		http.Redirect(w, r, g.sessionURL(a), http.StatusFound)
		return
	}
	tok, exp, err := g.seal(visitor, credExpires, a)
	if err != nil {
		g.log.Error("sealing a binding failed", "error", err)
		writeText(w, http.StatusInternalServerError, "500 internal error: could not bind the session\n")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName(bindingCookie, r), Value: tok, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil, Expires: exp})
	// Let the page's own requests carry the new binding too: this request
	// goes through with it attached.
	g.proxy.ServeHTTP(w, proxy.WithTarget(r, proxy.Target{AllocID: a.Session.AllocID, Addr: a.Session.Addr, Token: a.Token}))
}

// seal makes the binding cookie's value: it lasts as long as the shorter
// of bindingTTL and the visitor's credential.
func (g *Gateway) seal(visitor string, credExpires time.Time, a *pool.Assignment) (string, time.Time, error) {
	exp := time.Now().Add(bindingTTL)
	if !credExpires.IsZero() && credExpires.Before(exp) {
		exp = credExpires
	}
	tok, err := g.keys.Seal(auth.Binding{AllocID: a.Session.AllocID, Claim: a.Session.Claim, Visitor: visitor, Expires: exp.Unix()})
	return tok, exp, err
}

// sessionURL is where route = "redirect" sends the visitor: the session's
// own URL (https when the sessions serve TLS) with the one-time token.
func (g *Gateway) sessionURL(a *pool.Assignment) string {
	return g.sessionTLS.Scheme() + "://" + a.Session.Addr + "/?token=" + url.QueryEscape(a.Token)
}

// proxyError handles a session that did not answer: a page load is sent
// round again for another session, transparently; anything else fails.
func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	g.m.ProxyErrors.Inc()
	t, _ := proxy.TargetOf(r)
	g.log.Warn("session did not answer", "alloc", t.AllocID, "path", r.URL.Path, "error", err)
	if isNavigation(r) && !errors.Is(err, context.Canceled) {
		if !errors.Is(err, proxy.ErrStaleClaim) {
			g.pool.Forget(t.AllocID)
		}
		clearCookie(w, r, bindingCookie)
		http.Redirect(w, r, r.URL.RequestURI(), http.StatusFound)
		return
	}
	writeText(w, http.StatusBadGateway, "502 bad gateway: the session did not answer\n")
}

// binding returns the visitor's binding, if the gateway sealed it, it has
// not expired, and it belongs to the visitor id the request carries.
func (g *Gateway) binding(r *http.Request, visitor string, known bool) *auth.Binding {
	if !known {
		return nil
	}
	c, err := r.Cookie(cookieName(bindingCookie, r))
	if err != nil {
		return nil
	}
	b, err := g.keys.Open(c.Value, time.Now())
	if err != nil || subtle.ConstantTimeCompare([]byte(b.Visitor), []byte(visitor)) != 1 {
		return nil
	}
	return b
}

// visitorOf returns the visitor id r's cookie carries, if the gateway
// signed it.
func (g *Gateway) visitorOf(r *http.Request) (string, bool) {
	c, err := r.Cookie(cookieName(visitorCookie, r))
	if err != nil {
		return "", false
	}
	return g.keys.Visitor(c.Value)
}

// newVisitor gives the visitor a fresh, signed id.
func (g *Gateway) newVisitor(w http.ResponseWriter, r *http.Request) string {
	id, value := g.keys.MintVisitor()
	http.SetCookie(w, &http.Cookie{Name: cookieName(visitorCookie, r), Value: value, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil})
	return id
}

// queueEvents is the waiting page's Server-Sent Events stream. Holding it
// open is being in line: the visitor joins on connect and leaves when it
// closes (after a short grace for reloads).
func (g *Gateway) queueEvents(w http.ResponseWriter, r *http.Request) {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		writeText(w, http.StatusForbidden, "403 forbidden: the waiting page's events are for the gateway's own page\n")
		return
	}
	id, err := g.visitors.Identify(r)
	if err != nil {
		writeText(w, http.StatusUnauthorized, "401 unauthorized: "+err.Error()+"\n")
		return
	}
	visitor, known := g.visitorOf(r)
	if !known {
		visitor = g.newVisitor(w, r) // a self-minted waiter id gets a fresh one
	}
	addr := g.keys.Pseudonym("a", g.clientIP(r))
	if msg := g.openStream(addr); msg != "" {
		g.m.Visitors.WithLabelValues("stream_limit").Inc()
		w.Header().Set("Retry-After", "10")
		writeText(w, http.StatusTooManyRequests, "429 too many requests: "+msg+"\n")
		return
	}
	defer g.closeStream(addr)
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(event string, v any) bool {
		b, _ := json.Marshal(v)
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if a := g.takePending(visitor); a != nil {
		g.sendAssigned(send, visitor, id.Expires, a)
		return
	}
	if g.waitingFrom(addr, visitor) >= g.cfg.MaxWaitingPerAddress {
		send("full", map[string]any{"retry_after_s": g.retryAfter(), "reason": "enough visitors from your network address are waiting"})
		return
	}
	wt, err := g.queue.JoinFrom(visitor, id.Subject, addr, id.Expires)
	if err != nil {
		send("full", map[string]any{"retry_after_s": g.retryAfter()})
		return
	}
	g.connectWaiter(wt, addr, +1)
	defer g.connectWaiter(wt, addr, -1)
	g.pool.SetDemand(g.queue.Len())

	var last time.Time
	lastPos := -1
	for {
		changed := g.queue.Changed()
		poolChanged := g.pool.Changed()
		pos := g.queue.Position(wt)
		if pos == 0 {
			// Out of line: assigned (pending) or reaped.
			if a := g.takePending(visitor); a != nil {
				g.sendAssigned(send, visitor, id.Expires, a)
			}
			return
		}
		if pos != lastPos || time.Since(last) > 15*time.Second {
			est, ok := g.pool.EstimateWait(pos)
			ev := map[string]any{"position": pos, "queue_length": g.queue.Len()}
			if ok {
				ev["estimated_wait_s"] = int(est.Seconds() + 0.5)
			}
			if !send("position", ev) {
				return
			}
			last, lastPos = time.Now(), pos
		}
		t := time.NewTimer(positionEvery)
		select {
		case <-r.Context().Done():
			t.Stop()
			return
		case a := <-wt.Assigned:
			t.Stop()
			g.takePending(visitor)
			g.sendAssigned(send, visitor, id.Expires, a.(*pool.Assignment))
			return
		case <-changed:
		case <-poolChanged:
		case <-t.C:
		}
		// Rate-limit: one update per positionEvery at most.
		if wait := positionEvery - time.Since(last); wait > 0 {
			select {
			case <-r.Context().Done():
				t.Stop()
				return
			case a := <-wt.Assigned:
				t.Stop()
				g.takePending(visitor)
				g.sendAssigned(send, visitor, id.Expires, a.(*pool.Assignment))
				return
			case <-time.After(wait):
			}
		}
		t.Stop()
	}
}

func (g *Gateway) sendAssigned(send func(string, any) bool, visitor string, credExpires time.Time, a *pool.Assignment) {
	if g.cfg.Route == config.RouteRedirect {
		send("assigned", map[string]string{"url": g.sessionURL(a)})
		return
	}
	tok, _, err := g.seal(visitor, credExpires, a)
	if err != nil {
		// The visitor has left the queue: say so; the claim expires unused.
		g.log.Error("sealing a queued visitor's binding failed; the visitor must reload", "visitor", g.keys.Pseudonym("v", visitor), "error", err)
		send("error", map[string]string{"error": "could not bind the session; reload the page"})
		return
	}
	send("assigned", map[string]string{"ticket": tok})
}

// openStream admits one more waiting page's event stream from addr, or
// says why not: per address and in all, streams are capped.
func (g *Gateway) openStream(addr string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.nstreams >= g.cfg.MaxEventStreams {
		return "the gateway holds as many waiting pages as it may"
	}
	if g.streams[addr] >= g.cfg.MaxWaitingPerAddress {
		return "enough waiting pages are open from your network address"
	}
	g.streams[addr]++
	g.nstreams++
	return ""
}

func (g *Gateway) closeStream(addr string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.nstreams--
	if g.streams[addr]--; g.streams[addr] <= 0 {
		delete(g.streams, addr)
	}
}

// waitingFrom counts the other visitors from addr in line (connected or
// within the grace for reloads).
func (g *Gateway) waitingFrom(addr, visitor string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for w, c := range g.waiters {
		if c.addr == addr && w.Visitor != visitor {
			n++
		}
	}
	return n
}

// enter turns a waiting page's ticket into the binding cookie.
func (g *Gateway) enter(w http.ResponseWriter, r *http.Request) {
	// The server has no ReadTimeout (proxied WebSockets would inherit it):
	// this body gets its own deadline.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(10 * time.Second))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 8<<10))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeText(w, http.StatusRequestEntityTooLarge, "413 request entity too large: a ticket is at most 8 KiB\n")
		} else {
			writeText(w, http.StatusBadRequest, "400 bad request: reading the ticket: "+err.Error()+"\n")
		}
		return
	}
	ticket := strings.TrimSpace(string(body))
	visitor, known := g.visitorOf(r)
	b, err := g.keys.Open(ticket, time.Now())
	if err != nil || !known || subtle.ConstantTimeCompare([]byte(visitor), []byte(b.Visitor)) != 1 {
		writeText(w, http.StatusForbidden, "403 forbidden: not your ticket\n")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName(bindingCookie, r), Value: ticket, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil, Expires: time.Unix(b.Expires, 0)})
	w.WriteHeader(http.StatusNoContent)
}

func (g *Gateway) takePending(visitor string) *pool.Assignment {
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.pending[visitor]
	delete(g.pending, visitor)
	if a != nil && time.Now().After(a.Expires) {
		return nil
	}
	return a
}

func (g *Gateway) connectWaiter(w *queue.Waiter, addr string, delta int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.waiters[w]
	if c == nil {
		c = &waiterConns{addr: addr}
		g.waiters[w] = c
	}
	c.n += delta
	if c.n <= 0 {
		c.lostAt = time.Now()
	}
}

// reapWaiters takes visitors whose waiting page is gone out of line.
func (g *Gateway) reapWaiters(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		var gone []*queue.Waiter
		g.mu.Lock()
		for w, c := range g.waiters {
			if c.n <= 0 && now.Sub(c.lostAt) > rejoinGrace {
				gone = append(gone, w)
				delete(g.waiters, w)
			}
		}
		for v, a := range g.pending {
			if now.After(a.Expires) {
				delete(g.pending, v)
			}
		}
		g.mu.Unlock()
		for _, w := range gone {
			if g.queue.Leave(w) {
				g.m.QueueWaitSeconds.Observe(now.Sub(w.Enqueued).Seconds())
				g.log.Info("visitor left the queue", "visitor", g.keys.Pseudonym("v", w.Visitor))
			}
		}
		if len(gone) > 0 {
			g.pool.SetDemand(g.queue.Len())
		}
	}
}

// assignLoop hands free sessions to the queue, first come first served,
// whenever the fleet or the line changes.
func (g *Gateway) assignLoop(ctx context.Context) {
	for {
		poolChanged := g.pool.Changed()
		queueChanged := g.queue.Changed()
		g.m.QueueLength.Set(float64(g.queue.Len()))
		g.pool.SetDemand(g.queue.Len())
		// First come, first served, except that a visitor whose address
		// already holds max_claims_per_address sessions lets the next
		// one go first.
		for _, w := range g.queue.Waiting() {
			req := claim.Request{Visitor: g.keys.Pseudonym("v", w.Visitor), Subject: w.Subject, Address: w.Address}
			a, ok := g.pool.Holding(req.Visitor, req.Subject)
			if !ok {
				if g.pool.ClaimsFrom(req.Address) >= g.cfg.MaxClaimsPerAddress {
					continue
				}
				var err error
				if a, err = g.claimFor(ctx, req); err != nil {
					break
				}
			}
			g.mu.Lock()
			g.pending[w.Visitor] = a
			g.mu.Unlock()
			g.queue.Leave(w)
			select {
			case w.Assigned <- a:
			default:
			}
			waited := time.Since(w.Enqueued)
			g.m.QueueWaitSeconds.Observe(waited.Seconds())
			g.m.AssignSeconds.Observe(waited.Seconds())
			g.log.Info("queued visitor assigned", "visitor", req.Visitor, "subject", w.Subject, "alloc", a.Session.AllocID, "waited", waited)
		}
		select {
		case <-ctx.Done():
			return
		case <-poolChanged:
		case <-queueChanged:
		}
	}
}

func (g *Gateway) retryAfter() int {
	if d, ok := g.pool.EstimateWait(g.queue.Len() + 1); ok {
		return max(1, int(d.Seconds()))
	}
	return 30
}

func (g *Gateway) apiSessions(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, map[string]any{"sessions": g.pool.Sessions(), "counts": g.pool.Counts()})
}

func (g *Gateway) apiQueue(w http.ResponseWriter, _ *http.Request) {
	out := map[string]any{"length": g.queue.Len(), "max_queue": g.cfg.MaxQueue, "oldest_wait_s": 0.0}
	if t := g.queue.Oldest(); !t.IsZero() {
		out["oldest_wait_s"] = time.Since(t).Seconds()
	}
	writeJSON(w, out)
}

// operator puts next behind the operator token (Authorization: Bearer).
// Without a configured token the endpoints refuse everyone: never open,
// never the fleet secret.
func (g *Gateway) operator(next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(g.cfg.OperatorToken))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t, ok := auth.Bearer(r)
		have := sha256.Sum256([]byte(t))
		if g.cfg.OperatorToken == "" || !ok || subtle.ConstantTimeCompare(have[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pixelstream-gateway-operator"`)
			writeText(w, http.StatusUnauthorized, "401 unauthorized: operator endpoints need the operator token (operator_token) as Authorization: Bearer\n")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func isNavigation(r *http.Request) bool { return proxy.IsNavigation(r) }

// directNavigation says whether a page load may claim: the visitor typed
// the URL or followed a bookmark (Sec-Fetch-Site: none) or clicked on the
// gateway's own page (same-origin). Clients that send no Sec-Fetch-Site
// (not a browser a cross-site page could drive) count as direct.
func directNavigation(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "none", "same-origin":
		return true
	}
	return false
}

// clickPage asks a visitor who came from another site to start the
// session with a click of their own.
func clickPage(uri string) []byte {
	return []byte(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Start your session</title>
<style>html,body{height:100%;margin:0;background:#101418;color:#e8eef2;font:16px/1.5 system-ui,sans-serif}
main{display:flex;flex-direction:column;align-items:center;justify-content:center;height:100%;gap:1em}
a{color:#101418;background:#e8eef2;padding:.6em 1.4em;border-radius:.4em;text-decoration:none;font-weight:600}</style>
</head><body><main><div>A session is ready for you.</div>
<a id="start" href="` + html.EscapeString(uri) + `">Start the stream</a></main></body></html>
`)
}

// clientIP is the visitor's address, what per-address caps key on: the
// TCP peer, or behind a trusted proxy the address it forwarded for.
func (g *Gateway) clientIP(r *http.Request) string {
	return g.addrs.Of(r.RemoteAddr, r.Header.Values("X-Forwarded-For"))
}

func clearCookie(w http.ResponseWriter, r *http.Request, base string) {
	http.SetCookie(w, &http.Cookie{Name: cookieName(base, r), Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil})
}

func writeHTML(w http.ResponseWriter, code int, page []byte) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(page)
}

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		writeText(w, http.StatusInternalServerError, "encode: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(append(b, '\n'))
}

// Main runs `nomad-driver-pixelstream gateway [flags]`.
func Main(args []string) int {
	cfg, err := config.Load(args, os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "gateway:", err)
		return 2
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "gateway", Level: hclog.LevelFromString(cfg.LogLevel)})
	g, err := New(cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		return 2
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gateway: listen:", err)
		return 1
	}
	var op net.Listener
	if cfg.OperatorListen != "" {
		if op, err = net.Listen("tcp", cfg.OperatorListen); err != nil {
			fmt.Fprintln(os.Stderr, "gateway: operator_listen:", err)
			return 1
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("gateway listening", "address", ln.Addr().String(), "job", cfg.Job, "service", cfg.Service,
		"min_free", cfg.MinFree, "max_sessions", cfg.MaxSessions, "route", cfg.Route, "auth", cfg.Auth.Mode,
		"tls", cfg.TLS != nil && cfg.TLS.CertFile != "", "operator", cfg.OperatorListen, "operator_token_set", cfg.OperatorToken != "")
	if err := g.Run(ctx, ln, op); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("gateway stopped", "error", err)
		return 1
	}
	return 0
}
