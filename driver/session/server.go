package session

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

// longPoll is how long an events request waits for something new; short
// enough that a driver that went away is noticed, long enough to be cheap.
const longPoll = 25 * time.Second

// StopRequest asks the supervisor to stop the app the way the job says.
type StopRequest struct {
	Signal  string        `json:"signal"`
	Timeout time.Duration `json:"timeout"`
}

// serveState serves the state API on a unix socket only the task user and
// root can reach (the runtime dir is 0700).
func (s *supervisor) serveState(path string) (func(), error) {
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on state socket %s: %w", path, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /state", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, s.store.snapshot())
	})
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
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
				writeJSON(w, []Event{})
				return
			case <-r.Context().Done():
				return
			}
		}
	})
	mux.HandleFunc("POST /stop", func(w http.ResponseWriter, r *http.Request) {
		var req StopRequest
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
	mux.HandleFunc("POST /signal", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("signal")
		if lookupSignal(name, 0) == 0 {
			http.Error(w, fmt.Sprintf("signal %q is not a signal name such as SIGHUP", name), http.StatusBadRequest)
			return
		}
		s.sigCh <- name
		w.WriteHeader(http.StatusAccepted)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close(); _ = os.Remove(path) }, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
