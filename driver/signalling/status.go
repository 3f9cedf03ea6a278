package signalling

import (
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/pixelstream/nomad-driver-pixelstream/version"
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
	Players []string // subscribed player ids
}

// PlayerStatus is one connected player.
type PlayerStatus struct {
	ID         string
	StreamerID string // "" while not subscribed
	SFU        bool
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
		ss := StreamerStatus{ID: c.streamerID, SFU: c.role == roleSFU, Players: make([]string, 0, len(c.subscribers))}
		for p := range c.subscribers {
			ss.Players = append(ss.Players, p.playerID)
		}
		sortIDs(ss.Players)
		st.Streamers = append(st.Streamers, ss)
	}
	for id, p := range s.players {
		ps := PlayerStatus{ID: id, SFU: p.role == roleSFU}
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

// The REST API mirrors the shapes of Epic's signalling server.

type apiPlayerInfo struct {
	PlayerID      string `json:"playerId"`
	Type          string `json:"type"`
	SubscribedTo  string `json:"subscribedTo,omitempty"`
	RemoteAddress string `json:"remoteAddress"`
}

type apiStreamerInfo struct {
	StreamerID    string          `json:"streamerId"`
	Type          string          `json:"type"`
	Streaming     bool            `json:"streaming"`
	RemoteAddress string          `json:"remoteAddress"`
	Subscribers   []apiPlayerInfo `json:"subscribers"`
}

func (s *Server) apiStatus(w http.ResponseWriter, _ *http.Request) {
	s.mu.RLock()
	streamers, players := len(s.order), len(s.players)
	s.mu.RUnlock()
	st := map[string]any{
		"uptime":         time.Since(s.started).Seconds(),
		"streamer_count": streamers,
		"player_count":   players,
		"version":        version.Version,
	}
	if s.cfg.Hooks.StatusExtra != nil {
		for k, v := range s.cfg.Hooks.StatusExtra() {
			if _, taken := st[k]; !taken {
				st[k] = v
			}
		}
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) apiStreamers(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.listedIDs())
}

func (s *Server) apiStreamer(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.RLock()
	c := s.streamers[id]
	var info apiStreamerInfo
	if c != nil {
		info = apiStreamerInfo{StreamerID: c.streamerID, Type: typeName(c.role), Streaming: c.listed,
			RemoteAddress: c.remote, Subscribers: []apiPlayerInfo{}}
		for p := range c.subscribers {
			info.Subscribers = append(info.Subscribers, playerInfo(p))
		}
	}
	s.mu.RUnlock()
	if c == nil {
		notFound(w, "streamer", id)
		return
	}
	sort.Slice(info.Subscribers, func(i, j int) bool { return idLess(info.Subscribers[i].PlayerID, info.Subscribers[j].PlayerID) })
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) apiPlayers(w http.ResponseWriter, _ *http.Request) {
	s.mu.RLock()
	ids := make([]string, 0, len(s.players))
	for id := range s.players {
		ids = append(ids, id)
	}
	s.mu.RUnlock()
	sortIDs(ids)
	writeJSON(w, http.StatusOK, ids)
}

func (s *Server) apiPlayer(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.RLock()
	p := s.players[id]
	var info apiPlayerInfo
	if p != nil {
		info = playerInfo(p)
	}
	s.mu.RUnlock()
	if p == nil {
		notFound(w, "player", id)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// playerInfo describes p; callers hold s.mu.
func playerInfo(p *conn) apiPlayerInfo {
	info := apiPlayerInfo{PlayerID: p.playerID, Type: typeName(p.role), RemoteAddress: p.remote}
	if p.sub != nil {
		info.SubscribedTo = p.sub.streamerID
	}
	return info
}

func typeName(r role) string {
	switch r {
	case roleStreamer:
		return "Streamer"
	case roleSFU:
		return "SFU"
	}
	return "Player"
}
