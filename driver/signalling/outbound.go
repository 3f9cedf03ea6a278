package signalling

import "encoding/json"

// The messages the server itself writes. Each is built byte by byte so its
// shape is exactly the protocol's: these fields, this order, nothing more.

func msgIdentify() []byte { return []byte(`{"type":"identify"}`) }

func msgConfig(peerOptions json.RawMessage) []byte {
	out := make([]byte, 0, 64+len(peerOptions))
	out = append(out, `{"type":"config","peerConnectionOptions":`...)
	out = append(out, peerOptions...)
	out = append(out, `,"protocolVersion":"`+ProtocolVersion+`"}`...)
	return out
}

func msgEndpointIDConfirm(id string) []byte {
	out := []byte(`{"type":"endpointIdConfirm","committedId":`)
	out = appendString(out, id)
	return append(out, '}')
}

func msgPong(t json.RawMessage) []byte {
	out := make([]byte, 0, 24+len(t))
	out = append(out, `{"type":"pong","time":`...)
	out = append(out, t...)
	return append(out, '}')
}

func msgStreamerList(ids []string) []byte {
	out := []byte(`{"type":"streamerList","ids":[`)
	for i, id := range ids {
		if i > 0 {
			out = append(out, ',')
		}
		out = appendString(out, id)
	}
	return append(out, "]}"...)
}

func msgPlayerConnected(playerID string, sfu bool) []byte {
	out := []byte(`{"type":"playerConnected","playerId":`)
	out = appendString(out, playerID)
	if sfu {
		// Epic's server tells the streamer that an SFU expects the offer.
		return append(out, `,"dataChannel":true,"sfu":true,"sendOffer":true}`...)
	}
	return append(out, `,"dataChannel":true,"sfu":false}`...)
}

func msgPlayerDisconnected(playerID string) []byte {
	out := []byte(`{"type":"playerDisconnected","playerId":`)
	out = appendString(out, playerID)
	return append(out, '}')
}

func msgSubscribeFailed(text string) []byte {
	out := []byte(`{"type":"subscribeFailed","message":`)
	out = appendString(out, text)
	return append(out, '}')
}

func msgStreamerIDChanged(newID string) []byte {
	out := []byte(`{"type":"streamerIdChanged","newID":`)
	out = appendString(out, newID)
	return append(out, '}')
}

func msgStreamerDisconnected() []byte { return []byte(`{"type":"streamerDisconnected"}`) }

// msgSessionWarning is not one of Epic's messages: it is sent only when the
// session has a maximum duration, to tell players it will end. Epic's
// frontend passes unknown types to its "unhandled" listeners and carries on;
// this project's player page shows it as a banner.
func msgSessionWarning(text string, secondsLeft int) []byte {
	b, _ := json.Marshal(struct {
		Type        string `json:"type"`
		Message     string `json:"message"`
		SecondsLeft int    `json:"secondsLeft"`
	}{"sessionWarning", text, secondsLeft})
	return b
}
