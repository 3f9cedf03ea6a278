package playerhttp

import (
	_ "embed" // openapi.json
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling"
	"github.com/pixelstream/nomad-driver-pixelstream/version"
)

// The REST API answers in the shapes of Epic's signalling server (Wilbur,
// --rest_api), so dashboards and Epic's own CI scripts work unchanged:
// testdata/wilbur holds Wilbur's answers, recorded from its sources, and the
// tests compare ours with them field by field.

// The REST API's routes, below the player port's root.
const (
	RouteStatus        = "/api/status"
	RouteStreamers     = "/api/streamers"
	RouteStreamer      = "/api/streamers/{id}"
	RoutePlayers       = "/api/players"
	RoutePlayer        = "/api/players/{id}"
	RouteConfig        = "/api/config"
	RouteAPIDefinition = "/api/api-definition"
)

// apiPlayerInfo is Wilbur's IPlayerInfo.
type apiPlayerInfo struct {
	PlayerID      string `json:"playerId"`
	Type          string `json:"type"`                   // "Player" or "SFU"
	SubscribedTo  string `json:"subscribedTo,omitempty"` // absent while not subscribed, as Wilbur's undefined
	RemoteAddress string `json:"remoteAddress"`
}

// apiStreamerInfo is Wilbur's IStreamerInfo.
type apiStreamerInfo struct {
	StreamerID    string          `json:"streamerId"`
	Type          string          `json:"type"` // "Streamer" or "SFU"
	Streaming     bool            `json:"streaming"`
	RemoteAddress string          `json:"remoteAddress"`
	Subscribers   []apiPlayerInfo `json:"subscribers"`
}

// apiError is Wilbur's error body.
type apiError struct {
	Message string `json:"message"`
}

func (s *Server) apiStatus(w http.ResponseWriter, _ *http.Request) {
	now := s.router.Status()
	st := map[string]any{
		"uptime":         now.Uptime.Milliseconds(), // Wilbur: milliseconds
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

// apiStreamers lists every streamer with its subscribers, as Wilbur does.
func (s *Server) apiStreamers(w http.ResponseWriter, _ *http.Request) {
	now := s.router.Status()
	players := playersByID(now)
	out := make([]apiStreamerInfo, 0, len(now.Streamers))
	for _, st := range now.Streamers {
		out = append(out, streamerInfo(st, players))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiStreamer(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	now := s.router.Status()
	for _, st := range now.Streamers {
		if st.ID == id {
			writeJSON(w, http.StatusOK, streamerInfo(st, playersByID(now)))
			return
		}
	}
	writeJSON(w, http.StatusNotFound, apiError{Message: "No streamer id matches " + id + "."})
}

func (s *Server) apiPlayers(w http.ResponseWriter, _ *http.Request) {
	now := s.router.Status()
	out := make([]apiPlayerInfo, 0, len(now.Players))
	for _, p := range now.Players {
		out = append(out, playerInfo(p))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiPlayer(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	for _, p := range s.router.Status().Players {
		if p.ID == id {
			writeJSON(w, http.StatusOK, playerInfo(p))
			return
		}
	}
	writeJSON(w, http.StatusNotFound, apiError{Message: "No player ID matches " + id + "."})
}

// apiConfig answers Wilbur's /api/config shape ({config, protocolConfig})
// with what a client may know: no listen addresses of the loopback streamer
// port, no tokens, and TURN credentials in peerConnectionOptions replaced by
// "<redacted>" (Wilbur dumps its whole configuration).
func (s *Server) apiConfig(w http.ResponseWriter, _ *http.Request) {
	_, port, _ := net.SplitHostPort(s.Addr().String())
	playerPort, _ := strconv.Atoi(port)
	lim := s.router.Limits()
	page := "embedded " + s.frontend()
	if s.cfg.HTTPRoot != "" {
		page = "http_root"
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"config": map[string]any{
			"playerPort":     playerPort,
			"maxSubscribers": s.router.MaxPlayers(),
			"serve":          true,
			"homepage":       s.homepage(),
			"page":           page,
			"rest_api":       true,
			"https":          s.cfg.TLS != nil,
			"auth":           s.cfg.PlayerToken != "",
			"limits": map[string]any{
				"maxMessageBytes":          lim.MaxMessageBytes,
				"messagesPerSecond":        lim.MessagesPerSecond,
				"maxConnectionsPerAddress": lim.MaxConnectionsPerAddress,
			},
		},
		"protocolConfig": map[string]any{
			"protocolVersion":       signalling.ProtocolVersion,
			"peerConnectionOptions": redactCredentials(s.router.PeerConnectionOptions()),
		},
	})
}

// redactCredentials replaces the value of every "credential", "username"
// and "password" member, at any depth, with "<redacted>".
func redactCredentials(raw json.RawMessage) any {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return map[string]any{}
	}
	var walk func(any) any
	walk = func(v any) any {
		switch t := v.(type) {
		case map[string]any:
			for k, e := range t {
				switch strings.ToLower(k) {
				case "credential", "username", "password":
					t[k] = "<redacted>"
				default:
					t[k] = walk(e)
				}
			}
		case []any:
			for i, e := range t {
				t[i] = walk(e)
			}
		}
		return v
	}
	return walk(v)
}

// apiDefinition serves the OpenAPI document of this API (openapi.json).
func apiDefinition(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(openAPIDocument)
}

// openAPIDocument is the API's OpenAPI 3 description, kept beside the code
// and checked against the routes by TestAPIDefinitionMatchesRoutes.
//
//go:embed openapi.json
var openAPIDocument []byte

func playersByID(now signalling.Status) map[string]signalling.PlayerStatus {
	m := make(map[string]signalling.PlayerStatus, len(now.Players))
	for _, p := range now.Players {
		m[p.ID] = p
	}
	return m
}

func streamerInfo(st signalling.StreamerStatus, players map[string]signalling.PlayerStatus) apiStreamerInfo {
	info := apiStreamerInfo{StreamerID: st.ID, Type: typeName(st.SFU, "Streamer"), Streaming: true,
		RemoteAddress: hostOnly(st.Remote), Subscribers: []apiPlayerInfo{}}
	for _, pid := range st.Players {
		info.Subscribers = append(info.Subscribers, playerInfo(players[pid]))
	}
	return info
}

func playerInfo(p signalling.PlayerStatus) apiPlayerInfo {
	return apiPlayerInfo{PlayerID: p.ID, Type: typeName(p.SFU, "Player"), SubscribedTo: p.StreamerID, RemoteAddress: hostOnly(p.Remote)}
}

// hostOnly is the address without its port, as Wilbur reports it.
func hostOnly(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// typeName is the type Epic's REST API gives a connection: "SFU", or what
// it otherwise is.
func typeName(sfu bool, otherwise string) string {
	if sfu {
		return "SFU"
	}
	return otherwise
}
