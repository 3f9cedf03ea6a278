package turn

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The project's own parsing of untrusted bytes in the data plane and on
// TCP: where a datagram or a stream frame starts and ends. Everything
// inside a STUN message is decoded by pion/stun; these functions only
// find the boundaries, with lengths read from 16-bit fields into int (no
// overflow) and checked against the bytes actually there. Fuzzed by
// FuzzChannelData and FuzzTCPFraming.

const (
	stunHeader = 20
	stunCookie = 0x2112A442
	// maxFrame is the largest TCP frame served: what fits pion's inbound
	// buffer (ChannelData carrying a full-MTU packet, or a STUN request).
	// A larger one ends the connection, as pion would.
	maxFrame = packetSize
)

var (
	errNotTURN       = errors.New("neither STUN nor ChannelData (first two bits 10 or 11)")
	errBadCookie     = errors.New("STUN header without the magic cookie")
	errFrameTooLarge = fmt.Errorf("frame larger than %d bytes", maxFrame)
)

// parseChannelData looks at a UDP datagram: isChannel says whether it is
// ChannelData (first two bits 01), ok whether its header and declared
// length fit the datagram; payload is the application data (UDP
// ChannelData need not be padded).
func parseChannelData(b []byte) (num uint16, payload []byte, isChannel, ok bool) {
	if len(b) == 0 || b[0]&0xC0 != 0x40 {
		return 0, nil, false, false
	}
	if len(b) < channelHeader {
		return 0, nil, true, false
	}
	num = binary.BigEndian.Uint16(b[0:2])
	size := int(binary.BigEndian.Uint16(b[2:4]))
	if size > len(b)-channelHeader {
		return num, nil, true, false
	}
	return num, b[channelHeader : channelHeader+size], true, true
}

// frameSize returns the length on the wire of the TCP frame whose first
// four bytes are hdr: STUN is 20 + length; ChannelData over TCP is padded
// to a multiple of four (RFC 8656 section 12.5).
func frameSize(hdr []byte) (int, error) {
	n := int(binary.BigEndian.Uint16(hdr[2:4]))
	switch hdr[0] & 0xC0 {
	case 0x00:
		return stunHeader + n, nil
	case 0x40:
		return channelHeader + (n+3)&^3, nil
	}
	return 0, errNotTURN
}

// readFrame reads one STUN or ChannelData frame from r into buf (at least
// maxFrame bytes) and returns it. started runs once the frame's first byte
// is in: the caller then bounds the time for the rest of it.
func readFrame(r *bufio.Reader, buf []byte, started func()) ([]byte, error) {
	if len(buf) < maxFrame {
		return nil, fmt.Errorf("frame buffer of %d bytes, want %d", len(buf), maxFrame)
	}
	first, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	if started != nil {
		started()
	}
	buf[0] = first
	if _, err := io.ReadFull(r, buf[1:channelHeader]); err != nil {
		return nil, noEOF(err)
	}
	size, err := frameSize(buf[:channelHeader])
	if err != nil {
		return nil, err
	}
	if size > maxFrame {
		return nil, errFrameTooLarge
	}
	if _, err := io.ReadFull(r, buf[channelHeader:size]); err != nil {
		return nil, noEOF(err)
	}
	if buf[0]&0xC0 == 0 && binary.BigEndian.Uint32(buf[4:8]) != stunCookie {
		return nil, errBadCookie
	}
	return buf[:size], nil
}

// noEOF reports a stream that ends inside a frame as such.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
