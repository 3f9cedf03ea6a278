// Package session is the per-task supervisor. The driver starts it inside
// the session's sandbox, where it reads its config as root, binds its state
// socket and becomes the task user; then it brings up the session's
// components in order (display, audio, signalling and TURN, then the app),
// publishes their state for the driver (driver/sessionapi is that contract),
// and tears everything down in reverse when the app ends or the driver asks
// it to stop.
package session
