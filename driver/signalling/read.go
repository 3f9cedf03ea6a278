package signalling

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"
)

// The read side of a connection. Frames are read with gobwas/ws from a
// bufio.Reader taken from a pool only while the socket has bytes (see
// readWake), so an idle connection holds no goroutine and no buffer. A
// frame, once begun, must arrive within Limits.FrameTimeout; bytes held for
// messages in progress count against MaxMessageBytes per connection and
// MaxPendingBytes for the whole server.

// readerPool holds the read buffers of connections being read.
var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

// errNoData ends a wake-up that found the socket empty.
var errNoData = errors.New("no data")

// errStop ends reading a connection that is being closed: its close frame
// is on the way and the close handshake (closeGrace) drops the socket.
var errStop = errors.New("connection closing")

// reader is the read state of a connection.
type reader struct {
	raw      syscall.RawConn // the socket, for the epoll loop and non-blocking reads
	epfd     int             // the epoll set the socket is in; -1 when none
	loopMu   *sync.Mutex     // that set's loop lock: passes the read state between loop and worker
	early    []byte          // bytes that came with the handshake, read first
	peekOnce bool            // the next socket read is non-blocking (start of a wake-up)
	inline   bool            // read by an epoll loop, which must never block
	frag     []byte          // the message being assembled from fragments
	fragOp   ws.OpCode       // its opcode; 0 when none
	held     atomic.Int64    // bytes of the server's MaxPendingBytes this connection holds
	discard  bool            // after a fatal error: read frames only to see the close
}

// source is what a connection's bufio.Reader reads: the handshake's early
// bytes, then the socket. The first socket read of a wake-up does not
// block, so a wake-up without data (a spurious event) costs nothing.
type source struct{ c *conn }

func (s source) Read(p []byte) (int, error) {
	c := s.c
	if len(c.early) > 0 {
		n := copy(p, c.early)
		c.early = c.early[n:]
		if len(c.early) == 0 {
			c.early = nil
		}
		c.peekOnce = false
		return n, nil
	}
	if c.peekOnce && c.raw != nil {
		c.peekOnce = false
		var n int
		var rerr error
		if err := c.raw.Read(func(fd uintptr) bool {
			n, rerr = unix.Read(int(fd), p)
			return true // never park: this read only looks
		}); err != nil {
			return 0, err
		}
		switch {
		case errors.Is(rerr, unix.EAGAIN) || errors.Is(rerr, unix.EINTR):
			return 0, errNoData
		case rerr != nil:
			return 0, rerr
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
	if c.inline {
		return 0, errNoData // the loop reads only whole frames it holds
	}
	return c.nc.Read(p)
}

// frameBuffered reports whether br holds at least one whole frame, or a
// header the reader will refuse (so readFrame gets to say why).
func frameBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	var hdr [ws.MaxHeaderSize - 2]byte
	r := bytes.NewReader(b)
	h, err := ws.ReadHeaderBuffer(r, hdr[:])
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return false
	case err != nil:
		return true
	}
	// Length is at most 2^63-1 and r.Len() non-negative: no overflow.
	return h.Length <= int64(r.Len())
}

// readWake reads what a readable socket holds: frames until the buffer is
// empty, each within FrameTimeout. It then gives the buffer back and
// re-arms the socket in its epoll set.
func (c *conn) readWake() {
	defer c.srv.recoverPeer(c, "read")
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(source{c})
	c.peekOnce = true
	// The deadline left by the last wake-up has passed by now, and even the
	// non-blocking first read checks it.
	_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.limits.FrameTimeout))
	err := c.readFrames(br, false)
	br.Reset(nil)
	readerPool.Put(br)
	switch {
	case errors.Is(err, errNoData):
		err = nil
	case errors.Is(err, errStop):
		return
	}
	if err != nil || c.killed.Load() {
		c.dropAfterReadError(err)
		return
	}
	// The loop's non-blocking reads check the deadline too: clear it.
	_ = c.nc.SetReadDeadline(time.Time{})
	if err := c.srv.poll.rearm(c); err != nil {
		c.kill()
	}
}

// readBlocking reads the connection until it ends, on a goroutine of its
// own (the fallback where epoll is not available).
func (c *conn) readBlocking() {
	defer c.srv.recoverPeer(c, "read")
	br := bufio.NewReaderSize(source{c}, 4096)
	if err := c.readFrames(br, true); !errors.Is(err, errStop) {
		c.dropAfterReadError(err)
	}
}

func (c *conn) dropAfterReadError(err error) {
	if err != nil && isDeadline(err) && !c.killed.Load() {
		c.srv.metrics.reject(c.role, reasonFrameTimeout)
		c.srv.log.Info("dropping peer that stalled in the middle of a frame", "role", c.role, "player", c.playerID, "remote", c.remote, "timeout", c.srv.limits.FrameTimeout)
	}
	c.kill()
}

func isDeadline(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// readFrames handles frames from br. Non-blocking, it returns once br has
// no buffered bytes after a frame (the epoll set says when there are
// more); blocking, it waits for the next frame without a deadline (pings
// find dead peers) and returns only on an error.
func (c *conn) readFrames(br *bufio.Reader, blocking bool) error {
	for first := true; ; first = false {
		if blocking {
			_ = c.nc.SetReadDeadline(time.Time{})
			if _, err := br.Peek(1); err != nil {
				return err
			}
		} else if !first && br.Buffered() == 0 {
			return nil
		}
		if !first || blocking {
			_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.limits.FrameTimeout))
		} else {
			// The first byte is read without blocking; the rest of the
			// frame is due within FrameTimeout.
			if _, err := br.Peek(1); err != nil {
				return err
			}
			_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.limits.FrameTimeout))
		}
		if err := c.readFrame(br); err != nil {
			return err
		}
		if c.killed.Load() {
			return nil
		}
	}
}

// readFrame reads and handles one frame.
func (c *conn) readFrame(br *bufio.Reader) error {
	b, err := br.Peek(2)
	if err != nil {
		return err
	}
	lenCode := b[1] & 0x7f
	h, err := ws.ReadHeader(br)
	if errors.Is(err, ws.ErrHeaderLengthMSB) {
		// A 64-bit length with the top bit set: more than any budget.
		c.tooBig()
		return errStop // nothing after it can be framed
	}
	if err != nil {
		return err
	}
	now := time.Now()
	c.lastSeen.Store(now.UnixNano())
	if (lenCode == 126 && h.Length < 126) || (lenCode == 127 && h.Length <= 0xffff) {
		c.protocolError(fmt.Sprintf("frame length %d not in its shortest encoding", h.Length))
		return errStop
	}
	state := ws.StateServerSide
	if c.fragOp != 0 {
		state = state.Set(ws.StateFragmented)
	}
	if err := ws.CheckHeader(h, state); err != nil {
		if !c.discard { // already closing: say nothing more
			c.protocolError(headerProblem(h, err))
		}
		return errStop
	}
	if h.OpCode.IsControl() {
		return c.control(br, h)
	}
	if c.discard {
		return c.skip(br, h)
	}
	// Both sides are within [0, MaxMessageBytes], so this cannot overflow.
	if h.Length > c.srv.limits.MaxMessageBytes-int64(len(c.frag)) {
		c.tooBig()
		return c.skip(br, h)
	}
	n := int(h.Length)
	if h.Fin && c.fragOp == 0 && n <= br.Buffered() {
		// The whole message is in the read buffer: handle it in place.
		p, _ := br.Peek(n)
		ws.Cipher(p, h.Mask, 0)
		c.complete(now, p)
		_, _ = br.Discard(n)
		return nil
	}
	if !c.hold(int64(n)) {
		c.overBudget()
		return c.skip(br, h)
	}
	start := len(c.frag)
	if cap(c.frag)-start < n {
		grown := make([]byte, start, start+n)
		copy(grown, c.frag)
		c.frag = grown
	}
	c.frag = c.frag[:start+n]
	if _, err := io.ReadFull(br, c.frag[start:]); err != nil {
		return err
	}
	ws.Cipher(c.frag[start:], h.Mask, 0)
	if c.fragOp == 0 {
		c.fragOp = h.OpCode
	}
	if !h.Fin {
		return nil
	}
	msg := c.frag
	c.frag, c.fragOp = nil, 0
	c.complete(now, msg)
	c.releaseHeld()
	return nil
}

// complete handles a whole message. Text and binary alike must be UTF-8:
// every message is JSON that goes on to other peers as a text frame, and a
// conforming peer closes on invalid text.
func (c *conn) complete(now time.Time, msg []byte) {
	if !utf8.Valid(msg) {
		c.invalidPayload("message is not valid UTF-8")
		return
	}
	c.message(now, msg)
}

// skip discards a data frame's payload. A length that cannot be skipped in
// reasonable time ends the connection.
func (c *conn) skip(br *bufio.Reader, h ws.Header) error {
	if h.Length > c.srv.limits.MaxMessageBytes {
		return errStop
	}
	_, err := br.Discard(int(h.Length))
	return err
}

// hold takes n bytes of the server's budget for messages in progress.
func (c *conn) hold(n int64) bool {
	if c.srv.pending.Add(n) > c.srv.limits.MaxPendingBytes {
		c.srv.pending.Add(-n)
		return false
	}
	c.held.Add(n)
	return true
}

// releaseHeld gives back what the connection holds of the server's budget
// (a whole message handled, or the connection gone).
func (c *conn) releaseHeld() {
	if n := c.held.Swap(0); n != 0 {
		c.srv.pending.Add(-n)
	}
}

// dropMessage forgets the message being assembled when the connection
// fails: its bytes go back to the server's budget now, not when the close
// handshake ends.
func (c *conn) dropMessage() {
	c.frag, c.fragOp = nil, 0
	c.releaseHeld()
}

// control reads a control frame (at most 125 bytes, checked by CheckHeader).
func (c *conn) control(br *bufio.Reader, h ws.Header) error {
	var buf [ws.MaxControlFramePayloadSize]byte
	p := buf[:h.Length]
	if _, err := io.ReadFull(br, p); err != nil {
		return err
	}
	ws.Cipher(p, h.Mask, 0)
	switch h.OpCode {
	case ws.OpClose:
		c.peerClose(p)
	case ws.OpPing:
		if !c.discard {
			c.enqueue(outFrame{kind: framePong, data: append([]byte(nil), p...)})
		}
	case ws.OpPong:
		// lastSeen is all a pong is for
	}
	return nil
}

// headerProblem says what was wrong with a frame header in words a client
// author can act on.
func headerProblem(h ws.Header, err error) string {
	switch {
	case errors.Is(err, ws.ErrProtocolOpCodeReserved):
		return fmt.Sprintf("unknown opcode %d", h.OpCode)
	case errors.Is(err, ws.ErrProtocolControlPayloadOverflow), errors.Is(err, ws.ErrProtocolControlNotFinal):
		return "control frames must be final and at most 125 bytes"
	case errors.Is(err, ws.ErrProtocolNonZeroRsv):
		return "reserved bits set: no extension was negotiated"
	case errors.Is(err, ws.ErrProtocolMaskRequired):
		return "client frames must be masked"
	case errors.Is(err, ws.ErrProtocolContinuationExpected):
		return "new message started inside a fragmented one"
	case errors.Is(err, ws.ErrProtocolContinuationUnexpected):
		return "continuation frame without a message"
	}
	return err.Error()
}

func (c *conn) message(now time.Time, data []byte) {
	if c.discard || c.isClosing() {
		return
	}
	if !c.allow(now) {
		c.discard = true
		c.srv.metrics.reject(c.role, reasonRateLimit)
		c.srv.log.Warn("closing connection over its message rate", "role", c.role, "player", c.playerID, "remote", c.remote)
		c.close(closePolicy, fmt.Sprintf("rate limit exceeded: more than %g messages per second", c.rate))
		return
	}
	c.srv.handle(c, data)
}

// peerClose answers the peer's close frame: with its own code when that is
// one a peer may send, with 1002 when the frame is malformed. The socket is
// dropped once our answer is written.
func (c *conn) peerClose(payload []byte) {
	c.discard = true
	code, reason := closeNormal, ""
	switch {
	case len(payload) == 1:
		code, reason = closeProtocol, "close frame payload of 1 byte: a code takes 2"
	case len(payload) >= 2:
		code = int(payload[0])<<8 | int(payload[1])
		switch {
		case !validCloseCode(code):
			code, reason = closeProtocol, fmt.Sprintf("close code %d may not be sent", code)
		case !utf8.Valid(payload[2:]):
			code, reason = closeProtocol, "close reason is not valid UTF-8"
		}
	}
	c.mu.Lock()
	c.peerClosed = true
	answered := c.closeSent
	c.mu.Unlock()
	if answered {
		c.kill()
		return
	}
	c.close(code, reason)
}

func (c *conn) protocolError(reason string) {
	c.discard = true
	c.dropMessage()
	c.srv.metrics.reject(c.role, reasonInvalid)
	c.srv.log.Info("closing connection after a WebSocket protocol error", "role", c.role, "remote", c.remote, "reason", reason)
	c.close(closeProtocol, reason)
}

func (c *conn) invalidPayload(reason string) {
	c.discard = true
	c.dropMessage()
	c.srv.metrics.reject(c.role, reasonInvalid)
	c.srv.log.Info("closing connection after an invalid message", "role", c.role, "remote", c.remote, "reason", reason)
	c.close(closeInvalidPayload, reason)
}

func (c *conn) tooBig() {
	if c.discard {
		return
	}
	c.discard = true
	c.dropMessage()
	c.srv.metrics.reject(c.role, reasonTooBig)
	c.close(closeTooBig, fmt.Sprintf("message larger than %d bytes", c.srv.limits.MaxMessageBytes))
}

// overBudget closes a connection whose message would take the server over
// MaxPendingBytes: many peers sending at once, so "try again later".
func (c *conn) overBudget() {
	if c.discard {
		return
	}
	c.discard = true
	c.dropMessage()
	c.srv.metrics.reject(c.role, reasonPendingBudget)
	c.srv.log.Warn("closing connection: messages in progress are over the server's budget", "role", c.role, "remote", c.remote, "budget", c.srv.limits.MaxPendingBytes)
	c.close(closeTryAgainLater, fmt.Sprintf("server busy: more than %d bytes of messages in progress", c.srv.limits.MaxPendingBytes))
}
