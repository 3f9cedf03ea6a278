package signalling

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// epollSet spreads connections over one epoll loop per CPU. A loop reads a
// readable socket once, without blocking, into its own buffer and handles
// every whole frame in it inline (handling never blocks: sends only
// queue). Only when a frame is left incomplete does the connection go to a
// goroutine of its own (readWake) that waits for the rest under
// Limits.FrameTimeout while the socket is disarmed here, so a peer that
// stalls in the middle of a frame holds up nobody else. No goroutine,
// stack or buffer is held per idle connection.
type epollSet struct {
	loops []*epollLoop
	next  atomic.Uint32
	ids   atomic.Int32
}

type epollLoop struct {
	epfd  int
	file  *os.File        // epfd, so Go's own netpoller can wait on it
	rc    syscall.RawConn // file's
	mu    sync.Mutex
	conns map[int32]*conn
	br    *bufio.Reader // the loop's read buffer, over the socket being read
	done  chan struct{}
}

// epollEvents: readable or the peer hung up. Level-triggered: bytes left
// unread fire again on the next wait.
const epollEvents = unix.EPOLLIN | unix.EPOLLRDHUP

func newPoll() poll {
	n := runtime.GOMAXPROCS(0)
	set := &epollSet{}
	for i := 0; i < n; i++ {
		l, err := newEpollLoop()
		if err != nil {
			set.stop()
			return goroutinePoll{}
		}
		set.loops = append(set.loops, l)
		go l.run()
	}
	return set
}

func newEpollLoop() (*epollLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	// An epoll fd is readable while it has events. Handing it to Go's
	// netpoller (non-blocking, via os.File) lets the loop park like any
	// network read instead of sitting in a blocking epoll_wait that holds a
	// P until sysmon notices, which showed up as milliseconds of latency.
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("epoll fd non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(epfd), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("epoll fd: %w", err)
	}
	return &epollLoop{epfd: epfd, file: f, rc: rc, conns: make(map[int32]*conn), br: bufio.NewReaderSize(nil, 32<<10), done: make(chan struct{})}, nil
}

func (s *epollSet) add(c *conn, armed bool) error {
	raw, err := rawConn(c)
	if err != nil {
		return err
	}
	c.raw = raw
	id := s.ids.Add(1)
	if id <= 0 { // wrapped after 2^31 connections
		s.ids.Store(1)
		id = 1
	}
	c.pollID = id
	l := s.loops[s.next.Add(1)%uint32(len(s.loops))]
	c.epfd, c.loopMu = l.epfd, &l.mu
	l.mu.Lock()
	l.conns[id] = c
	l.mu.Unlock()
	if !armed {
		return nil // the first reader adds it when done (rearm)
	}
	if err := c.arm(true); err != nil {
		l.mu.Lock()
		delete(l.conns, id)
		l.mu.Unlock()
		return fmt.Errorf("epoll add: %w", err)
	}
	return nil
}

func (s *epollSet) rearm(c *conn) error {
	// The loop takes this lock to find c after its wait, so what this
	// reader wrote happens before the loop reads c again (the kernel's
	// ordering of epoll_ctl and epoll_wait is invisible to Go's memory model).
	c.loopMu.Lock()
	//lint:ignore SA2001 the empty critical section is the point: it orders this reader before the loop
	c.loopMu.Unlock()
	return c.arm(true)
}

// arm puts c's socket in its loop's epoll set, or takes it out while a
// goroutine of its own reads it. Out, not just without EPOLLIN: epoll
// reports hang-ups and errors whatever events are asked for, and the loop
// must not read c while that goroutine does.
func (c *conn) arm(on bool) error {
	var cerr error
	err := c.raw.Control(func(fd uintptr) {
		if on {
			cerr = unix.EpollCtl(c.epfd, unix.EPOLL_CTL_ADD, int(fd), &unix.EpollEvent{Events: epollEvents, Fd: c.pollID})
		} else {
			cerr = unix.EpollCtl(c.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
		}
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("epoll: %w", err)
	}
	return nil
}

func (s *epollSet) remove(c *conn) {
	for _, l := range s.loops {
		l.mu.Lock()
		_, ok := l.conns[c.pollID]
		if ok {
			delete(l.conns, c.pollID)
		}
		l.mu.Unlock()
		if ok {
			_ = c.raw.Control(func(fd uintptr) { _ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, int(fd), nil) })
			return
		}
	}
}

func (s *epollSet) stop() {
	for _, l := range s.loops {
		_ = l.file.Close() // ends the loop's wait
		<-l.done
	}
}

func rawConn(c *conn) (syscall.RawConn, error) {
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return nil, errors.New("connection has no file descriptor")
	}
	return sc.SyscallConn()
}

func (l *epollLoop) run() {
	defer close(l.done)
	events := make([]unix.EpollEvent, 128)
	for {
		var n int
		var werr error
		err := l.rc.Read(func(fd uintptr) bool {
			n, werr = unix.EpollWait(int(fd), events, 0)
			if errors.Is(werr, unix.EINTR) {
				n, werr = 0, nil
			}
			return n > 0 || werr != nil // false: park until epfd is readable
		})
		if err != nil || werr != nil {
			return // stopped
		}
		for i := 0; i < n; i++ {
			l.mu.Lock()
			c := l.conns[events[i].Fd]
			l.mu.Unlock()
			if c != nil {
				l.readable(c)
			}
		}
	}
}

// readable reads what c's socket holds, once and without blocking, and
// handles the whole frames among it. The rest of an incomplete frame is
// left to readWake, with the bytes read so far.
func (l *epollLoop) readable(c *conn) {
	defer c.srv.recoverPeer(c, "read")
	br := l.br
	br.Reset(source{c})
	defer br.Reset(nil)
	// inline is the reader's own state, and a goroutine may take over the
	// reading below: it is reset by whoever stops reading here, never
	// after that goroutine has started.
	c.peekOnce, c.inline = true, true
	// (After a panic nothing reads c again: recoverPeer removes it.)
	stop := func() { c.inline = false }
	if _, err := br.Peek(1); err != nil {
		stop()
		if !errors.Is(err, errNoData) {
			c.kill() // reset, or the peer closed its side
		}
		return
	}
	for br.Buffered() > 0 {
		if !frameBuffered(br) {
			// Hand the partial frame over; the loop stops watching the
			// socket until that goroutine is done with it.
			b, _ := br.Peek(br.Buffered())
			c.early = append([]byte(nil), b...)
			stop()
			if err := c.arm(false); err != nil {
				c.kill()
				return
			}
			go c.readWake()
			return
		}
		if err := c.readFrame(br); err != nil {
			stop()
			if errors.Is(err, errStop) {
				_ = c.arm(false) // closing: read no more, the close handshake drops it
				return
			}
			c.kill()
			return
		}
		if c.killed.Load() {
			break
		}
	}
	stop()
}
