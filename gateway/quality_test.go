package gateway_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestNodeQualityMetrics: a player's quality report reaches its session
// and, through the session's claim state, the gateway's /metrics per node.
func TestNodeQualityMetrics(t *testing.T) {
	s := session(t, false)
	base := startGateway(t, fakeNomad(t, s), 1)
	eventually(t, "the gateway to see the session free", func() bool { return free(t, base) == 1 })
	v := newVisitor(t, base)
	if resp, _ := v.navigate(); resp.StatusCode != http.StatusOK {
		t.Fatalf("visitor: HTTP %d", resp.StatusCode)
	}
	ws := v.player()
	defer ws.Close()
	report, _ := json.Marshal(map[string]any{"fps": 29.5, "rttMs": 20, "freezeCount": 2, "packetsLost": 1, "packetsReceived": 99, "framesDecoded": 300, "candidate": "relay"})
	if err := ws.WriteJSON(map[string]string{"type": "stats", "data": string(report)}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`pixelstream_gateway_node_players{node="node"} 1`, `pixelstream_gateway_node_player_fps{node="node"} 29.5`,
		`pixelstream_gateway_node_player_rtt_seconds{node="node"} 0.02`, `pixelstream_gateway_node_player_freezes{node="node"} 2`,
		`pixelstream_gateway_node_player_packet_loss_ratio{node="node"} 0.01`, `pixelstream_gateway_node_relay_players{node="node"} 1`,
	}
	var last string
	eventually(t, "the node's quality in the gateway's /metrics", func() bool {
		allocMu.Lock()
		op := operatorOf[base]
		allocMu.Unlock()
		req, _ := http.NewRequest(http.MethodGet, op+"/metrics", nil)
		req.Header.Set("Authorization", opHeader)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = string(b)
		for _, w := range want {
			if !strings.Contains(last, w+"\n") {
				return false
			}
		}
		return true
	})
}
