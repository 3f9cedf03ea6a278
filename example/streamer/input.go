package main

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xproto"
	"github.com/jezek/xgb/xtest"
)

// Message ids of Epic's frontend "toStreamer" protocol (UE 5.5 defaults, the
// ids the stand-in also announces in its protocol message).
const (
	msgKeyDown     = 60 // keyCode uint8, isRepeat uint8
	msgKeyUp       = 61 // keyCode uint8
	msgKeyPress    = 62 // charCode uint16
	msgMouseEnter  = 70
	msgMouseLeave  = 71
	msgMouseDown   = 72 // button uint8, x uint16, y uint16
	msgMouseUp     = 73 // button uint8, x uint16, y uint16
	msgMouseMove   = 74 // x uint16, y uint16, deltaX int16, deltaY int16
	msgMouseWheel  = 75 // delta int16, x uint16, y uint16
	msgMouseDouble = 76 // button uint8, x uint16, y uint16
)

// inputEvent is one decoded input message. X and Y are the frontend's
// normalised coordinates: 0..65535 across the video.
type inputEvent struct {
	kind   byte
	button uint8
	key    uint8
	repeat bool
	x, y   uint16
	delta  int16
}

// decodeInput parses one data channel message. Non-input messages (control
// requests such as IFrameRequest) decode to their kind with no fields.
func decodeInput(msg []byte) (inputEvent, error) {
	if len(msg) == 0 {
		return inputEvent{}, fmt.Errorf("empty data channel message")
	}
	e := inputEvent{kind: msg[0]}
	body := msg[1:]
	need := func(n int, name, layout string) error {
		if len(body) < n {
			return fmt.Errorf("%s (id %d) needs %d bytes after the id (%s), got %d", name, e.kind, n, layout, len(body))
		}
		return nil
	}
	u16 := func(i int) uint16 { return binary.LittleEndian.Uint16(body[i:]) }
	switch e.kind {
	case msgKeyDown:
		if err := need(2, "KeyDown", "keyCode uint8, isRepeat uint8"); err != nil {
			return e, err
		}
		e.key, e.repeat = body[0], body[1] != 0
	case msgKeyUp:
		if err := need(1, "KeyUp", "keyCode uint8"); err != nil {
			return e, err
		}
		e.key = body[0]
	case msgMouseDown, msgMouseUp, msgMouseDouble:
		if err := need(5, "MouseDown/Up/Double", "button uint8, x uint16, y uint16"); err != nil {
			return e, err
		}
		e.button, e.x, e.y = body[0], u16(1), u16(3)
	case msgMouseMove:
		if err := need(8, "MouseMove", "x uint16, y uint16, deltaX int16, deltaY int16"); err != nil {
			return e, err
		}
		e.x, e.y = u16(0), u16(2)
	case msgMouseWheel:
		if err := need(6, "MouseWheel", "delta int16, x uint16, y uint16"); err != nil {
			return e, err
		}
		e.delta, e.x, e.y = int16(u16(0)), u16(2), u16(4)
	}
	return e, nil
}

// keymap is the display's keyboard mapping, first column only: what a key
// produces without modifiers.
type keymap struct {
	min   xproto.Keycode
	syms  []xproto.Keysym // indexed by keycode-min
	codes map[xproto.Keysym]xproto.Keycode
}

func loadKeymap(conn *xgb.Conn) (keymap, error) {
	setup := xproto.Setup(conn)
	count := byte(setup.MaxKeycode - setup.MinKeycode + 1)
	reply, err := xproto.GetKeyboardMapping(conn, setup.MinKeycode, count).Reply()
	if err != nil {
		return keymap{}, fmt.Errorf("read X keyboard mapping: %w", err)
	}
	km := keymap{min: setup.MinKeycode, codes: map[xproto.Keysym]xproto.Keycode{}}
	per := int(reply.KeysymsPerKeycode)
	for i := 0; i < int(count) && per > 0; i++ {
		col := reply.Keysyms[i*per : (i+1)*per]
		km.syms = append(km.syms, col[0])
		for _, ks := range col {
			if _, seen := km.codes[ks]; ks != 0 && !seen {
				km.codes[ks] = km.min + xproto.Keycode(i)
			}
		}
	}
	return km, nil
}

func (k keymap) keysym(code xproto.Keycode) xproto.Keysym {
	i := int(code) - int(k.min)
	if i < 0 || i >= len(k.syms) {
		return 0
	}
	return k.syms[i]
}

// injector turns the frontend's input messages into XTEST events on the
// display, as Unreal turns them into engine input.
type injector struct {
	log  hclog.Logger
	conn *xgb.Conn
	root xproto.Window
	w, h int
	keys keymap

	mu   sync.Mutex
	held map[string]map[held]bool // per player: keys and buttons down
}

// held is a pressed key (xproto.KeyPress, keycode) or button
// (xproto.ButtonPress, button).
type held struct{ typ, detail byte }

func newInjector(log hclog.Logger, display string, w, h int) (*injector, error) {
	conn, err := xgb.NewConnDisplay(display)
	if err != nil {
		return nil, fmt.Errorf("open X display %s for input: %w", display, err)
	}
	if err := xtest.Init(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("display %s has no XTEST extension (needed to inject input): %w", display, err)
	}
	keys, err := loadKeymap(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	root := xproto.Setup(conn).DefaultScreen(conn).Root
	return &injector{log: log, conn: conn, root: root, w: w, h: h, keys: keys, held: map[string]map[held]bool{}}, nil
}

func (in *injector) close() { in.conn.Close() }

// handle decodes and injects one message from a player.
func (in *injector) handle(playerID string, msg []byte) {
	e, err := decodeInput(msg)
	if err != nil {
		in.log.Warn("bad input message", "player", playerID, "error", err)
		return
	}
	switch e.kind {
	case msgMouseMove:
		in.move(e.x, e.y)
	case msgMouseDown, msgMouseUp:
		in.move(e.x, e.y)
		typ := byte(xproto.ButtonPress)
		if e.kind == msgMouseUp {
			typ = xproto.ButtonRelease
		}
		b, ok := xButton(e.button)
		if !ok {
			in.log.Warn("mouse button unknown to the stand-in; ignored", "player", playerID, "button", e.button)
			return
		}
		in.press(playerID, typ, b)
		in.log.Debug("mouse button injected", "player", playerID, "down", e.kind == msgMouseDown, "button", e.button)
	case msgMouseWheel:
		in.move(e.x, e.y)
		b := byte(4) // X wheel up; the browser's positive delta scrolls up
		if e.delta < 0 {
			b = 5
		}
		in.fake(xproto.ButtonPress, b)
		in.fake(xproto.ButtonRelease, b)
	case msgKeyDown, msgKeyUp:
		ks, ok := keysymFor(e.key)
		code, mapped := in.keys.codes[xproto.Keysym(ks)]
		if !ok || !mapped {
			in.log.Debug("key has no X key on this display; ignored", "player", playerID, "key_code", e.key)
			return
		}
		typ := byte(xproto.KeyPress)
		if e.kind == msgKeyUp {
			typ = xproto.KeyRelease
		}
		in.press(playerID, typ, byte(code))
	default:
		// Control messages (quality, latency tests, ...) and the input the
		// stand-in does not model (KeyPress characters, touch, gamepad).
		in.log.Trace("data channel message not handled by the stand-in", "player", playerID, "id", e.kind)
	}
}

// press injects a press or release and remembers what the player holds down.
func (in *injector) press(playerID string, typ, detail byte) {
	in.mu.Lock()
	switch typ {
	case xproto.KeyPress, xproto.ButtonPress:
		if in.held[playerID] == nil {
			in.held[playerID] = map[held]bool{}
		}
		in.held[playerID][held{typ, detail}] = true
	case xproto.KeyRelease:
		delete(in.held[playerID], held{xproto.KeyPress, detail})
	case xproto.ButtonRelease:
		delete(in.held[playerID], held{xproto.ButtonPress, detail})
	}
	in.mu.Unlock()
	in.fake(typ, detail)
}

// releaseAll lets go of what a departing player still holds, so a tab closed
// mid-keypress leaves no key stuck (and auto-repeating) on the display.
func (in *injector) releaseAll(playerID string) {
	in.mu.Lock()
	down := in.held[playerID]
	delete(in.held, playerID)
	in.mu.Unlock()
	for h := range down {
		in.fake(h.typ+1, h.detail) // KeyRelease = KeyPress+1, ButtonRelease = ButtonPress+1
	}
	if len(down) > 0 {
		in.log.Info("released input a departed player held", "player", playerID, "count", len(down))
	}
}

// move places the pointer; the frontend's 65535,65535 means "outside the
// video" and is skipped.
func (in *injector) move(x, y uint16) {
	if x == 0xffff && y == 0xffff {
		return
	}
	px := min(int(x)*in.w/65536, in.w-1)
	py := min(int(y)*in.h/65536, in.h-1)
	xtest.FakeInput(in.conn, xproto.MotionNotify, 0, 0, in.root, int16(px), int16(py), 0)
}

func (in *injector) fake(typ, detail byte) {
	if err := xtest.FakeInputChecked(in.conn, typ, detail, 0, in.root, 0, 0, 0).Check(); err != nil {
		in.log.Warn("inject input", "type", typ, "detail", detail, "error", err)
	}
}

// xButton maps browser buttons (0 left, 1 middle, 2 right, 3 back, 4
// forward) to X buttons (1 left, 2 middle, 3 right, 8 back, 9 forward).
func xButton(b uint8) (byte, bool) {
	switch b {
	case 0, 1, 2:
		return b + 1, true
	case 3, 4:
		return b + 5, true
	}
	return 0, false
}
