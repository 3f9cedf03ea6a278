// Package audio runs one session's private sound stack: a D-Bus session bus,
// PipeWire, WirePlumber and pipewire-pulse, as the session's user, with a
// null sink as the default output. The app gets an environment (Env) that
// points only at this stack; two stacks never share a socket or a bus.
//
// Each daemon is started once the previous one answers on its socket, and
// is restarted with backoff when it dies; when that fails, Failed reports
// which daemon and what it printed last. Stop takes everything down in
// reverse order and removes the runtime dir.
package audio
