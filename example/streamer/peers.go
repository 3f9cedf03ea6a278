package main

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// relayAcceptanceWait is how long the stand-in lets a direct pair win
// before it nominates a relay pair.
const relayAcceptanceWait = 200 * time.Millisecond

// peerManager holds one peer connection per player, all fed by the same
// tracks: one encoder serves every player, as in Unreal.
type peerManager struct {
	api   *webrtc.API
	log   hclog.Logger
	send  func(v any) error
	media *mediaHub
	// clip, when set, gives every peer a video track of its own played
	// from memory (-StandInClip).
	clip   *clip
	onData func(playerID string, msg []byte)
	// onLeave is called when a player's peer is closed.
	onLeave func(playerID string)

	mu         sync.Mutex
	iceServers []webrtc.ICEServer
	peers      map[string]*peer
}

// peer is one player's connection. ICE candidates that arrive before the
// answer wait in pending: pion needs the remote description first.
type peer struct {
	id string
	pc *webrtc.PeerConnection

	mu        sync.Mutex
	remoteSet bool
	pending   []webrtc.ICECandidateInit
	closed    bool
	watching  bool // holds a reference on the encoders
	clipTrack *webrtc.TrackLocalStaticSample
}

// startMedia takes a reference on the encoders once the peer is connected,
// not at playerConnected: a cold encoder's first frame is a keyframe, and
// sent before the peer can receive it, the player would wait for the next.
func (p *peer) startMedia(h *mediaHub) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.watching || p.closed {
		return
	}
	p.watching = true
	h.acquire()
}

// startClip plays the clip on the peer's own track once it is connected.
func (p *peer) startClip(c *clip) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.clipTrack != nil && !p.closed {
		c.start(p.clipTrack)
	}
}

func newPeerManager(log hclog.Logger, send func(any) error, media *mediaHub, onData func(string, []byte), onLeave func(string)) (*peerManager, error) {
	m, err := mediaEngine()
	if err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, err
	}
	var se webrtc.SettingEngine
	// A browser on the same host may only reach us over loopback.
	se.SetIncludeLoopbackCandidate(true)
	// As the offerer the stand-in nominates the pair. pion waits 500 ms
	// before it nominates a server- or peer-reflexive pair and 2 s before a
	// relay pair (to give a direct pair the chance to win), which a visitor
	// pays before its first frame: a browser behind NAT, or any player with
	// ?ForceTURN. Unreal's WebRTC stack has no such waits; a relay pair
	// still waits a little, so a direct pair found at the same time wins.
	se.SetSrflxAcceptanceMinWait(0)
	se.SetPrflxAcceptanceMinWait(0)
	se.SetRelayAcceptanceMinWait(relayAcceptanceWait)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	return &peerManager{api: api, log: log, send: send, media: media, onData: onData, onLeave: onLeave, peers: map[string]*peer{}}, nil
}

func (pm *peerManager) setICEServers(s []webrtc.ICEServer) {
	pm.mu.Lock()
	pm.iceServers = s
	pm.mu.Unlock()
}

// mediaEngine offers only the codecs the stand-in sends: the frontend lists
// the offered codecs as the player's choices, and a choice the encoder
// cannot honour would be a lie.
func mediaEngine() (*webrtc.MediaEngine, error) {
	m := &webrtc.MediaEngine{}
	video := webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000,
			RTCPFeedback: []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}},
		PayloadType: 96,
	}
	audio := webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: opusRate, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1;stereo=1;sprop-stereo=1"},
		PayloadType:        111,
	}
	if err := m.RegisterCodec(video, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, fmt.Errorf("register VP8: %w", err)
	}
	if err := m.RegisterCodec(audio, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, fmt.Errorf("register Opus: %w", err)
	}
	return m, nil
}

// connected builds the player's peer and sends it the offer, as Unreal does
// on playerConnected.
func (pm *peerManager) connected(playerID string, dataChannel, sfu bool) {
	log := pm.log.With("player", playerID)
	log.Info("player connected", "data_channel", dataChannel, "sfu", sfu)
	if sfu {
		log.Warn("the stand-in sends one layer; an SFU gets no simulcast")
	}
	pm.disconnected(playerID) // a reused id replaces its old peer

	pm.mu.Lock()
	servers := pm.iceServers
	pm.mu.Unlock()
	pc, err := pm.api.NewPeerConnection(webrtc.Configuration{ICEServers: servers})
	if err != nil {
		log.Error("create peer connection", "error", err)
		pm.reject(playerID, "streamer could not create a peer connection")
		return
	}
	p := &peer{id: playerID, pc: pc}
	if err := pm.setup(p, dataChannel, log); err != nil {
		log.Error("set up peer connection", "error", err)
		_ = pc.Close()
		pm.reject(playerID, "streamer could not set up the stream")
		return
	}
	pm.mu.Lock()
	pm.peers[playerID] = p
	pm.mu.Unlock()

	offer, err := pc.CreateOffer(nil)
	if err == nil {
		err = pc.SetLocalDescription(offer)
	}
	if err != nil {
		log.Error("create offer", "error", err)
		pm.disconnected(playerID)
		pm.reject(playerID, "streamer could not create an offer")
		return
	}
	if err := pm.send(map[string]any{"type": "offer", "playerId": playerID, "sdp": offer.SDP}); err != nil {
		log.Error("send offer", "error", err)
		return
	}
	log.Info("offer sent")
}

func (pm *peerManager) setup(p *peer, dataChannel bool, log hclog.Logger) error {
	tracks := pm.media.tracks()
	if pm.clip != nil {
		t, err := pm.clip.newTrack()
		if err != nil {
			return err
		}
		p.clipTrack = t
		tracks = append([]webrtc.TrackLocal{t}, tracks...)
	}
	for _, track := range tracks {
		tr, err := p.pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			return err
		}
		// Reading RTCP lets the interceptors (NACK, reports) do their work.
		go func(s *webrtc.RTPSender) {
			buf := make([]byte, 1500)
			for {
				if _, _, err := s.Read(buf); err != nil {
					return
				}
			}
		}(tr.Sender())
	}
	if dataChannel {
		ordered := true
		dc, err := p.pc.CreateDataChannel("datachannel", &webrtc.DataChannelInit{Ordered: &ordered})
		if err != nil {
			return err
		}
		dc.OnOpen(func() {
			log.Info("data channel open")
			for _, msg := range protocolMessages() {
				if err := dc.Send(msg); err != nil {
					log.Warn("send protocol description", "error", err)
				}
			}
		})
		dc.OnMessage(func(msg webrtc.DataChannelMessage) { pm.onData(p.id, msg.Data) })
	}
	p.pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return // end of gathering; Unreal sends nothing for it either
		}
		if err := pm.send(map[string]any{"type": "iceCandidate", "playerId": p.id, "candidate": c.ToJSON()}); err != nil {
			log.Warn("send ICE candidate", "error", err)
		}
	})
	p.pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		log.Info("peer connection state", "state", s.String())
		if s == webrtc.PeerConnectionStateConnected {
			p.startMedia(pm.media)
			if pm.clip != nil {
				p.startClip(pm.clip)
			}
		}
		if s == webrtc.PeerConnectionStateFailed {
			// Ask the server to drop the player so its frontend can
			// reconnect. Not inline: closing from pion's callback would
			// wait on the goroutine running it.
			go func() {
				if pm.remove(p) {
					pm.reject(p.id, "WebRTC connection failed")
				}
			}()
		}
	})
	return nil
}

// reject asks the signalling server to drop a player the stand-in cannot serve.
func (pm *peerManager) reject(playerID, reason string) {
	if err := pm.send(map[string]any{"type": "disconnectPlayer", "playerId": playerID, "reason": reason}); err != nil {
		pm.log.Warn("send disconnectPlayer", "player", playerID, "error", err)
	}
}

func (pm *peerManager) get(playerID string) *peer {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	return pm.peers[playerID]
}

func (pm *peerManager) answer(playerID, sdp string) {
	p := pm.get(playerID)
	if p == nil {
		pm.log.Warn("answer for unknown player; ignored", "player", playerID)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		pm.log.Error("apply answer", "player", playerID, "error", err)
		return
	}
	p.remoteSet = true
	for _, c := range p.pending {
		pm.addCandidate(p, c)
	}
	p.pending = nil
	pm.log.Info("answer applied", "player", playerID)
}

func (pm *peerManager) candidate(playerID string, c webrtc.ICECandidateInit) {
	p := pm.get(playerID)
	if p == nil {
		pm.log.Warn("ICE candidate for unknown player; ignored", "player", playerID)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.remoteSet {
		p.pending = append(p.pending, c)
		return
	}
	pm.addCandidate(p, c)
}

func (pm *peerManager) addCandidate(p *peer, c webrtc.ICECandidateInit) {
	if c.Candidate == "" {
		return // end-of-candidates marker
	}
	if err := p.pc.AddICECandidate(c); err != nil {
		pm.log.Warn("add ICE candidate", "player", p.id, "candidate", c.Candidate, "error", err)
	}
}

// disconnected closes the player's peer; it is a no-op for unknown players.
func (pm *peerManager) disconnected(playerID string) {
	pm.mu.Lock()
	p := pm.peers[playerID]
	delete(pm.peers, playerID)
	pm.mu.Unlock()
	if p == nil {
		return
	}
	pm.close(p)
	pm.log.Info("player disconnected", "player", playerID)
}

// remove closes p unless it is already gone (or replaced under its id),
// and reports whether it did.
func (pm *peerManager) remove(p *peer) bool {
	pm.mu.Lock()
	mine := pm.peers[p.id] == p
	if mine {
		delete(pm.peers, p.id)
	}
	pm.mu.Unlock()
	if mine {
		pm.close(p)
	}
	return mine
}

func (pm *peerManager) close(p *peer) {
	p.mu.Lock()
	already, watching := p.closed, p.watching
	p.closed, p.watching = true, false
	p.mu.Unlock()
	if already {
		return
	}
	if p.clipTrack != nil {
		pm.clip.stop(p.clipTrack)
	}
	if err := p.pc.Close(); err != nil && !errors.Is(err, webrtc.ErrConnectionClosed) {
		pm.log.Warn("close peer connection", "player", p.id, "error", err)
	}
	if watching {
		pm.media.release()
	}
	pm.onLeave(p.id)
}

// closeAll drops every peer: the signalling connection is gone, and with it
// every player's (the server closes their sockets).
func (pm *peerManager) closeAll() {
	pm.mu.Lock()
	all := pm.peers
	pm.peers = map[string]*peer{}
	pm.mu.Unlock()
	for _, p := range all {
		pm.close(p)
	}
	if len(all) > 0 {
		pm.log.Info("closed all peers", "count", len(all))
	}
}
