// Package sigtest holds the WebSocket stand-ins the signalling tests drive:
// a streamer (Unreal's Pixel Streaming plugin), a player (Epic's frontend)
// or an SFU, speaking the signalling protocol byte for byte. Only tests
// import it.
package sigtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// WaitFor is how long a test waits for something that should happen at once.
const WaitFor = 5 * time.Second

// What the server greets peers with.
const (
	WantIdentify = `{"type":"identify"}`
	WantConfig   = `{"type":"config","peerConnectionOptions":{},"protocolVersion":"1.3.0"}`
)

// Peer is a test WebSocket client.
type Peer struct {
	T    testing.TB
	Name string
	WS   *websocket.Conn
}

// Dial connects to url; the connection closes when the test ends.
func Dial(t testing.TB, name, url string, header http.Header) *Peer {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(url, header)
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		t.Fatalf("%s: dial %s: %v %s", name, url, err, status)
	}
	t.Cleanup(func() { _ = ws.Close() })
	return &Peer{T: t, Name: name, WS: ws}
}

// Send writes one text message.
func (p *Peer) Send(msg string) {
	p.T.Helper()
	if err := p.WS.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		p.T.Fatalf("%s: send %s: %v", p.Name, msg, err)
	}
}

// AnswerPings reads (and drops) everything p receives from now on, as a
// browser's WebSocket does, so the server's pings get their pongs.
func (p *Peer) AnswerPings() {
	go func() {
		for {
			_ = p.WS.SetReadDeadline(time.Time{})
			if _, _, err := p.WS.ReadMessage(); err != nil {
				return
			}
		}
	}()
}

// Recv returns the next text message, failing the test on close or timeout.
func (p *Peer) Recv() string {
	p.T.Helper()
	_ = p.WS.SetReadDeadline(time.Now().Add(WaitFor))
	_, data, err := p.WS.ReadMessage()
	if err != nil {
		p.T.Fatalf("%s: waiting for a message: %v", p.Name, err)
	}
	return string(data)
}

// Expect asserts the next message is exactly want (byte for byte).
func (p *Peer) Expect(want string) {
	p.T.Helper()
	if got := p.Recv(); got != want {
		p.T.Fatalf("%s: got message\n  %s\nwant\n  %s", p.Name, got, want)
	}
}

// ExpectClose reads until the server closes and returns the close frame.
func (p *Peer) ExpectClose() (int, string) {
	p.T.Helper()
	_ = p.WS.SetReadDeadline(time.Now().Add(WaitFor))
	for {
		_, data, err := p.WS.ReadMessage()
		if err == nil {
			p.T.Logf("%s: (before close) %s", p.Name, data)
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Text
		}
		p.T.Fatalf("%s: wanted a close frame, got %v", p.Name, err)
	}
}

// ExpectCloseWith asserts the server closes with code and reason.
func (p *Peer) ExpectCloseWith(code int, reason string) {
	p.T.Helper()
	gotCode, gotReason := p.ExpectClose()
	if gotCode != code || gotReason != reason {
		p.T.Fatalf("%s: closed with %d %q, want %d %q", p.Name, gotCode, gotReason, code, reason)
	}
}

// RoundTrip proves the connection is alive and served: a ping gets its pong.
func (p *Peer) RoundTrip() {
	p.T.Helper()
	p.Send(`{"type":"ping","time":42}`)
	p.Expect(`{"type":"pong","time":42}`)
}

// NewStreamer connects a stand-in for Unreal's Pixel Streaming plugin to
// the streamer endpoint url and identifies it as id.
func NewStreamer(t testing.TB, url, id string) *Peer {
	t.Helper()
	st := Dial(t, "streamer "+id, url, nil)
	st.Expect(WantIdentify)
	st.Expect(WantConfig)
	st.Send(fmt.Sprintf(`{"type":"endpointId","id":%q,"protocolVersion":"1.3.0"}`, id))
	st.Expect(fmt.Sprintf(`{"type":"endpointIdConfirm","committedId":%q}`, id))
	return st
}

// NewPlayer connects a stand-in for Epic's frontend to the player endpoint
// url and reads its config.
func NewPlayer(t testing.TB, url, name string) *Peer {
	t.Helper()
	p := Dial(t, name, url, nil)
	p.Expect(WantConfig)
	return p
}

// Subscribe subscribes p to streamerID and returns the playerId the
// streamer st was told.
func Subscribe(t testing.TB, p, st *Peer, streamerID string) string {
	t.Helper()
	p.Send(fmt.Sprintf(`{"type":"subscribe","streamerId":%q}`, streamerID))
	var msg struct {
		Type     string `json:"type"`
		PlayerID string `json:"playerId"`
	}
	raw := st.Recv()
	if err := json.Unmarshal([]byte(raw), &msg); err != nil || msg.Type != "playerConnected" {
		t.Fatalf("%s: wanted playerConnected, got %s", st.Name, raw)
	}
	want := fmt.Sprintf(`{"type":"playerConnected","playerId":%q,"dataChannel":true,"sfu":false}`, msg.PlayerID)
	if raw != want {
		t.Fatalf("%s: playerConnected is\n  %s\nwant\n  %s", st.Name, raw, want)
	}
	return msg.PlayerID
}

// Eventually polls cond until it holds or WaitFor passes.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// HTTPGet GETs url with header and returns the response and its body.
func HTTPGet(t testing.TB, url string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}
