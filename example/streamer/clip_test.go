package main

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// ivf writes an IVF file of the given fourcc and frames.
func ivf(fourcc string, frames ...[]byte) []byte {
	var b bytes.Buffer
	hdr := make([]byte, 32)
	copy(hdr, "DKIF")
	binary.LittleEndian.PutUint16(hdr[6:], 32)
	copy(hdr[8:], fourcc)
	binary.LittleEndian.PutUint16(hdr[12:], 320)
	binary.LittleEndian.PutUint16(hdr[14:], 180)
	binary.LittleEndian.PutUint32(hdr[16:], 30) // timebase denominator
	binary.LittleEndian.PutUint32(hdr[20:], 1)  // numerator
	binary.LittleEndian.PutUint32(hdr[24:], uint32(len(frames)))
	b.Write(hdr)
	for i, f := range frames {
		fh := make([]byte, 12)
		binary.LittleEndian.PutUint32(fh, uint32(len(f)))
		binary.LittleEndian.PutUint64(fh[4:], uint64(i))
		b.Write(fh)
		b.Write(f)
	}
	return b.Bytes()
}

func TestReadClip(t *testing.T) {
	key, inter := []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a}, []byte{0x31, 0x00, 0x00}
	for _, tc := range []struct {
		name string
		in   []byte
		err  string
	}{
		{"not IVF", []byte("hello, this is not a video file at all"), "not an IVF file"},
		{"empty", nil, "not an IVF file"},
		{"H.264", ivf("H264", key), `codec "H264"`},
		{"no frames", ivf("VP80"), "no frames"},
		{"starts on an interframe", ivf("VP80", inter, key), "not a VP8 keyframe"},
		{"truncated frame", ivf("VP80", key)[:32+12+2], "frame 0"},
		{"good", ivf("VP80", key, inter, inter), ""},
	} {
		c, err := readClip(bytes.NewReader(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(c.frames) != 3 || c.width != 320 || c.height != 180 || c.frames[0].dur <= 0 {
			t.Fatalf("%s: %d frames %dx%d, first lasts %v", tc.name, len(c.frames), c.width, c.height, c.frames[0].dur)
		}
	}
}

func TestParseClipArg(t *testing.T) {
	o, err := parseArgs([]string{"-PixelStreamingURL=ws://127.0.0.1:1", "-StandInClip=/x/clip.ivf"})
	if err != nil || o.Clip != "/x/clip.ivf" {
		t.Fatalf("clip %q, err %v", o.Clip, err)
	}
	if _, err := parseArgs([]string{"-PixelStreamingURL=ws://127.0.0.1:1", "-StandInClip="}); err == nil || !strings.Contains(err.Error(), "StandInClip") {
		t.Fatalf("empty clip path: %v", err)
	}
}
