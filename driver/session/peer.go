package session

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
)

// streamerPeer returns a check that the process at the other end of a
// streamer connection runs as uid. The streamer port is on loopback, which
// every process in the network namespace reaches; its key is on the app's
// command line, which processes of other users can read in the node's
// /proc. The kernel's socket diagnostics (NETLINK_SOCK_DIAG, as ss uses)
// say who owns the connecting socket.
func streamerPeer(uid int) func(local, remote net.Addr) error {
	return func(local, remote net.Addr) error {
		// The client's socket: its local address is our remote one.
		sk, err := netlink.SocketGet(remote, local)
		if err != nil {
			return fmt.Errorf("cannot tell which user connected: %w", err)
		}
		if int(sk.UID) != uid {
			return fmt.Errorf("the connection comes from uid %d, not from the session's app", sk.UID)
		}
		return nil
	}
}
