// Package audio runs one session's private sound stack: a D-Bus session bus,
// PipeWire, WirePlumber and pipewire-pulse, as the session's user, with a
// null sink (SinkName) as the default output. The app gets an environment
// (Env) that points only at this stack; two stacks never share a socket or
// a bus, and nothing uses the user's real home or /run/user/<uid>.
//
// Each daemon starts once the previous one is ready, polled with backoff
// under a deadline while watching the process for an early exit:
//
//   - dbus: it printed its address on --print-address (checked to be the
//     private socket), and the socket answers the D-Bus auth handshake;
//   - pipewire: $XDG_RUNTIME_DIR/pipewire-0 accepts a connection;
//   - wireplumber: PipeWire's "default" metadata (which WirePlumber
//     creates) names SinkName as default.audio.sink, read with pw-metadata;
//   - pipewire-pulse: $XDG_RUNTIME_DIR/pulse/native answers the pulse
//     protocol (auth, then server info) and reports SinkName as default sink.
//
// A daemon that dies is restarted with backoff (PipeWire together with its
// clients WirePlumber and pipewire-pulse); when that fails, Failed reports
// which daemon and what it printed last. Stop takes everything down in
// reverse order and removes the runtime dir.
package audio
