package driver

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/hashicorp/nomad/helper/uuid"
	nstructs "github.com/hashicorp/nomad/nomad/structs"
	"github.com/hashicorp/nomad/plugins/drivers"
	"github.com/pion/logging"
	pturn "github.com/pion/turn/v5"

	"github.com/pixelstream/nomad-driver-pixelstream/config"
)

func freePort(t *testing.T, network string) int {
	t.Helper()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if network != "udp" {
			return p
		}
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			u.Close()
			return p
		}
	}
}

// newStreamTask makes a probe task with the player and TURN ports on free
// loopback ports; it returns the task and its player and TURN ports.
func newStreamTask(t *testing.T, h *harness) (task *drivers.TaskConfig, httpPort, turnPort int) {
	t.Helper()
	httpPort, turnPort = freePort(t, "tcp"), freePort(t, "udp")
	task = newTask(t, h, config.TaskConfig{Args: []string{"--probe-tick=1h"}, UnrealFlags: true, HTTPPort: "http", TURNPort: "turn"})
	task.Resources.Ports = &nstructs.AllocatedPorts{
		{Label: "http", Value: httpPort, HostIP: "127.0.0.1"},
		{Label: "turn", Value: turnPort, HostIP: "127.0.0.1"},
	}
	return task, httpPort, turnPort
}

func readJSON(t *testing.T, c *websocket.Conn) map[string]any {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var m map[string]any
	if err := c.ReadJSON(&m); err != nil {
		t.Fatalf("read: %v", err)
	}
	return m
}

// TestStreamThroughSession: the session's signalling takes a streamer on the
// URL the app was given, reports readiness to Nomad, serves players on the
// http_port label, and hands each player TURN credentials that work on the
// turn_port label, for that player only.
func TestStreamThroughSession(t *testing.T) {
	h := newHarness(t, nil)
	task, httpPort, turnPort := newStreamTask(t, h)
	events, err := h.TaskEvents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	startTask(t, h, task)
	args := waitLog(t, task, "stdout", regexp.MustCompile(`-PixelStreamingURL=(ws://127\.0\.0\.1:\d+/\w+)`))
	player := fmt.Sprintf("127.0.0.1:%d", httpPort)

	readyz := func() int {
		resp, err := http.Get("http://" + player + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := readyz(); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before any streamer = %d", code)
	}

	// Nobody else may pose as the app: another user on the node who read
	// the app's command line (key and all) is refused, and so is the
	// task's own user without the key.
	keyless := args[1][:strings.LastIndex(args[1], "/")+1]
	for _, c := range []struct {
		who  string
		dial func() (*websocket.Conn, *http.Response, error)
	}{
		{"root, with the key", func() (*websocket.Conn, *http.Response, error) { return websocket.DefaultDialer.Dial(args[1], nil) }},
		{"the task user, without the key", func() (*websocket.Conn, *http.Response, error) { return dialStreamerAs(t, testUser, keyless) }},
	} {
		conn, resp, err := c.dial()
		if err == nil {
			conn.Close()
			t.Fatalf("%s: connected to the streamer port", c.who)
		}
		if resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: %v (%v), want 401", c.who, err, resp)
		}
	}
	if code := readyz(); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz after refused streamers = %d", code)
	}

	// The stand-in streamer connects where the app was told to.
	streamer, _, err := dialStreamerAs(t, testUser, args[1])
	if err != nil {
		t.Fatalf("streamer dial %s: %v", args[1], err)
	}
	defer streamer.Close()
	for i := 0; i < 2; i++ { // identify and config
		readJSON(t, streamer)
	}
	_ = streamer.WriteJSON(map[string]string{"type": "endpointId", "id": "DefaultStreamer"})
	if m := readJSON(t, streamer); m["type"] != "endpointIdConfirm" {
		t.Fatalf("streamer got %v", m)
	}
	deadline := time.After(20 * time.Second)
	for ready := false; !ready; {
		select {
		case ev := <-events:
			ready = ev.TaskID == task.ID && strings.Contains(ev.Message, "Stream ready")
		case <-deadline:
			t.Fatal("no \"Stream ready\" task event")
		}
	}
	if code := readyz(); code != http.StatusOK {
		t.Fatalf("/readyz with a streamer = %d", code)
	}
	if attrs := inspect(t, h, task.ID); attrs["stream_ready"] != "true" {
		t.Fatalf("InspectTask stream_ready = %q", attrs["stream_ready"])
	}

	// Two players: each config carries its own TURN credentials.
	creds := map[string]map[string]any{}
	for _, name := range []string{"a", "b"} {
		p, _, err := websocket.DefaultDialer.Dial("ws://"+player+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		cfg := readJSON(t, p)
		if cfg["type"] != "config" {
			t.Fatalf("first player message %v", cfg)
		}
		ice := cfg["peerConnectionOptions"].(map[string]any)["iceServers"].([]any)[0].(map[string]any)
		urls := fmt.Sprint(ice["urls"])
		if !strings.Contains(urls, fmt.Sprintf("turn:127.0.0.1:%d?transport=udp", turnPort)) {
			t.Fatalf("ice server urls %s lack the session's TURN port %d", urls, turnPort)
		}
		creds[name] = ice
		_ = p.WriteJSON(map[string]string{"type": "subscribe", "streamerId": "DefaultStreamer"})
		if m := readJSON(t, streamer); m["type"] != "playerConnected" {
			t.Fatalf("streamer got %v", m)
		}
	}
	if creds["a"]["username"] == creds["b"]["username"] {
		t.Fatal("two players got the same TURN username")
	}

	allocate := func(username, password string) error {
		conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		lf := logging.NewDefaultLoggerFactory()
		lf.DefaultLogLevel = logging.LogLevelError
		c, err := pturn.NewClient(&pturn.ClientConfig{
			STUNServerAddr: fmt.Sprintf("127.0.0.1:%d", turnPort), TURNServerAddr: fmt.Sprintf("127.0.0.1:%d", turnPort),
			Username: username, Password: password, Conn: conn, LoggerFactory: lf, RTO: 100 * time.Millisecond,
		})
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.Listen(); err != nil {
			return err
		}
		relay, err := c.Allocate()
		if err == nil {
			relay.Close()
		}
		return err
	}
	a := creds["a"]
	if err := allocate(a["username"].(string), a["credential"].(string)); err != nil {
		t.Fatalf("player a's own credentials: %v", err)
	}
	// Mixing one player's username with another's password is refused.
	if err := allocate(a["username"].(string), creds["b"]["credential"].(string)); err == nil {
		t.Fatal("TURN accepted player b's password for player a")
	}
	if err := allocate(uuid.Generate()+":x", "guess"); err == nil {
		t.Fatal("TURN accepted made-up credentials")
	}

	// The streamer leaving is reported too, and /readyz follows.
	streamer.Close()
	deadline = time.After(20 * time.Second)
	for gone := false; !gone; {
		select {
		case ev := <-events:
			gone = ev.TaskID == task.ID && strings.Contains(ev.Message, "disconnected")
		case <-deadline:
			t.Fatal("no streamer-disconnected task event")
		}
	}
	if code := readyz(); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz after the streamer left = %d", code)
	}
}
