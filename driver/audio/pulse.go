package audio

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// A minimal client of the PulseAudio native protocol, just enough to ask the
// pulse server the app will use which sink is its default. Spawning pactl for
// each readiness poll would cost far more than the check itself.

const (
	pulseCmdError         = 0
	pulseCmdReply         = 2
	pulseCmdAuth          = 8
	pulseCmdSetClientName = 9
	pulseCmdGetServerInfo = 20

	pulseProtocolVersion = 32
	pulseCookieLen       = 256
	pulseMaxPacket       = 1 << 20
)

// Tagstruct type tags.
const (
	tagString     = 't'
	tagStringNull = 'N'
	tagU32        = 'L'
	tagArbitrary  = 'x'
	tagProplist   = 'P'
)

// pulseServerInfo is the part of GET_SERVER_INFO the stack checks.
type pulseServerInfo struct {
	PackageName string
	Version     string
	DefaultSink string
}

// pulseQueryServerInfo connects to the socket, authenticates and returns the
// server's info.
func pulseQueryServerInfo(ctx context.Context, socket string) (pulseServerInfo, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return pulseServerInfo{}, err
	}
	defer conn.Close()
	deadline := time.Now().Add(2 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return pulseServerInfo{}, err
	}
	c := &pulseConn{rw: conn}

	var auth tagWriter
	auth.u32(pulseCmdAuth)
	auth.u32(c.nextTag())
	auth.u32(pulseProtocolVersion)
	// PipeWire's pulse server does not check the cookie; zeros are what a
	// client without a cookie file sends too.
	auth.arbitrary(make([]byte, pulseCookieLen))
	if _, err := c.call(auth); err != nil {
		return pulseServerInfo{}, fmt.Errorf("pulse auth: %w", err)
	}

	var name tagWriter
	name.u32(pulseCmdSetClientName)
	name.u32(c.nextTag())
	name.proplist(map[string]string{"application.name": "pixelstream-audio-probe"})
	if _, err := c.call(name); err != nil {
		return pulseServerInfo{}, fmt.Errorf("pulse set client name: %w", err)
	}

	var q tagWriter
	q.u32(pulseCmdGetServerInfo)
	q.u32(c.nextTag())
	r, err := c.call(q)
	if err != nil {
		return pulseServerInfo{}, fmt.Errorf("pulse server info: %w", err)
	}
	var info pulseServerInfo
	if info.PackageName, err = r.string(); err != nil {
		return info, err
	}
	if info.Version, err = r.string(); err != nil {
		return info, err
	}
	// user name, host name, sample spec, then the default sink.
	if _, err = r.string(); err != nil {
		return info, err
	}
	if _, err = r.string(); err != nil {
		return info, err
	}
	if err = r.skipSampleSpec(); err != nil {
		return info, err
	}
	if info.DefaultSink, err = r.string(); err != nil {
		return info, err
	}
	return info, nil
}

type pulseConn struct {
	rw  io.ReadWriter
	tag uint32
}

func (c *pulseConn) nextTag() uint32 { c.tag++; return c.tag }

// call sends one command packet and reads packets until the reply to it,
// returning the reader positioned after the reply's command and tag.
func (c *pulseConn) call(w tagWriter) (*tagReader, error) {
	payload := w.buf.Bytes()
	want := binary.BigEndian.Uint32(payload[6:10]) // tag follows the command
	hdr := make([]byte, 20)
	binary.BigEndian.PutUint32(hdr[0:4], uint32(len(payload)))
	binary.BigEndian.PutUint32(hdr[4:8], 0xffffffff) // control channel
	if _, err := c.rw.Write(append(hdr, payload...)); err != nil {
		return nil, err
	}
	for {
		if _, err := io.ReadFull(c.rw, hdr); err != nil {
			return nil, err
		}
		n := binary.BigEndian.Uint32(hdr[0:4])
		if n > pulseMaxPacket {
			return nil, fmt.Errorf("pulse packet of %d bytes", n)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(c.rw, body); err != nil {
			return nil, err
		}
		if binary.BigEndian.Uint32(hdr[4:8]) != 0xffffffff {
			continue // stream data; the probe has no streams
		}
		r := &tagReader{b: body}
		cmd, err := r.u32()
		if err != nil {
			return nil, err
		}
		tag, err := r.u32()
		if err != nil {
			return nil, err
		}
		if tag != want {
			continue // an event not meant for this call
		}
		switch cmd {
		case pulseCmdReply:
			return r, nil
		case pulseCmdError:
			code, _ := r.u32()
			return nil, fmt.Errorf("server error %d", code)
		default:
			return nil, fmt.Errorf("unexpected pulse command %d", cmd)
		}
	}
}

type tagWriter struct{ buf bytes.Buffer }

func (w *tagWriter) u32(v uint32) {
	w.buf.WriteByte(tagU32)
	_ = binary.Write(&w.buf, binary.BigEndian, v)
}

func (w *tagWriter) str(s string) {
	w.buf.WriteByte(tagString)
	w.buf.WriteString(s)
	w.buf.WriteByte(0)
}

func (w *tagWriter) arbitrary(b []byte) {
	w.buf.WriteByte(tagArbitrary)
	_ = binary.Write(&w.buf, binary.BigEndian, uint32(len(b)))
	w.buf.Write(b)
}

func (w *tagWriter) proplist(p map[string]string) {
	w.buf.WriteByte(tagProplist)
	for k, v := range p {
		w.str(k)
		val := append([]byte(v), 0) // values are NUL-terminated strings
		w.u32(uint32(len(val)))
		w.arbitrary(val)
	}
	w.buf.WriteByte(tagStringNull)
}

type tagReader struct {
	b []byte
	i int
}

var errShortTagstruct = errors.New("pulse reply too short")

func (r *tagReader) u32() (uint32, error) {
	if r.i+5 > len(r.b) || r.b[r.i] != tagU32 {
		return 0, errShortTagstruct
	}
	v := binary.BigEndian.Uint32(r.b[r.i+1:])
	r.i += 5
	return v, nil
}

func (r *tagReader) string() (string, error) {
	if r.i >= len(r.b) {
		return "", errShortTagstruct
	}
	switch r.b[r.i] {
	case tagStringNull:
		r.i++
		return "", nil
	case tagString:
		end := bytes.IndexByte(r.b[r.i+1:], 0)
		if end < 0 {
			return "", errShortTagstruct
		}
		s := string(r.b[r.i+1 : r.i+1+end])
		r.i += end + 2
		return s, nil
	default:
		return "", fmt.Errorf("pulse reply: expected a string, got tag %q", r.b[r.i])
	}
}

// skipSampleSpec skips tag 'a': format (1 byte), channels (1), rate (4).
func (r *tagReader) skipSampleSpec() error {
	if r.i+7 > len(r.b) || r.b[r.i] != 'a' {
		return errShortTagstruct
	}
	r.i += 7
	return nil
}
