package hostile

import (
	"encoding/binary"
	"testing"
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
	st := StartStreamer(t, tg, "hostile")
	by := ConnectBystander(t, tg, st)
	tg.Finish(t, by, 256<<20)
}
