package signalling

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/gorilla/websocket"
)

var fuzzSeeds = []string{
	`{"type":"listStreamers"}`,
	`{"type":"subscribe","streamerId":"S"}`,
	`{"type":"answer","sdp":"v=0\r\n","minBitrateBps":0,"maxBitrateBps":1}`,
	`{"type":"iceCandidate","candidate":{"candidate":"candidate:1 1 udp 1 10.0.0.1 9 typ host","sdpMid":"0","sdpMLineIndex":0}}`,
	`{"type":"layerPreference","spatialLayer":1,"temporalLayer":1,"playerId":"x"}`,
	`{"type":"ping","time":1.5e300}`,
	`{"type":"player\u0049d","playerId":"1","player\u0049d":"2"}`,
	`{"type":"answer","sdp":"x","playerId":"1","playerId":"2"}`,
	` { "type" : "dataChannelRequest" } `,
	`{"type":"unsubscribe"}`,
	`{"type":"offer","sdp":"\ud800"}`,
	`{}`, `[]`, `null`, `{"type":null}`, `{"type":"ping","time":[]}`, "\x00", `{"a":{"b":[1,{"c":"}"}]},"type":"listStreamers"}`,
	// Boundary values: numbers at and past the edges of int64 and float64,
	// escapes at the end of input, deep nesting.
	`{"type":"ping","time":9223372036854775807}`, `{"type":"ping","time":9223372036854775808}`,
	`{"type":"ping","time":18446744073709551615}`, `{"type":"ping","time":1e309}`, `{"type":"ping","time":-0}`,
	`{"type":"answer","sdp":"\`, `{"type":"answer","sdp":"\u00`, `{"type":"answer","sdp":"\udbff\udfff"}`,
	`{"type":"listStreamers","x":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
}

// Lengths at the edges of each WebSocket length encoding and of uint64.
var boundaryLengths = []uint64{0, 125, 126, 65535, 65536, 1 << 63, 1<<64 - 1, 1<<64 - 10, 1<<64 - 14}

func init() {
	// Strings of the boundary lengths that fit a message.
	for _, n := range boundaryLengths {
		if n <= 65536 {
			fuzzSeeds = append(fuzzSeeds, `{"type":"answer","sdp":"`+strings.Repeat("s", int(n))+`"}`)
		}
	}
}

// FuzzFrameBuffered checks the one decision the epoll loops make about raw
// bytes themselves: whether a whole frame is buffered. When it says yes,
// the header and the whole payload it declares must be there (or the
// header is one the reader refuses); when it says no, reading the frame
// from those bytes alone must fall short.
func FuzzFrameBuffered(f *testing.F) {
	for _, n := range boundaryLengths {
		for _, enc := range []int{0, 2, 8} {
			b := frameLen(true, opText, n, enc, []byte("payload"))
			for cut := 0; cut <= len(b); cut += 3 {
				f.Add(b[:cut])
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 1<<16)
		_, _ = br.Peek(len(data)) // buffer all of it, as the loop's one read does
		got := frameBuffered(br)
		r := bytes.NewReader(data)
		h, err := ws.ReadHeader(r)
		whole := err == nil && h.Length <= int64(r.Len())
		refused := err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF)
		if got != (whole || refused) {
			t.Fatalf("frameBuffered(%x) = %v; header %+v, err %v, %d bytes after the header", data, got, h, err, r.Len())
		}
	})
}

// FuzzForwarding checks the rewrite every forwarded message goes through:
// whatever a player sends, the streamer gets valid JSON whose playerId is the
// sender's and whose other members are exactly what was sent.
func FuzzForwarding(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m message
		if parseMessage(data, &m) != nil {
			return
		}
		out := m.withPlayerID("7")
		var got map[string]json.RawMessage
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("forwarded %q is not JSON: %v", out, err)
		}
		if string(got["playerId"]) != `"7"` {
			t.Fatalf("forwarded %q has playerId %s", out, got["playerId"])
		}
		var sent map[string]json.RawMessage
		if err := json.Unmarshal(data, &sent); err != nil {
			t.Fatalf("parseMessage accepted %q that encoding/json refuses: %v", data, err)
		}
		for k, v := range sent {
			if k == "playerId" {
				continue
			}
			// encoding/json matches keys case-insensitively; compare only exact keys.
			if _, ok := got[k]; ok && !jsonEqual(got[k], v) && !hasKeyFold(sent, k) {
				t.Fatalf("member %s changed from %s to %s", k, v, got[k])
			}
		}
		stripped := m.withPlayerID("")
		var back map[string]json.RawMessage
		if err := json.Unmarshal(stripped, &back); err != nil {
			t.Fatalf("stripped %q is not JSON: %v", stripped, err)
		}
		if _, ok := back["playerId"]; ok {
			t.Fatalf("stripped %q still has playerId", stripped)
		}
	})
}

func jsonEqual(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true // also for numbers encoding/json cannot hold, like 1e309
	}
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && equalAny(x, y)
}

func equalAny(x, y any) bool {
	bx, _ := json.Marshal(x)
	by, _ := json.Marshal(y)
	return string(bx) == string(by)
}

// hasKeyFold reports a second key differing only in case, where encoding/json's
// own view is ambiguous.
func hasKeyFold(m map[string]json.RawMessage, k string) bool {
	n := 0
	for key := range m {
		if len(key) == len(k) && equalFold(key, k) {
			n++
		}
	}
	return n > 1
}

func equalFold(a, b string) bool {
	for i := 0; i < len(a); i++ {
		ca, cb := a[i]|0x20, b[i]|0x20
		if ca != cb {
			return false
		}
	}
	return true
}

// FuzzPlayerMessage sends arbitrary frames from a real player connection to a
// running server: the server must either answer or close that player with a
// proper close frame, and never stop serving the others.
func FuzzPlayerMessage(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	// The bystander proves liveness once per input, far above the default
	// rate limit. It reads only between inputs and the engine may run none
	// for a minute (minimising, a loaded machine): no ping sweep, or the
	// idle bystander is dropped for pongs it could not send.
	s := startServer(f, Config{Limits: Limits{MessagesPerSecond: 1e9, Burst: 1 << 30,
		MaxConnectionsPerAddress: 1 << 20, PingInterval: time.Hour, PongTimeout: 2 * time.Hour}})
	st := newStreamer(f, s, "S")
	bystander := newPlayer(f, s, "bystander")
	subscribe(f, bystander, st, "S")
	// Drain the streamer so fuzzed players' traffic never fills its queue.
	go func() {
		for {
			if _, _, err := st.ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	f.Fuzz(func(t *testing.T, data []byte) {
		bystander.T = t // testing.F's methods must not be used inside the fuzz function
		ws, _, err := websocket.DefaultDialer.Dial(playerURL(s), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		if err := ws.WriteMessage(websocket.TextMessage, data); err != nil {
			t.Fatal(err)
		}
		if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping","time":1}`)); err != nil {
			return // already closed by the server
		}
		_ = ws.SetReadDeadline(time.Now().Add(waitFor))
		for {
			_, msg, err := ws.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if !errors.As(err, &ce) {
					t.Fatalf("connection ended without a close frame: %v", err)
				}
				if ce.Text == "" {
					t.Fatalf("closed with code %d and no reason", ce.Code)
				}
				break
			}
			if string(msg) == `{"type":"pong","time":1}` {
				break
			}
		}
		bystander.roundTrip()
	})
}
