package session

import (
	"sync"
	"time"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/sessionapi"
)

// maxEvents bounds the event history the supervisor keeps for a driver that
// reconnects after a restart; older events have been delivered already.
const maxEvents = 256

// stateStore guards the state and the event log, and wakes long-polling
// readers when either changes.
type stateStore struct {
	mu      sync.Mutex
	state   sessionapi.State
	events  []sessionapi.Event
	changed chan struct{}
}

func newStateStore(resolution string) *stateStore {
	return &stateStore{
		state:   sessionapi.State{Phase: sessionapi.PhaseStarting, Resolution: resolution, StartedAt: time.Now()},
		changed: make(chan struct{}),
	}
}

func (s *stateStore) update(f func(*sessionapi.State)) {
	s.mu.Lock()
	f(&s.state)
	s.notifyLocked()
	s.mu.Unlock()
}

func (s *stateStore) setComponent(c sessionapi.Component) {
	s.update(func(st *sessionapi.State) {
		for i := range st.Components {
			if st.Components[i].Name == c.Name {
				st.Components[i] = c
				return
			}
		}
		st.Components = append(st.Components, c)
	})
}

func (s *stateStore) emit(kind, msg string, details map[string]string) {
	s.mu.Lock()
	s.state.LastSeq++
	s.events = append(s.events, sessionapi.Event{Seq: s.state.LastSeq, Time: time.Now(), Kind: kind, Message: msg, Details: details})
	if len(s.events) > maxEvents {
		s.events = s.events[len(s.events)-maxEvents:]
	}
	s.notifyLocked()
	s.mu.Unlock()
}

func (s *stateStore) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *stateStore) snapshot() sessionapi.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state
	st.Components = append([]sessionapi.Component(nil), s.state.Components...)
	return st
}

// eventsAfter returns the events after seq and a channel closed on the next
// change. Asking for events after seq acknowledges every event up to seq.
func (s *stateStore) eventsAfter(seq uint64) ([]sessionapi.Event, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq > s.state.Delivered && seq <= s.state.LastSeq {
		s.state.Delivered = seq
	}
	var out []sessionapi.Event
	for _, e := range s.events {
		if e.Seq > seq {
			out = append(out, e)
		}
	}
	return out, s.changed
}
