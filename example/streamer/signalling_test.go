package main

import (
	"context"
	"encoding/json"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/playerhttp"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling"
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

// freezer forwards TCP connections to target until froze is closed; from
// then on it holds every connection open and forwards nothing, as a network
// path that died without a FIN or RST. New connections after the freeze are
// forwarded normally.
type freezer struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	frozen chan struct{} // closed by freeze; replaced for connections after it
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target, frozen: make(chan struct{})}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				_ = in.Close()
				continue
			}
			t.Cleanup(func() { _ = in.Close(); _ = out.Close() })
			f.mu.Lock()
			frozen := f.frozen
			f.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					select {
					case <-frozen:
						<-make(chan struct{}) // hold the connection, forward nothing
					default:
					}
					if n > 0 {
						if _, werr := dst.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}
			go pipe(out, in)
			go pipe(in, out)
		}
	}()
	return f
}

// freeze stops the connections made so far.
func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.frozen)
	f.frozen = make(chan struct{})
}

// TestReconnectsAfterSilentSocket: the stand-in's signalling path dies
// without a close (the server still holds the old connection: its own ping
// sweep would take up to a minute). Like PixelStreaming2, the stand-in's
// keep-alive notices, it reconnects on its reconnect interval, and the
// session's streamer id is kept: the new connection replaces the stale one,
// and a new player streams from it.
func TestReconnectsAfterSilentSocket(t *testing.T) {
	d := startDisplay(t)
	ev := newIdentified()
	sig := startSignalling(t, "", ev, func(c *signalling.Config) { c.StreamerID = "kept" })
	path := newFreezer(t, sig.StreamerAddr().String())
	st := startStreamer(t, d, "ws://"+path.ln.Addr().String(), nil, "-PixelStreamingID=kept",
		"-PixelStreamingSignallingKeepAliveInterval=0.5", "-PixelStreamingSignallingReconnectInterval=0.2")
	ev.wait(t, 1)
	before := newPlayer(t, sig, "before", "kept")
	before.waitUntil("a keyframe", func(p *player) bool { return p.keyframes >= 1 })

	path.freeze()
	st.log.waitLine(t, "signalling connection lost; reconnecting")
	deadline := time.Now().Add(waitLong)
	for counter(t, sig, "pixelstream_signalling_rejected_total", "replaced_by_reconnect") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the reconnected stand-in never replaced its stale connection; streamers: %+v", sig.Router.Status().Streamers)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := sig.Router.Status(); len(st.Streamers) != 1 || st.Streamers[0].ID != "kept" {
		t.Fatalf("streamers after the reconnect: %+v, want kept alone", st.Streamers)
	}
	if !sig.Router.Ready() {
		t.Fatal("the session is not ready after its streamer reconnected")
	}
	after := newPlayer(t, sig, "after", "kept")
	after.waitUntil("a keyframe after the reconnect", func(p *player) bool { return p.keyframes >= 1 })
	// The keep-alive is the protocol's ping message, every interval.
	deadline = time.Now().Add(waitLong)
	for counter(t, sig, "pixelstream_signalling_messages_received_total", "ping") < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the server received no keep-alive ping from the stand-in")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// counter reads a counter of the server's streamer endpoint whose other
// label (type or reason) is value.
func counter(t *testing.T, sig *playerhttp.Signalling, name, value string) float64 {
	t.Helper()
	families, err := sig.Router.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var endpoint, other string
			for _, l := range m.GetLabel() {
				if l.GetName() == "endpoint" {
					endpoint = l.GetValue()
				} else {
					other = l.GetValue()
				}
			}
			if endpoint == "streamer" && other == value {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
