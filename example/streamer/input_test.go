package main

import (
	"strings"
	"testing"
)

func TestDecodeInput(t *testing.T) {
	tests := []struct {
		name    string
		msg     []byte
		want    inputEvent
		wantErr string
	}{
		{"key down A, repeat", []byte{60, 65, 1}, inputEvent{kind: msgKeyDown, key: 65, repeat: true}, ""},
		{"key up", []byte{61, 13}, inputEvent{kind: msgKeyUp, key: 13}, ""},
		{"mouse down right button", []byte{72, 2, 0x00, 0x80, 0xff, 0x7f}, inputEvent{kind: msgMouseDown, button: 2, x: 0x8000, y: 0x7fff}, ""},
		{"mouse up", []byte{73, 0, 1, 0, 2, 0}, inputEvent{kind: msgMouseUp, x: 1, y: 2}, ""},
		{"mouse move with deltas", []byte{74, 0x10, 0x00, 0x20, 0x00, 0xff, 0xff, 0x01, 0x00}, inputEvent{kind: msgMouseMove, x: 16, y: 32}, ""},
		{"wheel down", []byte{75, 0x88, 0xff, 5, 0, 6, 0}, inputEvent{kind: msgMouseWheel, delta: -120, x: 5, y: 6}, ""},
		{"control message without fields", []byte{0}, inputEvent{kind: 0}, ""},
		{"empty", nil, inputEvent{}, "empty data channel message"},
		{"short mouse down", []byte{72, 0, 1}, inputEvent{kind: msgMouseDown}, "MouseDown/Up/Double (id 72) needs 5 bytes"},
		{"short key down", []byte{60}, inputEvent{kind: msgKeyDown}, "KeyDown (id 60) needs 2 bytes"},
		{"short move", []byte{74, 1, 2, 3}, inputEvent{kind: msgMouseMove}, "MouseMove (id 74) needs 8 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeInput(tt.msg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	tests := []struct {
		code   uint8
		keysym uint32
		name   string
	}{
		{65, 'a', "A"}, {90, 'z', "Z"}, {48, '0', "0"}, {13, 0xff0d, "Return"}, {8, 0xff08, "BackSpace"},
		{32, ' ', "space"}, {37, 0xff51, "Left"}, {112, 0xffbe, "F1"}, {123, 0xffc9, "F12"},
		{96, 0xffb0, "KP_0"}, {253, 0xffe2, "Shift_R"}, {186, ';', ";"},
	}
	for _, tt := range tests {
		ks, ok := keysymFor(tt.code)
		if !ok || ks != tt.keysym {
			t.Errorf("keysymFor(%d) = %#x, %v; want %#x", tt.code, ks, ok, tt.keysym)
		}
		if got := keysymName(ks); got != tt.name {
			t.Errorf("keysymName(%#x) = %q, want %q", ks, got, tt.name)
		}
	}
	if ks, ok := keysymFor(0); ok {
		t.Errorf("keysymFor(0) = %#x, want no key", ks)
	}
}

func TestXButton(t *testing.T) {
	for browser, want := range map[uint8]byte{0: 1, 1: 2, 2: 3, 3: 8, 4: 9} {
		if got, ok := xButton(browser); !ok || got != want {
			t.Errorf("xButton(%d) = %d, %v; want %d", browser, got, ok, want)
		}
	}
	if _, ok := xButton(7); ok {
		t.Error("xButton(7) accepted an unknown button")
	}
}
