package main

import (
	"context"
	"fmt"
	"math/bits"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xproto"
)

// The scene's fixed layout, relied on by tests (keep README.md in step):
//   - background: dark grey #202020
//   - reference patch: pure red #FF0000, 64x64 at (32,32)
//   - key block: 64x64 at (128,32), grey #606060 until a key is pressed,
//     then pure blue #0000FF; the key's name is written to its right
//   - click marker: pure green #00FF00, 24x24, centred on the last click
//   - motion: a white 16 px bar sweeping the 32 px band 8 px above the
//     bottom edge, and a frame counter below the patches
var (
	colBackground = rgb{0x20, 0x20, 0x20}
	colReference  = rgb{0xff, 0x00, 0x00}
	colKeyIdle    = rgb{0x60, 0x60, 0x60}
	colKeySeen    = rgb{0x00, 0x00, 0xff}
	colMarker     = rgb{0x00, 0xff, 0x00}
	colBar        = rgb{0xff, 0xff, 0xff}
)

const (
	refX, refY, refSize = 32, 32, 64
	keyX, keyY          = 128, 32
	markerSize          = 24
	barWidth, bandH     = 16, 32
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

	mu      sync.Mutex
	dirty   bool
	clicked bool
	clickX  int
	clickY  int
	keyName string
	frame   uint64
}

func newScene(log hclog.Logger, display string) (*scene, error) {
	conn, err := xgb.NewConnDisplay(display)
	if err != nil {
		return nil, fmt.Errorf("open X display %s for drawing: %w", display, err)
	}
	s := &scene{log: log, conn: conn, dirty: true}
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
		[]uint32{px(colBackground), 1, xproto.EventMaskExposure | xproto.EventMaskButtonPress | xproto.EventMaskKeyPress}).Check()
	if err != nil {
		return fmt.Errorf("create window: %w", err)
	}
	if s.gc, err = xproto.NewGcontextId(s.conn); err != nil {
		return fmt.Errorf("allocate graphics context: %w", err)
	}
	if err := xproto.CreateGCChecked(s.conn, s.gc, xproto.Drawable(s.win), xproto.GcForeground, []uint32{px(colBackground)}).Check(); err != nil {
		return fmt.Errorf("create graphics context: %w", err)
	}
	if err := s.setupText(); err != nil {
		return err
	}
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
	err = xproto.CreateGCChecked(s.conn, s.text, xproto.Drawable(s.win), xproto.GcForeground|xproto.GcBackground|xproto.GcFont,
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
		s.mu.Lock()
		switch e := ev.(type) {
		case xproto.ExposeEvent:
			s.dirty = true
		case xproto.ButtonPressEvent:
			s.clicked, s.clickX, s.clickY, s.dirty = true, int(e.EventX), int(e.EventY), true
			s.log.Info("click seen on display", "x", e.EventX, "y", e.EventY, "button", e.Detail)
		case xproto.KeyPressEvent:
			s.keyName, s.dirty = keysymName(uint32(s.keys.keysym(e.Detail))), true
			s.log.Info("key seen on display", "key", s.keyName, "keycode", e.Detail)
		}
		s.mu.Unlock()
	}
}

func (s *scene) fill(c rgb, r ...xproto.Rectangle) {
	xproto.ChangeGC(s.conn, s.gc, xproto.GcForeground, []uint32{s.px(c)})
	xproto.PolyFillRectangle(s.conn, xproto.Drawable(s.win), s.gc, r)
}

func rect(x, y, w, h int) xproto.Rectangle {
	return xproto.Rectangle{X: int16(x), Y: int16(y), Width: uint16(max(w, 0)), Height: uint16(max(h, 0))}
}

// draw paints one frame. Only the moving parts are repainted each frame;
// the rest only after a click, a key or an expose, to keep Xvfb's work small.
func (s *scene) draw() error {
	s.mu.Lock()
	s.frame++
	frame, full := s.frame, s.dirty
	clicked, cx, cy, key := s.clicked, s.clickX, s.clickY, s.keyName
	s.dirty = false
	s.mu.Unlock()

	win := xproto.Drawable(s.win)
	if full {
		s.fill(colBackground, rect(0, 0, s.w, s.h))
		s.fill(colReference, rect(refX, refY, refSize, refSize))
		if key == "" {
			s.fill(colKeyIdle, rect(keyX, keyY, refSize, refSize))
		} else {
			s.fill(colKeySeen, rect(keyX, keyY, refSize, refSize))
			label := "key: " + key
			xproto.ImageText8(s.conn, byte(len(label)), win, s.text, int16(keyX+refSize+16), int16(keyY+refSize/2+4), label)
		}
	}
	bandY := s.h - 8 - bandH
	s.fill(colBackground, rect(0, bandY, s.w, bandH))
	s.fill(colBar, rect(int(frame*8)%max(s.w, 1), bandY, barWidth, bandH))
	if clicked {
		s.fill(colMarker, rect(cx-markerSize/2, cy-markerSize/2, markerSize, markerSize))
	}
	label := fmt.Sprintf("frame %d", frame)
	xproto.ImageText8(s.conn, byte(len(label)), win, s.text, refX, refY+refSize+24, label)
	// A round trip per frame keeps requests from piling up if Xvfb lags.
	_, err := xproto.GetInputFocus(s.conn).Reply()
	return err
}
