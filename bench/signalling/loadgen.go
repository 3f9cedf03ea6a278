package main

import (
	"bytes"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

var dialer = &websocket.Dialer{ReadBufferSize: 2048, WriteBufferSize: 2048, HandshakeTimeout: 30 * time.Second}

// base is the clock relay timestamps are taken against.
var base = time.Now()

var (
	fakeOffer  = `{"type":"offer","playerId":"%s","sdp":"v=0\r\no=- 4215775240449105457 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\na=msid-semantic: WMS pixelstreaming\r\n` + pad(1500) + `","multiplex":true}`
	fakeAnswer = []byte(`{"type":"answer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n` + pad(800) + `","minBitrateBps":0,"maxBitrateBps":100000000}`)
	fakeICE    = `{"type":"iceCandidate","playerId":"%s","candidate":{"candidate":"candidate:1 1 udp 2122260223 10.0.0.1 50000 typ host generation 0 ufrag abcd","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"}}`
)

func pad(n int) string {
	b := bytes.Repeat([]byte("a=x-pad:0\\r\\n"), n/13)
	return string(b)
}

// simStreamer behaves like Unreal's plugin towards the server: offer on
// playerConnected, an ICE candidate after the answer, and every ICE
// candidate from a player echoed back to it.
type simStreamer struct {
	id string
	ws *websocket.Conn
}

func newSimStreamer(addr, id string) (*simStreamer, error) {
	ws, _, err := dialer.Dial("ws://"+addr+"/", nil)
	if err != nil {
		return nil, fmt.Errorf("streamer %s: %w", id, err)
	}
	for i := 0; i < 2; i++ { // identify, config
		if _, _, err := ws.ReadMessage(); err != nil {
			return nil, err
		}
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"endpointId","id":"`+id+`","protocolVersion":"1.3.0"}`)); err != nil {
		return nil, err
	}
	if _, _, err := ws.ReadMessage(); err != nil { // endpointIdConfirm
		return nil, err
	}
	s := &simStreamer{id: id, ws: ws}
	go s.run()
	return s, nil
}

func (s *simStreamer) run() {
	for {
		_, data, err := s.ws.ReadMessage()
		if err != nil {
			return
		}
		switch {
		case bytes.HasPrefix(data, []byte(`{"type":"iceCandidate"`)):
			// The player's candidate, playerId appended by the server: send it straight back.
			err = s.ws.WriteMessage(websocket.TextMessage, data)
		case bytes.HasPrefix(data, []byte(`{"type":"playerConnected"`)):
			err = s.ws.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(fakeOffer, playerIDOf(data))))
		case bytes.HasPrefix(data, []byte(`{"type":"answer"`)):
			err = s.ws.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(fakeICE, playerIDOf(data))))
		}
		if err != nil {
			return
		}
	}
}

func playerIDOf(data []byte) string {
	const key = `"playerId":"`
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return ""
	}
	rest := data[i+len(key):]
	return string(rest[:bytes.IndexByte(rest, '"')])
}

const (
	phaseIdle int32 = iota
	phaseThroughput
	phaseLatency
)

// simPlayer behaves like Epic's frontend: subscribe, answer the offer, then
// relay ICE candidates that carry their send time.
type simPlayer struct {
	ws        *websocket.Conn
	wmu       sync.Mutex
	start     time.Time
	handshake time.Duration
	done      chan struct{}
	phase     *atomic.Int32
	echoes    *atomic.Int64
	rtts      []time.Duration
}

func (p *simPlayer) write(data []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return p.ws.WriteMessage(websocket.TextMessage, data)
}

func relayMessage() []byte {
	return []byte(`{"type":"iceCandidate","candidate":{"candidate":"candidate:1 1 udp 2122260223 10.0.0.2 50000 typ host t=` +
		strconv.FormatInt(int64(time.Since(base)), 10) + `","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"bench"}}`)
}

func sentAt(data []byte) (time.Duration, bool) {
	i := bytes.Index(data, []byte(" t="))
	if i < 0 {
		return 0, false
	}
	j := i + 3
	for j < len(data) && data[j] >= '0' && data[j] <= '9' {
		j++
	}
	n, err := strconv.ParseInt(string(data[i+3:j]), 10, 64)
	return time.Duration(n), err == nil
}

func (p *simPlayer) run() {
	handshaken := false
	for {
		_, data, err := p.ws.ReadMessage()
		if err != nil {
			if !handshaken {
				close(p.done)
			}
			return
		}
		switch {
		case bytes.HasPrefix(data, []byte(`{"type":"offer"`)):
			_ = p.write(fakeAnswer)
		case bytes.HasPrefix(data, []byte(`{"type":"iceCandidate"`)):
			if !handshaken {
				handshaken = true
				p.handshake = time.Since(p.start)
				close(p.done)
				continue
			}
			t, ok := sentAt(data)
			if !ok {
				continue
			}
			p.echoes.Add(1)
			switch p.phase.Load() {
			case phaseThroughput:
				_ = p.write(relayMessage())
			case phaseLatency:
				p.rtts = append(p.rtts, time.Since(base)-t)
			}
		}
	}
}

// connectPlayers connects n players with at most conc handshakes in flight.
func connectPlayers(addr string, n, k, conc int, phase *atomic.Int32, echoes *atomic.Int64) ([]*simPlayer, error) {
	players := make([]*simPlayer, n)
	sem := make(chan struct{}, conc)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			p := &simPlayer{start: time.Now(), done: make(chan struct{}), phase: phase, echoes: echoes}
			ws, _, err := dialer.Dial("ws://"+addr+"/", nil)
			if err != nil {
				errs <- fmt.Errorf("player %d: %w", i, err)
				return
			}
			p.ws = ws
			players[i] = p
			go p.run()
			if err := p.write([]byte(`{"type":"subscribe","streamerId":"S` + strconv.Itoa(i%k) + `"}`)); err != nil {
				errs <- err
				return
			}
			select {
			case <-p.done:
				if p.handshake == 0 {
					errs <- fmt.Errorf("player %d: connection closed during the handshake", i)
				}
			case <-time.After(60 * time.Second):
				errs <- fmt.Errorf("player %d: no handshake in 60s", i)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return nil, err
	}
	return players, nil
}
