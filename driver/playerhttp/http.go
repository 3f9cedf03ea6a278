package playerhttp

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling"
)

// playerMux serves the player port: a WebSocket upgrade on any path is a
// player (Epic's frontend connects to the page's origin), everything else is
// the page, health, metrics or the REST API.
func (s *Server) playerMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.router.Ready() {
			writeText(w, http.StatusServiceUnavailable, "no streamer connected\n")
			return
		}
		writeText(w, http.StatusOK, "ok\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.router.Registry(), promhttp.HandlerOpts{}))
	mux.HandleFunc("GET "+RouteStatus, s.guard(s.apiStatus))
	mux.HandleFunc("GET "+RouteStreamers, s.guard(s.apiStreamers))
	mux.HandleFunc("GET "+RouteStreamer, s.guard(s.apiStreamer))
	mux.HandleFunc("GET "+RoutePlayers, s.guard(s.apiPlayers))
	mux.HandleFunc("GET "+RoutePlayer, s.guard(s.apiPlayer))
	mux.HandleFunc("GET "+RouteConfig, s.guard(s.apiConfig))
	mux.HandleFunc("GET "+RouteAPIDefinition, s.guard(apiDefinition))
	mux.HandleFunc("/api/claim", s.apiClaim)
	mux.HandleFunc("/", s.guard(s.page.ServeHTTP))
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
