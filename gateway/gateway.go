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
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
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

	"github.com/pixelstream/nomad-driver-pixelstream/gateway/auth"
	"github.com/pixelstream/nomad-driver-pixelstream/gateway/config"
	"github.com/pixelstream/nomad-driver-pixelstream/gateway/metrics"
	"github.com/pixelstream/nomad-driver-pixelstream/gateway/nomad"
	"github.com/pixelstream/nomad-driver-pixelstream/gateway/pool"
	"github.com/pixelstream/nomad-driver-pixelstream/gateway/proxy"
	"github.com/pixelstream/nomad-driver-pixelstream/gateway/queue"
	"github.com/pixelstream/nomad-driver-pixelstream/quality"
)

// Cookie names of the gateway's own cookies (never sent on to sessions).
const (
	visitorCookie = "pixelstream_visitor"
	bindingCookie = "pixelstream_session"
)

// bindingTTL bounds a binding cookie; the session's own lifecycle ends it
// far sooner, and a binding to a gone session is dropped at the next visit.
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
	signer   *auth.Signer
	proxy    http.Handler
	waiting  []byte

	mu      sync.Mutex
	pending map[string]*pool.Assignment // assigned, not yet picked up by the waiting page
	waiters map[*queue.Waiter]*waiterConns

	panicLogged atomic.Bool
}

type waiterConns struct {
	n      int
	lostAt time.Time
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
	nc := nomad.New(cfg.NomadAddr, cfg.NomadToken, cfg.Namespace)
	p := pool.New(pool.Config{Job: cfg.Job, Service: cfg.Service, Secret: cfg.Secret, MinFree: cfg.MinFree,
		MaxSessions: cfg.MaxSessions, StateEvery: cfg.StateEvery(), DispatchMeta: cfg.DispatchMeta,
		Logger: log.Named("pool"), Metrics: m, Self: os.Getenv("NOMAD_ALLOC_ID"), Peers: cfg.PeerService}, nc)
	g := &Gateway{cfg: cfg, log: log, m: m, pool: p, queue: queue.New(cfg.MaxQueue), visitors: va,
		signer: auth.NewSigner(cfg.Secret), waiting: page,
		pending: map[string]*pool.Assignment{}, waiters: map[*queue.Waiter]*waiterConns{}}
	g.proxy = proxy.New(log.Named("proxy"), g.gatewayCookie, cfg.Auth.Query, g.proxyError)
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

func (g *Gateway) gatewayCookie(name string) bool {
	return name == visitorCookie || name == bindingCookie || name == g.cfg.Auth.Cookie
}

// Run serves until ctx ends.
func (g *Gateway) Run(ctx context.Context, ln net.Listener) error {
	go g.pool.Run(ctx)
	go g.assignLoop(ctx)
	go g.reapWaiters(ctx)
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

// Handler is the gateway's HTTP handler.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.m.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /api/sessions", g.apiSessions)
	mux.HandleFunc("GET /api/queue", g.apiQueue)
	mux.HandleFunc("GET /gateway/queue/events", g.queueEvents)
	mux.HandleFunc("POST /gateway/enter", g.enter)
	mux.HandleFunc("/", g.visit)
	return g.recoverer(mux)
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
	if b := g.binding(r); b != nil {
		s, ok := g.pool.Lookup(b.AllocID)
		if ok && s.Addr == b.Addr {
			g.proxy.ServeHTTP(w, proxy.WithTarget(r, proxy.Target{AllocID: b.AllocID, Addr: b.Addr, Token: b.Token}))
			return
		}
		if !nav {
			writeText(w, http.StatusGone, "410 gone: your session has ended; reload the page for a new one\n")
			return
		}
		// The session ended or its node is gone: a fresh one, same URL.
		g.log.Info("visitor's session is gone; finding another", "alloc", b.AllocID)
		clearCookie(w, bindingCookie, r.TLS != nil)
	} else if !nav {
		writeText(w, http.StatusNotFound, "404 not found: no session yet; open / first\n")
		return
	}

	subject, fromQuery, err := g.visitors.Authenticate(r)
	if err != nil {
		g.m.Visitors.WithLabelValues("unauthorized").Inc()
		g.log.Info("visitor refused", "remote", r.RemoteAddr, "reason", err)
		w.Header().Set("WWW-Authenticate", `Bearer realm="pixelstream-gateway"`)
		writeText(w, http.StatusUnauthorized, "401 unauthorized: "+err.Error()+"\n")
		return
	}
	if fromQuery {
		http.SetCookie(w, g.visitors.Cookie(g.visitors.QueryValue(r), r.TLS != nil))
	}
	visitor := g.visitorID(w, r)

	if g.queue.Len() == 0 {
		a, err := g.pool.Claim(r.Context(), visitor, subject)
		if err == nil {
			g.m.Visitors.WithLabelValues("assigned").Inc()
			g.m.AssignSeconds.Observe(time.Since(arrived).Seconds())
			g.log.Info("visitor assigned", "visitor", visitor, "subject", subject, "alloc", a.Session.AllocID, "node", a.Session.NodeID)
			g.route(w, r, visitor, a)
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
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(g.waiting)
}

// route sends an assigned visitor on: proxied (the binding cookie and
// this very request to the session) or redirected to the session's URL.
func (g *Gateway) route(w http.ResponseWriter, r *http.Request, visitor string, a *pool.Assignment) {
	if g.cfg.Route == config.RouteRedirect {
		http.Redirect(w, r, sessionURL(a), http.StatusFound)
		return
	}
	tok, err := g.signer.Sign(auth.Binding{AllocID: a.Session.AllocID, Addr: a.Session.Addr, Token: a.Token, Visitor: visitor}, bindingTTL)
	if err != nil {
		writeText(w, http.StatusInternalServerError, "500 internal error: "+err.Error()+"\n")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: bindingCookie, Value: tok, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil})
	// Let the page's own requests carry the new binding too: this request
	// goes through with it attached.
	g.proxy.ServeHTTP(w, proxy.WithTarget(r, proxy.Target{AllocID: a.Session.AllocID, Addr: a.Session.Addr, Token: a.Token}))
}

func sessionURL(a *pool.Assignment) string {
	return "http://" + a.Session.Addr + "/?token=" + a.Token
}

// proxyError handles a session that did not answer: a page load is sent
// round again for another session, transparently; anything else fails.
func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	g.m.ProxyErrors.Inc()
	t, _ := proxy.TargetOf(r)
	g.log.Warn("session did not answer", "alloc", t.AllocID, "path", r.URL.Path, "error", err)
	if isNavigation(r) && !errors.Is(err, context.Canceled) {
		g.pool.Forget(t.AllocID)
		clearCookie(w, bindingCookie, r.TLS != nil)
		http.Redirect(w, r, r.URL.RequestURI(), http.StatusFound)
		return
	}
	writeText(w, http.StatusBadGateway, "502 bad gateway: the session did not answer\n")
}

// binding returns the visitor's verified binding, if any.
func (g *Gateway) binding(r *http.Request) *auth.Binding {
	c, err := r.Cookie(bindingCookie)
	if err != nil {
		return nil
	}
	b, err := g.signer.Verify(c.Value)
	if err != nil {
		return nil
	}
	return b
}

// visitorID returns the visitor's id from its cookie, or gives it one.
func (g *Gateway) visitorID(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(visitorCookie); err == nil && validID(c.Value) {
		return c.Value
	}
	id := newID()
	http.SetCookie(w, &http.Cookie{Name: visitorCookie, Value: id, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil})
	r.AddCookie(&http.Cookie{Name: visitorCookie, Value: id})
	return id
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func validID(s string) bool {
	if len(s) != 22 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil
}

// queueEvents is the waiting page's Server-Sent Events stream. Holding it
// open is being in line: the visitor joins on connect and leaves when it
// closes (after a short grace for reloads).
func (g *Gateway) queueEvents(w http.ResponseWriter, r *http.Request) {
	subject, _, err := g.visitors.Authenticate(r)
	if err != nil {
		writeText(w, http.StatusUnauthorized, "401 unauthorized: "+err.Error()+"\n")
		return
	}
	c, err := r.Cookie(visitorCookie)
	if err != nil || !validID(c.Value) {
		writeText(w, http.StatusBadRequest, "400 bad request: open / first\n")
		return
	}
	visitor := c.Value
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
		g.sendAssigned(send, visitor, a)
		return
	}
	wt, err := g.queue.Join(visitor, subject)
	if err != nil {
		send("full", map[string]any{"retry_after_s": g.retryAfter()})
		return
	}
	g.connectWaiter(wt, +1)
	defer g.connectWaiter(wt, -1)
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
				g.sendAssigned(send, visitor, a)
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
			g.sendAssigned(send, visitor, a.(*pool.Assignment))
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
				g.sendAssigned(send, visitor, a.(*pool.Assignment))
				return
			case <-time.After(wait):
			}
		}
		t.Stop()
	}
}

func (g *Gateway) sendAssigned(send func(string, any) bool, visitor string, a *pool.Assignment) {
	if g.cfg.Route == config.RouteRedirect {
		send("assigned", map[string]string{"url": sessionURL(a)})
		return
	}
	tok, err := g.signer.Sign(auth.Binding{AllocID: a.Session.AllocID, Addr: a.Session.Addr, Token: a.Token, Visitor: visitor}, bindingTTL)
	if err != nil {
		return
	}
	send("assigned", map[string]string{"ticket": tok})
}

// enter turns a waiting page's ticket into the binding cookie.
func (g *Gateway) enter(w http.ResponseWriter, r *http.Request) {
	// The server has no ReadTimeout (proxied WebSockets would inherit it):
	// this body gets its own deadline.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(10 * time.Second))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 8<<10))
	if err != nil {
		writeText(w, http.StatusBadRequest, "400 bad request: ticket too large\n")
		return
	}
	b, err := g.signer.Verify(strings.TrimSpace(string(body)))
	c, cerr := r.Cookie(visitorCookie)
	if err != nil || cerr != nil || subtle.ConstantTimeCompare([]byte(c.Value), []byte(b.Visitor)) != 1 {
		writeText(w, http.StatusForbidden, "403 forbidden: not your ticket\n")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: bindingCookie, Value: strings.TrimSpace(string(body)), Path: "/", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil})
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

func (g *Gateway) connectWaiter(w *queue.Waiter, delta int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.waiters[w]
	if c == nil {
		c = &waiterConns{}
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
				g.log.Info("visitor left the queue", "visitor", w.Visitor)
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
		for w := g.queue.Front(); w != nil; w = g.queue.Front() {
			a, err := g.pool.Claim(ctx, w.Visitor, w.Subject)
			if err != nil {
				break
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
			g.log.Info("queued visitor assigned", "visitor", w.Visitor, "subject", w.Subject, "alloc", a.Session.AllocID, "waited", waited)
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

func (g *Gateway) apiSessions(w http.ResponseWriter, r *http.Request) {
	// Session addresses and visitor ids are for operators: the gateway
	// secret opens this endpoint.
	if !g.operator(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="pixelstream-gateway"`)
		writeText(w, http.StatusUnauthorized, "401 unauthorized: /api/sessions needs the gateway secret (Authorization: Bearer)\n")
		return
	}
	writeJSON(w, map[string]any{"sessions": g.pool.Sessions(), "counts": g.pool.Counts()})
}

func (g *Gateway) apiQueue(w http.ResponseWriter, _ *http.Request) {
	out := map[string]any{"length": g.queue.Len(), "max_queue": g.cfg.MaxQueue, "oldest_wait_s": 0.0}
	if t := g.queue.Oldest(); !t.IsZero() {
		out["oldest_wait_s"] = time.Since(t).Seconds()
	}
	writeJSON(w, out)
}

func (g *Gateway) operator(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	if len(h) <= 7 || !strings.EqualFold(h[:7], "bearer ") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(h[7:])), []byte(g.cfg.Secret)) == 1
}

// isNavigation says whether r is a browser loading a page (not an asset,
// an API call or a WebSocket).
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet || strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return false
	}
	if m := r.Header.Get("Sec-Fetch-Mode"); m != "" {
		return m == "navigate"
	}
	return r.URL.Path == "/" || strings.Contains(r.Header.Get("Accept"), "text/html")
}

func clearCookie(w http.ResponseWriter, name string, secure bool) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: secure})
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("gateway listening", "address", ln.Addr().String(), "job", cfg.Job, "service", cfg.Service,
		"min_free", cfg.MinFree, "max_sessions", cfg.MaxSessions, "route", cfg.Route, "auth", cfg.Auth.Mode,
		"tls", cfg.TLS != nil && cfg.TLS.CertFile != "")
	if err := g.Run(ctx, ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("gateway stopped", "error", err)
		return 1
	}
	return 0
}
