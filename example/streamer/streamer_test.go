package main

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
)

func mouseMsg(id byte, button uint8, x, y uint16) []byte {
	b := []byte{id, button, 0, 0, 0, 0}
	binary.LittleEndian.PutUint16(b[2:], x)
	binary.LittleEndian.PutUint16(b[4:], y)
	return b
}

func moveMsg(x, y uint16) []byte {
	b := make([]byte, 9)
	b[0] = msgMouseMove
	binary.LittleEndian.PutUint16(b[1:], x)
	binary.LittleEndian.PutUint16(b[3:], y)
	return b
}

// TestStreamSceneAndInput runs the stand-in as Nomad would, against the
// project's signalling server, and checks what a browser user would: the
// picture arrives at the asked size with the reference patch where
// documented, a click puts the marker there, a key press shows, a second
// player gets its own stream, and SIGTERM ends everything cleanly.
func TestStreamSceneAndInput(t *testing.T) {
	d := startDisplay(t)
	ev := newIdentified()
	sig := startSignalling(t, "", ev)
	st := startStreamer(t, d, "ws://"+sig.StreamerAddr().String(), nil, "-PixelStreamingID=stand-in", "-ResX=320", "-ResY=240")
	ev.wait(t, 1)
	if got := ev.ids[0]; got != "stand-in" {
		t.Fatalf("streamer identified as %q, want %q", got, "stand-in")
	}

	p1 := newPlayer(t, sig, "player1", "stand-in")
	p1.waitUntil("two keyframes", func(p *player) bool { return p.keyframes >= 2 })
	if p1.width != testW || p1.height != testH {
		t.Fatalf("keyframe size %dx%d, want %dx%d", p1.width, p1.height, testW, testH)
	}
	st.log.waitLine(t, "first video frame sent")

	frame := p1.frame(t)
	checks := []struct {
		name string
		x, y int
		want rgb
	}{
		{"reference patch centre", refX + refSize/2, refY + refSize/2, colReference},
		{"reference patch inner corner", refX + 4, refY + 4, colReference},
		{"idle key block", keyX + refSize/2, keyY + refSize/2, colKeyIdle},
		{"background", 250, 160, colBackground},
	}
	for _, c := range checks {
		if got := pixel(frame, c.x, c.y); !near(got, c.want) {
			t.Errorf("before input, %s at (%d,%d) is %v in the video, want about %v", c.name, c.x, c.y, got, c.want)
		}
	}

	// The frontend announces nothing; the streamer describes its input protocol.
	dc := p1.channel()
	select {
	case msg := <-p1.firstMsg:
		if len(msg) < 3 || msg[0] != msgProtocol {
			t.Fatalf("first data channel message %v, want the protocol description (id 255)", msg)
		}
		units := make([]uint16, (len(msg)-1)/2)
		for i := range units {
			units[i] = binary.LittleEndian.Uint16(msg[1+2*i:])
		}
		text := string(utf16.Decode(units))
		if !strings.Contains(text, `"MouseDown":{"id":72`) || !strings.Contains(text, `"Direction":0`) {
			t.Fatalf("protocol description %s lacks MouseDown id 72 or Direction 0", text)
		}
	case <-time.After(waitLong):
		t.Fatal("no protocol description on the data channel")
	}

	// A click as the frontend sends it: move, down, up, in quantised coordinates.
	const clickX, clickY = 250, 160
	for _, msg := range [][]byte{
		moveMsg(norm(clickX, testW), norm(clickY, testH)),
		mouseMsg(msgMouseDown, 0, norm(clickX, testW), norm(clickY, testH)),
		mouseMsg(msgMouseUp, 0, norm(clickX, testW), norm(clickY, testH)),
	} {
		if err := dc.Send(msg); err != nil {
			t.Fatalf("send mouse input: %v", err)
		}
	}
	st.log.waitLine(t, "click seen on display", "x=250", "y=160", "button=1")

	// A key: "A" down and up (browser keyCode 65).
	for _, msg := range [][]byte{{msgKeyDown, 65, 0}, {msgKeyUp, 65}} {
		if err := dc.Send(msg); err != nil {
			t.Fatalf("send key input: %v", err)
		}
	}
	st.log.waitLine(t, "key seen on display", "key=A")

	after := p1.frame(t)
	for _, c := range []struct {
		name string
		x, y int
		want rgb
	}{
		{"click marker", clickX, clickY, colMarker},
		{"click marker edge", clickX - markerSize/2 + 2, clickY + markerSize/2 - 2, colMarker},
		{"background beside the marker", clickX - markerSize, clickY, colBackground},
		{"key block after a key press", keyX + refSize/2, keyY + refSize/2, colKeySeen},
		{"reference patch", refX + refSize/2, refY + refSize/2, colReference},
	} {
		if got := pixel(after, c.x, c.y); !near(got, c.want) {
			t.Errorf("after input, %s at (%d,%d) is %v in the video, want about %v", c.name, c.x, c.y, got, c.want)
		}
	}
	if got := screenPixel(t, d, clickX, clickY); got != [3]uint8{0, 0xff, 0} {
		t.Errorf("display pixel at the click is %v, want pure green", got)
	}

	// A second player gets its own peer and the same picture.
	p2 := newPlayer(t, sig, "player2", "stand-in")
	p2.waitUntil("a keyframe", func(p *player) bool { return p.keyframes >= 1 && p.videoPackets >= 30 })
	if got := pixel(p2.frame(t), refX+refSize/2, refY+refSize/2); !near(got, colReference) {
		t.Errorf("second player: reference patch is %v, want about %v", got, colReference)
	}
	v1, _, _ := p1.counts()
	p1.waitUntil("more video while two players watch", func(p *player) bool { return p.videoPackets > v1+30 })

	// The second player leaves holding a key: the key must not stay down.
	if err := p2.channel().Send([]byte{msgKeyDown, 66, 0}); err != nil {
		t.Fatalf("send key down: %v", err)
	}
	st.log.waitLine(t, "key seen on display", "key=B")
	if n := keysDown(t, d); n != 1 {
		t.Fatalf("%d keys down on the display while player2 holds B, want 1", n)
	}
	p2.close()
	st.log.waitLine(t, "player disconnected", "player=")
	st.log.waitLine(t, "released input a departed player held", "count=1")
	if n := keysDown(t, d); n != 0 {
		t.Errorf("%d keys still down on the display after player2 left", n)
	}
	// The first keeps its stream.
	v1, _, _ = p1.counts()
	p1.waitUntil("video after the other player left", func(p *player) bool { return p.videoPackets > v1+30 })

	encoders := children(st.cmd.Process.Pid)
	if len(encoders) == 0 {
		t.Fatal("no ffmpeg child while a player watches")
	}
	if code := st.stop(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	st.log.waitLine(t, "stopped")
	if left := slices.DeleteFunc(encoders, func(pid int) bool { return !alive(pid) }); len(left) > 0 {
		t.Fatalf("encoder processes %v still running after the stand-in exited", left)
	}
}
