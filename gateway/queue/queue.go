// Package queue is the gateway's FIFO of visitors waiting for a session:
// positions, a count-bounded length (max_queue; each waiter is a fixed
// number of bytes), and leaving when the visitor's waiting page goes away.
package queue

import (
	"errors"
	"sync"
	"time"
)

// ErrFull means max_queue visitors are already waiting.
var ErrFull = errors.New("queue full")

// Waiter is one visitor in line. Assigned carries the visitor's session
// when it is their turn; it is buffered so the dispatcher never blocks on
// a visitor.
type Waiter struct {
	Visitor  string
	Subject  string
	Address  string    // the visitor's address (as the caller keys it)
	Expires  time.Time // when the visitor's credential expires; zero: never
	Enqueued time.Time
	Assigned chan any

	seq uint64
}

// Queue is a FIFO with positions. Every waiter costs a fixed number of
// bytes (ids are bounded by the caller), and max bounds the count, so the
// queue's memory is bounded by max times that.
type Queue struct {
	max int

	mu      sync.Mutex
	list    []*Waiter // in order; removed waiters are compacted lazily
	byID    map[string]*Waiter
	gone    int // removed entries still in list
	nextSeq uint64
	pos     map[*Waiter]int // positions, rebuilt after a change
	dirty   bool
	changed chan struct{}
}

// New returns a queue of at most max waiters.
func New(max int) *Queue {
	return &Queue{max: max, byID: map[string]*Waiter{}, changed: make(chan struct{})}
}

// Join puts a visitor at the end of the line, or returns their existing
// place (a reload of the waiting page keeps it).
func (q *Queue) Join(visitor, subject string) (*Waiter, error) {
	return q.JoinFrom(visitor, subject, "", time.Time{})
}

// JoinFrom is Join for a visitor at address whose credential expires.
func (q *Queue) JoinFrom(visitor, subject, address string, expires time.Time) (*Waiter, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if w, ok := q.byID[visitor]; ok {
		return w, nil
	}
	if len(q.byID) >= q.max {
		return nil, ErrFull
	}
	q.nextSeq++
	w := &Waiter{Visitor: visitor, Subject: subject, Address: address, Expires: expires, Enqueued: time.Now(),
		Assigned: make(chan any, 1), seq: q.nextSeq}
	q.list = append(q.list, w)
	q.byID[visitor] = w
	q.changedLocked()
	return w, nil
}

// Leave takes w out of the line (tab closed, or assigned); it says whether
// w was still in line.
func (q *Queue) Leave(w *Waiter) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if cur, ok := q.byID[w.Visitor]; !ok || cur != w {
		return false
	}
	delete(q.byID, w.Visitor)
	q.gone++
	if q.gone > len(q.list)/2 {
		q.compactLocked()
	}
	q.changedLocked()
	return true
}

// Front returns the first waiter, or nil.
func (q *Queue) Front() *Waiter {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, w := range q.list {
		if q.byID[w.Visitor] == w {
			return w
		}
	}
	return nil
}

// Waiting returns the waiters in line, first first.
func (q *Queue) Waiting() []*Waiter {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]*Waiter, 0, len(q.byID))
	for _, w := range q.list {
		if q.byID[w.Visitor] == w {
			out = append(out, w)
		}
	}
	return out
}

// Len is how many visitors wait.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.byID)
}

// Oldest is when the first waiter joined (zero when none waits).
func (q *Queue) Oldest() time.Time {
	if w := q.Front(); w != nil {
		return w.Enqueued
	}
	return time.Time{}
}

// Position is w's place in line, 1 = next; 0 when w is not in line.
func (q *Queue) Position(w *Waiter) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.dirty {
		q.compactLocked()
		q.pos = make(map[*Waiter]int, len(q.list))
		for i, x := range q.list {
			q.pos[x] = i + 1
		}
		q.dirty = false
	}
	return q.pos[w]
}

// Changed is closed at the next change of the line.
func (q *Queue) Changed() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.changed
}

func (q *Queue) changedLocked() {
	q.dirty = true
	close(q.changed)
	q.changed = make(chan struct{})
}

func (q *Queue) compactLocked() {
	out := q.list[:0]
	for _, w := range q.list {
		if q.byID[w.Visitor] == w {
			out = append(out, w)
		}
	}
	for i := len(out); i < len(q.list); i++ {
		q.list[i] = nil
	}
	q.list = out
	q.gone = 0
}
