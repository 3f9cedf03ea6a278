package main

import (
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
)

// maxOpenFrames bounds the frames being assembled at once: a frame that
// never completes (a lost packet nobody resent) is dropped once this many
// newer ones are open.
const maxOpenFrames = 8

// maxFramePackets bounds one frame's packets (a 4K keyframe is a few
// hundred); anything larger is not a frame the stand-in or Unreal sends.
const maxFramePackets = 4096

// frameAssembler tells when a VP8 frame has arrived complete: every RTP
// packet from the one that starts partition 0 (RFC 7741 S bit, PID 0) to
// the one with the marker bit, by sequence number, without decoding. It
// is what a browser's jitter buffer waits for before it hands a frame to
// the decoder, so "first complete keyframe" is as early as a browser
// could show a picture.
type frameAssembler struct {
	open map[uint32]*openFrame // by RTP timestamp
	vp8  codecs.VP8Packet
	seq  uint64 // orders open frames by arrival
}

type openFrame struct {
	start, end       uint16
	hasStart, hasEnd bool
	key              bool
	seen             map[uint16]struct{}
	order            uint64
}

type frameDone struct {
	key     bool
	packets int
}

func newFrameAssembler() *frameAssembler {
	return &frameAssembler{open: map[uint32]*openFrame{}}
}

// push takes one video RTP packet and reports a frame it completed.
func (a *frameAssembler) push(p *rtp.Packet) (frameDone, bool) {
	if len(p.Payload) == 0 {
		return frameDone{}, false
	}
	f := a.open[p.Timestamp]
	if f == nil {
		if len(a.open) >= maxOpenFrames {
			a.dropOldest()
		}
		a.seq++
		f = &openFrame{seen: map[uint16]struct{}{}, order: a.seq}
		a.open[p.Timestamp] = f
	}
	if len(f.seen) >= maxFramePackets {
		delete(a.open, p.Timestamp)
		return frameDone{}, false
	}
	f.seen[p.SequenceNumber] = struct{}{}
	if _, err := a.vp8.Unmarshal(p.Payload); err == nil && a.vp8.S == 1 && a.vp8.PID == 0 {
		f.start, f.hasStart = p.SequenceNumber, true
		// RFC 6386 9.1: the frame tag's P bit is 0 on a keyframe.
		f.key = len(a.vp8.Payload) > 0 && a.vp8.Payload[0]&1 == 0
	}
	if p.Marker {
		f.end, f.hasEnd = p.SequenceNumber, true
	}
	if !f.hasStart || !f.hasEnd {
		return frameDone{}, false
	}
	n := int(f.end-f.start) + 1 // uint16 arithmetic: wraps like the sequence numbers
	if len(f.seen) < n {
		return frameDone{}, false
	}
	for s := f.start; ; s++ {
		if _, ok := f.seen[s]; !ok {
			return frameDone{}, false
		}
		if s == f.end {
			break
		}
	}
	delete(a.open, p.Timestamp)
	return frameDone{key: f.key, packets: n}, true
}

func (a *frameAssembler) dropOldest() {
	var oldest uint32
	var min uint64
	for ts, f := range a.open {
		if min == 0 || f.order < min {
			oldest, min = ts, f.order
		}
	}
	delete(a.open, oldest)
}
