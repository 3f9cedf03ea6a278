// Package signalling is a Pixel Streaming signalling router compatible with
// Unreal Engine's Pixel Streaming plugin (the streamer), Epic's browser
// frontend (the player) and Epic's SFU, protocol version 1.3.0.
//
// The router binds the streamer endpoint (meant for loopback) and an
// optional SFU endpoint, and takes player WebSockets from whatever serves
// the player port (Server.AcceptPlayer): in a session that is
// driver/playerhttp, which adds the page, auth, TLS, claims, metrics and the
// REST API.
//
// Messages are routed by their type and forwarded with their members' bytes
// untouched, apart from the playerId: the server stamps the sender's towards
// streamers and writes it as a string towards players. Every limit (message size, rate, handshake
// deadlines, players per streamer, connections, send queue) closes only the
// offending connection, with a close code and reason, and counts in
// pixelstream_signalling_rejected_total.
//
// Connections are read by a few shared epoll loops and written by a
// goroutine that exists only while frames are queued, so an idle player
// costs a few hundred bytes of state rather than a goroutine and buffers.
package signalling
