package signalling

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// WebSocket opcodes (RFC 6455 section 5.2), as the raw client writes them.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// rawClient speaks WebSocket byte by byte, to send what well-behaved
// libraries never would.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

const handshake = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

// dialRaw opens a player connection, sending extra right after the request
// without waiting for the answer.
func dialRaw(t *testing.T, s *testServer, extra []byte) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", s.PlayerAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(waitFor))
	if _, err := nc.Write(append([]byte(handshake), extra...)); err != nil {
		t.Fatal(err)
	}
	c := &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The RFC's own example key and answer.
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-Websocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("handshake answer %d %v", resp.StatusCode, resp.Header)
	}
	if op, p := c.read(); op != opText || string(p) != wantConfig {
		t.Fatalf("first frame %d %q, want config", op, p)
	}
	return c
}

func frameBytes(fin bool, op byte, masked bool, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0, 0}
	switch l := len(payload); {
	case l < 126:
		out[1] = byte(l)
	case l <= 0xffff:
		out[1] = 126
		out = binary.BigEndian.AppendUint16(out, uint16(l))
	default:
		out[1] = 127
		out = binary.BigEndian.AppendUint64(out, uint64(l))
	}
	if !masked {
		return append(out, payload...)
	}
	out[1] |= 0x80
	key := []byte{1, 2, 3, 4}
	out = append(out, key...)
	for i, c := range payload {
		out = append(out, c^key[i&3])
	}
	return out
}

func (c *rawClient) write(b []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read returns the next server frame.
func (c *rawClient) read() (byte, []byte) {
	c.t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	if h[1]&0x80 != 0 {
		c.t.Fatal("server frame is masked")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		_, _ = io.ReadFull(c.br, l[:])
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		_, _ = io.ReadFull(c.br, l[:])
		n = binary.BigEndian.Uint64(l[:])
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c.br, p); err != nil {
		c.t.Fatalf("read payload: %v", err)
	}
	return h[0] & 0x0f, p
}

func (c *rawClient) expectClose(code int, reason string) {
	c.t.Helper()
	op, p := c.read()
	if op != opClose || len(p) < 2 || int(binary.BigEndian.Uint16(p)) != code || string(p[2:]) != reason {
		c.t.Fatalf("got frame %d %q, want close %d %q", op, p, code, reason)
	}
}

// TestFrameProtocol checks the server's frame reader against RFC 6455 rules
// that WebSocket libraries never break.
func TestFrameProtocol(t *testing.T) {
	s := startServer(t, Config{})
	masked := func(op byte, p string) []byte { return frameBytes(true, op, true, []byte(p)) }
	bad := []struct {
		name   string
		frames []byte
		code   int
		reason string
	}{
		{"unmasked frame", frameBytes(true, opText, false, []byte(`{"type":"listStreamers"}`)), closeProtocol, "client frames must be masked"},
		{"reserved bit", append([]byte{0xC1}, masked(opText, "{}")[1:]...), closeProtocol, "reserved bits set: no extension was negotiated"},
		{"unknown opcode", masked(0x3, "x"), closeProtocol, "unknown opcode 3"},
		{"oversized ping", masked(opPing, strings.Repeat("p", 126)), closeProtocol, "control frames must be final and at most 125 bytes"},
		{"fragmented ping", frameBytes(false, opPing, true, nil), closeProtocol, "control frames must be final and at most 125 bytes"},
		{"continuation without a message", masked(opContinuation, "x"), closeProtocol, "continuation frame without a message"},
		{"message inside a fragmented one", append(frameBytes(false, opText, true, []byte("{")), masked(opText, "{}")...), closeProtocol, "new message started inside a fragmented one"},
		{"huge length announced", []byte{0x81, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4}, closeTooBig, "message larger than 65536 bytes"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, s, nil)
			c.write(tc.frames)
			c.expectClose(tc.code, tc.reason)
		})
	}

	t.Run("fragmented message with a ping between fragments", func(t *testing.T) {
		c := dialRaw(t, s, nil)
		c.write(frameBytes(false, opText, true, []byte(`{"type":"ping",`)))
		c.write(frameBytes(true, opPing, true, []byte("hi")))
		c.write(frameBytes(false, opContinuation, true, []byte(`"time":`)))
		c.write(frameBytes(true, opContinuation, true, []byte(`7}`)))
		if op, p := c.read(); op != opPong || string(p) != "hi" {
			t.Fatalf("got %d %q, want pong hi", op, p)
		}
		if op, p := c.read(); op != opText || string(p) != `{"type":"pong","time":7}` {
			t.Fatalf("got %d %q, want the pong message", op, p)
		}
	})
	t.Run("frames sent before the handshake answer", func(t *testing.T) {
		c := dialRaw(t, s, masked(opText, `{"type":"ping","time":1}`))
		if op, p := c.read(); op != opText || string(p) != `{"type":"pong","time":1}` {
			t.Fatalf("got %d %q", op, p)
		}
	})
	t.Run("message split across TCP writes byte by byte", func(t *testing.T) {
		c := dialRaw(t, s, nil)
		for _, b := range masked(opBinary, `{"type":"listStreamers"}`) {
			c.write([]byte{b})
		}
		if op, p := c.read(); op != opText || string(p) != `{"type":"streamerList","ids":[]}` {
			t.Fatalf("got %d %q", op, p)
		}
	})
	t.Run("client close is answered with its code", func(t *testing.T) {
		c := dialRaw(t, s, nil)
		c.write(frameBytes(true, opClose, true, closePayload(closeGoingAway, "bye")))
		c.expectClose(closeGoingAway, "")
		if _, err := c.br.ReadByte(); err != io.EOF {
			t.Fatalf("after the close handshake: %v, want EOF", err)
		}
	})
}

// frameLen writes a masked frame header declaring n payload bytes in the
// given length encoding (0: shortest) followed by payload, whatever n says.
func frameLen(fin bool, op byte, n uint64, enc int, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	if enc == 0 {
		switch {
		case n < 126:
			enc = 1
		case n <= 0xffff:
			enc = 2
		default:
			enc = 8
		}
	}
	switch enc {
	case 2:
		out = binary.BigEndian.AppendUint16(append(out, 0x80|126), uint16(n))
	case 8:
		out = binary.BigEndian.AppendUint64(append(out, 0x80|127), n)
	default:
		out = append(out, 0x80|byte(n))
	}
	key := []byte{1, 2, 3, 4}
	out = append(out, key...)
	for i, c := range payload {
		out = append(out, c^key[i&3])
	}
	return out
}

// TestFrameValidation covers what issue 11 found the old frame parser
// accepting: lengths that wrap, invalid UTF-8, close frames a peer may not
// send, and lengths not in their shortest form.
func TestFrameValidation(t *testing.T) {
	s := startServer(t, Config{Limits: Limits{MaxConnectionsPerAddress: 1 << 20}})
	st := newStreamer(t, s, "S")
	bystander := newPlayer(t, s, "bystander")
	subscribe(t, bystander, st, "S")
	closeFrame := func(p []byte) []byte { return frameBytes(true, opClose, true, p) }
	cases := []struct {
		name   string
		frames []byte
		code   int
		reason string
	}{
		{"continuation wrapping the length sum", append(frameBytes(false, opText, true, []byte(`{"type":"p`)), frameLen(true, opContinuation, 1<<64-10, 0, nil)...), closeTooBig, "message larger than 65536 bytes"},
		{"frame of 2^64-14 bytes", frameLen(true, opText, 1<<64-14, 0, []byte("xxxx")), closeTooBig, "message larger than 65536 bytes"},
		{"frame of 2^63 bytes", frameLen(true, opText, 1<<63, 0, nil), closeTooBig, "message larger than 65536 bytes"},
		{"frame of 2^63-1 bytes", frameLen(true, opText, 1<<63-1, 0, nil), closeTooBig, "message larger than 65536 bytes"},
		{"fragments over the limit together", append(frameBytes(false, opText, true, make([]byte, 40000)), frameLen(true, opContinuation, 30000, 0, nil)...), closeTooBig, "message larger than 65536 bytes"},
		{"length 0 in 16 bits", frameLen(true, opText, 0, 2, nil), closeProtocol, "frame length 0 not in its shortest encoding"},
		{"length 125 in 16 bits", frameLen(true, opText, 125, 2, make([]byte, 125)), closeProtocol, "frame length 125 not in its shortest encoding"},
		{"length 65535 in 64 bits", frameLen(true, opText, 65535, 8, nil), closeProtocol, "frame length 65535 not in its shortest encoding"},
		{"invalid UTF-8 text", frameBytes(true, opText, true, []byte("{\"type\":\"answer\",\"sdp\":\"\xff\"}")), closeInvalidPayload, "message is not valid UTF-8"},
		{"surrogate half in UTF-8", frameBytes(true, opText, true, []byte("{\"type\":\"answer\",\"sdp\":\"\xed\xa0\x80\"}")), closeInvalidPayload, "message is not valid UTF-8"},
		{"close code 999", closeFrame(closePayload(999, "")), closeProtocol, "close code 999 may not be sent"},
		{"close code 1004", closeFrame(closePayload(1004, "")), closeProtocol, "close code 1004 may not be sent"},
		{"close code 1005", closeFrame(closePayload(1005, "")), closeProtocol, "close code 1005 may not be sent"},
		{"close code 1006", closeFrame(closePayload(1006, "")), closeProtocol, "close code 1006 may not be sent"},
		{"close code 1015", closeFrame(closePayload(1015, "")), closeProtocol, "close code 1015 may not be sent"},
		{"close code 1016", closeFrame(closePayload(1016, "")), closeProtocol, "close code 1016 may not be sent"},
		{"close code 5000", closeFrame(closePayload(5000, "")), closeProtocol, "close code 5000 may not be sent"},
		{"close payload of 1 byte", closeFrame([]byte{3}), closeProtocol, "close frame payload of 1 byte: a code takes 2"},
		{"close reason not UTF-8", closeFrame(append([]byte{3, 232}, 0xff)), closeProtocol, "close reason is not valid UTF-8"},
		{"close 4000 echoed", closeFrame(closePayload(4000, "app")), 4000, ""},
		{"empty close answered 1000", closeFrame(nil), closeNormal, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, s, nil)
			c.write(tc.frames)
			c.expectClose(tc.code, tc.reason)
			bystander.roundTrip()
		})
	}
}

func TestCloseReason(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"short", "short"},
		{strings.Repeat("a", 123), strings.Repeat("a", 123)},
		{strings.Repeat("a", 124), strings.Repeat("a", 120) + "..."},
		{"x" + strings.Repeat("é", 100), "x" + strings.Repeat("é", 59) + "..."},
		{"bad \xff byte", "bad \uFFFD byte"},
	} {
		got := closeReason(tc.in)
		if got != tc.want || len(got) > maxCloseReason || !utf8.ValidString(got) {
			t.Errorf("closeReason(%q) = %q (%d bytes), want %q", tc.in, got, len(got), tc.want)
		}
	}
}

// FuzzFrames writes arbitrary bytes after a player's handshake to a running
// server. Whatever they are, the server answers with a close frame a peer
// may receive (or drops the connection), never panics, and keeps serving a
// bystander.
func FuzzFrames(f *testing.F) {
	for _, n := range []uint64{0, 1, 125, 126, 127, 65535, 65536, 1 << 63, 1<<64 - 1, 1<<64 - 10, 1<<64 - 14} {
		for _, enc := range []int{0, 2, 8} {
			f.Add(frameLen(true, opText, n, enc, []byte(`{"type":"ping","time":1}`)))
			f.Add(append(frameBytes(false, opText, true, []byte("0123456789")), frameLen(true, opContinuation, n, enc, []byte("x"))...))
		}
	}
	f.Add(frameBytes(true, opClose, true, []byte{3}))
	f.Add(frameBytes(true, opClose, true, closePayload(1005, "")))
	f.Add(frameBytes(true, opText, true, []byte("\xff")))
	f.Add(frameBytes(false, opPing, true, nil))
	// The bystander answers pings only while a round trip reads, and the
	// engine may run no input for a minute (minimising): no ping sweep.
	s := startServer(f, Config{Limits: Limits{MessagesPerSecond: 1e9, Burst: 1 << 30, FrameTimeout: 50 * time.Millisecond,
		MaxConnectionsPerAddress: 1 << 20, PingInterval: time.Hour, PongTimeout: 2 * time.Hour}})
	st := newStreamer(f, s, "S")
	bystander := newPlayer(f, s, "bystander")
	subscribe(f, bystander, st, "S")
	go func() {
		for {
			if _, _, err := st.ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	f.Fuzz(func(t *testing.T, data []byte) {
		bystander.T = t
		c := dialRaw(t, s, nil)
		// The input, then a close of our own, which usually gets an answer.
		// An input may also leave a fragmented message open, which a peer
		// may do: then nothing comes, and the wait here only bounds the
		// test, it asserts nothing.
		_, _ = c.nc.Write(append(append([]byte(nil), data...), frameBytes(true, opClose, true, closePayload(closeNormal, ""))...))
		_ = c.nc.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		for {
			op, p, err := readServerFrame(c.br)
			if err != nil {
				break // dropped (a peer stalled mid-frame), or still open
			}
			if op == opClose {
				if len(p) >= 2 {
					code := int(binary.BigEndian.Uint16(p))
					if !validCloseCode(code) || len(p) > 125 || !utf8.Valid(p[2:]) {
						t.Fatalf("server sent close %d %q", code, p[2:])
					}
				}
				break
			}
		}
		if body := metricsText(t, s); strings.Contains(body, "pixelstream_signalling_peer_panics_total{where=\"read\"} 1") {
			t.Fatalf("the input made the reader panic")
		}
		bystander.roundTrip()
	})
}

// readServerFrame reads one server frame without failing the test.
func readServerFrame(br *bufio.Reader) (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	if n > 1<<20 {
		return 0, nil, fmt.Errorf("server frame of %d bytes", n)
	}
	p := make([]byte, n)
	_, err := io.ReadFull(br, p)
	return h[0] & 0x0f, p, err
}
