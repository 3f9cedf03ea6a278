// Package signalling is a Pixel Streaming signalling server compatible with
// Unreal Engine's Pixel Streaming plugin (the streamer), Epic's browser
// frontend (the player) and Epic's SFU, protocol version 1.3.0.
//
// One player port serves the player page (Epic's frontend, embedded from
// webroot/dist after `npm --prefix web ci && npm --prefix web run build`),
// the player WebSocket, /healthz, /readyz, /metrics and a read-only REST API
// shaped like Epic's. The streamer endpoint is meant for loopback; the SFU
// endpoint is optional.
//
// Messages are routed by their type and forwarded with their members' bytes
// untouched, apart from the playerId the server adds towards streamers and
// strips towards players. Every limit (message size, rate, handshake
// deadlines, players per streamer, connections, send queue) closes only the
// offending connection, with a close code and reason, and counts in
// pixelstream_signalling_rejected_total.
//
// Connections are read by a few shared epoll loops and written by a
// goroutine that exists only while frames are queued, so an idle player
// costs a few hundred bytes of state rather than a goroutine and buffers.
package signalling
