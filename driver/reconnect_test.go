package driver

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestStreamerReconnectKeepsTheSession: the app's streamer comes back on a
// new connection while its old one is still open (PixelStreaming2
// reconnects every 2 s after a lost socket): the session keeps its
// streamer id, says so in a task event, closes the stale connection, and
// never reports the stream as gone (/readyz stays 200 throughout).
func TestStreamerReconnectKeepsTheSession(t *testing.T) {
	h := newHarness(t, nil)
	task, httpPort, _ := newStreamTask(t, h)
	events, err := h.TaskEvents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	startTask(t, h, task)
	streamerURL := waitLog(t, task, "stdout", regexp.MustCompile(`-PixelStreamingConnectionURL=(ws://127\.0\.0\.1:\d+/\w+)`))[1]
	identify := func() (*websocket.Conn, string) {
		t.Helper()
		c, _, err := dialStreamerAs(t, testUser, streamerURL)
		if err != nil {
			t.Fatalf("streamer dial %s: %v", streamerURL, err)
		}
		t.Cleanup(func() { _ = c.Close() })
		readJSON(t, c) // identify
		readJSON(t, c) // config
		_ = c.WriteJSON(map[string]string{"type": "endpointId", "id": "DefaultStreamer"})
		m := readJSON(t, c)
		return c, fmt.Sprint(m["committedId"])
	}
	ready := func() int {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", httpPort))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	stale, _ := identify()
	waitEvent(t, events, task.ID, "Stream ready", 30*time.Second)
	_, committed := identify()
	if committed != "DefaultStreamer" {
		t.Fatalf("the reconnecting streamer was committed as %q, want DefaultStreamer", committed)
	}
	if code := ready(); code != http.StatusOK {
		t.Fatalf("/readyz after the reconnect: %d, want 200", code)
	}
	ev := waitEvent(t, events, task.ID, "reconnected", 30*time.Second)
	if ev.Annotations["streamer_id"] != "DefaultStreamer" {
		t.Fatalf("reconnect event %q %v", ev.Message, ev.Annotations)
	}
	_ = stale.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := stale.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("the stale connection got %v, want a going-away close", err)
	}
	if code := ready(); code != http.StatusOK {
		t.Fatalf("/readyz after the stale connection closed: %d, want 200", code)
	}
}
