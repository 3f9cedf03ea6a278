package session

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/playerhttp"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/turn"
)

// Two addresses per port, kept apart: where the session binds (Config's
// *Listen) and what players are told (Config's *Public). In host mode they
// are the same but for turn.public_address/public_port; in a group network
// namespace (bridge mode) the session binds 0.0.0.0:<to> and Nomad forwards
// the host port to it.

// inNamespace reports whether the session binds the wildcard address, which
// the driver asks for only inside a group network namespace.
func inNamespace(listen string) bool {
	ap, err := netip.ParseAddrPort(listen)
	return err == nil && ap.Addr().IsUnspecified()
}

// turnAddresses sets where TURN relays bind and what relay address they
// advertise. Relay addresses are only ever used by the session's own side:
// the streamer sends to a player's relay address, and one relay to the
// other when both sides relay (ForceTURN). Players never send to them (they
// reach the relay through the TURN port), so they carry the address local
// to the session: the host address in host mode, the allocation's own
// address in a namespace, where the host's is not local. Advertising
// turn.public_address there would send that traffic out of the node, to a
// NAT that may not turn it around.
func (s *supervisor) turnAddresses(cfg *turn.Config) error {
	if !inNamespace(s.cfg.TURNListen) {
		return nil
	}
	ip := s.cfg.RelayIP
	if ip == "" {
		var err error
		if ip, err = namespaceAddress(); err != nil {
			return fmt.Errorf("turn: find the allocation's address for relays: %w", err)
		}
	}
	cfg.RelayIP, cfg.PublicIP = ip, ip
	return nil
}

// namespaceAddress is the first IPv4 address of an interface that is up and
// not loopback: inside an allocation's network namespace, its address on
// the bridge.
func namespaceAddress() (string, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				return n.IP.String(), nil
			}
		}
	}
	return "", errors.New("no interface with an IPv4 address besides loopback")
}

// withAddr rewrites the host:port of TURN URLs ("turn:H:P?transport=udp").
func withAddr(urls []string, hostport string) []string {
	out := make([]string, 0, len(urls))
	for _, u := range urls {
		scheme, rest, _ := strings.Cut(u, ":")
		_, query, hasQuery := strings.Cut(rest, "?")
		v := scheme + ":" + hostport
		if hasQuery {
			v += "?" + query
		}
		out = append(out, v)
	}
	return out
}

// iceOptions is the peerConnectionOptions of a config message: one ICE
// server with credentials for id, its URLs pointing at hostport ("" keeps
// the TURN server's own).
func iceOptions(t *turn.Server, id, hostport string) json.RawMessage {
	ice := t.Credentials(id)
	if hostport != "" {
		ice.URLs = withAddr(ice.URLs, hostport)
	}
	b, _ := json.Marshal(map[string]any{"iceServers": []turn.ICEServer{ice}})
	return b
}

// streamerTURN is the TURN host:port the streamer uses: in a namespace the
// loopback address (the host side of the mapping is not reachable from
// inside); in host mode the address TURN listens on, which is local too,
// where a public address may not be.
func (s *supervisor) streamerTURN(t *turn.Server) string {
	port := strconv.Itoa(int(t.Addr().Port()))
	if inNamespace(s.cfg.TURNListen) {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return ""
}

// playerTLS loads the player port's certificate when the task has a tls block.
func (s *supervisor) playerTLS() (*tls.Config, error) {
	tc := s.cfg.Task.TLS
	if tc.CertFile == "" {
		return nil, nil
	}
	r, err := playerhttp.NewCertReloader(s.taskPath(tc.CertFile), s.taskPath(tc.KeyFile), s.logger.Named("tls"))
	if err != nil {
		return nil, err
	}
	return r.TLSConfig(), nil
}

// endpoints are the addresses players use, for events and /api/status.
type endpoints struct {
	Player string `json:"player,omitempty"` // URL of the player page
	TURN   string `json:"turn,omitempty"`   // host:port in the TURN URLs
}

// publicEndpoints says where players reach the session. bound is the
// player listener's address, used when the driver gave no public one (no
// http_port: loopback).
func (s *supervisor) publicEndpoints(bound string) endpoints {
	scheme := "http"
	if s.cfg.Task.TLS.CertFile != "" {
		scheme = "https"
	}
	player := s.cfg.PlayerPublic
	if player == "" {
		player = bound
	}
	return endpoints{Player: scheme + "://" + player + "/", TURN: s.cfg.TURNPublic}
}
