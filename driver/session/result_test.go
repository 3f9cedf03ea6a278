package session

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/sessionapi"
)

// TestEarlyFailureLeavesResult: a supervisor that cannot even read its
// config still tells the driver why, so StartTask reports the reason
// rather than a bare exit code.
func TestEarlyFailureLeavesResult(t *testing.T) {
	cases := []struct {
		name   string
		config string // contents of the config file; "" for none
		want   string
	}{
		{"missing config", "", "read session config"},
		{"malformed config", "{not json", "decode session config"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, sessionapi.ConfigFile)
			if c.config != "" {
				if err := os.WriteFile(path, []byte(c.config), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if code := Main([]string{"--config", path}); code != 1 {
				t.Fatalf("exit code %d, want 1", code)
			}
			r, err := sessionapi.ReadResult(dir)
			if err != nil {
				t.Fatalf("no result left for the driver: %v", err)
			}
			if r.ExitCode != 1 || !strings.Contains(r.Error, c.want) {
				t.Fatalf("result %+v, want exit 1 and an error containing %q", r, c.want)
			}
		})
	}
}

// TestEventsAcknowledgeDelivery: asking for events after N records that the
// driver delivered N, never beyond what was emitted, never backwards.
func TestEventsAcknowledgeDelivery(t *testing.T) {
	s := newStateStore("1280x720")
	for i := 0; i < 3; i++ {
		s.emit(sessionapi.EventPlayers, "x", nil)
	}
	steps := []struct {
		after uint64
		want  uint64
		n     int
	}{
		{0, 0, 3},
		{2, 2, 1},
		{1, 2, 2}, // a stale poll does not move it back
		{9, 2, 0}, // beyond the last event: ignored
		{3, 3, 0},
	}
	for _, st := range steps {
		evs, _ := s.eventsAfter(st.after)
		if got := s.snapshot().Delivered; got != st.want || len(evs) != st.n {
			t.Fatalf("after %d: delivered %d with %d events, want %d with %d", st.after, got, len(evs), st.want, st.n)
		}
	}
}
