package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/playerhttp"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/sessionapi"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/turn"
)

// stream is the session's signalling router, its player port and, when the
// job asks for one, its TURN server, wired together: players get per-player
// TURN credentials in their config message, and TURN relays only to what
// the streamer advertised to that player.
type stream struct {
	signalling *playerhttp.Signalling
	turn       *turn.Server
	// key is the streamer URL's path, the app's credential on the streamer port.
	key string
}

func (s *supervisor) startStream() error {
	registry := prometheus.NewRegistry()
	st := &stream{}
	task := s.cfg.Task

	var hooks signalling.Hooks
	if s.cfg.TURNListen != "" {
		cfg := turn.Config{
			Listen:   s.cfg.TURNListen,
			Registry: registry,
			Logger:   s.logger.Named("turn"),
		}
		// Players get turn.public_address/public_port in their URLs
		// (iceOptions); relays advertise the session's local address.
		if err := s.turnAddresses(&cfg); err != nil {
			return err
		}
		if task.TURN.TLS.CertFile != "" {
			cfg.CertFile = s.taskPath(task.TURN.TLS.CertFile)
			cfg.KeyFile = s.taskPath(task.TURN.TLS.KeyFile)
		}
		t, err := turn.New(cfg)
		if err != nil {
			return fmt.Errorf("turn: %w", err)
		}
		if err := t.Start(); err != nil {
			return fmt.Errorf("start TURN server: %w", err)
		}
		st.turn = t
		hooks.PlayerPeerOptions = func(playerID string) json.RawMessage {
			return iceOptions(t, playerID, s.cfg.TURNPublic)
		}
		hooks.StreamerSDP = t.AllowFromSDP
		hooks.StreamerCandidate = t.AllowFromCandidate
		// The streamer relays too, as with Epic's stack: Epic's frontend with
		// ForceTURN keeps only relay candidates of the streamer. Its
		// allocation may reach what the players advertised to it.
		// It reaches TURN at a local address (see streamerTURN).
		streamerTURN := s.streamerTURN(t)
		hooks.StreamerPeerOptions = func(id string) json.RawMessage { t.MarkStreamer(id); return iceOptions(t, id, streamerTURN) }
		hooks.PlayerSDP = t.AllowFromPlayerSDP
		hooks.PlayerCandidate = t.AllowFromPlayerCandidate
		hooks.StreamerLeft = t.Revoke
		hooks.PlayerLeft = t.Revoke // every player connection, subscribed or not
	}
	hooks.Event = func(e signalling.Event) { s.onStreamEvent(st, e) }
	statusExtra := s.lc.timeLeft
	playerTLS, err := s.playerTLS()
	if err != nil {
		if st.turn != nil {
			_ = st.turn.Close()
		}
		return fmt.Errorf("start signalling: %w", err)
	}
	if s.cfg.PlayerPublic != "" {
		// /api/status says where players reach the session, not where it binds.
		pub := s.publicEndpoints("")
		statusExtra = func() map[string]any {
			m := s.lc.timeLeft()
			m["endpoints"] = pub
			return m
		}
	}

	// Without an http_port the player endpoint stays on loopback, reachable
	// only from the node (nomad alloc exec), never from the network.
	playerListen := s.cfg.PlayerListen
	if playerListen == "" {
		playerListen = "127.0.0.1:0"
	}
	// The streamer key goes to the app alone (its streamer URL); with the
	// peer check it keeps every other process on the node off the
	// streamer port.
	key, err := newStreamerKey()
	if err != nil {
		return err
	}
	st.key = key
	var peer func(local, remote net.Addr) error
	if s.cfg.Sandboxed {
		peer = streamerPeer(s.cfg.UID)
	}
	sig, err := playerhttp.Start(signalling.Config{
		StreamerListen: "127.0.0.1:0",
		StreamerID:     task.StreamerID, // its reconnect keeps the id (sameStreamerReturns); /readyz waits for it
		StreamerKey:    key,
		StreamerPeer:   peer,
		MaxPlayers:     task.MaxPlayers,
		Limits:         signalling.Limits{MaxConnectionsPerAddress: task.MaxConnectionsPerAddress},
		Hooks:          hooks,
		Registry:       registry,
		Logger:         s.logger.Named("signalling"),
	}, playerhttp.Config{
		Listen:         playerListen,
		PlayerToken:    task.Auth.Token,
		HTTPRoot:       s.optionalTaskPath(task.HTTPRoot),
		Frontend:       task.Frontend,
		Homepage:       task.Homepage,
		AllowedOrigins: task.AllowedOrigins,
		SessionID:      s.cfg.SessionID(),
		TLS:            playerTLS,
		Claim:          s.claimConfig(), // lifecycle.go: a gateway pool session
		StatusExtra:    statusExtra,
		Logger:         s.logger.Named("signalling"),
	})
	if err != nil {
		if st.turn != nil {
			_ = st.turn.Close()
		}
		return fmt.Errorf("start signalling: %w", err)
	}
	st.signalling = sig
	s.stream = st
	s.store.setComponent(sessionapi.Component{Name: "signalling", State: "running"})
	details := map[string]string{"streamer": "ws://" + sig.StreamerAddr().String()}
	msg := "Signalling listening for the streamer on " + sig.StreamerAddr().String()
	pub := s.publicEndpoints(sig.PlayerAddr().String())
	details["player"] = pub.Player
	msg += ", players on " + pub.Player
	if bound := sig.PlayerAddr().String(); s.cfg.PlayerPublic != "" && bound != s.cfg.PlayerPublic {
		details["player_bind"] = bound
		msg += " (bound to " + bound + " in the allocation's network namespace)"
	}
	if st.turn != nil {
		s.store.setComponent(sessionapi.Component{Name: "turn", State: "running"})
		details["turn"] = st.turn.Addr().String()
		turnAt := st.turn.Addr().String()
		if pub.TURN != "" && pub.TURN != turnAt {
			details["turn"], details["turn_bind"] = pub.TURN, turnAt
			turnAt = pub.TURN + " (bound to " + turnAt + ")"
		}
		msg += ", TURN on " + turnAt
	}
	s.store.emit(sessionapi.EventComponentStarted, msg, details)
	return nil
}

func (s *supervisor) onStreamEvent(st *stream, e signalling.Event) {
	s.store.update(func(state *sessionapi.State) {
		state.Streamers, state.Players = e.Streamers, e.Players
		// Ready is the configured streamer, not any: another id on the
		// streamer port does not make the session ready for a visitor.
		state.StreamReady = st.signalling != nil && st.signalling.Router.Ready()
	})
	switch e.Kind {
	case signalling.StreamerIdentified:
		if e.StreamerID == s.cfg.Task.StreamerID {
			s.store.emit(sessionapi.EventStreamReady, fmt.Sprintf("Stream ready: streamer %q connected", e.StreamerID),
				map[string]string{"streamer_id": e.StreamerID})
		}
	case signalling.StreamerReconnected:
		s.store.emit(sessionapi.EventStreamerReconnected, fmt.Sprintf("Streamer %q reconnected: its new connection replaced the stale one; its players reconnect", e.StreamerID),
			map[string]string{"streamer_id": e.StreamerID})
	case signalling.StreamerDisconnected:
		s.store.emit(sessionapi.EventStreamerDisconnected, fmt.Sprintf("Streamer %q disconnected", e.StreamerID),
			map[string]string{"streamer_id": e.StreamerID})
	case signalling.PlayerDisconnected:
		if st.turn != nil {
			st.turn.Revoke(e.PlayerID)
		}
		if e.Quality != "" {
			s.store.emit(sessionapi.EventPlayerQuality, fmt.Sprintf("Player %s %s", e.PlayerID, e.Quality),
				map[string]string{"player_id": e.PlayerID})
		}
	}
	// The lifecycle timers live on the supervise loop; hooks must not block.
	select {
	case s.streamEvents <- e:
	default:
		s.logger.Warn("stream event dropped: supervise loop busy", "event", e.Kind.String())
	}
}

// stop closes players cleanly, then drops TURN allocations.
func (st *stream) stop(log hclog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := st.signalling.Shutdown(ctx); err != nil {
		log.Warn("signalling did not shut down cleanly", "error", err)
	}
	if st.turn != nil {
		if err := st.turn.Close(); err != nil {
			log.Warn("TURN server did not close cleanly", "error", err)
		}
	}
}

func (s *supervisor) taskPath(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(s.cfg.TaskDir, p)
}

func (s *supervisor) optionalTaskPath(p string) string {
	if p == "" {
		return ""
	}
	return s.taskPath(p)
}

// newStreamerKey is 128 random bits, URL-safe: the path the app's streamer
// connects to.
func newStreamerKey() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("streamer key: %w", err)
	}
	return hex.EncodeToString(b), nil
}
