package signalling

// poll reads every connection of a server. On Linux it is a few epoll
// loops shared by all connections; elsewhere, or if epoll is unavailable, a
// goroutine per connection.
type poll interface {
	add(c *conn) error
	remove(c *conn)
	stop()
}

// forceGoroutinePoll makes new servers use goroutinePoll, so tests cover the
// fallback on Linux too.
var forceGoroutinePoll bool

// goroutinePoll reads each connection on a goroutine of its own.
type goroutinePoll struct{}

func (goroutinePoll) add(c *conn) error {
	go func() {
		buf := make([]byte, 4096)
		nc := c.nc
		for {
			n, err := nc.Read(buf)
			if n > 0 {
				c.feed(buf[:n])
			}
			if err != nil || c.killed.Load() {
				c.kill()
				return
			}
		}
	}()
	return nil
}

func (goroutinePoll) remove(*conn) {}
func (goroutinePoll) stop()        {}
