package hostile

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // TURN REST credentials are HMAC-SHA1 by specification
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/go-hclog"
	"github.com/pion/logging"
	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/playerhttp"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling"
	pturn "github.com/pixelstream/nomad-driver-pixelstream/driver/turn"
)

// TURN rows (issue 11, cases 12, 13, 15, 16 and the malformed-packet
// flood) against the standalone `turn` subcommand of the plugin binary, one
// fresh process per row. Each row asserts that the attacker is refused (an
// error code) or dropped, that a bystander keeps working (a player's
// allocation relaying to the streamer's address, and a fresh player
// allocating), that the process stays up within its memory budget and
// exits on SIGTERM. The streamer is a stand-in (a UDP echo socket, no
// media), named so. Cases 8 and 14 need the session's signalling and TURN
// together: see TestTURNSessionRows.
//
// To show a row fails on older code, build that commit's plugin binary and
// run the suite with PIXELSTREAM_HOSTILE_BIN=/path/to/it.

const turnSecret = "hostile-turn-secret-0123456789"

// turnRSSBudget is the peak RSS a standalone TURN process may reach under
// any row.
const turnRSSBudget = 256 << 20

// turnTarget is a standalone TURN process and the streamer stand-in its
// allow-list names.
type turnTarget struct {
	proc     *Proc
	addr     netip.AddrPort // UDP and TCP
	streamer *turnEcho
}

// turnEcho is the streamer stand-in: a UDP socket that echoes.
type turnEcho struct {
	conn *net.UDPConn
	addr netip.AddrPort
}

func turnStartEcho(tb testing.TB, ip string) *turnEcho {
	tb.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		tb.Fatalf("streamer stand-in: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	return &turnEcho{conn: c, addr: c.LocalAddr().(*net.UDPAddr).AddrPort()}
}

// turnStart runs `turn` on listenIP with the streamer stand-in allowed and
// flags appended; nofile > 0 runs it under that RLIMIT_NOFILE (prlimit).
func turnStart(tb testing.TB, listenIP string, nofile int, flags ...string) *turnTarget {
	tb.Helper()
	if pluginBin == "" {
		tb.Skip("the TURN rows start their own TURN process; an external target has none")
	}
	echo := turnStartEcho(tb, listenIP)
	args := append([]string{"turn", "--listen", net.JoinHostPort(listenIP, "0"), "--secret", turnSecret,
		"--allow-peer", echo.addr.String(), "--log-level", "warn"}, flags...)
	var p *Proc
	if nofile > 0 {
		p = turnStartProc(tb, "prlimit", append([]string{fmt.Sprintf("--nofile=%d:%d", nofile, nofile), pluginBin}, args...)...)
	} else {
		p = StartProc(tb, args...)
	}
	line := p.WaitLine(tb, "turn: listening on udp ")
	addr, err := netip.ParseAddrPort(strings.Fields(line)[0])
	if err != nil {
		tb.Fatalf("listening line %q: %v", line, err)
	}
	return &turnTarget{proc: p, addr: addr, streamer: echo}
}

// turnStartProc is StartProc for a command other than the plugin binary
// itself (prlimit in front of it).
func turnStartProc(tb testing.TB, name string, args ...string) *Proc {
	tb.Helper()
	if _, err := exec.LookPath(name); err != nil {
		tb.Skipf("%s not installed (util-linux)", name)
	}
	p := &Proc{cmd: exec.Command(name, args...), outC: make(chan string, 64), done: make(chan struct{})}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		tb.Fatalf("stdout pipe: %v", err)
	}
	p.cmd.Stderr = lockedWriter{p}
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			_, _ = lockedWriter{p}.Write([]byte(sc.Text() + "\n"))
			select {
			case p.outC <- sc.Text():
			default:
			}
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() {
		if !p.Exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// turnCreds mints TURN REST credentials for id with the shared secret.
func turnCreds(id string) (user, pass string) {
	user = strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10) + ":" + id
	mac := hmac.New(sha1.New, []byte(turnSecret))
	mac.Write([]byte(user))
	return user, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// turnClient is a pion TURN client of id over transport ("udp" or "tcp"),
// optionally from a given local IP.
type turnClient struct {
	*turn.Client
	user, pass string
}

func (t *turnTarget) client(tb testing.TB, id, transport string, local net.IP) (*turnClient, error) {
	tb.Helper()
	var conn net.PacketConn
	switch transport {
	case "udp":
		ip := "127.0.0.1"
		if t.addr.Addr().Is6() {
			ip = "::1"
		}
		c, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return nil, err
		}
		conn = c
	case "tcp":
		d := net.Dialer{Timeout: waitFor}
		if local != nil {
			d.LocalAddr = &net.TCPAddr{IP: local}
		}
		c, err := d.Dial("tcp", t.addr.String())
		if err != nil {
			return nil, err
		}
		conn = turn.NewSTUNConn(c)
	}
	user, pass := turnCreds(id)
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: t.addr.String(), TURNServerAddr: t.addr.String(),
		Username: user, Password: pass, Realm: "pixelstream", Conn: conn, LoggerFactory: lf, RTO: 200 * time.Millisecond})
	if err == nil {
		err = c.Listen()
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	tb.Cleanup(func() { c.Close(); conn.Close() })
	return &turnClient{Client: c, user: user, pass: pass}, nil
}

func (c *turnClient) allocate() (net.PacketConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	return c.AllocateWithContext(ctx)
}

// request sends a signed request the way a client does (nonce first) and
// returns the response.
func (c *turnClient) request(tb testing.TB, method stun.Method, extra ...stun.Setter) *stun.Message {
	tb.Helper()
	res, err := c.PerformTransaction(stun.MustBuild(stun.TransactionID, stun.NewType(method, stun.ClassRequest)), c.TURNServerAddr(), false)
	if err != nil {
		tb.Fatalf("%v: %v", method, err)
	}
	var nonce stun.Nonce
	if err := nonce.GetFrom(res.Msg); err != nil {
		tb.Fatalf("%v: no nonce in %v", method, res.Msg)
	}
	setters := append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, extra...)
	setters = append(setters, stun.NewUsername(c.user), stun.NewRealm("pixelstream"), nonce,
		stun.NewLongTermIntegrity(c.user, "pixelstream", c.pass))
	res, err = c.PerformTransaction(stun.MustBuild(setters...), c.TURNServerAddr(), false)
	if err != nil {
		tb.Fatalf("%v: %v", method, err)
	}
	return res.Msg
}

func turnErrCode(m *stun.Message) int {
	var code stun.ErrorCodeAttribute
	if m.Type.Class != stun.ClassErrorResponse || code.GetFrom(m) != nil {
		return 0
	}
	return int(code.Code)
}

func turnCode(err error) int {
	var te stun.TurnError
	if errors.As(err, &te) {
		return int(te.ErrorCodeAttr.Code)
	}
	var tp *stun.TurnError
	if errors.As(err, &tp) {
		return int(tp.ErrorCodeAttr.Code)
	}
	return 0
}

// turnPeer is an XOR-PEER-ADDRESS setter for any address, IPv6 kept as
// written (pion's encoder would turn a mapped address into IPv4).
type turnPeer netip.AddrPort

func (x turnPeer) AddTo(m *stun.Message) error {
	ap := netip.AddrPort(x)
	if ap.Addr().Is4() {
		return (&stun.XORMappedAddress{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}).AddToAs(m, stun.AttrXORPeerAddress)
	}
	v := make([]byte, 20)
	v[1] = 0x02
	binary.BigEndian.PutUint16(v[2:4], ap.Port()^0x2112) // the port XORed with the cookie's top half
	var key [16]byte
	binary.BigEndian.PutUint32(key[0:4], 0x2112A442)
	copy(key[4:], m.TransactionID[:])
	ip := ap.Addr().As16()
	for i := range 16 {
		v[4+i] = ip[i] ^ key[i]
	}
	m.Add(stun.AttrXORPeerAddress, v)
	return nil
}

// turnBystander is a player that did nothing wrong: its allocation relays
// to the streamer stand-in.
type turnBystander struct {
	relay net.PacketConn
	to    netip.AddrPort
}

func (t *turnTarget) bystander(tb testing.TB) *turnBystander {
	tb.Helper()
	c, err := t.client(tb, "bystander", "udp", nil)
	if err != nil {
		tb.Fatalf("bystander client: %v", err)
	}
	relay, err := c.allocate()
	if err != nil {
		tb.Fatalf("bystander allocation before the attack: %v\n%s", err, t.proc.Output())
	}
	b := &turnBystander{relay: relay, to: t.streamer.addr}
	b.assertRelays(tb, "before the attack")
	return b
}

// assertRelays sends through the relay to the streamer stand-in until the
// echo comes back (the first writes may race the permission).
func (b *turnBystander) assertRelays(tb testing.TB, when string) {
	tb.Helper()
	buf := make([]byte, 2048)
	payload := "frame " + when
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		if _, err := b.relay.WriteTo([]byte(payload), net.UDPAddrFromAddrPort(b.to)); err != nil {
			tb.Fatalf("bystander %s: write through the relay: %v", when, err)
		}
		_ = b.relay.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, _, err := b.relay.ReadFrom(buf); err == nil && string(buf[:n]) == payload {
			return
		}
	}
	tb.Fatalf("bystander %s: nothing relayed back from the streamer within %s", when, waitFor)
}

// finish: the process is up, the bystander relays, a fresh player
// allocates (over transport), RSS within budget, SIGTERM ends it.
func (t *turnTarget) finish(tb testing.TB, by *turnBystander, freshTransport string) {
	tb.Helper()
	if t.proc.Exited() {
		tb.Fatalf("the TURN process exited during the attack: %s\n%s", t.proc.ExitState(), t.proc.Output())
	}
	by.assertRelays(tb, "after the attack")
	var err error
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		var c *turnClient
		if c, err = t.client(tb, fmt.Sprintf("fresh-%d", rand.Int()), freshTransport, nil); err == nil {
			if _, err = c.allocate(); err == nil {
				break
			}
		}
	}
	if err != nil {
		tb.Errorf("a fresh player's %s allocation after the attack: %v\n%s", freshTransport, err, t.proc.Output())
	}
	if peak, err := procStatusBytes(t.proc.PID(), "VmHWM"); err == nil {
		if peak > turnRSSBudget {
			tb.Errorf("peak RSS %d MiB exceeds the budget of %d MiB", peak>>20, turnRSSBudget>>20)
		}
		tb.Logf("peak RSS %.1f MiB (budget %d MiB)", float64(peak)/(1<<20), turnRSSBudget>>20)
	}
	t.proc.Terminate(tb)
}

func TestTURNRows(t *testing.T) {
	rows := []struct {
		name   string
		listen string
		nofile int
		flags  []string
		fresh  string // transport of the fresh player's allocation at the end
		attack func(t *testing.T, tt *turnTarget)
	}{
		{name: "12 allocate+refresh(0) churn exhausts only the churner's share", listen: "127.0.0.1",
			flags: []string{"--quota-lifetime", "50"}, fresh: "udp", attack: turnChurn},
		{name: "13 1100 TCP connections sending 2 bytes and waiting", listen: "127.0.0.1", fresh: "tcp", attack: turnSlowTCP},
		{name: "13 accept loop survives EMFILE", listen: "127.0.0.1", nofile: 64, fresh: "tcp", attack: turnEMFILE},
		{name: "15 channel binds to every port of an allowed range", listen: "127.0.0.1",
			flags: []string{"--allow-peer", "198.51.100.0/24"}, fresh: "udp", attack: turnChannelFlood},
		{name: "16 translated IPv6 forms under ::/0", listen: "::1",
			flags: []string{"--allow-peer", "::/0", "--allow-peer", "0.0.0.0/0"}, fresh: "udp", attack: turnTranslated6},
		{name: "16 cloud metadata under 0.0.0.0/0", listen: "127.0.0.1",
			flags: []string{"--allow-peer", "0.0.0.0/0"}, fresh: "udp", attack: turnMetadata4},
		{name: "200k malformed and fuzzed packets", listen: "127.0.0.1", fresh: "tcp", attack: turnMalformed},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			tt := turnStart(t, row.listen, row.nofile, row.flags...)
			by := tt.bystander(t)
			row.attack(t, tt)
			tt.finish(t, by, row.fresh)
		})
	}
}

// Case 12: one credential allocates and deallocates in a loop.
func turnChurn(t *testing.T, tt *turnTarget) {
	c, err := tt.client(t, "mallory", "udp", nil)
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for i := 0; i < 150; i++ {
		relay, err := c.allocate()
		switch {
		case turnCode(err) == 486:
			refused++
		case err != nil:
			t.Fatalf("churn allocation %d: %v", i+1, err)
		default:
			relay.Close() // Refresh with lifetime 0
		}
	}
	if refused == 0 {
		t.Fatal("150 allocate/deallocate cycles of one credential were all served; want 486 once its share is spent")
	}
}

// Case 13: a flood of TCP connections that send the start of a frame and
// wait, from one address.
func turnSlowTCP(t *testing.T, tt *turnTarget) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: waitFor}
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for i := 0; i < 1100; i++ {
		c, err := d.Dial("tcp", tt.addr.String())
		if err != nil {
			break // the server may refuse at once: that is fine
		}
		flood = append(flood, c)
		_, _ = c.Write([]byte{0x00, 0x01})
	}
	// While the flood holds its connections, a bystander allocates over TCP.
	c, err := tt.client(t, "tcp-bystander", "tcp", nil)
	if err == nil {
		_, err = c.allocate()
	}
	if err != nil {
		t.Errorf("a TCP allocation during the flood: %v", err)
	}
	// Each flood connection is dropped: at once over the cap, or when its
	// frame's deadline passes.
	open := 0
	deadline := time.Now().Add(waitFor) // one deadline for all: they end together or not at all
	for _, c := range flood {
		_ = c.SetReadDeadline(deadline)
		if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			open++
		}
	}
	if open > 0 {
		t.Errorf("%d of %d flood connections still open after %s", open, len(flood), waitFor)
	}
}

// Case 13: the server runs out of descriptors (RLIMIT_NOFILE 64) under a
// TCP flood from several addresses; once the flood ends, TCP serves again.
func turnEMFILE(t *testing.T, tt *turnTarget) {
	var flood []net.Conn
	for i := 0; i < 120; i++ {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i%8))}, Timeout: waitFor}
		c, err := d.Dial("tcp", tt.addr.String())
		if err != nil {
			break
		}
		flood = append(flood, c)
		_, _ = c.Write([]byte{0x00, 0x01})
	}
	deadline := time.Now().Add(waitFor)
	for !strings.Contains(tt.proc.Output(), "tcp accept failed") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling the log for the EMFILE line
	}
	if !strings.Contains(tt.proc.Output(), "tcp accept failed") {
		t.Fatalf("the server never ran out of descriptors; the row proves nothing:\n%s", tt.proc.Output())
	}
	for _, c := range flood {
		c.Close()
	}
}

// Case 15: bind a channel to every port of an allowed /24 host.
func turnChannelFlood(t *testing.T, tt *turnTarget) {
	c, err := tt.client(t, "mallory", "udp", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.allocate(); err != nil {
		t.Fatalf("attacker allocation: %v", err)
	}
	bound, capped := 0, 0
	for i := 0; i < 2000; i++ {
		num := uint16(0x4000 + i)
		res := c.request(t, stun.MethodChannelBind,
			stun.RawAttribute{Type: stun.AttrChannelNumber, Value: []byte{byte(num >> 8), byte(num), 0, 0}},
			turnPeer(netip.AddrPortFrom(netip.MustParseAddr("198.51.100.9"), uint16(1024+i))))
		switch {
		case res.Type.Class == stun.ClassSuccessResponse:
			bound++
		case turnErrCode(res) == 508:
			capped++
		default:
			t.Fatalf("ChannelBind %d: %v (code %d), want success or 508", i, res.Type, turnErrCode(res))
		}
	}
	t.Logf("channels bound %d, refused with 508: %d", bound, capped)
	if capped == 0 || bound > 1024 {
		t.Errorf("2000 channel binds on one allocation: %d bound, %d refused; want a cap (508)", bound, capped)
	}
}

// Case 16: IPv6 forms that carry IPv4 (NAT64, 6to4, Teredo, SIIT) under an
// operator catch-all, with the embedded IPv4 of loopback, metadata and a
// public address.
func turnTranslated6(t *testing.T, tt *turnTarget) {
	c, err := tt.client(t, "mallory", "udp", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.allocate(); err != nil {
		t.Fatalf("attacker allocation: %v", err)
	}
	for _, peer := range []string{"64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::6464:64c8", "64:ff9b::808:808",
		"64:ff9b:1::a9fe:a9fe", "2002:7f00:1::1", "2002:a9fe:a9fe::1", "2001:0:a9fe:a9fe::ffff:ffff",
		"2001:0:4136:e378:8000:63bf:80ff:fffe", "::ffff:0:7f00:1", "::ffff:0:a9fe:a9fe", "fd00:ec2::254"} {
		ap := netip.AddrPortFrom(netip.MustParseAddr(peer), 80)
		res := c.request(t, stun.MethodCreatePermission, turnPeer(ap))
		if res.Type.Class != stun.ClassErrorResponse {
			t.Errorf("CreatePermission to %s under ::/0 succeeded; want 403", peer)
		}
	}
}

// Case 16: metadata addresses outside link-local under 0.0.0.0/0.
func turnMetadata4(t *testing.T, tt *turnTarget) {
	c, err := tt.client(t, "mallory", "udp", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.allocate(); err != nil {
		t.Fatalf("attacker allocation: %v", err)
	}
	for _, peer := range []string{"100.100.100.200", "169.254.169.254", "192.0.0.192", "168.63.129.16"} {
		err := c.CreatePermission(net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(peer), 80)))
		if turnCode(err) != 403 {
			t.Errorf("CreatePermission to %s under 0.0.0.0/0: %v, want 403", peer, err)
		}
	}
}

// 200k malformed datagrams (random, and STUN/ChannelData headers with
// mutated lengths, types and attributes) and 200 TCP connections of
// garbage.
func turnMalformed(t *testing.T, tt *turnTarget) {
	r := rand.New(rand.NewPCG(11, 11))
	valid := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}, stun.NewUsername("x:y"), stun.Fingerprint).Raw
	var socks []net.Conn
	for i := 0; i < 8; i++ {
		c, err := net.Dial("udp", tt.addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		socks = append(socks, c)
	}
	buf := make([]byte, 1500)
	for i := 0; i < 200000; i++ {
		var p []byte
		switch i % 4 {
		case 0: // random bytes
			p = buf[:r.IntN(len(buf))]
			for j := range p {
				p[j] = byte(r.Uint32())
			}
		case 1: // a valid request with bytes flipped
			p = append(buf[:0], valid...)
			for k := 0; k < 1+r.IntN(4); k++ {
				p[r.IntN(len(p))] ^= byte(1 + r.IntN(255))
			}
		case 2: // ChannelData with a lying length
			p = append(buf[:0], 0x40|byte(r.IntN(64)), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()))
			p = append(p, make([]byte, r.IntN(64))...)
		case 3: // STUN header declaring a boundary length
			lengths := []uint16{0, 125, 126, 65535, 65532, 4}
			p = append(buf[:0], valid[:20]...)
			binary.BigEndian.PutUint16(p[2:4], lengths[r.IntN(len(lengths))])
			p = append(p, valid[20:20+r.IntN(len(valid)-20)]...)
		}
		_, _ = socks[i%len(socks)].Write(p)
	}
	for i := 0; i < 200; i++ {
		c, err := net.DialTimeout("tcp", tt.addr.String(), waitFor)
		if err != nil {
			continue
		}
		junk := make([]byte, 1+r.IntN(3000))
		for j := range junk {
			junk[j] = byte(r.Uint32())
		}
		if i%2 == 0 {
			junk[0] &= 0x7f // looks like STUN or ChannelData
		}
		_, _ = c.Write(junk)
		c.Close()
	}
}

// turnSession is the session's signalling and TURN servers in this process,
// wired as the session supervisor wires them (driver/session/stream.go):
// per-player credentials in the config message, allow-lists fed by both
// sides' SDP and candidates, revocation on every connection close.
type turnSession struct {
	target *Target
	turn   *pturn.Server
}

func startTURNSession(tb testing.TB) *turnSession {
	tb.Helper()
	log := hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: io.Discard})
	reg := prometheus.NewRegistry()
	ts, err := pturn.New(pturn.Config{Listen: "127.0.0.1:0", RevokeGrace: 50 * time.Millisecond, Registry: reg, Logger: log})
	if err == nil {
		err = ts.Start()
	}
	if err != nil {
		tb.Fatalf("TURN: %v", err)
	}
	tb.Cleanup(func() { _ = ts.Close() })
	opts := func(ice pturn.ICEServer) json.RawMessage {
		b, _ := json.Marshal(map[string]any{"iceServers": []pturn.ICEServer{ice}})
		return b
	}
	hooks := signalling.Hooks{
		PlayerPeerOptions:   func(pid string) json.RawMessage { return opts(ts.Credentials(pid)) },
		StreamerPeerOptions: func(key string) json.RawMessage { ts.MarkStreamer(key); return opts(ts.Credentials(key)) },
		StreamerSDP:         ts.AllowFromSDP,
		StreamerCandidate:   ts.AllowFromCandidate,
		PlayerSDP:           ts.AllowFromPlayerSDP,
		PlayerCandidate:     ts.AllowFromPlayerCandidate,
		StreamerLeft:        ts.Revoke,
		PlayerLeft:          ts.Revoke,
	}
	sig, err := playerhttp.Start(signalling.Config{StreamerListen: "127.0.0.1:0", Hooks: hooks, Registry: reg, Logger: log},
		playerhttp.Config{Listen: "127.0.0.1:0", Logger: log})
	if err != nil {
		tb.Fatalf("signalling: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_ = sig.Shutdown(ctx)
	})
	return &turnSession{turn: ts, target: &Target{PlayerURL: "ws://" + sig.PlayerAddr().String() + "/",
		StreamerURL: "ws://" + sig.StreamerAddr().String() + "/"}}
}

// iceOf is the TURN credential a config message carries.
func iceOf(tb testing.TB, cfg Msg) (user, pass string) {
	tb.Helper()
	b, _ := json.Marshal(cfg["peerConnectionOptions"])
	var o struct {
		ICEServers []pturn.ICEServer `json:"iceServers"`
	}
	if err := json.Unmarshal(b, &o); err != nil || len(o.ICEServers) == 0 || o.ICEServers[0].Username == "" {
		tb.Fatalf("config message without TURN credentials: %v", cfg)
	}
	return o.ICEServers[0].Username, o.ICEServers[0].Credential
}

// sessionTURNClient is a TURN client with given credentials.
func (s *turnSession) client(tb testing.TB, user, pass string) *turnClient {
	tb.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	addr := s.turn.Addr().String()
	c, err := turn.NewClient(&turn.ClientConfig{STUNServerAddr: addr, TURNServerAddr: addr, Username: user, Password: pass,
		Realm: pturn.DefaultRealm, Conn: conn, LoggerFactory: lf, RTO: 200 * time.Millisecond})
	if err == nil {
		err = c.Listen()
	}
	if err != nil {
		tb.Fatalf("TURN client: %v", err)
	}
	tb.Cleanup(func() { c.Close(); conn.Close() })
	return &turnClient{Client: c, user: user, pass: pass}
}

// hostIPv4 is a non-loopback IPv4 address of this machine (the policy
// refuses loopback peers), or the row is skipped.
func hostIPv4(tb testing.TB) netip.Addr {
	tb.Helper()
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
				return ip.Unmap()
			}
		}
	}
	tb.Skip("no non-loopback IPv4 address: the row needs one for the player stand-in")
	return netip.Addr{}
}

// Cases 8 and 14 against the session's signalling and TURN together.
func TestTURNSessionRows(t *testing.T) {
	t.Run("14 connect/close cycles revoke every player's credentials and leave no records", func(t *testing.T) {
		s := startTURNSession(t)
		st := StartStreamer(t, s.target, "S")
		by := ConnectBystander(t, s.target, st)
		base := s.turn.Players()
		var lastUser, lastPass string
		for i := 0; i < 300; i++ {
			p := DialPeer(t, "churner", s.target.PlayerDialURL())
			lastUser, lastPass = iceOf(t, p.Expect(t, "config"))
			_ = p.ws.Close() // never subscribes
		}
		deadline := time.Now().Add(waitFor)
		for s.turn.Players() != base && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // polling the record count
		}
		if n := s.turn.Players(); n != base {
			t.Errorf("TURN holds %d credential records after 300 connect/close cycles, want %d as before", n, base)
		}
		if _, err := s.client(t, lastUser, lastPass).allocate(); turnCode(err) != 401 {
			t.Errorf("allocate with a closed player's credentials: %v, want 401", err)
		}
		fresh := DialPeer(t, "fresh", s.target.PlayerDialURL())
		u, p := iceOf(t, fresh.Expect(t, "config"))
		if _, err := s.client(t, u, p).allocate(); err != nil {
			t.Errorf("a fresh player's allocation: %v", err)
		}
		by.AssertReceiving(t)
	})
	t.Run("8 a player's candidates fill only its share of the streamer's allow-list", func(t *testing.T) {
		ip := hostIPv4(t)
		s := startTURNSession(t)
		st := StartStreamer(t, s.target, "S")
		by := ConnectBystander(t, s.target, st)
		player := turnStartEcho(t, ip.String()) // the bystander's media socket, a stand-in
		by.Send(t, map[string]any{"type": "iceCandidate", "candidate": map[string]any{
			"candidate": fmt.Sprintf("candidate:1 1 udp 2122260223 %s %d typ host", ip, player.addr.Port()), "sdpMid": "0", "sdpMLineIndex": 0}})
		attacker := DialPeer(t, "mallory", s.target.PlayerDialURL())
		attacker.Expect(t, "config")
		attacker.Send(t, map[string]any{"type": "subscribe", "streamerId": "S"})
		attacker.Expect(t, "offer")
		// 40 answers of 500 candidates each: 20,000 addresses, as fast as
		// the connection takes them.
		for i := 0; i < 40; i++ {
			var sdp strings.Builder
			sdp.WriteString("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n")
			for j := 0; j < 500; j++ {
				n := i*500 + j
				fmt.Fprintf(&sdp, "a=candidate:1 1 udp 1 203.0.%d.%d %d typ host\r\n", n/250%250, n%250+1, 1024+n%60000)
			}
			if err := turnWrite(attacker, map[string]any{"type": "answer", "sdp": sdp.String()}); err != nil {
				t.Logf("attacker dropped after %d answers: %v", i, err)
				break // signalling may drop a flooder; that is fine
			}
		}
		// The streamer's own allocation (its credentials from its config
		// message: key streamer-1) still reaches the bystander's address.
		su, sp := turnCredsFor(s, "streamer-1")
		sc := s.client(t, su, sp)
		relay, err := sc.allocate()
		if err != nil {
			t.Fatalf("streamer allocation: %v", err)
		}
		b := &turnBystander{relay: relay, to: player.addr}
		b.assertRelays(t, "from the streamer to the bystander after the flood")
		by.AssertReceiving(t)
	})
}

// turnWrite sends v on p, returning the error rather than failing.
func turnWrite(p *WSPeer, v any) error {
	b, _ := json.Marshal(v)
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_ = p.ws.SetWriteDeadline(time.Now().Add(waitFor))
	return p.ws.WriteMessage(websocket.TextMessage, b)
}

// turnCredsFor mints in-process credentials for id, as the config message
// to that connection did.
func turnCredsFor(s *turnSession, id string) (string, string) {
	ice := s.turn.Credentials(id)
	return ice.Username, ice.Credential
}
