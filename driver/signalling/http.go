package signalling

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"
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
		s.mu.RLock()
		n := len(s.order)
		s.mu.RUnlock()
		if n == 0 {
			writeText(w, http.StatusServiceUnavailable, "no streamer connected\n")
			return
		}
		writeText(w, http.StatusOK, "ok\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /api/status", s.guard(s.apiStatus))
	mux.HandleFunc("GET /api/streamers", s.guard(s.apiStreamers))
	mux.HandleFunc("GET /api/streamers/{id}", s.guard(s.apiStreamer))
	mux.HandleFunc("GET /api/players", s.guard(s.apiPlayers))
	mux.HandleFunc("GET /api/players/{id}", s.guard(s.apiPlayer))
	mux.HandleFunc("/", s.guard(s.page.ServeHTTP))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isUpgrade(r) {
			if !s.requireToken(w, r) {
				return
			}
			s.accept(w, r, rolePlayer)
			return
		}
		mux.ServeHTTP(w, r)
	})
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

// wsOnly serves the streamer and SFU ports, which speak only WebSocket.
func (s *Server) wsOnly(rl role) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isUpgrade(r) {
			writeText(w, http.StatusUpgradeRequired, "this is the Pixel Streaming "+rl.String()+" endpoint: connect with a WebSocket\n")
			return
		}
		s.accept(w, r, rl)
	})
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

func notFound(w http.ResponseWriter, what, id string) {
	writeJSON(w, http.StatusNotFound, map[string]string{"error": what + " " + strings.TrimSpace(id) + " not found"})
}
