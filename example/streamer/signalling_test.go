package main

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

func TestICEServersFromConfig(t *testing.T) {
	tests := []struct {
		name    string
		json    string
		want    []webrtc.ICEServer
		wantErr string
	}{
		{"list of urls with credentials",
			`{"iceServers":[{"urls":["turn:1.2.3.4:3478?transport=udp","turn:1.2.3.4:3478?transport=tcp"],"username":"123:p","credential":"c"}]}`,
			[]webrtc.ICEServer{{URLs: []string{"turn:1.2.3.4:3478?transport=udp", "turn:1.2.3.4:3478?transport=tcp"}, Username: "123:p", Credential: "c"}}, ""},
		{"single url string", `{"iceServers":[{"urls":"stun:stun.example.org:19302"}]}`,
			[]webrtc.ICEServer{{URLs: []string{"stun:stun.example.org:19302"}, Credential: ""}}, ""},
		{"empty options", `{}`, nil, ""},
		{"urls of the wrong type", `{"iceServers":[{"urls":42}]}`, nil, "iceServers[0].urls: want a string or a list of strings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o peerConnectionOptions
			if err := json.Unmarshal([]byte(tt.json), &o); err != nil {
				t.Fatal(err)
			}
			got, err := o.servers()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestReconnectsWhenSignallingRestarts: like Unreal, the stand-in keeps
// trying a signalling server that went away, drops its players' peers (and
// with them the encoder), and serves players again once it is back.
func TestReconnectsWhenSignallingRestarts(t *testing.T) {
	d := startDisplay(t)
	ev1 := newIdentified()
	sig1 := startSignalling(t, "", ev1)
	addr := sig1.StreamerAddr().String()
	st := startStreamer(t, d, "ws://"+addr, nil, "-PixelStreamingID=again")
	ev1.wait(t, 1)
	before := newPlayer(t, sig1, "before", "again")
	before.waitUntil("a keyframe", func(p *player) bool { return p.keyframes >= 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sig1.Shutdown(ctx); err != nil {
		t.Fatalf("shut down signalling: %v", err)
	}
	st.log.waitLine(t, "signalling connection lost; reconnecting")
	st.log.waitLine(t, "video encoder stopped")

	ev2 := newIdentified()
	sig2 := startSignalling(t, addr, ev2)
	ev2.wait(t, 1)
	if got := ev2.ids[0]; got != "again" {
		t.Fatalf("re-identified as %q, want %q", got, "again")
	}
	after := newPlayer(t, sig2, "after", "again")
	after.waitUntil("a keyframe after the reconnect", func(p *player) bool { return p.keyframes >= 1 })
}
