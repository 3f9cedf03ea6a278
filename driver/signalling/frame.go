package signalling

import (
	"encoding/binary"
	"fmt"
	"syscall"
	"time"
)

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// reader is the read side of a connection: an incremental parser of client
// frames fed with whatever bytes the socket had, so an idle connection holds
// no goroutine and no buffer.
type reader struct {
	raw     syscall.RawConn // the socket, for the epoll loop
	pending []byte          // an incomplete frame carried over; nil when none
	frag    []byte          // a fragmented message being assembled
	fragOp  byte
	skip    uint64 // payload bytes of a refused frame still to skip
	discard bool   // after a fatal error: read frames only to see the close
}

// feed parses the frames in data, which the caller may reuse afterwards.
func (c *conn) feed(data []byte) {
	if len(c.pending) > 0 {
		c.pending = append(c.pending, data...)
		data = c.pending
	}
	used := c.parseFrames(data)
	rest := data[used:]
	switch {
	case len(rest) == 0:
		c.pending = nil
	case len(c.pending) > 0 && used == 0:
		// pending already holds exactly rest
	default:
		c.pending = append([]byte(nil), rest...)
	}
}

// parseFrames handles every complete frame in b and returns the bytes used.
func (c *conn) parseFrames(b []byte) int {
	off := 0
	limit := uint64(c.srv.limits.MaxMessageBytes)
	for {
		if c.skip > 0 {
			n := min(uint64(len(b)-off), c.skip)
			off += int(n)
			c.skip -= n
			if c.skip > 0 {
				return off
			}
		}
		h := b[off:]
		if len(h) < 2 {
			return off
		}
		fin := h[0]&0x80 != 0
		op := h[0] & 0x0f
		if h[0]&0x70 != 0 {
			c.protocolError("reserved bits set: no extension was negotiated")
			return len(b)
		}
		if h[1]&0x80 == 0 {
			c.protocolError("client frames must be masked")
			return len(b)
		}
		plen, hl := uint64(h[1]&0x7f), 2
		switch plen {
		case 126:
			if len(h) < 4 {
				return off
			}
			plen, hl = uint64(binary.BigEndian.Uint16(h[2:])), 4
		case 127:
			if len(h) < 10 {
				return off
			}
			plen, hl = binary.BigEndian.Uint64(h[2:]), 10
		}
		control := op&0x8 != 0
		if control && (plen > 125 || !fin) {
			c.protocolError("control frames must be final and at most 125 bytes")
			return len(b)
		}
		total := uint64(hl+4) + plen
		if !control && plen+uint64(len(c.frag)) > limit {
			// Refuse before buffering: the payload is skipped as it arrives.
			c.tooBig()
			if avail := uint64(len(h)); avail < total {
				c.skip = total - avail
				return len(b)
			}
			off += int(total)
			continue
		}
		if uint64(len(h)) < total {
			return off
		}
		payload := h[hl+4 : total]
		unmask(payload, h[hl:hl+4])
		off += int(total)
		c.frame(op, fin, payload)
		if c.killed.Load() {
			return len(b)
		}
	}
}

func unmask(p, key []byte) {
	for i := range p {
		p[i] ^= key[i&3]
	}
}

func (c *conn) frame(op byte, fin bool, payload []byte) {
	now := time.Now()
	c.lastSeen.Store(now.UnixNano())
	switch op {
	case opText, opBinary: // browsers may send the JSON text in binary frames
		if c.fragOp != 0 {
			c.protocolError("new message started inside a fragmented one")
			return
		}
		if fin {
			c.message(now, payload)
			return
		}
		c.fragOp = op
		c.frag = append([]byte(nil), payload...)
	case opContinuation:
		if c.fragOp == 0 {
			c.protocolError("continuation frame without a message")
			return
		}
		c.frag = append(c.frag, payload...)
		if fin {
			msg := c.frag
			c.frag, c.fragOp = nil, 0
			c.message(now, msg)
		}
	case opClose:
		c.peerClose(payload)
	case opPing:
		c.enqueue(outFrame{kind: framePong, data: append([]byte(nil), payload...)})
	case opPong:
		// lastSeen is all a pong is for
	default:
		c.protocolError(fmt.Sprintf("unknown opcode %d", op))
	}
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

// peerClose answers the peer's close frame with the same code; the socket is
// dropped once our answer is written.
func (c *conn) peerClose(payload []byte) {
	c.discard = true
	code := closeNormal
	if len(payload) >= 2 {
		code = int(binary.BigEndian.Uint16(payload))
	}
	c.mu.Lock()
	c.peerClosed = true
	answered := c.closeSent
	c.mu.Unlock()
	if answered {
		c.kill()
		return
	}
	switch code {
	case closeNoStatus, closeAbnormal, closeTLS:
		code = closeNormal // reserved: never sent in a frame
	}
	c.close(code, "")
}

func (c *conn) protocolError(reason string) {
	c.discard = true
	c.srv.metrics.reject(c.role, reasonInvalid)
	c.srv.log.Info("closing connection after a WebSocket protocol error", "role", c.role, "remote", c.remote, "reason", reason)
	c.close(closeProtocol, reason)
}

func (c *conn) tooBig() {
	if c.discard {
		return
	}
	c.discard = true
	c.srv.metrics.reject(c.role, reasonTooBig)
	c.close(closeTooBig, fmt.Sprintf("message larger than %d bytes", c.srv.limits.MaxMessageBytes))
}
