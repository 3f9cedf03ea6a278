package turn

import (
	"fmt"
	"runtime/debug"
)

// The recover boundary. Everything of ours that runs for one peer (relay
// loop batches, TCP connections, pion's callbacks into us, timers) defers
// recoverPanic or calls panicked: a bug triggered by one peer drops that
// packet or that connection, is counted in
// pixelstream_turn_panics_total{where}, and has its stack logged the first
// time per place; the session and every other peer go on.

// recoverPanic is deferred directly (defer s.recoverPanic("where")), so
// its recover stops the panic.
func (s *Server) recoverPanic(where string) {
	if r := recover(); r != nil {
		s.panicked(where, r)
	}
}

// panicked counts and logs a recovered panic.
func (s *Server) panicked(where string, r any) {
	s.metrics.panics.WithLabelValues(where).Inc()
	if _, seen := s.panicLogged.LoadOrStore(where, struct{}{}); seen {
		s.log.Debug("recovered panic (stack logged before)", "where", where, "panic", fmt.Sprint(r))
		return
	}
	s.log.Error("recovered panic: the packet or connection was dropped", "where", where,
		"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
}
