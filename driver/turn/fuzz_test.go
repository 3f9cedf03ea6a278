package turn

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// Fuzz targets for the bytes this package parses itself (go test
// -fuzz=^FuzzX$ ./driver/turn/). Seeds carry the boundary lengths 0, 125,
// 126, 65535, 65536, 2^63 and 2^64-1 wherever a length field is read (the
// 16-bit fields get them modulo 2^16, and raw 8-byte encodings are seeded
// too, as an attacker would send them).

var boundaryLengths = []uint64{0, 125, 126, 65535, 65536, 1 << 63, 1<<64 - 1}

// lengthSeeds are headers (STUN and ChannelData) declaring each boundary
// length, each followed by some bytes, and the raw 8-byte encodings.
func lengthSeeds() [][]byte {
	var out [][]byte
	for _, n := range boundaryLengths {
		var raw [8]byte
		binary.BigEndian.PutUint64(raw[:], n)
		out = append(out, raw[:])
		for _, first := range []byte{0x00, 0x01, 0x40, 0x4f, 0x7f, 0x80, 0xff} {
			h := []byte{first, 0x01, byte(n >> 8), byte(n)}
			if first&0xC0 == 0 {
				h = binary.BigEndian.AppendUint32(h, stunCookie)
				h = append(h, make([]byte, 12)...)
			}
			out = append(out, h, append(h, bytes.Repeat([]byte{0xAB}, 130)...), append(append(h, raw[:]...), h...))
		}
	}
	return out
}

func FuzzTCPFraming(f *testing.F) {
	for _, s := range lengthSeeds() {
		f.Add(s)
	}
	f.Add(stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw)
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		buf := make([]byte, maxFrame)
		consumed := 0
		for {
			frame, err := readFrame(r, buf, nil)
			if err != nil {
				return
			}
			if len(frame) < channelHeader || len(frame) > maxFrame {
				t.Fatalf("frame of %d bytes", len(frame))
			}
			want, ferr := frameSize(frame)
			if ferr != nil || want != len(frame) {
				t.Fatalf("frame of %d bytes, header says %d (%v)", len(frame), want, ferr)
			}
			if consumed += len(frame); consumed > len(in) {
				t.Fatalf("%d bytes of frames from %d bytes of input", consumed, len(in))
			}
			if !bytes.Equal(frame, in[consumed-len(frame):consumed]) {
				t.Fatal("frame is not the input's bytes")
			}
		}
	})
}

// fuzzEnv is a running server with one UDP allocation that has a bound
// channel, shared by the fuzz iterations of one process.
type fuzzEnv struct {
	s      *Server
	client netip.AddrPort
	ice    ICEServer
	conn   net.PacketConn
}

var (
	fuzzOnce sync.Once
	fuzzE    *fuzzEnv
	fuzzErr  string
)

func newFuzzEnv(f *testing.F) *fuzzEnv {
	fuzzOnce.Do(func() {
		s, err := New(Config{Listen: "127.0.0.1:0", Registry: prometheus.NewRegistry(), Logger: hclog.NewNullLogger(),
			AllowPeers: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}})
		if err == nil {
			err = s.Start()
		}
		if err != nil {
			fuzzErr = err.Error()
			return
		}
		ice := s.Credentials("fuzz")
		conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			fuzzErr = err.Error()
			return
		}
		c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: s.Addr().String(), TURNServerAddr: s.Addr().String(),
			Username: ice.Username, Password: ice.Credential, Realm: DefaultRealm, Conn: conn, RTO: 100 * time.Millisecond})
		if err == nil {
			err = c.Listen()
		}
		var relay net.PacketConn
		if err == nil {
			relay, err = c.Allocate()
		}
		if err != nil {
			fuzzErr = err.Error()
			return
		}
		// A write binds a channel to the peer (pion's client binds on first use).
		peer := net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.51.100.7:9"))
		bound := func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			for _, rc := range s.relays {
				if len(*rc.chans.Load()) > 0 {
					return true
				}
			}
			return false
		}
		for i := 0; i < 100 && !bound(); i++ {
			_, _ = relay.WriteTo([]byte("x"), peer)
			time.Sleep(10 * time.Millisecond) // the client's bind is in flight; polling, not a readiness guess
		}
		fuzzE = &fuzzEnv{s: s, client: conn.LocalAddr().(*net.UDPAddr).AddrPort(), ice: ice, conn: conn}
	})
	if fuzzE == nil {
		f.Fatalf("fuzz server: %s", fuzzErr)
	}
	return fuzzE
}

// FuzzChannelData drives the data plane's handling of a client datagram
// (what readListener does per packet: ChannelData parsing and relaying,
// everything else handed to pion's goroutine) with the source address of a
// client that has an allocation and a bound channel.
func FuzzChannelData(f *testing.F) {
	for _, s := range lengthSeeds() {
		f.Add(s)
	}
	f.Add([]byte{0x40, 0x00, 0x00, 0x03, 'a', 'b', 'c'})
	f.Add([]byte{0x40, 0x00, 0xff, 0xff, 'a'})
	f.Add(stun.MustBuild(stun.TransactionID, stun.BindingRequest).Raw)
	env := newFuzzEnv(f)
	l := env.s.loops[0]
	f.Fuzz(func(t *testing.T, b []byte) {
		num, payload, isChannel, ok := parseChannelData(b)
		if ok && (!isChannel || len(payload) != int(binary.BigEndian.Uint16(b[2:4])) || num != binary.BigEndian.Uint16(b[0:2])) {
			t.Fatalf("parseChannelData(%x) = %d, %d bytes, %v, %v", b, num, len(payload), isChannel, ok)
		}
		l.clientPacket(l.ctrl, *env.s.udpClients.Load(), b, env.client)
	})
}

// FuzzScreenRequest feeds STUN-looking requests from a client with an
// allocation to the screening that runs before pion, signed with the
// client's real key where the seed is, so the deep paths are reached.
func FuzzScreenRequest(f *testing.F) {
	env := newFuzzEnv(f)
	key := turn.GenerateAuthKey(env.ice.Username, DefaultRealm, env.ice.Credential)
	sign := func(method stun.Method, extra ...stun.Setter) []byte {
		s := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
		s = append(s, extra...)
		s = append(s, stun.NewUsername(env.ice.Username), stun.NewRealm(DefaultRealm), stun.NewNonce("n"), stun.MessageIntegrity(key))
		return stun.MustBuild(s...).Raw
	}
	peer := xorPeer4(netip.MustParseAddrPort("198.51.100.7:9"))
	f.Add(sign(stun.MethodChannelBind, channelNumber(0x4001), peer), true)
	f.Add(sign(stun.MethodChannelBind, channelNumber(0x4000), peer), false)
	f.Add(sign(stun.MethodChannelBind, stun.RawAttribute{Type: stun.AttrChannelNumber, Value: []byte{0x40}}, peer), true)
	f.Add(sign(stun.MethodCreatePermission, peer, xorPeer4(netip.MustParseAddrPort("198.51.100.8:1"))), true)
	f.Add(sign(stun.MethodRefresh, rawLifetime(0)), true)
	for _, n := range boundaryLengths {
		f.Add(sign(stun.MethodChannelBind, stun.RawAttribute{Type: stun.AttrChannelNumber, Value: binary.BigEndian.AppendUint64(nil, n)}, peer), true)
		f.Add(sign(stun.MethodCreatePermission, stun.RawAttribute{Type: stun.AttrXORPeerAddress, Value: binary.BigEndian.AppendUint64(nil, n)}), true)
	}
	for _, s := range lengthSeeds() {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, b []byte, udp bool) {
		in := append([]byte(nil), b...)
		resp := env.s.screenRequest(b, env.client, udp)
		if !bytes.Equal(in, b) {
			t.Fatal("screenRequest modified the request")
		}
		if resp != nil {
			m := &stun.Message{Raw: resp}
			if err := m.Decode(); err != nil || m.Type.Class != stun.ClassErrorResponse {
				t.Fatalf("screenRequest answered %x (%v), want an error response", resp, err)
			}
		}
	})
}
