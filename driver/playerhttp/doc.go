// Package playerhttp is a session's player port: everything a browser or a
// tool reaches over HTTP on it. It serves the player page (Epic's frontend,
// embedded from webroot/dist after `make page`, or the job's http_root),
// /healthz, /readyz, /metrics, a read-only REST API shaped like Epic's,
// /api/claim for a gateway's pool, the player token and origin checks, and
// TLS with certificates that reload. Player WebSockets that pass the checks
// are handed to the signalling router (driver/signalling).
//
// Start composes the two as a session runs them.
package playerhttp
