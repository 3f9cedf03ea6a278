package playerhttp

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pixelstream/nomad-driver-pixelstream/claim"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling"
)

// playerRoutes is every route of the player port besides player WebSockets
// (an upgrade on any path), each with the handler it gets; the README's
// endpoint table is checked against it (readme_test.go).
var playerRoutes = []struct {
	pattern string
	handler func(*Server) http.HandlerFunc
}{
	{"GET /healthz", func(*Server) http.HandlerFunc { return healthz }},
	{"GET /readyz", func(s *Server) http.HandlerFunc { return s.readyz }},
	{"GET /metrics", (*Server).metricsHandler},
	{"GET " + RouteStatus, func(s *Server) http.HandlerFunc { return s.guard(s.apiStatus) }},
	{"GET " + RouteStreamers, func(s *Server) http.HandlerFunc { return s.guard(s.apiStreamers) }},
	{"GET " + RouteStreamer, func(s *Server) http.HandlerFunc { return s.guard(s.apiStreamer) }},
	{"GET " + RoutePlayers, func(s *Server) http.HandlerFunc { return s.guard(s.apiPlayers) }},
	{"GET " + RoutePlayer, func(s *Server) http.HandlerFunc { return s.guard(s.apiPlayer) }},
	{"GET " + RouteConfig, func(s *Server) http.HandlerFunc { return s.guard(s.apiConfig) }},
	{"GET " + RouteAPIDefinition, func(s *Server) http.HandlerFunc { return s.guard(apiDefinition) }},
	{claim.Path, func(s *Server) http.HandlerFunc { return s.apiClaim }},
	{"/", func(s *Server) http.HandlerFunc { return s.guard(s.page.ServeHTTP) }},
}

// Routes lists the player port's route patterns ("GET /healthz", "/", ...).
func Routes() []string {
	out := make([]string, 0, len(playerRoutes))
	for _, r := range playerRoutes {
		out = append(out, r.pattern)
	}
	return out
}

func healthz(w http.ResponseWriter, _ *http.Request) { writeText(w, http.StatusOK, "ok\n") }

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if !s.router.Ready() {
		writeText(w, http.StatusServiceUnavailable, "no streamer connected\n")
		return
	}
	writeText(w, http.StatusOK, "ok\n")
}

func (s *Server) metricsHandler() http.HandlerFunc {
	return promhttp.HandlerFor(s.router.Registry(), promhttp.HandlerOpts{}).ServeHTTP
}

// playerMux serves the player port: a WebSocket upgrade on any path is a
// player (Epic's frontend connects to the page's origin), everything else is
// the page, health, metrics or the REST API.
func (s *Server) playerMux() http.Handler {
	mux := http.NewServeMux()
	for _, r := range playerRoutes {
		mux.HandleFunc(r.pattern, r.handler(s))
	}
	return s.claimGate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if signalling.IsUpgrade(r) {
			// Players come from the page on this port or from any page a
			// user points at it (Epic's server accepts every origin too):
			// access is governed by the token and allowed_origins.
			if err := s.checkOrigin(r); err != nil {
				s.reject(signalling.ReasonBadOrigin)
				s.log.Info("refused player WebSocket from another site's page", "remote", r.RemoteAddr, "error", err)
				writeText(w, http.StatusForbidden, "403 forbidden: a page of this origin may not connect to this stream (the session's allowed_origins lists those that may)\n")
				return
			}
			if !s.requireToken(w, r) {
				return
			}
			s.router.AcceptPlayer(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	}))
}

// guard applies the player token to the page and the REST API (which names
// players and their addresses); health and metrics stay open for checks.
func (s *Server) guard(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.requireToken(w, r) {
			h(w, r)
		}
	}
}

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		http.Error(w, "encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}
