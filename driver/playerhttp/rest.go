package playerhttp

import (
	"net/http"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling"
	"github.com/pixelstream/nomad-driver-pixelstream/version"
)

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
	now := s.router.Status()
	st := map[string]any{
		"uptime":         now.Uptime.Seconds(),
		"streamer_count": len(now.Streamers),
		"player_count":   len(now.Players),
		"version":        version.Version,
		// Each player's latest stream quality report, by player id.
		"player_quality": s.router.PlayerQuality(),
	}
	extra := map[string]any{}
	if s.cfg.StatusExtra != nil {
		extra = s.cfg.StatusExtra()
	}
	if s.claims != nil {
		extra["state"] = string(s.claims.State())
	}
	for k, v := range extra {
		if _, taken := st[k]; !taken {
			st[k] = v
		}
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) apiStreamers(w http.ResponseWriter, _ *http.Request) {
	now := s.router.Status()
	ids := make([]string, 0, len(now.Streamers))
	for _, st := range now.Streamers {
		ids = append(ids, st.ID)
	}
	writeJSON(w, http.StatusOK, ids)
}

func (s *Server) apiStreamer(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	now := s.router.Status()
	players := make(map[string]signalling.PlayerStatus, len(now.Players))
	for _, p := range now.Players {
		players[p.ID] = p
	}
	for _, st := range now.Streamers {
		if st.ID != id {
			continue
		}
		info := apiStreamerInfo{StreamerID: st.ID, Type: typeName(st.SFU, "Streamer"), Streaming: true,
			RemoteAddress: st.Remote, Subscribers: []apiPlayerInfo{}}
		for _, pid := range st.Players {
			info.Subscribers = append(info.Subscribers, playerInfo(players[pid]))
		}
		writeJSON(w, http.StatusOK, info)
		return
	}
	notFound(w, "streamer", id)
}

func (s *Server) apiPlayers(w http.ResponseWriter, _ *http.Request) {
	now := s.router.Status()
	ids := make([]string, 0, len(now.Players))
	for _, p := range now.Players {
		ids = append(ids, p.ID)
	}
	writeJSON(w, http.StatusOK, ids)
}

func (s *Server) apiPlayer(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	for _, p := range s.router.Status().Players {
		if p.ID == id {
			writeJSON(w, http.StatusOK, playerInfo(p))
			return
		}
	}
	notFound(w, "player", id)
}

func playerInfo(p signalling.PlayerStatus) apiPlayerInfo {
	return apiPlayerInfo{PlayerID: p.ID, Type: typeName(p.SFU, "Player"), SubscribedTo: p.StreamerID, RemoteAddress: p.Remote}
}

// typeName is the type Epic's REST API gives a connection: "SFU", or what
// it otherwise is.
func typeName(sfu bool, otherwise string) string {
	if sfu {
		return "SFU"
	}
	return otherwise
}
