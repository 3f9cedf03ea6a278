package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/ivfwriter"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/playerhttp"
)

// player is a Go stand-in for Epic's browser frontend: the player side of
// signalling, a receive-only peer connection and the data channel.
type player struct {
	t    *testing.T
	name string
	ws   *websocket.Conn
	wsMu sync.Mutex
	pc   *webrtc.PeerConnection

	dcOpen   chan *webrtc.DataChannel
	firstMsg chan []byte

	mu           sync.Mutex
	changed      chan struct{}
	videoPackets int
	keyframes    int
	audioPackets int
	width        int
	height       int
	rec          *ivfwriter.IVFWriter
	recFrames    int
	recKey       bool
	audio        [][]byte
}

func newPlayer(t *testing.T, s *playerhttp.Signalling, name, streamerID string) *player {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial("ws://"+s.PlayerAddr().String()+"/", nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		t.Fatalf("%s: dial signalling: %v", name, err)
	}
	p := &player{t: t, name: name, ws: ws, dcOpen: make(chan *webrtc.DataChannel, 1), firstMsg: make(chan []byte, 1), changed: make(chan struct{}, 1)}
	t.Cleanup(p.close)
	p.send(map[string]any{"type": "subscribe", "streamerId": streamerID})
	go p.readSignalling()
	return p
}

func (p *player) close() {
	_ = p.ws.Close()
	p.mu.Lock()
	pc := p.pc
	p.mu.Unlock()
	if pc != nil {
		_ = pc.Close()
	}
}

func (p *player) send(v any) {
	p.wsMu.Lock()
	defer p.wsMu.Unlock()
	if err := p.ws.WriteJSON(v); err != nil {
		p.t.Logf("%s: send: %v", p.name, err)
	}
}

func (p *player) readSignalling() {
	for {
		_, data, err := p.ws.ReadMessage()
		if err != nil {
			return
		}
		var m struct {
			Type      string                   `json:"type"`
			SDP       string                   `json:"sdp"`
			Candidate *webrtc.ICECandidateInit `json:"candidate"`
			Message   string                   `json:"message"`
		}
		if err := json.Unmarshal(data, &m); err != nil {
			p.t.Errorf("%s: signalling sent non-JSON: %s", p.name, data)
			return
		}
		switch m.Type {
		case "offer":
			if err := p.answer(m.SDP); err != nil {
				p.t.Errorf("%s: answer the offer: %v", p.name, err)
			}
		case "iceCandidate":
			p.mu.Lock()
			pc := p.pc
			p.mu.Unlock()
			if pc != nil && m.Candidate != nil {
				if err := pc.AddICECandidate(*m.Candidate); err != nil {
					p.t.Errorf("%s: add the streamer's candidate: %v", p.name, err)
				}
			}
		case "subscribeFailed":
			p.t.Errorf("%s: subscribe failed: %s", p.name, m.Message)
		}
	}
}

func (p *player) answer(sdp string) error {
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.pc = pc
	p.mu.Unlock()
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if tr.Kind() == webrtc.RTPCodecTypeVideo {
			p.readVideo(tr)
		} else {
			p.readAudio(tr)
		}
	})
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnOpen(func() { p.dcOpen <- dc })
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			select {
			case p.firstMsg <- m.Data:
			default:
			}
		})
	})
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			p.send(map[string]any{"type": "iceCandidate", "candidate": c.ToJSON()})
		}
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return err
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return err
	}
	if err := pc.SetLocalDescription(ans); err != nil {
		return err
	}
	p.send(map[string]any{"type": "answer", "sdp": ans.SDP})
	return nil
}

func (p *player) notify() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

func (p *player) readVideo(tr *webrtc.TrackRemote) {
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.videoPackets++
		w, h, key := vp8KeyframeSize(pkt)
		if key {
			p.keyframes++
			p.width, p.height = w, h
		}
		if p.rec != nil {
			if err := p.rec.WriteRTP(pkt); err != nil {
				p.t.Errorf("%s: record video: %v", p.name, err)
			}
			// Frames count from the first keyframe: the writer drops those before it.
			p.recKey = p.recKey || key
			if pkt.Marker && p.recKey {
				p.recFrames++
			}
		}
		p.mu.Unlock()
		p.notify()
	}
}

func (p *player) readAudio(tr *webrtc.TrackRemote) {
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.audioPackets++
		p.audio = append(p.audio, pkt.Payload)
		p.mu.Unlock()
		p.notify()
	}
}

// vp8KeyframeSize reports the picture size when pkt starts a VP8 keyframe.
func vp8KeyframeSize(pkt *rtp.Packet) (int, int, bool) {
	var vp8 codecs.VP8Packet
	if _, err := vp8.Unmarshal(pkt.Payload); err != nil || vp8.S != 1 || vp8.PID != 0 || len(vp8.Payload) < 10 {
		return 0, 0, false
	}
	b := vp8.Payload
	if b[0]&1 != 0 || b[3] != 0x9d || b[4] != 0x01 || b[5] != 0x2a {
		return 0, 0, false
	}
	w := int(b[6]) | int(b[7]&0x3f)<<8
	h := int(b[8]) | int(b[9]&0x3f)<<8
	return w, h, true
}

// waitUntil waits until cond holds on the player's counters.
func (p *player) waitUntil(what string, cond func(p *player) bool) {
	p.t.Helper()
	deadline := time.After(waitLong)
	for {
		p.mu.Lock()
		ok := cond(p)
		p.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-p.changed:
		case <-deadline:
			p.mu.Lock()
			defer p.mu.Unlock()
			p.t.Fatalf("%s: %s did not happen (video packets %d, keyframes %d, audio packets %d)", p.name, what, p.videoPackets, p.keyframes, p.audioPackets)
		}
	}
}

func (p *player) counts() (video, keyframes, audio int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.videoPackets, p.keyframes, p.audioPackets
}

// channel waits for the data channel the streamer opened.
func (p *player) channel() *webrtc.DataChannel {
	p.t.Helper()
	select {
	case dc := <-p.dcOpen:
		p.dcOpen <- dc
		return dc
	case <-time.After(waitLong):
		p.t.Fatalf("%s: the streamer's data channel did not open", p.name)
		return nil
	}
}

// frame records the stream from its next keyframe for a few frames, decodes
// the recording with ffmpeg and returns the last picture as RGB24.
func (p *player) frame(t *testing.T) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "recv.ivf")
	w, err := ivfwriter.New(path, ivfwriter.WithCodec(webrtc.MimeTypeVP8))
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.rec, p.recFrames, p.recKey = w, 0, false
	p.mu.Unlock()
	p.waitUntil("recording 40 frames", func(p *player) bool { return p.recFrames >= 40 })
	p.mu.Lock()
	p.rec = nil
	p.mu.Unlock()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ffmpeg", "-hide_banner", "-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1").Output()
	if err != nil {
		t.Fatalf("decode the received video with ffmpeg: %v", err)
	}
	size := testW * testH * 3
	if len(out) < size || len(out)%size != 0 {
		t.Fatalf("decoded %d bytes, not a whole number of %dx%d frames", len(out), testW, testH)
	}
	return out[len(out)-size:]
}

func pixel(rgb24 []byte, x, y int) [3]uint8 {
	i := (y*testW + x) * 3
	return [3]uint8{rgb24[i], rgb24[i+1], rgb24[i+2]}
}

// near allows for VP8's lossy colour.
func near(got [3]uint8, want rgb) bool {
	d := func(a, b uint8) int { return max(int(a)-int(b), int(b)-int(a)) }
	return d(got[0], want.r) <= 48 && d(got[1], want.g) <= 48 && d(got[2], want.b) <= 48
}
