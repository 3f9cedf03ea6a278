package signalling

import (
	"fmt"
	"net/http"
	"time"
)

// wsOnly serves the streamer and SFU ports, which speak only WebSocket.
func (s *Server) wsOnly(rl role) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
