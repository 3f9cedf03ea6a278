package main

import (
	"fmt"
	"strconv"
	"strings"
)

// Browser key codes (KeyboardEvent.keyCode, which Epic's frontend sends, with
// 253..255 for the right-hand Shift/Control/Alt) mapped to X keysyms.
var specialKeys = map[uint8]struct {
	keysym uint32
	name   string
}{
	8: {0xff08, "BackSpace"}, 9: {0xff09, "Tab"}, 13: {0xff0d, "Return"},
	16: {0xffe1, "Shift_L"}, 17: {0xffe3, "Control_L"}, 18: {0xffe9, "Alt_L"},
	253: {0xffe2, "Shift_R"}, 254: {0xffe4, "Control_R"}, 255: {0xffea, "Alt_R"},
	19: {0xff13, "Pause"}, 20: {0xffe5, "Caps_Lock"}, 27: {0xff1b, "Escape"}, 32: {0x20, "space"},
	33: {0xff55, "Prior"}, 34: {0xff56, "Next"}, 35: {0xff57, "End"}, 36: {0xff50, "Home"},
	37: {0xff51, "Left"}, 38: {0xff52, "Up"}, 39: {0xff53, "Right"}, 40: {0xff54, "Down"},
	45: {0xff63, "Insert"}, 46: {0xffff, "Delete"},
	91: {0xffeb, "Super_L"}, 92: {0xffec, "Super_R"}, 93: {0xff67, "Menu"},
	106: {0xffaa, "KP_Multiply"}, 107: {0xffab, "KP_Add"}, 109: {0xffad, "KP_Subtract"},
	110: {0xffae, "KP_Decimal"}, 111: {0xffaf, "KP_Divide"},
	186: {0x3b, ";"}, 187: {0x3d, "="}, 188: {0x2c, ","}, 189: {0x2d, "-"}, 190: {0x2e, "."},
	191: {0x2f, "/"}, 192: {0x60, "`"}, 219: {0x5b, "["}, 220: {0x5c, "\\"}, 221: {0x5d, "]"}, 222: {0x27, "'"},
}

// keysymFor maps a browser key code to an X keysym.
func keysymFor(code uint8) (uint32, bool) {
	switch {
	case code >= '0' && code <= '9':
		return uint32(code), true
	case code >= 'A' && code <= 'Z':
		return uint32(code) + ('a' - 'A'), true // X names letter keys by their lower-case keysym
	case code >= 96 && code <= 105:
		return 0xffb0 + uint32(code-96), true // KP_0..KP_9
	case code >= 112 && code <= 123:
		return 0xffbe + uint32(code-112), true // F1..F12
	}
	k, ok := specialKeys[code]
	return k.keysym, ok
}

// keysymName is how the scene shows a key: the character for printable keys
// (letters upper-case), an X keysym name otherwise.
func keysymName(ks uint32) string {
	if ks > 0x20 && ks < 0x7f {
		return strings.ToUpper(string(rune(ks)))
	}
	switch {
	case ks >= 0xffb0 && ks <= 0xffb9:
		return "KP_" + string(rune('0'+ks-0xffb0))
	case ks >= 0xffbe && ks <= 0xffc9:
		return "F" + strconv.Itoa(int(ks-0xffbe+1))
	}
	for _, k := range specialKeys {
		if k.keysym == ks {
			return k.name
		}
	}
	return fmt.Sprintf("0x%x", ks)
}
