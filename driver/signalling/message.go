package signalling

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// member is one top-level "key":value pair of a message, as byte offsets into
// the message so values can be forwarded exactly as received.
type member struct {
	key        string // decoded key
	start, end int    // the whole member, from the key's quote to the value's end
	vstart     int    // the value
}

// message is a parsed inbound signalling message. Only the top level is
// split; every value keeps its original bytes.
type message struct {
	raw     []byte
	typ     string
	members []member
	buf     [12]member
}

// protocolError is a message the server refuses; it closes the sender.
type protocolError struct {
	code   int
	reason string
}

func (e *protocolError) Error() string { return e.reason }

func badMessage(format string, args ...any) *protocolError {
	return &protocolError{code: closeInvalidPayload, reason: fmt.Sprintf(format, args...)}
}

// parseMessage checks that data is one JSON object with a string "type" and
// splits its top level. Keys are compared after unescaping, exactly as a
// JavaScript or Unreal peer would read them.
func parseMessage(data []byte, m *message) *protocolError {
	if err := parseObject(data, m); err != nil {
		return err
	}
	typ, present, ok := m.str("type")
	switch {
	case !present:
		return badMessage("message has no type field")
	case !ok:
		return badMessage("message field type must be a string")
	}
	m.typ = typ
	return nil
}

// parseObject checks that data is one JSON object and splits its top level.
func parseObject(data []byte, m *message) *protocolError {
	m.raw = data
	m.members = m.buf[:0]
	m.typ = ""
	if !json.Valid(data) {
		return badMessage("message is not valid JSON")
	}
	i := skipSpace(data, 0)
	if data[i] != '{' {
		return badMessage("message is not a JSON object")
	}
	i = skipSpace(data, i+1)
	for data[i] != '}' {
		kstart := i
		kend := skipString(data, i)
		key, ok := decodeString(data[kstart:kend])
		if !ok {
			return badMessage("message has an undecodable key")
		}
		i = skipSpace(data, kend)
		i = skipSpace(data, i+1) // ':'
		vstart := i
		vend := skipValue(data, i)
		m.members = append(m.members, member{key: key, start: kstart, end: vend, vstart: vstart})
		i = skipSpace(data, vend)
		if data[i] == ',' {
			i = skipSpace(data, i+1)
		}
	}
	return nil
}

// field returns the raw value of the last member named key (JSON.parse keeps
// the last of duplicate keys too).
func (m *message) field(key string) (json.RawMessage, bool) {
	for i := len(m.members) - 1; i >= 0; i-- {
		if m.members[i].key == key {
			mb := m.members[i]
			return m.raw[mb.vstart:mb.end], true
		}
	}
	return nil, false
}

// str returns a string field: its value, whether it is present, and whether
// it is a string.
func (m *message) str(key string) (string, bool, bool) {
	v, ok := m.field(key)
	if !ok {
		return "", false, false
	}
	if len(v) == 0 || v[0] != '"' {
		return "", true, false
	}
	s, ok := decodeString(v)
	return s, true, ok
}

// requireString returns a required string field or the error that closes the sender.
func (m *message) requireString(key string) (string, *protocolError) {
	s, present, ok := m.str(key)
	switch {
	case !present:
		return "", badMessage("%s message is missing field %s", m.typ, key)
	case !ok:
		return "", badMessage("%s message field %s must be a string", m.typ, key)
	}
	return s, nil
}

// optionalString returns an optional string field; present but not a string is an error.
func (m *message) optionalString(key string) (string, *protocolError) {
	s, present, ok := m.str(key)
	if present && !ok {
		return "", badMessage("%s message field %s must be a string", m.typ, key)
	}
	return s, nil
}

// playerID reads the playerId a streamer addressed a message to. Some Unreal
// versions have sent it as a number, so digits are accepted as the id text.
func (m *message) playerID() (string, bool, *protocolError) {
	v, ok := m.field("playerId")
	if !ok {
		return "", false, nil
	}
	if len(v) > 0 && v[0] == '"' {
		s, ok := decodeString(v)
		if !ok {
			return "", true, badMessage("%s message field playerId is not a valid string", m.typ)
		}
		return s, true, nil
	}
	if _, err := strconv.ParseUint(string(v), 10, 64); err == nil {
		return string(v), true, nil
	}
	return "", true, badMessage("%s message field playerId must be a string", m.typ)
}

// withPlayerID returns the message with every playerId member removed and,
// when id is not empty, "playerId":id appended. Other members keep their bytes.
func (m *message) withPlayerID(id string) []byte {
	out := make([]byte, 0, len(m.raw)+len(id)+16)
	out = append(out, '{')
	first := true
	for _, mb := range m.members {
		if mb.key == "playerId" {
			continue
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		out = append(out, m.raw[mb.start:mb.end]...)
	}
	if id != "" {
		if !first {
			out = append(out, ',')
		}
		out = append(out, `"playerId":`...)
		out = appendString(out, id)
	}
	return append(out, '}')
}

// withMember returns the message with key set to the raw JSON value v,
// replacing any member of that name.
func (m *message) withMember(key string, v []byte) []byte {
	out := make([]byte, 0, len(m.raw)+len(key)+len(v)+8)
	out = append(out, '{')
	first := true
	for _, mb := range m.members {
		if mb.key == key {
			continue
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		out = append(out, m.raw[mb.start:mb.end]...)
	}
	if !first {
		out = append(out, ',')
	}
	out = appendString(out, key)
	out = append(out, ':')
	out = append(out, v...)
	return append(out, '}')
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] == '"'.
// The input has passed json.Valid.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// skipValue returns the index after the value starting at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	default:
		for ; i < len(b); i++ {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
		}
		return i
	}
}

// decodeString decodes a JSON string literal, without allocating a decoder
// for the common unescaped case.
func decodeString(lit []byte) (string, bool) {
	if len(lit) < 2 || lit[0] != '"' {
		return "", false
	}
	inner := lit[1 : len(lit)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner), true
	}
	var s string
	if err := json.Unmarshal(lit, &s); err != nil {
		return "", false
	}
	return s, true
}

// appendString appends s as a JSON string literal.
func appendString(out []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			b, _ := json.Marshal(s) // a string always marshals
			return append(out, b...)
		}
	}
	out = append(out, '"')
	out = append(out, s...)
	return append(out, '"')
}
