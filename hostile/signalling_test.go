package hostile

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// frame builds one raw client frame: any flags, any opcode, a declared
// length that may differ from the payload's, masked or not.
type frame struct {
	fin      bool
	rsv      byte // the three reserved bits, 0..7
	op       byte
	unmasked bool
	declared *uint64 // nil: len(payload)
	enc      int     // length encoding: 0 minimal, 2 = 16-bit, 8 = 64-bit
	payload  []byte
}

func (f frame) bytes() []byte {
	b0 := f.rsv<<4 | f.op&0x0f
	if f.fin {
		b0 |= 0x80
	}
	n := uint64(len(f.payload))
	if f.declared != nil {
		n = *f.declared
	}
	out := []byte{b0}
	mask := byte(0x80)
	if f.unmasked {
		mask = 0
	}
	enc := f.enc
	if enc == 0 {
		switch {
		case n < 126:
		case n <= 0xffff:
			enc = 2
		default:
			enc = 8
		}
	}
	switch enc {
	case 2:
		out = append(out, mask|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	case 8:
		out = append(out, mask|127)
		out = binary.BigEndian.AppendUint64(out, n)
	default:
		out = append(out, mask|byte(n))
	}
	p := append([]byte(nil), f.payload...)
	if !f.unmasked {
		key := [4]byte{0x12, 0x34, 0x56, 0x78}
		out = append(out, key[:]...)
		for i := range p {
			p[i] ^= key[i&3]
		}
	}
	return append(out, p...)
}

// TestHarness checks the harness itself: a streamer, a bystander that gets
// its messages, and a clean SIGTERM.
func TestHarness(t *testing.T) {
	tg := StartSignalling(t)
	var st *Streamer
	if tg.StreamerURL != "" {
		// A live session without its streamer URL: the bystander follows
		// the session's own streamer instead.
		st = StartStreamer(t, tg, "hostile")
	}
	by := ConnectBystander(t, tg, st)
	tg.Finish(t, by, 256<<20)
}

// rssBudget is the peak resident set a standalone signalling process may
// reach in any row: its budgets for partial messages (16 MiB) and the
// streamer's send queue (16 MiB) plus the runtime's own share.
const rssBudget = 96 << 20

func u64(v uint64) *uint64 { return &v }

// masked text, as a well-behaved client would send it.
func text(s string) []byte { return frame{fin: true, op: 0x1, payload: []byte(s)}.bytes() }

func closeBody(code int, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

// closedWith checks a CloseResult against the code a row expects.
func closedWith(t *testing.T, got CloseResult, code int) {
	t.Helper()
	if got.Dropped || got.Code != code {
		t.Fatalf("attacker: %s, want close %d", got, code)
	}
	if !utf8.ValidString(got.Reason) || len(got.RawBody) > 125 {
		t.Fatalf("attacker: close reason %q (%d bytes) is not valid UTF-8 within 123 bytes", got.Reason, len(got.Reason))
	}
	t.Logf("attacker: %s", got)
}

// sendRaw connects a raw player, writes b and returns how the server ended
// the connection.
func sendRaw(t *testing.T, tg *Target, b []byte) CloseResult {
	t.Helper()
	c := DialRaw(t, tg.PlayerDialURL())
	_ = c.SetWriteDeadline(time.Now().Add(waitFor))
	if _, err := c.Write(b); err != nil {
		t.Fatalf("attacker write: %v", err)
	}
	return c.ReadUntilClose(t)
}

// TestSignallingHostile is the signalling half of the hostile-input suite:
// one row per attack seen in issue 11 and per class of RFC 6455 violation.
// Each row runs against a fresh process and checks that the attacker is
// closed with the right code, a bystander player still gets what the
// streamer sends it, the process stays within its memory budget and still
// exits on SIGTERM.
func TestSignallingHostile(t *testing.T) {
	type row struct {
		name   string
		attack func(t *testing.T, tg *Target, st *Streamer)
	}
	simple := func(name string, code int, b []byte) row {
		return row{name, func(t *testing.T, tg *Target, _ *Streamer) { closedWith(t, sendRaw(t, tg, b), code) }}
	}
	closeCode := func(code int) row {
		return simple(fmt.Sprintf("4 close code %d", code), 1002, frame{fin: true, op: 0x8, payload: closeBody(code, "")}.bytes())
	}
	rows := []row{
		// Case 1: a continuation whose length makes the sum wrap.
		{"1 continuation declaring 2^64-10 bytes", func(t *testing.T, tg *Target, _ *Streamer) {
			// 10 + (2^64-10) wraps to 0 in uint64.
			b := frame{op: 0x1, payload: []byte(`{"type":"p`)}.bytes()
			b = append(b, frame{fin: true, op: 0x0, declared: u64(1<<64 - 10), payload: []byte("x")}.bytes()...)
			closedWith(t, sendRaw(t, tg, b), 1009)
		}},
		{"1 large first fragment then 2^64-10 and a flood", func(t *testing.T, tg *Target, _ *Streamer) {
			c := DialRaw(t, tg.PlayerDialURL())
			b := frame{op: 0x1, payload: bytes.Repeat([]byte(" "), 60000)}.bytes()
			b = append(b, frame{fin: true, op: 0x0, declared: u64(1<<64 - 10)}.bytes()...)
			_, _ = c.Write(b)
			flood(c, 256<<20) // what the old server buffered
			closedWith(t, c.ReadUntilClose(t), 1009)
		}},
		// Case 2: a frame whose length made the parser's total wrap to 0.
		{"2 frame declaring 2^64-14 bytes", func(t *testing.T, tg *Target, _ *Streamer) {
			closedWith(t, sendRaw(t, tg, frame{fin: true, op: 0x1, declared: u64(1<<64 - 14), payload: []byte("xxxx")}.bytes()), 1009)
		}},
		// Case 3: invalid UTF-8 must never reach the streamer.
		simple("3 invalid UTF-8 in a text message", 1007, text("{\"type\":\"answer\",\"sdp\":\"\xff\xfe\"}")),
		simple("3 invalid UTF-8 in a binary message", 1007, frame{fin: true, op: 0x2, payload: []byte("{\"type\":\"answer\",\"sdp\":\"\xc0\xaf\"}")}.bytes()),
		{"3 invalid UTF-8 split across fragments", func(t *testing.T, tg *Target, _ *Streamer) {
			b := frame{op: 0x1, payload: []byte("{\"type\":\"answer\",\"sdp\":\"\xe2\x82")}.bytes()
			b = append(b, frame{fin: true, op: 0x0, payload: []byte("\x28\"}")}.bytes()...)
			closedWith(t, sendRaw(t, tg, b), 1007)
		}},
		// Case 4: close frames.
		closeCode(999), closeCode(1004), closeCode(1005), closeCode(1006), closeCode(1015), closeCode(1016),
		closeCode(2999), closeCode(5000), closeCode(65535),
		simple("4 close payload of 1 byte", 1002, frame{fin: true, op: 0x8, payload: []byte{0x03}}.bytes()),
		simple("4 close reason not UTF-8", 1002, frame{fin: true, op: 0x8, payload: closeBody(1000, "\xff")}.bytes()),
		simple("4 close 1000 is answered 1000", 1000, frame{fin: true, op: 0x8, payload: closeBody(1000, "bye")}.bytes()),
		simple("4 close 4000 is answered 4000", 4000, frame{fin: true, op: 0x8, payload: closeBody(4000, "app")}.bytes()),
		simple("4 length 5 in 16 bits", 1002, frame{fin: true, op: 0x1, enc: 2, payload: []byte(`{"a":1}`)}.bytes()),
		simple("4 length 200 in 64 bits", 1002, frame{fin: true, op: 0x1, enc: 8, payload: bytes.Repeat([]byte(" "), 200)}.bytes()),
		{"4 long close reason cut between characters", func(t *testing.T, tg *Target, st *Streamer) {
			c := DialRaw(t, tg.PlayerDialURL())
			_, _ = c.Write(text(`{"type":"subscribe","streamerId":"` + st.ID + `"}`))
			var pid string
			select {
			case pid = <-st.offerFor:
			case <-time.After(waitFor):
				t.Fatal("the streamer never heard of the attacker")
			}
			st.Send(t, map[string]any{"type": "disconnectPlayer", "playerId": pid, "reason": "x" + strings.Repeat("é", 100)})
			closedWith(t, c.ReadUntilClose(t), 1011)
		}},
		// Case 5: players flooding a streamer that reads slowly.
		{"5 twenty players send 64 KiB answers to a slow streamer", func(t *testing.T, tg *Target, st *Streamer) {
			st.Pause()
			defer st.Resume()
			answer := text(`{"type":"answer","sdp":"` + strings.Repeat("a", 65000) + `"}`)
			var wg sync.WaitGroup
			conns := make([]*RawConn, 20)
			for i := range conns {
				c := dialFrom(t, tg, i)
				conns[i] = c
				_, _ = c.Write(text(`{"type":"subscribe","streamerId":"` + st.ID + `"}`))
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := 0; j < 400; j++ { // within the rate limit's burst
						_ = c.SetWriteDeadline(time.Now().Add(waitFor))
						if _, err := c.Write(answer); err != nil {
							return
						}
					}
				}()
			}
			wg.Wait()
			// Senders refused for the streamer's sake have their close
			// frame by now; the others are still open.
			busy := 0
			for _, c := range conns {
				if r, ok := c.TryReadClose(); ok && r.Code == 1013 {
					busy++
				}
			}
			if closed, err := st.Closed(); closed {
				t.Fatalf("the streamer was dropped: %v", err)
			}
			if busy == 0 {
				t.Fatalf("no sender was refused with 1013 while the streamer read nothing")
			}
			t.Logf("%d of 20 senders refused with 1013 (streamer busy)", busy)
		}},
		// Case 9: many connections holding unfinished messages.
		{"9 1600 connections hold 60 KB unfinished messages", func(t *testing.T, tg *Target, _ *Streamer) {
			first := frame{op: 0x1, payload: bytes.Repeat([]byte(" "), 60000)}.bytes()
			ping := frame{fin: true, op: 0x9, payload: []byte("p")}.bytes() // allowed between fragments
			const n = 1600                                                  // 96 MB if all were held
			conns := make([]*RawConn, n)
			for i := range conns {
				conns[i] = dialFrom(t, tg, i)
				_, _ = conns[i].Write(first)
			}
			refused := 0
			for _, c := range conns {
				_, _ = c.Write(ping)
				if r, pong := c.ReadUntilPongOrClose(t); !pong {
					if r.Code != 1013 {
						t.Fatalf("connection holding an unfinished message: %s, want a pong or 1013", r)
					}
					refused++
				}
			}
			if refused == 0 {
				t.Fatalf("none of %d connections was refused: their unfinished messages are all held", n)
			}
			t.Logf("%d of %d refused with 1013, the others hold their message", refused, n)
		}},
		{"9 a peer stalls in the middle of a frame", func(t *testing.T, tg *Target, _ *Streamer) {
			c := DialRaw(t, tg.PlayerDialURL())
			b := frame{fin: true, op: 0x1, payload: bytes.Repeat([]byte(" "), 60000)}.bytes()
			_, _ = c.Write(b[:30000])
			if r := c.ReadUntilClose(t); !r.Dropped && r.Code == 0 {
				t.Fatalf("stalled peer: %s", r)
			} else {
				t.Logf("stalled peer: %s", r)
			}
		}},
		// RFC 6455 violation classes.
		simple("rfc unmasked client frame", 1002, frame{fin: true, op: 0x1, unmasked: true, payload: []byte(`{"type":"listStreamers"}`)}.bytes()),
		simple("rfc reserved bits", 1002, frame{fin: true, rsv: 4, op: 0x1, payload: []byte(`{}`)}.bytes()),
		simple("rfc unknown data opcode", 1002, frame{fin: true, op: 0x3, payload: []byte("x")}.bytes()),
		simple("rfc unknown control opcode", 1002, frame{fin: true, op: 0xB, payload: []byte("x")}.bytes()),
		simple("rfc fragmented control frame", 1002, frame{op: 0x9, payload: []byte("p")}.bytes()),
		simple("rfc control frame over 125 bytes", 1002, frame{fin: true, op: 0x9, payload: bytes.Repeat([]byte("p"), 126)}.bytes()),
		simple("rfc continuation without a message", 1002, frame{fin: true, op: 0x0, payload: []byte("x")}.bytes()),
		simple("rfc new message inside a fragmented one", 1002, append(frame{op: 0x1, payload: []byte("{")}.bytes(), text("{}")...)),
		simple("rfc message over the size limit", 1009, text(`{"type":"ping","time":1,"pad":"`+strings.Repeat("x", 70<<10)+`"}`)),
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			tg := StartSignalling(t)
			var st *Streamer
			if tg.StreamerURL != "" {
				st = StartStreamer(t, tg, "hostile")
			}
			by := ConnectBystander(t, tg, st)
			if st == nil && strings.HasPrefix(r.name, "4 long") || st == nil && strings.HasPrefix(r.name, "5 ") {
				t.Skip("needs the suite's own streamer")
			}
			r.attack(t, tg, st)
			tg.Finish(t, by, rssBudget)
		})
	}
}

// flood writes n bytes of filler to c (errors ignored: the server may stop
// reading or close), as an attacker that keeps sending would.
func flood(c *RawConn, n int) {
	buf := make([]byte, 1<<20)
	_ = c.SetWriteDeadline(time.Now().Add(waitFor))
	for sent := 0; sent < n; sent += len(buf) {
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

// dialFrom opens a raw player connection from the i-th of 64 loopback
// addresses, so many connections stay within a per-address cap.
func dialFrom(t *testing.T, tg *Target, i int) *RawConn {
	t.Helper()
	host, _, _ := net.SplitHostPort(tg.PlayerAddr())
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() || ip.To4() == nil {
		return DialRaw(t, tg.PlayerDialURL()) // a remote target sees one address
	}
	return DialRawFrom(t, tg.PlayerDialURL(), net.IPv4(127, 0, 1, byte(1+i%64)))
}
