package audio

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestBusAddressFor(t *testing.T) {
	const sock = "/tmp/psa-1/rt/bus"
	cases := []struct {
		printed, want, wantErr string
	}{
		{printed: "unix:path=/tmp/psa-1/rt/bus,guid=0903ec7c3c75", want: "unix:path=/tmp/psa-1/rt/bus"},
		{printed: "unix:path=/tmp/psa-1/rt/bus", want: "unix:path=/tmp/psa-1/rt/bus"},
		{printed: "unix:path=/run/user/1000/bus,guid=1", wantErr: "want path=/tmp/psa-1/rt/bus"},
		{printed: "tcp:host=localhost,port=1234", wantErr: "want a unix address"},
		{printed: "garbage", wantErr: "want a unix address"},
	}
	for _, tc := range cases {
		t.Run(tc.printed, func(t *testing.T) {
			got, err := busAddressFor(tc.printed, sock)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("busAddressFor(%q) = %q, %v; want error with %q", tc.printed, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("busAddressFor(%q) = %q, %v; want %q", tc.printed, got, err, tc.want)
			}
		})
	}
}

func TestParseDefaultSink(t *testing.T) {
	cases := []struct {
		name, out, want string
		ok              bool
	}{
		{"set", `Found "default" metadata 33
update: id:0 key:'default.audio.sink' value:'{"name":"pixelstream_sink"}' type:'Spa:String:JSON'
`, "pixelstream_sink", true},
		{"other keys only", `Found "default" metadata 33
update: id:0 key:'default.audio.source' value:'{"name":"x"}' type:'Spa:String:JSON'
`, "", false},
		{"no metadata yet", "", "", false},
		{"bad json", `update: id:0 key:'default.audio.sink' value:'{"name":' type:'Spa:String:JSON'`, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseDefaultSink([]byte(tc.out))
			if got != tc.want || ok != tc.ok {
				t.Fatalf("parseDefaultSink = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestParsePipeWireVersion(t *testing.T) {
	cases := []struct{ out, want string }{
		{"pipewire\nCompiled with libpipewire 0.3.65\nLinked with libpipewire 0.3.66\n", "0.3.66"},
		{"pipewire\nCompiled with libpipewire 1.2.7\n", "1.2.7"},
		{"something else\n", ""},
	}
	for _, tc := range cases {
		if got := parsePipeWireVersion([]byte(tc.out)); got != tc.want {
			t.Errorf("parsePipeWireVersion(%q) = %q, want %q", tc.out, got, tc.want)
		}
	}
}

func TestRingKeepsTheLastLines(t *testing.T) {
	cases := []struct {
		added int
		want  []string
	}{
		{0, nil},
		{2, []string{"l0", "l1"}},
		{3, []string{"l0", "l1", "l2"}},
		{7, []string{"l4", "l5", "l6"}},
	}
	for _, tc := range cases {
		r := newRing(3)
		for i := 0; i < tc.added; i++ {
			r.add(fmt.Sprintf("l%d", i))
		}
		if got := r.last(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("after %d lines: %q, want %q", tc.added, got, tc.want)
		}
	}
}

func TestComponentErrorSaysWhoAndWhat(t *testing.T) {
	err := &ComponentError{Component: "pipewire", Err: fmt.Errorf("died"), LastLines: []string{"[E] boom"}}
	if got := err.Error(); got != "pipewire: died; its last output:\n[pipewire] [E] boom" {
		t.Errorf("Error() = %q", got)
	}
	quiet := &ComponentError{Component: "dbus", Err: fmt.Errorf("died")}
	if !strings.Contains(quiet.Error(), "(no output)") {
		t.Errorf("Error() without output = %q", quiet.Error())
	}
}
