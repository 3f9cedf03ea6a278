package signalling

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Close codes the server uses (RFC 6455 section 7.4.1).
const (
	closeNormal         = websocket.CloseNormalClosure // streamer left: the frontend reconnects
	closeGoingAway      = websocket.CloseGoingAway     // server shutting down: the frontend stays put
	closeInvalidPayload = websocket.CloseInvalidFramePayloadData
	closePolicy         = websocket.ClosePolicyViolation
	closeTooBig         = websocket.CloseMessageTooBig
	closeInternal       = websocket.CloseInternalServerErr // disconnectPlayer, as Epic's server does
	closeTryAgainLater  = websocket.CloseTryAgainLater
)

// closeGrace is how long a peer has to answer our close frame before the
// socket is dropped.
const closeGrace = 2 * time.Second

type role uint8

const (
	rolePlayer role = iota
	roleStreamer
	roleSFU
)

func (r role) String() string {
	switch r {
	case roleStreamer:
		return "streamer"
	case roleSFU:
		return "sfu"
	}
	return "player"
}

type frameKind uint8

const (
	frameText frameKind = iota
	framePing
)

type outFrame struct {
	kind frameKind
	data []byte
}

// conn is one WebSocket peer. Its reader runs on the HTTP handler's
// goroutine; a writer goroutine exists only while frames are queued, so an
// idle connection costs one parked goroutine.
type conn struct {
	srv       *Server
	ws        *websocket.Conn
	role      role
	remote    string
	connected time.Time

	// Routing state, guarded by srv.mu.
	playerID    string
	streamerID  string
	listed      bool // a streamer that identified, or an SFU that streams
	sub         *conn
	subscribers map[*conn]struct{}
	timer       *time.Timer // identify or subscribe deadline

	// Send side, guarded by mu.
	mu          sync.Mutex
	queue       []outFrame
	writing     bool
	closing     bool
	closeSent   bool
	closeCode   int
	closeReason string
	maxQueue    int

	lastSeen atomic.Int64 // unix nanoseconds of the last frame from the peer

	// Token bucket, touched by the reader only.
	rate, burst, tokens float64
	refilled            time.Time
}

// send queues one text frame. It never blocks: a peer that lets maxQueue
// frames pile up is closed instead of slowing anyone else down.
func (c *conn) send(data []byte) {
	c.enqueue(outFrame{kind: frameText, data: data})
}

func (c *conn) enqueue(f outFrame) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	if len(c.queue) >= c.maxQueue {
		c.queue = nil
		c.mu.Unlock()
		c.srv.metrics.reject(c.role, reasonSendQueueFull)
		c.srv.log.Warn("closing slow connection", "role", c.role, "id", c.ident(), "queued", c.maxQueue)
		c.close(closePolicy, "send queue full: the connection reads too slowly")
		return
	}
	c.queue = append(c.queue, f)
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if start {
		go c.writeLoop()
	}
}

// close sends the frames already queued, then a close frame with code and
// reason, and gives the peer closeGrace to answer before the reader drops
// the socket. Later sends are discarded.
func (c *conn) close(code int, reason string) {
	if len(reason) > 123 { // a close frame's reason is at most 123 bytes
		reason = reason[:120] + "..."
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = true
	c.closeCode, c.closeReason = code, reason
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if start {
		go c.writeLoop()
	}
}

func (c *conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

func (c *conn) writeLoop() {
	for {
		c.mu.Lock()
		batch := c.queue
		c.queue = nil
		if len(batch) == 0 {
			if c.closing && !c.closeSent {
				c.closeSent = true
				code, reason := c.closeCode, c.closeReason
				c.mu.Unlock()
				c.writeClose(code, reason)
				c.mu.Lock()
			}
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		for _, f := range batch {
			if err := c.writeFrame(f); err != nil {
				// The reader notices the dead socket and tears the connection down.
				_ = c.ws.NetConn().Close()
				c.mu.Lock()
				c.closing, c.closeSent, c.queue, c.writing = true, true, nil, false
				c.mu.Unlock()
				return
			}
		}
	}
}

func (c *conn) writeFrame(f outFrame) error {
	deadline := time.Now().Add(c.srv.limits.WriteTimeout)
	if f.kind == framePing {
		return c.ws.WriteControl(websocket.PingMessage, nil, deadline)
	}
	_ = c.ws.SetWriteDeadline(deadline)
	if err := c.ws.WriteMessage(websocket.TextMessage, f.data); err != nil {
		return err
	}
	c.srv.metrics.sent(c.role, len(f.data))
	return nil
}

func (c *conn) writeClose(code int, reason string) {
	now := time.Now()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), now.Add(time.Second))
	_ = c.ws.SetReadDeadline(now.Add(closeGrace))
}

// allow takes one token from the connection's bucket.
func (c *conn) allow(now time.Time) bool {
	if c.rate <= 0 {
		return true
	}
	c.tokens += now.Sub(c.refilled).Seconds() * c.rate
	c.refilled = now
	if c.tokens > c.burst {
		c.tokens = c.burst
	}
	if c.tokens < 1 {
		return false
	}
	c.tokens--
	return true
}

// ident names the connection in logs.
func (c *conn) ident() string {
	if c.role == roleStreamer {
		if c.streamerID != "" {
			return c.streamerID
		}
		return "(unidentified)"
	}
	return c.playerID
}

var readBufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

var errTooBig = errors.New("message too big")

// readMessage reads one message into a pooled buffer, refusing anything over
// limit bytes without buffering it.
func (c *conn) readMessage(limit int64) (*bytes.Buffer, error) {
	_, r, err := c.ws.NextReader()
	if err != nil {
		return nil, err
	}
	buf := readBufPool.Get().(*bytes.Buffer)
	buf.Reset()
	n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		readBufPool.Put(buf)
		return nil, err
	}
	if n > limit {
		readBufPool.Put(buf)
		return nil, errTooBig
	}
	return buf, nil
}

func putReadBuf(b *bytes.Buffer) {
	if b.Cap() <= 64<<10 {
		readBufPool.Put(b)
	}
}
