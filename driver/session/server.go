package session

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/sessionapi"
)

// longPoll is how long an events request waits for something new; short
// enough that a driver that went away is noticed, long enough to be cheap.
const longPoll = 25 * time.Second

// serveState serves the state API on ln (from listenState).
func (s *supervisor) serveState(ln net.Listener) func() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+sessionapi.RouteState, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, s.store.snapshot())
	})
	mux.HandleFunc("GET "+sessionapi.RouteEvents, func(w http.ResponseWriter, r *http.Request) {
		after, _ := strconv.ParseUint(r.URL.Query().Get(sessionapi.AfterParam), 10, 64)
		t := time.NewTimer(longPoll)
		defer t.Stop()
		for {
			evs, changed := s.store.eventsAfter(after)
			if len(evs) > 0 {
				writeJSON(w, evs)
				return
			}
			select {
			case <-changed:
			case <-t.C:
				writeJSON(w, []sessionapi.Event{})
				return
			case <-r.Context().Done():
				return
			}
		}
	})
	mux.HandleFunc("POST "+sessionapi.RouteStop, func(w http.ResponseWriter, r *http.Request) {
		var req sessionapi.StopRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "stop request: "+err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case s.stopCh <- req:
		default: // a stop is already under way
		}
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("POST "+sessionapi.RouteSignal, func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get(sessionapi.SignalParam)
		if lookupSignal(name, 0) == 0 {
			http.Error(w, fmt.Sprintf("signal %q is not a signal name such as SIGHUP", name), http.StatusBadRequest)
			return
		}
		s.sigCh <- name
		w.WriteHeader(http.StatusAccepted)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	// The socket file stays: it is root's, in root's runtime dir, which the
	// driver removes.
	return func() { _ = srv.Close() }
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
