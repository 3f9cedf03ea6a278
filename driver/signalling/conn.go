package signalling

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
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
	framePong
)

type outFrame struct {
	kind frameKind
	data []byte
}

// conn is one WebSocket peer. Its frames are read by a shared poller (see
// poll_linux.go) and a writer goroutine exists only while frames are queued,
// so an idle connection holds no goroutine and no buffer.
type conn struct {
	srv       *Server
	nc        net.Conn
	role      role
	remote    string
	connected time.Time

	// Routing state, guarded by srv.mu.
	playerID    string
	streamerID  string
	key         string // streamer connections: a name for hooks, fixed at connect
	listed      bool   // a streamer that identified, or an SFU that streams
	sub         *conn
	subscribers map[*conn]struct{}
	timer       *time.Timer // identify or subscribe deadline
	probed      bool        // a subscribe that found the streamer full is waiting for pongs

	// Send side, guarded by mu.
	mu          sync.Mutex
	queue       []outFrame
	writing     bool
	closing     bool
	closeSent   bool
	closeCode   int
	closeReason string
	maxQueue    int

	peerClosed bool // the peer's close frame arrived (guarded by mu)

	lastSeen atomic.Int64 // unix nanoseconds of the last frame from the peer
	killed   atomic.Bool
	pollID   int32

	// Read side, touched only by the goroutine reading this connection.
	reader

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
		// The peer's socket is full, so a close frame could not get through
		// either: drop the connection; its reader then tears it down.
		c.queue, c.closing, c.closeSent = nil, true, true
		c.mu.Unlock()
		c.srv.metrics.reject(c.role, reasonSendQueueFull)
		c.srv.log.Warn("dropping connection that reads too slowly", "role", c.role, "remote", c.remote, "queued", c.maxQueue)
		go c.kill() // callers may hold the server's lock, which teardown takes
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
				c.mu.Lock()
				c.closing, c.closeSent, c.queue, c.writing = true, true, nil, false
				c.mu.Unlock()
				c.kill()
				return
			}
		}
	}
}

func (c *conn) writeFrame(f outFrame) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.limits.WriteTimeout))
	switch f.kind {
	case framePing:
		return writeFrame(c.nc, opPing, nil)
	case framePong:
		return writeFrame(c.nc, opPong, f.data)
	}
	if err := writeFrame(c.nc, opText, f.data); err != nil {
		return err
	}
	c.srv.metrics.sent(c.role, len(f.data))
	return nil
}

// writeClose sends our close frame. If the peer already sent its own, the
// handshake is complete; otherwise it has closeGrace to answer.
func (c *conn) writeClose(code int, reason string) {
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	_ = writeFrame(c.nc, opClose, closePayload(code, reason))
	c.mu.Lock()
	done := c.peerClosed
	c.mu.Unlock()
	if done {
		c.kill()
		return
	}
	time.AfterFunc(closeGrace, c.kill)
}

// kill drops the socket and forgets the peer, once.
func (c *conn) kill() {
	if !c.killed.CompareAndSwap(false, true) {
		return
	}
	c.srv.poll.remove(c)
	_ = c.nc.Close()
	c.srv.teardown(c)
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
