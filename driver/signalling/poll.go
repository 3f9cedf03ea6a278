package signalling

// poll reads every connection of a server. On Linux an epoll set says when
// a socket has bytes and a short-lived goroutine reads them (readWake);
// elsewhere, or if epoll is unavailable, a goroutine per connection reads.
type poll interface {
	// add starts reading c. With armed false the caller starts the first
	// read itself (bytes came with the handshake) and rearm follows it.
	add(c *conn, armed bool) error
	// rearm asks for the next wake-up once c's socket is readable again.
	rearm(c *conn) error
	remove(c *conn)
	stop()
}

// forceGoroutinePoll makes new servers use goroutinePoll, so tests cover the
// fallback on Linux too.
var forceGoroutinePoll bool

// goroutinePoll reads each connection on a goroutine of its own.
type goroutinePoll struct{}

func (goroutinePoll) add(c *conn, _ bool) error {
	go c.readBlocking()
	return nil
}

func (goroutinePoll) rearm(*conn) error { return nil }
func (goroutinePoll) remove(*conn)      {}
func (goroutinePoll) stop()             {}
