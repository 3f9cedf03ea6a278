package signalling

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// The WebSocket protocol (RFC 6455) comes from github.com/gobwas/ws: the
// opening handshake, frame headers, masking and the protocol checks. This
// file holds what signalling adds around it: close codes and reasons, and
// frame writes through a pooled buffer held only while a writer runs.

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
)

// maxCloseReason is the most bytes a close frame's reason may hold: a
// control frame carries at most 125 bytes, two of them the code.
const maxCloseReason = 123

// IsUpgrade reports whether r asks for a WebSocket.
func IsUpgrade(r *http.Request) bool {
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

// upgrader answers the opening handshake; the write of the answer has a
// deadline like every other write.
var upgrader = ws.HTTPUpgrader{Timeout: 10 * time.Second}

// upgrade completes the opening handshake and takes the connection over from
// net/http. It returns any bytes the client sent after its request.
func upgrade(w http.ResponseWriter, r *http.Request) (net.Conn, []byte, error) {
	nc, rw, _, err := upgrader.Upgrade(r, w)
	if err != nil {
		if nc != nil {
			_ = nc.Close() // the library has written the HTTP error
		}
		return nil, nil, fmt.Errorf("websocket handshake: %w", err)
	}
	var early []byte
	if n := rw.Reader.Buffered(); n > 0 {
		p, _ := rw.Reader.Peek(n)
		early = append([]byte(nil), p...)
	}
	return nc, early, nil
}

// validCloseCode reports whether a peer may send code in a close frame:
// the codes RFC 6455 and IANA define for endpoints to send, and the ranges
// left to libraries (3000-3999) and applications (4000-4999). 1005, 1006
// and 1015 only ever describe a closure locally; everything else is
// unassigned.
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// closeReason makes s fit a close frame: valid UTF-8 (peers must close on
// anything else) and at most maxCloseReason bytes, cut between characters.
func closeReason(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= maxCloseReason {
		return s
	}
	cut := maxCloseReason - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// writerPool holds the write buffers of connections whose writer is
// running; an idle connection holds none.
var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}

// writeFrame writes one unmasked, final frame (servers never mask) to w.
func writeFrame(w *bufio.Writer, op ws.OpCode, payload []byte) error {
	if err := ws.WriteHeader(w, ws.Header{Fin: true, OpCode: op, Length: int64(len(payload))}); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// writeFrameNow writes one frame straight to nc under a deadline, for the
// few frames no writer goroutine sends.
func writeFrameNow(nc net.Conn, op ws.OpCode, payload []byte, timeout time.Duration) error {
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(nc)
	defer func() { bw.Reset(nil); writerPool.Put(bw) }()
	_ = nc.SetWriteDeadline(time.Now().Add(timeout))
	if err := writeFrame(bw, op, payload); err != nil {
		return err
	}
	return bw.Flush()
}

// closePayload is a close frame's body: the code, then the reason (cut to fit).
func closePayload(code int, reason string) []byte {
	return ws.NewCloseFrameBody(ws.StatusCode(code), closeReason(reason))
}

// writeCloseNow sends a close frame on a connection no writer goroutine owns
// yet, then drops it.
func writeCloseNow(nc net.Conn, code int, reason string) {
	_ = writeFrameNow(nc, ws.OpClose, closePayload(code, reason), time.Second)
	_ = nc.Close()
}
