package signalling

import (
	"bufio"
	"fmt"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
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
	keyed       bool   // a streamer that presented the session's streamer credential (sameStreamerReturns)
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
	queueBytes  int64 // payload bytes queued or being written
	maxBytes    int64 // the byte budget of the send queue

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
// frames or maxBytes bytes pile up is closed instead of slowing anyone else
// down.
func (c *conn) send(data []byte) {
	c.enqueue(outFrame{kind: frameText, data: data})
}

// relay queues a message another peer sent, unless the queue is within
// relayHeadroom of its byte budget. The headroom keeps the server's own
// messages (playerConnected and the like) going through when peers flood a
// slow reader; the caller refuses the sender instead of dropping c.
func (c *conn) relay(data []byte) bool {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return true // going away anyway: nothing to refuse the sender for
	}
	full := c.queueBytes+int64(len(data)) > c.maxBytes-relayHeadroom(c.maxBytes)
	c.mu.Unlock()
	if full {
		return false
	}
	c.enqueue(outFrame{kind: frameText, data: data})
	return true
}

// relayHeadroom is the part of a send budget kept for the server's own messages.
func relayHeadroom(budget int64) int64 { return budget / 8 }

func (c *conn) enqueue(f outFrame) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	if len(c.queue) >= c.maxQueue || c.queueBytes+int64(len(f.data)) > c.maxBytes {
		// The peer's socket is full, so a close frame could not get through
		// either: drop the connection; its reader then tears it down.
		queued, bytes := len(c.queue), c.queueBytes
		c.queue, c.closing, c.closeSent = nil, true, true
		c.mu.Unlock()
		c.srv.metrics.reject(c.role, reasonSendQueueFull)
		c.srv.log.Warn("dropping connection that reads too slowly", "role", c.role, "remote", c.remote, "queued", queued, "queued_bytes", bytes)
		go c.kill() // callers may hold the server's lock, which teardown takes
		return
	}
	c.queue = append(c.queue, f)
	c.queueBytes += int64(len(f.data))
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
	reason = closeReason(reason)
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

// writeLoop writes queued frames through a pooled buffer until the queue is
// empty, then returns the buffer: an idle peer holds neither.
func (c *conn) writeLoop() {
	defer c.srv.recoverPeer(c, "write")
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(c.nc)
	defer func() { bw.Reset(nil); writerPool.Put(bw) }()
	for {
		c.mu.Lock()
		batch := c.queue
		c.queue = nil
		if len(batch) == 0 {
			if c.closing && !c.closeSent {
				c.closeSent = true
				code, reason := c.closeCode, c.closeReason
				c.mu.Unlock()
				c.writeClose(bw, code, reason)
				c.mu.Lock()
			}
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		var written int64
		for _, f := range batch {
			err := c.writeFrame(bw, f)
			written += int64(len(f.data))
			if err != nil {
				c.mu.Lock()
				c.closing, c.closeSent, c.queue, c.writing, c.queueBytes = true, true, nil, false, 0
				c.mu.Unlock()
				c.kill()
				return
			}
		}
		err := bw.Flush()
		c.mu.Lock()
		c.queueBytes -= written
		c.mu.Unlock()
		if err != nil {
			c.mu.Lock()
			c.closing, c.closeSent, c.queue, c.writing, c.queueBytes = true, true, nil, false, 0
			c.mu.Unlock()
			c.kill()
			return
		}
	}
}

// writeFrame buffers one frame; every write to the socket it causes has
// the write deadline.
func (c *conn) writeFrame(bw *bufio.Writer, f outFrame) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.limits.WriteTimeout))
	switch f.kind {
	case framePing:
		return writeFrame(bw, ws.OpPing, nil)
	case framePong:
		return writeFrame(bw, ws.OpPong, f.data)
	}
	if err := writeFrame(bw, ws.OpText, f.data); err != nil {
		return err
	}
	c.srv.metrics.sent(c.role, len(f.data))
	return nil
}

// writeClose sends our close frame. If the peer already sent its own, the
// handshake is complete; otherwise it has closeGrace to answer.
func (c *conn) writeClose(bw *bufio.Writer, code int, reason string) {
	_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	if writeFrame(bw, ws.OpClose, closePayload(code, reason)) == nil {
		_ = bw.Flush()
	}
	c.mu.Lock()
	done := c.peerClosed
	c.mu.Unlock()
	if done {
		c.kill()
		return
	}
	time.AfterFunc(closeGrace, c.kill)
}

// recoverPeer is the recover boundary around everything that handles one
// peer (its reads, its writes, hooks and timers acting for it): a bug drops
// that peer with 1011, is logged with its stack once per distinct panic, is
// counted in pixelstream_signalling_peer_panics_total, and leaves every
// other peer and the process alone. Use it as `defer s.recoverPeer(c, where)`.
func (s *Server) recoverPeer(c *conn, where string) {
	r := recover()
	if r == nil {
		return
	}
	s.logPanic(r, where, "role", c.role, "player", c.playerID, "remote", c.remote)
	if where == "read" {
		s.poll.remove(c) // read nothing more from it: the same bytes would panic again
	}
	c.close(closeInternal, "internal server error")
	// The writer may be what failed: make sure the socket goes regardless.
	time.AfterFunc(closeGrace, c.kill)
}

// recoverHook is the recover boundary of a hook that acts for no single
// live peer (events, a peer's teardown): the panic is logged and counted and
// the caller carries on. Use it as `defer s.recoverHook(where)`.
func (s *Server) recoverHook(where string) {
	if r := recover(); r != nil {
		s.logPanic(r, where)
	}
}

func (s *Server) logPanic(r any, where string, kv ...any) {
	s.metrics.panicked(where)
	msg := fmt.Sprint(r)
	kv = append([]any{"where", where, "panic", msg}, kv...)
	if _, seen := s.panics.LoadOrStore(where+": "+msg, true); !seen {
		kv = append(kv, "stack", string(debug.Stack()))
	}
	s.log.Error("recovered from a panic; dropping the peer it concerned", kv...)
}

// callHook runs f, a call into the embedding session for peer c, behind
// c's recover boundary.
func (s *Server) callHook(c *conn, f func()) {
	defer s.recoverPeer(c, "hook")
	f()
}

// kill drops the socket and forgets the peer, once.
func (c *conn) kill() {
	if !c.killed.CompareAndSwap(false, true) {
		return
	}
	c.srv.poll.remove(c)
	_ = c.nc.Close()
	c.releaseHeld()
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
