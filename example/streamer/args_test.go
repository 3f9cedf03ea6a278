package main

import (
	"errors"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    options
		wantErr string
	}{
		{
			name: "Unreal's launch line",
			args: []string{"MyMap", "-RenderOffScreen", "-Vulkan", "-ResX=1920", "-ResY=1080", "-ForceRes", "-PixelStreamingURL=ws://127.0.0.1:8888", "-PixelStreamingID=game-1", "-AudioMixer"},
			want: options{URL: "ws://127.0.0.1:8888", ID: "game-1", Width: 1920, Height: 1080,
				Ignored: []string{"MyMap", "-RenderOffScreen", "-Vulkan", "-ForceRes", "-AudioMixer"}},
		},
		{
			name: "Pixel Streaming 2 flag, default id, case-insensitive keys, quoted value",
			args: []string{`-pixelstreamingsignallingurl="ws://10.0.0.1:9000/path"`},
			want: options{URL: "ws://10.0.0.1:9000/path", ID: defaultStreamerID},
		},
		{
			name: "UE 5.6+ flag wins over its deprecated aliases, in any order",
			args: []string{"-PixelStreamingURL=ws://old:1", "-PixelStreamingConnectionURL=ws://new:2", "-PixelStreamingSignallingURL=ws://old:3"},
			want: options{URL: "ws://new:2", ID: defaultStreamerID},
		},
		{
			name: "the driver's launch line: all three forms, one URL",
			args: []string{"-PixelStreamingURL=ws://127.0.0.1:5", "-PixelStreamingSignallingURL=ws://127.0.0.1:5", "-PixelStreamingConnectionURL=ws://127.0.0.1:5", "-PixelStreamingID=S"},
			want: options{URL: "ws://127.0.0.1:5", ID: "S"},
		},
		{
			name: "codec and -nosound",
			args: []string{"-PixelStreamingURL=wss://h:1", "-PixelStreamingEncoderCodec=H264", "-nosound"},
			want: options{URL: "wss://h:1", ID: defaultStreamerID, Codec: "h264", NoSound: true},
		},
		{name: "no URL", args: []string{"-ResX=640", "-ResY=480"}, wantErr: "missing -PixelStreamingConnectionURL"},
		{name: "not a WebSocket URL", args: []string{"-PixelStreamingURL=http://h:1"}, wantErr: `-PixelStreamingURL="http://h:1": want a WebSocket URL`},
		{name: "bad width", args: []string{"-PixelStreamingURL=ws://h:1", "-ResX=wide", "-ResY=480"}, wantErr: `-ResX="wide"`},
		{name: "zero height", args: []string{"-PixelStreamingURL=ws://h:1", "-ResX=640", "-ResY=0"}, wantErr: `-ResY="0"`},
		{name: "width alone", args: []string{"-PixelStreamingURL=ws://h:1", "-ResX=640"}, wantErr: "-ResX and -ResY must be given together"},
		{name: "intervals in seconds",
			args: []string{"-PixelStreamingURL=ws://h:1", "-PixelStreamingSignallingReconnectInterval=0.5", "-PixelStreamingSignallingKeepAliveInterval=3"},
			want: options{URL: "ws://h:1", ID: defaultStreamerID, ReconnectInterval: 500 * time.Millisecond, KeepAliveInterval: 3 * time.Second}},
		{name: "interval not a number", args: []string{"-PixelStreamingURL=ws://h:1", "-PixelStreamingSignallingReconnectInterval=soon"}, wantErr: "want a number of seconds"},
		{name: "interval zero", args: []string{"-PixelStreamingURL=ws://h:1", "-PixelStreamingSignallingKeepAliveInterval=0"}, wantErr: "above 0"},
		{name: "empty id", args: []string{"-PixelStreamingURL=ws://h:1", "-PixelStreamingID="}, wantErr: "empty streamer id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseArgs(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestBadStartNamesTheProblem runs the binary as Nomad would with a broken
// task config: it must exit non-zero and say what to fix.
func TestBadStartNamesTheProblem(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"no signalling URL", []string{"-ResX=640", "-ResY=480"}, []string{"DISPLAY=:99"}, "missing -PixelStreamingConnectionURL=ws://host:port"},
		{"no display", []string{"-PixelStreamingURL=ws://127.0.0.1:1"}, nil, "DISPLAY is not set"},
		{"display not running", []string{"-PixelStreamingURL=ws://127.0.0.1:1"}, []string{"DISPLAY=:9876"}, "open X display :9876 for drawing"},
	}
	bin := streamerBinary(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(bin, tt.args...)
			cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, tt.env...)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1; output:\n%s", err, out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Fatalf("output lacks %q:\n%s", tt.want, out)
			}
		})
	}
}
