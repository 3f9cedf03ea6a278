package sessionapi

import "time"

// Routes of the state socket. Only root (the driver) may connect.
const (
	// RouteState answers the current State.
	RouteState = "/state"
	// RouteEvents long-polls for events after the query's AfterParam.
	RouteEvents = "/events"
	// RouteStop takes a StopRequest.
	RouteStop = "/stop"
	// RouteSignal sends the query's SignalParam to the app.
	RouteSignal = "/signal"

	AfterParam  = "after"
	SignalParam = "signal"
)

// StopRequest asks the supervisor to stop the app the way the job says.
type StopRequest struct {
	Signal  string        `json:"signal"`
	Timeout time.Duration `json:"timeout"`
}

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
	// Stream events: the streamer identified itself or went away.
	EventStreamReady          = "stream_ready"
	EventStreamerDisconnected = "streamer_disconnected"
	EventStreamerReconnected  = "streamer_reconnected"
	// EventPlayerQuality: a player that reported its stream quality left;
	// the message is its summary line.
	EventPlayerQuality = "player_quality"
	// Lifecycle events: the session ends itself or reports its players.
	EventIdleTimeout    = "idle_timeout"
	EventMaxDuration    = "max_duration"
	EventMaxWarning     = "max_duration_warning"
	EventStartupTimeout = "startup_timeout"
	EventClaim          = "claim"
	EventPlayers        = "players"
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
