package signalling

import (
	"encoding/json"
	"sort"
	"strconv"
	"time"
)

// Status is a snapshot of the server for the session supervisor.
type Status struct {
	Uptime    time.Duration
	Streamers []StreamerStatus // listed streamers, in the order they identified
	Players   []PlayerStatus   // every connected player, by id
}

// StreamerStatus is one listed streamer (or SFU).
type StreamerStatus struct {
	ID      string
	SFU     bool
	Remote  string   // the connection's remote address
	Players []string // subscribed player ids
}

// PlayerStatus is one connected player.
type PlayerStatus struct {
	ID         string
	StreamerID string // "" while not subscribed
	SFU        bool
	Remote     string // the connection's remote address
}

// WarnPlayers sends every connected player a sessionWarning message (see
// msgSessionWarning) and returns how many received it.
func (s *Server) WarnPlayers(text string, secondsLeft int) int {
	msg := msgSessionWarning(text, secondsLeft)
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, p := range s.players {
		if p.role == rolePlayer {
			p.send(msg)
			n++
		}
	}
	return n
}

// Status returns who is connected to whom.
func (s *Server) Status() Status {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := Status{Uptime: time.Since(s.started)}
	for _, c := range s.order {
		ss := StreamerStatus{ID: c.streamerID, SFU: c.role == roleSFU, Remote: c.remote, Players: make([]string, 0, len(c.subscribers))}
		for p := range c.subscribers {
			ss.Players = append(ss.Players, p.playerID)
		}
		sortIDs(ss.Players)
		st.Streamers = append(st.Streamers, ss)
	}
	for id, p := range s.players {
		ps := PlayerStatus{ID: id, SFU: p.role == roleSFU, Remote: p.remote}
		if p.sub != nil {
			ps.StreamerID = p.sub.streamerID
		}
		st.Players = append(st.Players, ps)
	}
	sort.Slice(st.Players, func(i, j int) bool { return idLess(st.Players[i].ID, st.Players[j].ID) })
	return st
}

// idLess orders numeric ids numerically.
func idLess(a, b string) bool {
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	if errA == nil && errB == nil {
		return x < y
	}
	return a < b
}

func sortIDs(ids []string) { sort.Slice(ids, func(i, j int) bool { return idLess(ids[i], ids[j]) }) }

// Ready reports whether a streamer has identified (the session's readiness).
func (s *Server) Ready() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if id := s.cfg.StreamerID; id != "" {
		_, ok := s.streamers[id]
		return ok
	}
	return len(s.order) > 0
}

// CountRejectedPlayer counts a player request the player port refused, in
// pixelstream_signalling_rejected_total{endpoint="player"}; reason is one of
// the Reason constants.
func (s *Server) CountRejectedPlayer(reason string) { s.metrics.reject(rolePlayer, reason) }

// MaxPlayers is the cap of players subscribed to one streamer (0 = none).
func (s *Server) MaxPlayers() int { return s.cfg.MaxPlayers }

// PeerConnectionOptions is the static peerConnectionOptions object of config
// messages (credentials included: callers redact what they show).
func (s *Server) PeerConnectionOptions() json.RawMessage { return s.static }
