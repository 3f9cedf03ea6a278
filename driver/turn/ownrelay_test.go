package turn

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

func relayCandidate(addr net.Addr) string {
	ap := netip.MustParseAddrPort(addr.String())
	return "candidate:9 1 udp 16777215 " + ap.Addr().String() + " " + itoa(int(ap.Port())) + " typ relay raddr 0.0.0.0 rport 0"
}

// TestRelayToRelayOfTheSameSession: when the player and the streamer both
// relay (Epic's frontend with ForceTURN keeps only relay candidates), each
// allocation reaches the other's relay address, even where the relay IP is
// loopback, but only once the other side advertised it.
func TestRelayToRelayOfTheSameSession(t *testing.T) {
	s, _ := testServer(t, nil) // relay IP 127.0.0.1: a refused class for anything else
	playerRelay, err := newClient(t, s, "udp", s.Credentials("1")).allocate(t)
	if err != nil {
		t.Fatal(err)
	}
	streamerClient := newClient(t, s, "udp", s.Credentials("streamer-1"))
	streamerRelay, err := streamerClient.allocate(t)
	if err != nil {
		t.Fatal(err)
	}

	// Nothing advertised yet: the streamer's relay address is refused.
	if err := streamerClient.CreatePermission(playerRelay.LocalAddr()); turnCode(err) != 403 {
		t.Fatalf("permission to an unadvertised relay address: %v, want 403", err)
	}

	// Each side advertises its relay candidate to the other.
	s.AllowFromCandidate("1", relayCandidate(streamerRelay.LocalAddr()))
	s.AllowFromCandidate("streamer-1", relayCandidate(playerRelay.LocalAddr()))

	buf := make([]byte, 1500)
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The first packets may arrive before the other side's permission.
		if _, err := playerRelay.WriteTo([]byte("frame"), streamerRelay.LocalAddr()); err != nil {
			t.Fatalf("player relay write: %v", err)
		}
		if _, err := streamerRelay.WriteTo([]byte("hello"), playerRelay.LocalAddr()); err != nil {
			t.Fatalf("streamer relay write: %v", err)
		}
		_ = streamerRelay.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, from, err := streamerRelay.ReadFrom(buf)
		if err == nil && string(buf[:n]) == "frame" && from.String() == playerRelay.LocalAddr().String() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no packet from the player's relay through the streamer's: %v", err)
		}
	}
}
