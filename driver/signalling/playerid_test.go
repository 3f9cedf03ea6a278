package signalling

import (
	"fmt"
	"testing"
)

// TestPlayerIDOnEveryForwardedType: every message a streamer (or SFU)
// forwards to a player arrives with the player's own playerId, as Wilbur
// master forwards it (Epic's ue5.7 frontend keeps it); an id the streamer
// sent as a number arrives as a string, the other members byte for byte.
func TestPlayerIDOnEveryForwardedType(t *testing.T) {
	s := startServer(t, Config{})
	st := newStreamer(t, s, "S")
	p := newPlayer(t, s, "player")
	pid := subscribe(t, p, st, "S")
	for _, tc := range []struct{ sent, want string }{
		{fmt.Sprintf(`{"type":"offer","playerId":%q,"sdp":"v=0 offer"}`, pid),
			fmt.Sprintf(`{"type":"offer","sdp":"v=0 offer","playerId":%q}`, pid)},
		{fmt.Sprintf(`{"type":"answer","sdp":"v=0 answer","playerId":%q}`, pid),
			fmt.Sprintf(`{"type":"answer","sdp":"v=0 answer","playerId":%q}`, pid)},
		{fmt.Sprintf(`{"type":"iceCandidate","playerId":%s,"candidate":{"candidate":"candidate:1 1 udp 1 192.0.2.1 9 typ host","sdpMid":"0","sdpMLineIndex":0}}`, pid),
			fmt.Sprintf(`{"type":"iceCandidate","candidate":{"candidate":"candidate:1 1 udp 1 192.0.2.1 9 typ host","sdpMid":"0","sdpMLineIndex":0},"playerId":%q}`, pid)},
	} {
		st.send(tc.sent)
		p.expect(tc.want)
	}

	// From an SFU: offer and peerDataChannels.
	sfuSrv := startServer(t, Config{SFUListen: "127.0.0.1:0"})
	sfu := dial(t, "sfu", "ws://"+sfuSrv.SFUAddr().String()+"/", nil)
	sfu.expect(wantIdentify)
	sfu.expect(wantConfig)
	sfu.send(`{"type":"endpointId","id":"SFU"}`)
	sfu.expect(`{"type":"endpointIdConfirm","committedId":"SFU"}`)
	sp := newPlayer(t, sfuSrv, "sfu player")
	sp.send(`{"type":"subscribe","streamerId":"SFU"}`)
	// The SFU's own connection holds player id 1; its player is 2.
	sfu.expect(`{"type":"playerConnected","playerId":"2","dataChannel":true,"sfu":false}`)
	sfu.send(`{"type":"offer","playerId":"2","sdp":"sfu offer","sfu":true}`)
	sp.expect(`{"type":"offer","sdp":"sfu offer","sfu":true,"playerId":"2"}`)
	sfu.send(`{"type":"peerDataChannels","playerId":"2","sendStreamId":2,"recvStreamId":1}`)
	sp.expect(`{"type":"peerDataChannels","sendStreamId":2,"recvStreamId":1,"playerId":"2"}`)
}
