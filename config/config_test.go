package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/nomad/helper/pluginutils/hclspecutils"
	"github.com/hashicorp/nomad/helper/pluginutils/hclutils"
	"github.com/hashicorp/nomad/plugins/drivers"
	"github.com/hashicorp/nomad/plugins/shared/hclspec"
)

// parseTask runs a job's config block through the same path the Nomad client
// uses: HCL -> hclspec -> msgpack -> TaskConfig.
func parseTask(t *testing.T, body string) (TaskConfig, error) {
	t.Helper()
	var tc TaskConfig
	err := parseSpec(t, TaskSpec, "config {\n"+body+"\n}", &tc)
	return tc, err
}

func parseSpec(t *testing.T, spec *hclspec.Spec, src string, out interface{}) error {
	t.Helper()
	dec, diags := hclspecutils.Convert(spec)
	if diags.HasErrors() {
		t.Fatalf("convert spec: %v", diags)
	}
	val, diags, errs := hclutils.ParseHclInterface(hclutils.HclConfigToInterface(t, src), dec, nil)
	if diags.HasErrors() {
		return errors.Join(errs...)
	}
	dtc := &drivers.TaskConfig{}
	if err := dtc.EncodeDriverConfig(val); err != nil {
		return err
	}
	return dtc.DecodeDriverConfig(out)
}

func TestTaskConfigDefaults(t *testing.T) {
	tc, err := parseTask(t, `executable = "local/Game.sh"`)
	if err != nil {
		t.Fatal(err)
	}
	want := TaskConfig{Executable: "local/Game.sh", Resolution: "1920x1080", Depth: 24, Render: RenderVulkan,
		RenderOffscreen: true, StreamerID: DefaultStreamerID, UnrealFlags: true, Audio: true}
	if !tc.Audio {
		t.Fatalf("audio must default to true: %+v", tc)
	}
	if tc.Executable != want.Executable || tc.Resolution != want.Resolution || tc.Depth != want.Depth ||
		tc.Render != want.Render || tc.RenderOffscreen != want.RenderOffscreen || tc.StreamerID != want.StreamerID ||
		tc.UnrealFlags != want.UnrealFlags || len(tc.Args) != 0 || tc.Frontend != FrontendUE57 {
		t.Fatalf("defaults:\n got %+v\nwant %+v", tc, want)
	}
	if err := tc.Validate(); err != nil {
		t.Fatalf("defaults must validate: %v", err)
	}
}

// TestTaskConfigEdgeFields: allowed_origins and the per-address cap parse,
// and the cap defaults to 32.
func TestTaskConfigEdgeFields(t *testing.T) {
	tc, err := parseTask(t, `executable = "a"`)
	if err != nil {
		t.Fatal(err)
	}
	if tc.MaxConnectionsPerAddress != 32 || len(tc.AllowedOrigins) != 0 {
		t.Fatalf("defaults: max_connections_per_address %d, allowed_origins %q", tc.MaxConnectionsPerAddress, tc.AllowedOrigins)
	}
	tc, err = parseTask(t, `executable = "a"
allowed_origins = ["https://app.example.com", "http://localhost:3000", "*"]
max_connections_per_address = 200`)
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if tc.MaxConnectionsPerAddress != 200 || len(tc.AllowedOrigins) != 3 || tc.AllowedOrigins[1] != "http://localhost:3000" {
		t.Fatalf("parsed %d %q", tc.MaxConnectionsPerAddress, tc.AllowedOrigins)
	}
}

func TestTaskConfigGood(t *testing.T) {
	cases := []struct {
		name string
		body string
		args []string // AppArgs("ws://127.0.0.1:1")
	}{
		{"vulkan full", `executable = "local/MyGame/MyGame.sh"
args = ["-AudioMixer"]
resolution = "1280x720"
render = "vulkan"`,
			[]string{"-AudioMixer", "-RenderOffScreen", "-Vulkan", "-ResX=1280", "-ResY=720", "-ForceRes",
				"-PixelStreamingURL=ws://127.0.0.1:1", "-PixelStreamingSignallingURL=ws://127.0.0.1:1", "-PixelStreamingConnectionURL=ws://127.0.0.1:1", "-PixelStreamingID=DefaultStreamer"}},
		{"opengl onscreen custom id", `executable = "/opt/game/run.sh"
render = "opengl"
render_offscreen = false
streamer_id = "lobby-7"`,
			[]string{"-OpenGL", "-ResX=1920", "-ResY=1080", "-ForceRes",
				"-PixelStreamingURL=ws://127.0.0.1:1", "-PixelStreamingSignallingURL=ws://127.0.0.1:1", "-PixelStreamingConnectionURL=ws://127.0.0.1:1", "-PixelStreamingID=lobby-7"}},
		{"render none", `executable = "a"
render = "none"
resolution = "640X480"`,
			[]string{"-RenderOffScreen", "-ResX=640", "-ResY=480", "-ForceRes",
				"-PixelStreamingURL=ws://127.0.0.1:1", "-PixelStreamingSignallingURL=ws://127.0.0.1:1", "-PixelStreamingConnectionURL=ws://127.0.0.1:1", "-PixelStreamingID=DefaultStreamer"}},
		{"not unreal", `executable = "/usr/bin/glxgears"
args = ["-info"]
unreal_flags = false`, []string{"-info"}},
		{"depth 16", `executable = "a"
depth = 16
unreal_flags = false`, nil},
		{"gpu adapter index no audio", `executable = "a"
audio = false
gpu {
  adapter = 2
}
unreal_flags = false`, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tc, err := parseTask(t, c.body)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if err := tc.Validate(); err != nil {
				t.Fatalf("validate: %v", err)
			}
			got := tc.AppArgs("ws://127.0.0.1:1")
			if strings.Join(got, " ") != strings.Join(c.args, " ") {
				t.Fatalf("AppArgs:\n got %q\nwant %q", got, c.args)
			}
		})
	}
}

func TestTaskConfigBad(t *testing.T) {
	cases := []struct {
		name  string
		body  string
		field string // the error must name it
		hint  string // and say what would be right
	}{
		{"missing executable", `args = ["x"]`, "executable", ""},
		{"empty executable", `executable = ""`, "executable", "relative to the task dir"},
		{"blank executable", `executable = "   "`, "executable", "relative to the task dir"},
		{"render unknown", `executable = "a"
render = "directx"`, "render", `"vulkan", "opengl" or "none"`},
		{"render case", `executable = "a"
render = "Vulkan"`, "render", `"vulkan"`},
		{"resolution word", `executable = "a"
resolution = "abc"`, "resolution", "1920x1080"},
		{"resolution zero", `executable = "a"
resolution = "0x0"`, "resolution", "between 64 and 16384"},
		{"resolution huge", `executable = "a"
resolution = "100000x1"`, "resolution", "between 64 and 16384"},
		{"resolution negative", `executable = "a"
resolution = "-1920x1080"`, "resolution", "between"},
		{"resolution one number", `executable = "a"
resolution = "1920"`, "resolution", "WIDTHxHEIGHT"},
		{"resolution odd", `executable = "a"
resolution = "1921x1080"`, "resolution", "1920x1080"},
		{"resolution float", `executable = "a"
resolution = "1920.5x1080"`, "resolution", "WIDTHxHEIGHT"},
		{"depth 32", `executable = "a"
depth = 32`, "depth", "24"},
		{"depth zero", `executable = "a"
depth = 0`, "depth", "24"},
		{"streamer id spaces", `executable = "a"
streamer_id = "my streamer"`, "streamer_id", "letters, digits"},
		{"streamer id empty", `executable = "a"
streamer_id = ""`, "streamer_id", "DefaultStreamer"},
		{"streamer id too long", `executable = "a"
streamer_id = "` + strings.Repeat("x", 65) + `"`, "streamer_id", "1 to 64"},
		{"args wrong type", `executable = "a"
args = "-AudioMixer"`, "args", ""},
		{"unknown field", `executable = "a"
resolutoin = "1280x720"`, "resolutoin", ""},
		{"render wrong type", `executable = "a"
render = ["vulkan"]`, "render", ""},
		{"gpu adapter word", `executable = "a"
gpu {
  adapter = "first"
}`, "gpu.adapter", `"auto" or a GPU index`},
		{"gpu adapter negative", `executable = "a"
gpu {
  adapter = -1
}`, "gpu.adapter", "0 to 63"},
		{"max players negative", `executable = "a"
max_players = -1`, "max_players", "0 (unlimited)"},
		{"allowed origin without scheme", `executable = "a"
allowed_origins = ["app.example.com"]`, "allowed_origins[0]", `"https://app.example.com"`},
		{"allowed origin with a path", `executable = "a"
allowed_origins = ["https://app.example.com", "https://app.example.com/play"]`, "allowed_origins[1]", "host and optional port only"},
		{"allowed origin not http", `executable = "a"
allowed_origins = ["ftp://app.example.com"]`, "allowed_origins[0]", "is not an origin"},
		{"allowed origins not a list", `executable = "a"
allowed_origins = "https://app.example.com"`, "allowed_origins", ""},
		{"per-address cap negative", `executable = "a"
max_connections_per_address = -1`, "max_connections_per_address", "positive"},
		{"turn and http share a port", `executable = "a"
http_port = "http"
turn_port = "http"`, "turn_port", "its own port label"},
		{"turn public address not an IP", `executable = "a"
turn_port = "turn"
turn {
  public_address = "turn.example.com"
}`, "turn.public_address", "IP address"},
		{"turn block without port", `executable = "a"
turn {
  public_address = "203.0.113.10"
}`, "turn_port", "port label"},
		{"tls key missing", `executable = "a"
turn_port = "turn"
turn {
  tls {
    cert_file = "secrets/cert.pem"
  }
}`, "key_file", ""},
		{"turn public address unresolved", `executable = "a"
turn_port = "turn"
turn {
  public_address = "$${attr.unique.platform.aws.public-ipv4}"
}`, "turn.public_address", "did not resolve"},
		{"turn public address unspecified", `executable = "a"
turn_port = "turn"
turn {
  public_address = "0.0.0.0"
}`, "turn.public_address", "reach"},
		{"turn public port word", `executable = "a"
turn_port = "turn"
turn {
  public_port = "turn"
}`, "turn.public_port", "1 to 65535"},
		{"turn public port zero", `executable = "a"
turn_port = "turn"
turn {
  public_port = 0
}`, "turn.public_port", "1 to 65535"},
		{"turn public port too big", `executable = "a"
turn_port = "turn"
turn {
  public_port = 65536
}`, "turn.public_port", "1 to 65535"},
		{"turn public port unresolved", `executable = "a"
turn_port = "turn"
turn {
  public_port = "$${NOMAD_META_turn_port}"
}`, "turn.public_port", "did not resolve"},
		{"turn public port without turn port", `executable = "a"
turn {
  public_port = 41000
}`, "turn_port", "port label"},
		{"player tls key missing", `executable = "a"
tls {
  cert_file = "secrets/cert.pem"
}`, "key_file", ""},
		{"player tls key empty", `executable = "a"
tls {
  cert_file = "secrets/cert.pem"
  key_file = ""
}`, "tls", "both cert_file and key_file"},
		{"player tls unresolved", `executable = "a"
tls {
  cert_file = "$${CERT_DIR}/cert.pem"
  key_file = "secrets/key.pem"
}`, "tls.cert_file", "did not resolve"},
		{"token too short", `executable = "a"
auth {
  token = "hunter2"
}`, "auth.token", "16 characters"},
		{"idle timeout word", `executable = "a"
idle_timeout = "soon"`, "idle_timeout", `"10m"`},
		{"idle timeout tiny", `executable = "a"
idle_timeout = "10ms"`, "idle_timeout", "at least 1s"},
		{"warning longer than max", `executable = "a"
max_session_duration = "1m"
max_session_warning = "5m"`, "max_session_warning", "shorter than max_session_duration"},
		{"startup timeout negative", `executable = "a"
startup_timeout = "-5s"`, "startup_timeout", "at least 1s"},
		{"stop signal unknown", `executable = "a"
stop_signal = "SIGSTOP"`, "stop_signal", "SIGTERM"},
		{"audio wrong type", `executable = "a"
audio = "yes please"`, "audio", ""},
		{"homepage without http_root", `executable = "a"
homepage = "player.html"`, "homepage", "needs http_root"},
		{"homepage escapes", `executable = "a"
http_root = "local/www"
homepage = "../secrets/x"`, "homepage", "inside http_root"},
		{"frontend unknown", `executable = "a"
frontend = "ue5.6"`, "frontend", `"ue5.7"`},
		{"frontend empty", `executable = "a"
frontend = ""`, "frontend", `"ue5.5"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tc, err := parseTask(t, c.body)
			if err == nil {
				err = tc.Validate()
			}
			if err == nil {
				t.Fatalf("accepted %+v", tc)
			}
			if !strings.Contains(err.Error(), c.field) {
				t.Fatalf("error does not name %q: %v", c.field, err)
			}
			if c.hint != "" && !strings.Contains(err.Error(), c.hint) {
				t.Fatalf("error does not say %q: %v", c.hint, err)
			}
		})
	}
}

func TestValidateReportsEveryField(t *testing.T) {
	tc := TaskConfig{Resolution: "abc", Depth: 7, Render: "dx", StreamerID: "", Frontend: "ue4.27"}
	err := tc.Validate()
	for _, field := range []string{"executable", "resolution", "depth", "render", "streamer_id", "frontend"} {
		if err == nil || !strings.Contains(err.Error(), field+":") {
			t.Errorf("error does not report %s: %v", field, err)
		}
	}
}

func TestPluginConfig(t *testing.T) {
	cases := []struct {
		name  string
		body  string
		field string // "" = valid
	}{
		{"defaults", ``, ""},
		{"custom", `xvfb_path = "/usr/bin/Xvfb"
allow_root = true
runtime_dir = "/run/ps"`, ""},
		{"relative runtime dir", `runtime_dir = "run/ps"`, "runtime_dir"},
		{"long runtime dir", `runtime_dir = "/var/lib/nomad/alloc/0123456789abcdef0123456789abcdef/pixelstream"`, "runtime_dir"},
		{"empty xvfb", `xvfb_path = ""`, "xvfb_path"},
		{"allow_root string", `allow_root = "maybe"`, "allow_root"},
		{"no_gpu unknown", `no_gpu = "maybe"`, "no_gpu"},
		{"no_gpu software", `no_gpu = "software"
gpu_isolation = false`, ""},
		{"sandbox paths extended", `sandbox_paths = ["/usr", "/etc", "/opt/unreal"]`, ""},
		{"sandbox path relative", `sandbox_paths = ["usr"]`, "sandbox_paths[0]"},
		{"sandbox path root", `sandbox_paths = ["/usr", "/"]`, "sandbox_paths[1]"},
		{"sandbox path over runtime dir", `sandbox_paths = ["/run"]`, "sandbox_paths[0]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var pc PluginConfig
			err := parseSpec(t, PluginSpec, "config {\n"+c.body+"\n}", &pc)
			if err == nil {
				err = pc.Validate()
			}
			if c.field == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if pc.XvfbPath == "" || pc.RuntimeDir == "" || len(pc.SandboxPaths) == 0 {
					t.Fatalf("defaults not applied: %+v", pc)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.field) {
				t.Fatalf("want an error naming %s, got %v", c.field, err)
			}
		})
	}
}

func TestNetworkFieldsResolveFromTaskEnv(t *testing.T) {
	env := map[string]string{"PUBLIC_IP": "203.0.113.10", "NOMAD_META_turn_port": "41000", "CERT_DIR": "secrets"}
	cases := []struct {
		name, body       string
		addr, port, cert string
	}{
		{"literal", `public_address = "198.51.100.7"
public_port = 3478`, "198.51.100.7", "3478", ""},
		{"port as number", `public_port = 41001`, "", "41001", ""},
		{"env left by nomad", `public_address = "$${PUBLIC_IP}"
public_port = "$${NOMAD_META_turn_port}"`, "203.0.113.10", "41000", ""},
		{"env. prefix", `public_address = "$${env.PUBLIC_IP}"`, "203.0.113.10", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tc, err := parseTask(t, "executable = \"a\"\nturn_port = \"turn\"\ntls {\n  cert_file = \"$${CERT_DIR}/c.pem\"\n  key_file = \"k.pem\"\n}\nturn {\n"+c.body+"\n}")
			if err != nil {
				t.Fatal(err)
			}
			tc.ResolveNetwork(env)
			if err := tc.Validate(); err != nil {
				t.Fatalf("resolved config refused: %v", err)
			}
			if tc.TURN.PublicAddress != c.addr || tc.TURN.PublicPort != c.port || tc.TLS.CertFile != "secrets/c.pem" {
				t.Fatalf("got address %q port %q cert %q, want %q %q secrets/c.pem", tc.TURN.PublicAddress, tc.TURN.PublicPort, tc.TLS.CertFile, c.addr, c.port)
			}
		})
	}
	// A name the task env does not have stays as written and is reported.
	// ($${...} is how a job writes a reference Nomad passes on as written.)
	tc, err := parseTask(t, "executable = \"a\"\nturn_port = \"turn\"\nturn {\n  public_address = \"$${meta.public_ip}\"\n}")
	if err != nil {
		t.Fatal(err)
	}
	tc.ResolveNetwork(env)
	if err := tc.Validate(); err == nil || !strings.Contains(err.Error(), `turn.public_address: "${meta.public_ip}" did not resolve`) {
		t.Fatalf("unresolved reference not reported with its field: %v", err)
	}
}
