package session

import (
	"sync"
	"time"
)

// Phase is where a session is in its life.
type Phase string

// Phases, in order.
const (
	PhaseStarting Phase = "starting"
	PhaseRunning  Phase = "running" // the app has been started
	PhaseStopping Phase = "stopping"
	PhaseExited   Phase = "exited"
)

// Event kinds the driver acts on; Message is for people.
const (
	EventDisplayReady     = "display_ready"
	EventAppStarted       = "app_started"
	EventAppExited        = "app_exited"
	EventComponentFailed  = "component_failed"
	EventStopRequested    = "stop_requested"
	EventComponentStarted = "component_started"
	EventAudioReady       = "audio_ready"
	EventComponentRestart = "component_restarted"
)

// Event is one thing that happened in the session, in order of Seq.
type Event struct {
	Seq     uint64            `json:"seq"`
	Time    time.Time         `json:"time"`
	Kind    string            `json:"kind"`
	Message string            `json:"message"`
	Details map[string]string `json:"details,omitempty"`
}

// Component is one process of the session as the driver shows it.
type Component struct {
	Name  string `json:"name"`
	Pid   int    `json:"pid"`
	State string `json:"state"`
}

// State is the supervisor's published picture of the session.
type State struct {
	Phase       Phase       `json:"phase"`
	Display     string      `json:"display,omitempty"`
	Resolution  string      `json:"resolution"`
	AppPid      int         `json:"app_pid,omitempty"`
	StreamerURL string      `json:"streamer_url,omitempty"`
	StreamReady bool        `json:"stream_ready"`
	Streamers   int         `json:"streamers"`
	Players     int         `json:"players"`
	Components  []Component `json:"components"`
	LastSeq     uint64      `json:"last_seq"`
	// Delivered is the last event the driver has turned into a Nomad task
	// event: it asks for events after N only once it has delivered N. A
	// restarted plugin resumes from here, so events emitted while no plugin
	// was listening still reach Nomad.
	Delivered uint64    `json:"delivered"`
	StartedAt time.Time `json:"started_at"`
}

// maxEvents bounds the event history the supervisor keeps for a driver that
// reconnects after a restart; older events have been delivered already.
const maxEvents = 256

// stateStore guards the state and the event log, and wakes long-polling
// readers when either changes.
type stateStore struct {
	mu      sync.Mutex
	state   State
	events  []Event
	changed chan struct{}
}

func newStateStore(resolution string) *stateStore {
	return &stateStore{
		state:   State{Phase: PhaseStarting, Resolution: resolution, StartedAt: time.Now()},
		changed: make(chan struct{}),
	}
}

func (s *stateStore) update(f func(*State)) {
	s.mu.Lock()
	f(&s.state)
	s.notifyLocked()
	s.mu.Unlock()
}

func (s *stateStore) setComponent(c Component) {
	s.update(func(st *State) {
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
	s.events = append(s.events, Event{Seq: s.state.LastSeq, Time: time.Now(), Kind: kind, Message: msg, Details: details})
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

func (s *stateStore) snapshot() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state
	st.Components = append([]Component(nil), s.state.Components...)
	return st
}

// eventsAfter returns the events after seq and a channel closed on the next
// change. Asking for events after seq acknowledges every event up to seq.
func (s *stateStore) eventsAfter(seq uint64) ([]Event, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq > s.state.Delivered && seq <= s.state.LastSeq {
		s.state.Delivered = seq
	}
	var out []Event
	for _, e := range s.events {
		if e.Seq > seq {
			out = append(out, e)
		}
	}
	return out, s.changed
}
