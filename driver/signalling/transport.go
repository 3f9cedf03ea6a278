package signalling

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// wsOnly serves the streamer and SFU ports, which speak only WebSocket.
func (s *Server) wsOnly(rl role) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rl == roleStreamer {
			if err := s.vetStreamer(r); err != nil {
				s.metrics.reject(rl, reasonUnauthorized)
				s.log.Warn("refused streamer connection", "remote", r.RemoteAddr, "error", err)
				writeText(w, http.StatusUnauthorized, "401 unauthorized: "+err.Error()+"\n")
				return
			}
		}
		if !IsUpgrade(r) {
			writeText(w, http.StatusUpgradeRequired, "this is the Pixel Streaming "+rl.String()+" endpoint: connect with a WebSocket\n")
			return
		}
		TakeOver(w)
		s.accept(w, r, rl)
	})
}

// TakeOver clears the deadlines the HTTP server set for this request
// (ReadTimeout, WriteTimeout) before the WebSocket code takes the
// connection: a hijacked connection keeps them, and a player must not be cut
// off because its upgrade request is older than a timeout. The WebSocket
// code sets a deadline of its own on every frame.
func TakeOver(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
}

// limitURL answers 414 to a request whose URL is longer than MaxURLBytes
// (the header limit, MaxHeaderBytes, is enforced by net/http with 431).
func limitURL(l Limits, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.RequestURI) > l.MaxURLBytes {
			w.Header().Set("Connection", "close")
			writeText(w, http.StatusRequestURITooLong, fmt.Sprintf("414 URI too long: at most %d bytes\n", l.MaxURLBytes))
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

// vetStreamer checks a streamer's key (the URL path) and its peer before
// the upgrade. Without the key a local process that found the streamer port
// could pose as the app: its video to the session's players, their input
// and addresses to it.
func (s *Server) vetStreamer(r *http.Request) error {
	if key := s.cfg.StreamerKey; key != "" {
		got := strings.TrimPrefix(r.URL.Path, "/")
		if subtle.ConstantTimeCompare([]byte(got), []byte(key)) != 1 {
			return errors.New("this session's streamer key is required (the app gets its streamer URL with the key on its command line)")
		}
	}
	if s.cfg.StreamerPeer != nil {
		local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		remote, err := net.ResolveTCPAddr("tcp", r.RemoteAddr)
		if err != nil || local == nil {
			return fmt.Errorf("cannot tell who connected: %v", err)
		}
		if err := s.cfg.StreamerPeer(local, remote); err != nil {
			return err
		}
	}
	return nil
}
