package main

import (
	"encoding/binary"
	"encoding/json"
	"unicode/utf16"
)

// msgProtocol is the id of the "Protocol" message a streamer sends when the
// data channel opens: id byte, then a JSON description in UTF-16LE.
const msgProtocol = 255

// Directions in the protocol description, as Epic's frontend numbers them.
const (
	directionToStreamer = 0
)

type protocolEntry struct {
	ID        int      `json:"id"`
	Structure []string `json:"structure"`
}

// toStreamerProtocol is the input the stand-in understands, with the layouts
// decodeInput reads. Unreal announces its protocol the same way; the
// frontend keeps its defaults for anything not listed.
var toStreamerProtocol = map[string]protocolEntry{
	"KeyDown":     {msgKeyDown, []string{"uint8", "uint8"}},
	"KeyUp":       {msgKeyUp, []string{"uint8"}},
	"KeyPress":    {msgKeyPress, []string{"uint16"}},
	"MouseEnter":  {msgMouseEnter, []string{}},
	"MouseLeave":  {msgMouseLeave, []string{}},
	"MouseDown":   {msgMouseDown, []string{"uint8", "uint16", "uint16"}},
	"MouseUp":     {msgMouseUp, []string{"uint8", "uint16", "uint16"}},
	"MouseMove":   {msgMouseMove, []string{"uint16", "uint16", "int16", "int16"}},
	"MouseWheel":  {msgMouseWheel, []string{"int16", "uint16", "uint16"}},
	"MouseDouble": {msgMouseDouble, []string{"uint8", "uint16", "uint16"}},
}

// protocolMessages are the data channel messages sent when it opens.
func protocolMessages() [][]byte {
	desc := map[string]any{"Direction": directionToStreamer}
	for name, e := range toStreamerProtocol {
		desc[name] = e
	}
	text, _ := json.Marshal(desc) // a map of plain values always marshals
	units := utf16.Encode([]rune(string(text)))
	msg := make([]byte, 1+2*len(units))
	msg[0] = msgProtocol
	for i, u := range units {
		binary.LittleEndian.PutUint16(msg[1+2*i:], u)
	}
	return [][]byte{msg}
}
