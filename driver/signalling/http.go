package signalling

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

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
	mux.HandleFunc("/api/claim", s.apiClaim)
	mux.HandleFunc("/", s.guard(s.page.ServeHTTP))
	return s.claimGate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isUpgrade(r) {
			if err := s.checkOrigin(r); err != nil {
				s.metrics.reject(rolePlayer, reasonBadOrigin)
				s.log.Info("refused player WebSocket from another site's page", "remote", r.RemoteAddr, "error", err)
				writeText(w, http.StatusForbidden, "403 forbidden: a page of this origin may not connect to this stream (the session's allowed_origins lists those that may)\n")
				return
			}
			if !s.requireToken(w, r) {
				return
			}
			takeOver(w)
			s.accept(w, r, rolePlayer)
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

// wsOnly serves the streamer and SFU ports, which speak only WebSocket.
func (s *Server) wsOnly(rl role) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isUpgrade(r) {
			writeText(w, http.StatusUpgradeRequired, "this is the Pixel Streaming "+rl.String()+" endpoint: connect with a WebSocket\n")
			return
		}
		takeOver(w)
		s.accept(w, r, rl)
	})
}

// takeOver clears the deadlines the HTTP server set for this request
// (ReadTimeout, WriteTimeout) before the WebSocket code takes the
// connection: a hijacked connection keeps them, and a player must not be cut
// off because its upgrade request is older than a timeout. The WebSocket
// code sets a deadline of its own on every frame.
func takeOver(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
}

// limitURL answers 414 to a request whose URL is longer than MaxURLBytes
// (the header limit, MaxHeaderBytes, is enforced by net/http with 431).
func (s *Server) limitURL(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.RequestURI) > s.limits.MaxURLBytes {
			w.Header().Set("Connection", "close")
			writeText(w, http.StatusRequestURITooLong, fmt.Sprintf("414 URI too long: at most %d bytes\n", s.limits.MaxURLBytes))
			return
		}
		h.ServeHTTP(w, r)
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
