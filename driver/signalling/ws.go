package signalling

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// The server side of RFC 6455, kept to what signalling needs: the opening
// handshake and unmasked frame writes (frame.go reads). Doing it here rather
// than through a WebSocket library keeps a connected player down to a few
// hundred bytes of state.

// Close codes the server sends (RFC 6455 section 7.4.1).
const (
	closeNormal         = 1000 // streamer left: Epic's frontend reconnects
	closeGoingAway      = 1001 // server shutting down: the frontend stays put
	closeProtocol       = 1002
	closeInvalidPayload = 1007
	closePolicy         = 1008
	closeTooBig         = 1009
	closeInternal       = 1011 // disconnectPlayer, as Epic's server does
	closeTryAgainLater  = 1013
	closeNoStatus       = 1005 // reserved: never sent in a frame
	closeAbnormal       = 1006 // reserved
	closeTLS            = 1015 // reserved
)

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// isUpgrade reports whether r asks for a WebSocket.
func isUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// upgrade completes the opening handshake and takes the connection over from
// net/http. It returns any bytes the client sent after its request.
func upgrade(w http.ResponseWriter, r *http.Request) (net.Conn, []byte, error) {
	fail := func(code int, msg string) (net.Conn, []byte, error) {
		http.Error(w, msg, code)
		return nil, nil, errors.New(msg)
	}
	if r.Method != http.MethodGet {
		return fail(http.StatusMethodNotAllowed, "websocket: the upgrade request must be a GET")
	}
	if r.Header.Get("Sec-Websocket-Version") != "13" {
		w.Header().Set("Sec-WebSocket-Version", "13")
		return fail(http.StatusUpgradeRequired, "websocket: unsupported Sec-WebSocket-Version (13 is)")
	}
	key := r.Header.Get("Sec-Websocket-Key")
	if raw, err := base64.StdEncoding.DecodeString(key); err != nil || len(raw) != 16 {
		return fail(http.StatusBadRequest, "websocket: Sec-WebSocket-Key is not 16 bytes of base64")
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		return fail(http.StatusInternalServerError, "websocket: connection cannot be taken over")
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return fail(http.StatusInternalServerError, "websocket: hijack: "+err.Error())
	}
	var early []byte
	if n := brw.Reader.Buffered(); n > 0 {
		p, _ := brw.Reader.Peek(n)
		early = append([]byte(nil), p...)
	}
	sum := sha1.Sum([]byte(key + wsGUID))
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n"
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write([]byte(resp)); err != nil {
		_ = nc.Close()
		return nil, nil, fmt.Errorf("websocket: write handshake: %w", err)
	}
	_ = nc.SetDeadline(time.Time{})
	return nc, early, nil
}

// writeFrame writes one unmasked, final frame (servers never mask).
func writeFrame(nc net.Conn, op byte, payload []byte) error {
	var hdr [10]byte
	hdr[0] = 0x80 | op
	n := 2
	switch l := len(payload); {
	case l < 126:
		hdr[1] = byte(l)
	case l <= 0xffff:
		hdr[1] = 126
		binary.BigEndian.PutUint16(hdr[2:], uint16(l))
		n = 4
	default:
		hdr[1] = 127
		binary.BigEndian.PutUint64(hdr[2:], uint64(l))
		n = 10
	}
	if len(payload) <= 1024 {
		// One small write beats writev's bookkeeping for typical messages.
		buf := make([]byte, 0, n+len(payload))
		buf = append(append(buf, hdr[:n]...), payload...)
		_, err := nc.Write(buf)
		return err
	}
	bufs := net.Buffers{hdr[:n], payload}
	_, err := bufs.WriteTo(nc)
	return err
}

// closePayload is a close frame's body: the code, then the reason.
func closePayload(code int, reason string) []byte {
	p := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(p, uint16(code))
	return append(p, reason...)
}

// writeCloseNow sends a close frame on a connection no writer goroutine owns
// yet, then drops it.
func writeCloseNow(nc net.Conn, code int, reason string) {
	_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
	_ = writeFrame(nc, opClose, closePayload(code, reason))
	_ = nc.Close()
}
