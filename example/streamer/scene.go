package main

import (
	"context"
	"fmt"
	"math/bits"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xproto"
)

// The scene's layout, relied on by tests (keep README.md in step). The top
// left corner (x < 100, y < 200) stays empty: the player page's own
// controls sit there.
//   - background: dark grey #202020 with low-contrast vertical stripes
//     (#2A2A2A) sliding right, 2 px a frame: motion over the whole frame
//     that leaves every background sample within 10 of #202020
//   - reference patch: pure red #FF0000, 64x64 at (112,32)
//   - key block: 64x64 at (208,32), grey #606060 until a key is pressed,
//     then pure blue #0000FF; the last keys' names are written to its right
//   - clock (HH:MM:SS.t) at the top right, the frame counter below the
//     reference patch
//   - the session's allocation id and node name in large type across the
//     middle band (y from 136 to 55% of the height; left out when the
//     display is too small for them)
//   - mouse trail: cyan #00C0FF squares where the pointer was in the last
//     two seconds; click marker: pure green #00FF00, 24x24, centred on the
//     last click (clicks go below the middle band)
//   - a white 16 px bar sweeping the 32 px band 8 px above the bottom edge
var (
	colBackground = rgb{0x20, 0x20, 0x20}
	colStripe     = rgb{0x2a, 0x2a, 0x2a}
	colReference  = rgb{0xff, 0x00, 0x00}
	colKeyIdle    = rgb{0x60, 0x60, 0x60}
	colKeySeen    = rgb{0x00, 0x00, 0xff}
	colMarker     = rgb{0x00, 0xff, 0x00}
	colTrail      = rgb{0x00, 0xc0, 0xff}
	colBar        = rgb{0xff, 0xff, 0xff}
	colTitle      = rgb{0xf0, 0xf0, 0xf0}
)

const (
	refX, refY, refSize = 112, 32, 64
	keyX, keyY          = 208, 32
	markerSize          = 24
	barWidth, bandH     = 16, 32
	stripe              = 16 // stripe width; the period is twice that
	titleTop            = refY + refSize + 40
	trailLife           = 2 * time.Second
	trailDot            = 6
	maxTrail            = 64
	maxKeys             = 5
)

type rgb struct{ r, g, b uint8 }

// scene draws into a full-screen window and watches the X events that
// injected input produces there, so what it shows proves the injection.
type scene struct {
	log  hclog.Logger
	conn *xgb.Conn
	win  xproto.Window
	gc   xproto.Gcontext
	text xproto.Gcontext
	w, h int
	keys keymap
	px   func(rgb) uint32

	buf    xproto.Pixmap // frames are drawn here, then copied at once: no half-drawn frame is captured
	titles []title       // the allocation id and node name, as scaled glyph rectangles
	glyphs map[byte]glyph
	// onClick, when set, is called (on the event goroutine) for each click
	// seen: the stand-in plays a short tone, proving the audio path.
	onClick func()

	mu      sync.Mutex
	clicked bool
	clickX  int
	clickY  int
	keys5   []string // the last keys pressed, newest last
	trail   []trailPoint
	frame   uint64
}

type trailPoint struct {
	x, y int
	at   time.Time
}

// title is one line of large text: the "fixed" font's pixels, scaled.
type title struct {
	rects []xproto.Rectangle
}

func newScene(log hclog.Logger, display string) (*scene, error) {
	conn, err := xgb.NewConnDisplay(display)
	if err != nil {
		return nil, fmt.Errorf("open X display %s for drawing: %w", display, err)
	}
	s := &scene{log: log, conn: conn}
	if err := s.setup(); err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

func (s *scene) setup() error {
	screen := xproto.Setup(s.conn).DefaultScreen(s.conn)
	s.w, s.h = int(screen.WidthInPixels), int(screen.HeightInPixels)
	px, err := pixelFormat(screen)
	if err != nil {
		return err
	}
	s.px = px
	if s.keys, err = loadKeymap(s.conn); err != nil {
		return err
	}
	if s.win, err = xproto.NewWindowId(s.conn); err != nil {
		return fmt.Errorf("allocate window id: %w", err)
	}
	// Override-redirect: no window manager runs on the session's display,
	// and none may move or decorate the picture.
	err = xproto.CreateWindowChecked(s.conn, screen.RootDepth, s.win, screen.Root, 0, 0, uint16(s.w), uint16(s.h), 0,
		xproto.WindowClassInputOutput, screen.RootVisual,
		xproto.CwBackPixel|xproto.CwOverrideRedirect|xproto.CwEventMask,
		[]uint32{px(colBackground), 1, xproto.EventMaskExposure | xproto.EventMaskButtonPress | xproto.EventMaskKeyPress | xproto.EventMaskPointerMotion}).Check()
	if err != nil {
		return fmt.Errorf("create window: %w", err)
	}
	if s.buf, err = xproto.NewPixmapId(s.conn); err != nil {
		return fmt.Errorf("allocate pixmap id: %w", err)
	}
	if err := xproto.CreatePixmapChecked(s.conn, screen.RootDepth, s.buf, xproto.Drawable(s.win), uint16(s.w), uint16(s.h)).Check(); err != nil {
		return fmt.Errorf("create the frame buffer pixmap: %w", err)
	}
	if s.gc, err = xproto.NewGcontextId(s.conn); err != nil {
		return fmt.Errorf("allocate graphics context: %w", err)
	}
	if err := xproto.CreateGCChecked(s.conn, s.gc, xproto.Drawable(s.buf), xproto.GcForeground|xproto.GcGraphicsExposures, []uint32{px(colBackground), 0}).Check(); err != nil {
		return fmt.Errorf("create graphics context: %w", err)
	}
	if err := s.setupText(); err != nil {
		return err
	}
	s.setupTitles(screen.RootDepth)
	if err := xproto.MapWindowChecked(s.conn, s.win).Check(); err != nil {
		return fmt.Errorf("map window: %w", err)
	}
	// Key events go to the focus window; without a window manager nobody
	// else gives it to us.
	if err := xproto.SetInputFocusChecked(s.conn, xproto.InputFocusPointerRoot, s.win, xproto.TimeCurrentTime).Check(); err != nil {
		s.log.Warn("could not take keyboard focus; key presses reach the window under the pointer", "error", err)
	}
	return nil
}

// setupText uses the server's built-in "fixed" font, present in every X
// server, so no font package is needed.
func (s *scene) setupText() error {
	font, err := xproto.NewFontId(s.conn)
	if err != nil {
		return fmt.Errorf("allocate font id: %w", err)
	}
	if err := xproto.OpenFontChecked(s.conn, font, uint16(len("fixed")), "fixed").Check(); err != nil {
		return fmt.Errorf("open X font \"fixed\": %w", err)
	}
	if s.text, err = xproto.NewGcontextId(s.conn); err != nil {
		return fmt.Errorf("allocate graphics context: %w", err)
	}
	err = xproto.CreateGCChecked(s.conn, s.text, xproto.Drawable(s.buf), xproto.GcForeground|xproto.GcBackground|xproto.GcFont,
		[]uint32{s.px(rgb{0xff, 0xff, 0xff}), s.px(colBackground), uint32(font)}).Check()
	if err != nil {
		return fmt.Errorf("create text graphics context: %w", err)
	}
	return nil
}

// pixelFormat returns how to turn a colour into a pixel value of the
// screen's TrueColor visual (Xvfb's default at depth 24).
func pixelFormat(screen *xproto.ScreenInfo) (func(rgb) uint32, error) {
	for _, d := range screen.AllowedDepths {
		for _, v := range d.Visuals {
			if v.VisualId != screen.RootVisual {
				continue
			}
			if v.Class != xproto.VisualClassTrueColor {
				return nil, fmt.Errorf("the display's root visual is class %d, want TrueColor (start Xvfb with depth 24)", v.Class)
			}
			scale := func(c uint8, mask uint32) uint32 {
				n := bits.OnesCount32(mask)
				return (uint32(c) >> (8 - min(n, 8))) << bits.TrailingZeros32(mask)
			}
			return func(c rgb) uint32 {
				return scale(c.r, v.RedMask) | scale(c.g, v.GreenMask) | scale(c.b, v.BlueMask)
			}, nil
		}
	}
	return nil, fmt.Errorf("the display's root visual %d not found", screen.RootVisual)
}

// size is the screen's size in pixels.
func (s *scene) size() (int, int) { return s.w, s.h }

// run draws at the frame rate and follows X events until ctx ends.
func (s *scene) run(ctx context.Context) {
	go s.events()
	stop := context.AfterFunc(ctx, s.conn.Close)
	defer stop()
	t := time.NewTicker(time.Second / frameRate)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.draw(); err != nil {
			if ctx.Err() == nil {
				s.log.Error("drawing failed; the X display is gone", "error", err)
			}
			return
		}
	}
}

func (s *scene) events() {
	for {
		ev, err := s.conn.WaitForEvent()
		if ev == nil && err == nil {
			return // connection closed
		}
		if err != nil {
			s.log.Warn("X error", "error", err)
			continue
		}
		var click bool
		s.mu.Lock()
		switch e := ev.(type) {
		case xproto.MotionNotifyEvent:
			s.trail = append(s.trail, trailPoint{int(e.EventX), int(e.EventY), time.Now()})
			if len(s.trail) > maxTrail {
				s.trail = s.trail[len(s.trail)-maxTrail:]
			}
		case xproto.ButtonPressEvent:
			s.clicked, s.clickX, s.clickY, click = true, int(e.EventX), int(e.EventY), true
			s.log.Info("click seen on display", "x", e.EventX, "y", e.EventY, "button", e.Detail)
		case xproto.KeyPressEvent:
			name := keysymName(uint32(s.keys.keysym(e.Detail)))
			s.keys5 = append(s.keys5, name)
			if len(s.keys5) > maxKeys {
				s.keys5 = s.keys5[1:]
			}
			s.log.Info("key seen on display", "key", name, "keycode", e.Detail)
		}
		s.mu.Unlock()
		if click && s.onClick != nil {
			s.onClick()
		}
	}
}

func (s *scene) fill(c rgb, r ...xproto.Rectangle) {
	xproto.ChangeGC(s.conn, s.gc, xproto.GcForeground, []uint32{s.px(c)})
	xproto.PolyFillRectangle(s.conn, xproto.Drawable(s.buf), s.gc, r)
}

func rect(x, y, w, h int) xproto.Rectangle {
	return xproto.Rectangle{X: int16(x), Y: int16(y), Width: uint16(max(w, 0)), Height: uint16(max(h, 0))}
}

// draw paints one frame into the buffer and copies it to the window in
// one request, so a capture never sees half a frame.
func (s *scene) draw() error {
	now := time.Now()
	s.mu.Lock()
	s.frame++
	frame := s.frame
	clicked, cx, cy := s.clicked, s.clickX, s.clickY
	keys := strings.Join(s.keys5, " ")
	for len(s.trail) > 0 && now.Sub(s.trail[0].at) > trailLife {
		s.trail = s.trail[1:]
	}
	trail := append([]trailPoint(nil), s.trail...)
	s.mu.Unlock()

	buf := xproto.Drawable(s.buf)
	s.fill(colBackground, rect(0, 0, s.w, s.h))
	var stripes []xproto.Rectangle
	for x := int(frame*2)%(2*stripe) - 2*stripe; x < s.w; x += 2 * stripe {
		stripes = append(stripes, rect(x, 0, stripe, s.h))
	}
	s.fill(colStripe, stripes...)
	s.fill(colReference, rect(refX, refY, refSize, refSize))
	if keys == "" {
		s.fill(colKeyIdle, rect(keyX, keyY, refSize, refSize))
	} else {
		s.fill(colKeySeen, rect(keyX, keyY, refSize, refSize))
		s.text8(buf, keyX+refSize+16, keyY+refSize/2+4, "keys: "+keys)
	}
	s.text8(buf, refX, refY+refSize+24, fmt.Sprintf("frame %d", frame))
	clock := now.Format("15:04:05.0")
	if cs := min(3, (s.w-keyX-refSize-32)/(glyphW*len(clock))); cs >= 2 && s.glyphs != nil {
		s.fill(colTitle, s.bigText(clock, s.w-len(clock)*glyphW*cs-16, refY, cs)...)
	} else {
		s.text8(buf, s.w-len(clock)*glyphW-16, 20, clock)
	}
	for _, t := range s.titles {
		s.fill(colTitle, t.rects...)
	}
	var dots []xproto.Rectangle
	for _, p := range trail {
		size := trailDot * int(trailLife-now.Sub(p.at)) / int(trailLife)
		dots = append(dots, rect(p.x-size/2, p.y-size/2, size, size))
	}
	s.fill(colTrail, dots...)
	bandY := s.h - 8 - bandH
	s.fill(colBackground, rect(0, bandY, s.w, bandH))
	s.fill(colBar, rect(int(frame*8)%max(s.w, 1), bandY, barWidth, bandH))
	if clicked {
		s.fill(colMarker, rect(cx-markerSize/2, cy-markerSize/2, markerSize, markerSize))
	}
	xproto.CopyArea(s.conn, buf, xproto.Drawable(s.win), s.gc, 0, 0, 0, 0, uint16(s.w), uint16(s.h))
	// A round trip per frame keeps requests from piling up if Xvfb lags.
	_, err := xproto.GetInputFocus(s.conn).Reply()
	return err
}

func (s *scene) text8(d xproto.Drawable, x, y int, text string) {
	if len(text) > 255 {
		text = text[:255]
	}
	xproto.ImageText8(s.conn, byte(len(text)), d, s.text, int16(x), int16(y), text)
}

// glyph is one character of the server's "fixed" font (6x13 cells): a
// bit per pixel, bit x of row y.
type glyph [glyphH]uint8

const glyphW, glyphH = 6, 13

// setupTitles renders the characters of the allocation id, the node name
// and the clock once with the server's "fixed" font into a scratch pixmap
// and reads the pixels back, so large type needs no font package. The
// titles are fixed rectangles; the clock is composed each frame.
func (s *scene) setupTitles(depth byte) {
	lines := sessionTitles()
	chars := map[byte]bool{}
	for _, l := range append(lines, "0123456789:.") {
		for i := 0; i < len(l); i++ {
			chars[l[i]] = true
		}
	}
	var set []byte
	for c := range chars {
		if c >= 0x20 && c < 0x7f {
			set = append(set, c)
		}
	}
	s.glyphs = s.readGlyphs(depth, string(set))
	if s.glyphs == nil {
		return
	}
	longest := 0
	for _, l := range lines {
		longest = max(longest, len(l))
	}
	bandBottom := s.h * 55 / 100
	scale := min((s.w-64)/(glyphW*max(longest, 1)), (bandBottom-titleTop)/(len(lines)*(glyphH+4)), 8)
	if scale < 1 {
		s.log.Info("display too small for the session's name in large type", "size", fmt.Sprintf("%dx%d", s.w, s.h))
		return
	}
	top := titleTop + ((bandBottom-titleTop)-len(lines)*(glyphH+4)*scale)/2
	for i, line := range lines {
		x0 := (s.w - len(line)*glyphW*scale) / 2
		s.titles = append(s.titles, title{rects: s.bigText(line, x0, top+i*(glyphH+4)*scale, scale)})
	}
}

// readGlyphs draws chars into a scratch pixmap and reads them back.
func (s *scene) readGlyphs(depth byte, chars string) map[byte]glyph {
	pw := glyphW * len(chars)
	if pw == 0 || pw > 4096 {
		return nil
	}
	pm, err := xproto.NewPixmapId(s.conn)
	if err != nil {
		return nil
	}
	if err := xproto.CreatePixmapChecked(s.conn, depth, pm, xproto.Drawable(s.win), uint16(pw), glyphH).Check(); err != nil {
		s.log.Warn("no large type: scratch pixmap", "error", err)
		return nil
	}
	defer xproto.FreePixmap(s.conn, pm)
	xproto.ChangeGC(s.conn, s.gc, xproto.GcForeground, []uint32{0})
	xproto.PolyFillRectangle(s.conn, xproto.Drawable(pm), s.gc, []xproto.Rectangle{rect(0, 0, pw, glyphH)})
	xproto.ImageText8(s.conn, byte(len(chars)), xproto.Drawable(pm), s.text, 0, glyphH-3, chars)
	img, err := xproto.GetImage(s.conn, xproto.ImageFormatZPixmap, xproto.Drawable(pm), 0, 0, uint16(pw), glyphH, 0xffffffff).Reply()
	if err != nil || len(img.Data) < pw*glyphH*4 {
		s.log.Warn("no large type: read back the rendered text", "error", err)
		return nil
	}
	out := make(map[byte]glyph, len(chars))
	for i := 0; i < len(chars); i++ {
		var g glyph
		for y := 0; y < glyphH; y++ {
			for x := 0; x < glyphW; x++ {
				if img.Data[(y*pw+i*glyphW+x)*4+1] > 0x80 { // white text on the dark text background
					g[y] |= 1 << x
				}
			}
		}
		out[chars[i]] = g
	}
	return out
}

// bigText lays text out at (x, y) with each font pixel scale x scale,
// horizontal runs merged into one rectangle.
func (s *scene) bigText(text string, x, y, scale int) []xproto.Rectangle {
	var out []xproto.Rectangle
	for i := 0; i < len(text); i++ {
		g, ok := s.glyphs[text[i]]
		if !ok {
			continue
		}
		cx := x + i*glyphW*scale
		for row := 0; row < glyphH; row++ {
			run := -1
			for col := 0; col <= glyphW; col++ {
				on := col < glyphW && g[row]&(1<<col) != 0
				switch {
				case on && run < 0:
					run = col
				case !on && run >= 0:
					out = append(out, rect(cx+run*scale, y+row*scale, (col-run)*scale, scale))
					run = -1
				}
			}
		}
	}
	return out
}

// sessionTitles is what the middle band shows: the Nomad allocation id
// and node name from the task's environment (two browsers on two sessions
// show two different ids), or the host name outside Nomad.
func sessionTitles() []string {
	alloc := os.Getenv("NOMAD_ALLOC_ID")
	if alloc == "" {
		alloc = "not under Nomad"
	}
	node := os.Getenv("NOMAD_NODE_NAME")
	if node == "" {
		node, _ = os.Hostname()
	}
	return []string{"alloc " + alloc, "node " + node}
}
