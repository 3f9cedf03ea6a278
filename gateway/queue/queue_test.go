package queue

import (
	"errors"
	"fmt"
	"testing"
)

func TestQueueFIFOPositionsAndLeaving(t *testing.T) {
	q := New(3)
	a, _ := q.Join("a", "")
	b, _ := q.Join("b", "")
	c, _ := q.Join("c", "sub-c")
	if _, err := q.Join("d", ""); !errors.Is(err, ErrFull) {
		t.Fatalf("fourth join into a queue of 3: %v, want ErrFull", err)
	}
	if again, _ := q.Join("b", ""); again != b || q.Len() != 3 {
		t.Fatal("a visitor joining again did not keep their place")
	}
	for _, tc := range []struct {
		w    *Waiter
		want int
	}{{a, 1}, {b, 2}, {c, 3}} {
		if got := q.Position(tc.w); got != tc.want {
			t.Fatalf("position of %s: %d, want %d", tc.w.Visitor, got, tc.want)
		}
	}
	changed := q.Changed()
	q.Leave(b) // closed their tab
	select {
	case <-changed:
	default:
		t.Fatal("leaving did not signal a change")
	}
	if q.Position(c) != 2 || q.Position(b) != 0 || q.Len() != 2 {
		t.Fatalf("after b left: c at %d, b at %d, len %d", q.Position(c), q.Position(b), q.Len())
	}
	if f := q.Front(); f != a {
		t.Fatalf("front %v, want a", f)
	}
	q.Leave(a)
	q.Leave(a) // twice is harmless
	if f := q.Front(); f != c || q.Position(c) != 1 {
		t.Fatalf("front after a left: %v at %d", f, q.Position(c))
	}
	if _, err := q.Join("d", ""); err != nil {
		t.Fatalf("join after room freed: %v", err)
	}
}

func TestQueueZeroMaxRefusesEveryone(t *testing.T) {
	if _, err := New(0).Join("a", ""); !errors.Is(err, ErrFull) {
		t.Fatalf("max_queue 0: %v, want ErrFull", err)
	}
}

func TestQueueManyLeavesCompact(t *testing.T) {
	q := New(10000)
	ws := make([]*Waiter, 0, 10000)
	for i := 0; i < 10000; i++ {
		w, err := q.Join(fmt.Sprint(i), "")
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	for i := 0; i < 9999; i++ {
		q.Leave(ws[i])
	}
	if q.Len() != 1 || q.Position(ws[9999]) != 1 || len(q.list) > 2 {
		t.Fatalf("len %d, last at %d, list holds %d", q.Len(), q.Position(ws[9999]), len(q.list))
	}
}
