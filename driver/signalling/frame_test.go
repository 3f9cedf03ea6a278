package signalling

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
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
func dialRaw(t *testing.T, s *Server, extra []byte) *rawClient {
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
