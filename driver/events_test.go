package driver

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/plugins/drivers"

	"github.com/pixelstream/nomad-driver-pixelstream/config"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/sessionapi"
)

// waitEvent returns the first task event of taskID whose message contains
// want, failing after timeout.
func waitEvent(t *testing.T, events <-chan *drivers.TaskEvent, taskID, want string, timeout time.Duration) *drivers.TaskEvent {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-events:
			if ev.TaskID == taskID && strings.Contains(ev.Message, want) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no task event containing %q within %s", want, timeout)
			return nil
		}
	}
}

// TestEventsCarryNoAppArguments: Nomad shows task events to anyone who may
// read the job; the app's arguments may hold secrets and must not be there.
func TestEventsCarryNoAppArguments(t *testing.T) {
	h := newHarness(t, nil)
	const secret = "--api-key=s3cr3t-do-not-log"
	task := newTask(t, h, config.TaskConfig{Args: []string{"--probe-tick=1h", secret}})
	events, err := h.TaskEvents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	startTask(t, h, task)
	ev := waitEvent(t, events, task.ID, "App started", 30*time.Second)
	if strings.Contains(ev.Message, "s3cr3t") {
		t.Errorf("event message %q carries an app argument", ev.Message)
	}
	for k, v := range ev.Annotations {
		if strings.Contains(v, "s3cr3t") || strings.Contains(v, "--probe-tick") {
			t.Errorf("event annotation %s=%q carries app arguments", k, v)
		}
	}
	if ev.Annotations["executable"] != "probe" || ev.Annotations["arg_count"] == "" {
		t.Errorf("App started annotations %v lack the executable and argument count", ev.Annotations)
	}
	// The app did get its argument.
	waitLog(t, task, "stdout", regexp.MustCompile(regexp.QuoteMeta(secret)))
}

// TestRecoverDeliversEventsEmittedWhilePluginWasDown: an event the session
// emits while no plugin listens (a plugin restart) reaches Nomad from the
// recovered plugin, once.
func TestRecoverDeliversEventsEmittedWhilePluginWasDown(t *testing.T) {
	h1 := newHarness(t, nil)
	task, _, _ := newStreamTask(t, h1)
	events1, err := h1.TaskEvents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	handle := startTask(t, h1, task)
	streamerURL := waitLog(t, task, "stdout", regexp.MustCompile(`-PixelStreamingURL=(ws://127\.0\.0\.1:\d+/\w+)`))[1]
	waitEvent(t, events1, task.ID, "App started", 30*time.Second)
	var ts TaskState
	if err := handle.GetDriverState(&ts); err != nil {
		t.Fatal(err)
	}
	sess := sessionapi.NewClient(ts.RuntimeDir + "/" + sessionapi.SocketFile)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The first plugin has delivered everything so far before it goes.
	for {
		st, err := sess.State(ctx)
		if err != nil {
			t.Fatalf("session state: %v", err)
		}
		if st.Delivered == st.LastSeq {
			break
		}
		if _, err := sess.Events(ctx, st.Delivered); err != nil {
			t.Fatal(err)
		}
	}

	// The plugin goes away: nothing follows the session's events now.
	h1.d.cancel()
	h1.d.tasks.Delete(task.ID)

	// The streamer connects meanwhile: the session emits "Stream ready".
	streamer, _, err := dialStreamerAs(t, testUser, streamerURL)
	if err != nil {
		t.Fatalf("streamer dial %s: %v", streamerURL, err)
	}
	defer streamer.Close()
	for i := 0; i < 2; i++ { // identify and config
		readJSON(t, streamer)
	}
	_ = streamer.WriteJSON(map[string]string{"type": "endpointId", "id": "DefaultStreamer"})
	if m := readJSON(t, streamer); m["type"] != "endpointIdConfirm" {
		t.Fatalf("streamer got %v", m)
	}
	// Wait until the session has emitted it, with no plugin to deliver it.
	for seen := false; !seen; {
		st, err := sess.State(ctx)
		if err != nil {
			t.Fatal(err)
		}
		evs, err := sess.Events(ctx, st.Delivered)
		if err != nil {
			t.Fatalf("session events: %v", err)
		}
		for _, e := range evs {
			seen = seen || e.Kind == sessionapi.EventStreamReady
		}
	}

	h2 := newHarness(t, nil)
	events2, err := h2.TaskEvents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := h2.RecoverTask(handle); err != nil {
		t.Fatalf("RecoverTask: %v", err)
	}
	waitEvent(t, events2, task.ID, "Stream ready", 30*time.Second)
	// Events the first plugin delivered are not delivered again.
	if err := h2.StopTask(task.ID, 5*time.Second, "SIGTERM"); err != nil {
		t.Fatal(err)
	}
	waitExit(t, h2, task.ID)
	for {
		select {
		case ev := <-events2:
			if ev.TaskID == task.ID && strings.Contains(ev.Message, "App started") {
				t.Fatalf("recovered plugin delivered %q again", ev.Message)
			}
		default:
			_ = h2.DestroyTask(task.ID, true)
			return
		}
	}
}
