package config

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/nomad/plugins/shared/hclspec"
)

// Render modes of the task config's `render` field.
const (
	RenderVulkan = "vulkan"
	RenderOpenGL = "opengl"
	RenderNone   = "none"
)

// Task defaults, each defined once: the schema's defaults below, parsing,
// and the session's components take them from here.
const (
	// DefaultClaimTimeout is how long a gateway claim waits for its
	// visitor's player (gateway.claim_timeout).
	DefaultClaimTimeout = 60 * time.Second
	// DefaultMaxConnectionsPerAddress caps the player port's TCP connections
	// per IPv4 address or IPv6 /64 (max_connections_per_address).
	DefaultMaxConnectionsPerAddress = 32
	// DefaultStopTimeout is how long the app gets after stop_signal when the
	// session ends itself (stop_timeout).
	DefaultStopTimeout = 30 * time.Second
)

// The player pages a session embeds (task config `frontend`), named for
// Epic's frontend line each is built from (web/build.mjs builds one page per
// name). FrontendUE57 is Epic's supported line and the default; FrontendUE55
// is for Unreal builds whose plugin predates it.
const (
	FrontendUE57 = "ue5.7"
	FrontendUE55 = "ue5.5"
)

// Frontends lists the embedded player pages, the default first.
var Frontends = []string{FrontendUE57, FrontendUE55}

// DefaultStreamerID is the id Unreal's Pixel Streaming plugin uses by default.
const DefaultStreamerID = "DefaultStreamer"

// Resolution bounds. The upper bound is 8K-class displays with headroom
// (Unreal and the encoders top out well below it); the lower bound keeps the
// encoders' minimum frame sizes.
const (
	minDimension = 64
	maxDimension = 16384
)

// TaskConfig is a job's `config { ... }` block for a pixelstream task.
type TaskConfig struct {
	Executable      string   `codec:"executable"`
	Args            []string `codec:"args"`
	Resolution      string   `codec:"resolution"`
	Depth           int      `codec:"depth"`
	Render          string   `codec:"render"`
	RenderOffscreen bool     `codec:"render_offscreen"`
	StreamerID      string   `codec:"streamer_id"`
	UnrealFlags     bool     `codec:"unreal_flags"`
	// Audio gives the app a private PipeWire stack with a default sink.
	Audio bool      `codec:"audio"`
	GPU   GPUConfig `codec:"gpu"`

	// HTTPPort is the group network port label for the player page and
	// WebSocket; "" means no player endpoint.
	HTTPPort string `codec:"http_port"`
	// TURNPort is the port label for the session's TURN server (UDP and TCP);
	// "" means no TURN server.
	TURNPort   string `codec:"turn_port"`
	MaxPlayers int    `codec:"max_players"`
	HTTPRoot   string `codec:"http_root"`
	// Homepage names the file of http_root served at / ("" = index.html,
	// else player.html, the page Epic's frontend build writes).
	Homepage string `codec:"homepage"`
	// Frontend picks the embedded player page: "ue5.7" (default) or
	// "ue5.5". Not used when http_root serves a page of the job's own.
	Frontend string `codec:"frontend"`
	// AllowedOrigins lists the origins, besides the player page's own, whose
	// pages may open a player WebSocket ("https://app.example.com"; "*" for
	// any). Clients that send no Origin (not browsers) are always allowed.
	AllowedOrigins []string `codec:"allowed_origins"`
	// MaxConnectionsPerAddress caps the TCP connections one IPv4 address or
	// IPv6 /64 holds on the player port; 0 means the default, 32.
	MaxConnectionsPerAddress int        `codec:"max_connections_per_address"`
	Auth                     AuthConfig `codec:"auth"`
	TURN                     TURNConfig `codec:"turn"`
	// TLS makes the player port (page, /api, player WebSocket) HTTPS/WSS
	// only; the files are re-read when they change.
	TLS TLSConfig `codec:"tls"`

	// IdleTimeout ends the session (exit code 0) when no player has been
	// connected for this long; "" = never.
	IdleTimeout string `codec:"idle_timeout"`
	// MaxSessionDuration ends the session this long after the app started,
	// warning players MaxSessionWarning before; "" = never.
	MaxSessionDuration string `codec:"max_session_duration"`
	MaxSessionWarning  string `codec:"max_session_warning"`
	// StartupTimeout fails the task when the app's streamer has not
	// identified within it after the app started; "" = wait forever.
	StartupTimeout string `codec:"startup_timeout"`
	// StopSignal and StopTimeout stop the app when the session ends itself
	// (idle, max duration, startup timeout). Nomad does not tell drivers the
	// job's kill_signal and kill_timeout, so set them to the same values.
	StopSignal  string `codec:"stop_signal"`
	StopTimeout string `codec:"stop_timeout"`

	// Gateway makes the session part of a gateway's pool (see GatewayConfig).
	Gateway GatewayConfig `codec:"gateway"`
}

// GatewayConfig is the task's `gateway { ... }` block: with a secret, the
// session starts free, a gateway reserves it for one visitor through
// POST /api/claim, and only that visitor's one-time token opens the page.
type GatewayConfig struct {
	// Secret authenticates the gateway's claims (a Nomad variable through a
	// template); never logged. "" = not a pool session.
	Secret string `codec:"secret"`
	// ClaimTimeout is how long a claim waits for its visitor's player before
	// the session is free again (default "60s").
	ClaimTimeout string `codec:"claim_timeout"`
	// ReturnToPool makes the session free again when its visitor leaves,
	// instead of ending by the session's own lifecycle (idle_timeout).
	ReturnToPool bool `codec:"return_to_pool"`
}

// ClaimTTL is ClaimTimeout parsed; Validate has checked it.
func (g GatewayConfig) ClaimTTL() time.Duration {
	d, err := time.ParseDuration(g.ClaimTimeout)
	if err != nil || d <= 0 {
		return DefaultClaimTimeout
	}
	return d
}

// Durations are the session lifecycle settings, parsed. A zero value means off.
type Durations struct {
	Idle, MaxSession, Warning, Startup, Stop time.Duration
}

// Durations parses the lifecycle fields; Validate has checked them.
func (t *TaskConfig) Durations() Durations {
	d := func(s string) time.Duration { v, _ := time.ParseDuration(s); return v }
	return Durations{Idle: d(t.IdleTimeout), MaxSession: d(t.MaxSessionDuration), Warning: d(t.MaxSessionWarning),
		Startup: d(t.StartupTimeout), Stop: d(t.StopTimeout)}
}

// AuthConfig is the task's `auth { ... }` block.
type AuthConfig struct {
	// Token, when set, is required from players (query, header or cookie).
	Token string `codec:"token"`
}

// TURNConfig is the task's `turn { ... }` block.
type TURNConfig struct {
	// PublicAddress goes into the TURN URLs players get; default: the port's
	// host address.
	PublicAddress string `codec:"public_address"`
	// PublicPort goes into the TURN URLs players get; default: the port's
	// host port. A string, so that Nomad interpolation can fill it.
	PublicPort string    `codec:"public_port"`
	TLS        TLSConfig `codec:"tls"`
}

// TLSConfig names a certificate and its key (files a template wrote),
// relative to the task dir or absolute.
type TLSConfig struct {
	CertFile string `codec:"cert_file"`
	KeyFile  string `codec:"key_file"`
}

// GPUConfig is the task's `gpu { ... }` block.
type GPUConfig struct {
	// Adapter is "auto" (the GPU Nomad assigned, mapped to Unreal's adapter
	// index) or an explicit -graphicsadapter index.
	Adapter string `codec:"adapter"`
}

// TaskSpec is the HCL schema of TaskConfig.
var TaskSpec = hclspec.NewObject(map[string]*hclspec.Spec{
	"executable": hclspec.NewAttr("executable", "string", true),
	"args":       hclspec.NewAttr("args", "list(string)", false),
	"resolution": hclspec.NewDefault(
		hclspec.NewAttr("resolution", "string", false),
		hclspec.NewLiteral(`"1920x1080"`),
	),
	"depth": hclspec.NewDefault(
		hclspec.NewAttr("depth", "number", false),
		hclspec.NewLiteral(`24`),
	),
	"render": hclspec.NewDefault(
		hclspec.NewAttr("render", "string", false),
		hclspec.NewLiteral(`"vulkan"`),
	),
	"render_offscreen": hclspec.NewDefault(
		hclspec.NewAttr("render_offscreen", "bool", false),
		hclspec.NewLiteral(`true`),
	),
	"streamer_id": hclspec.NewDefault(
		hclspec.NewAttr("streamer_id", "string", false),
		hclspec.NewLiteral(`"`+DefaultStreamerID+`"`),
	),
	"unreal_flags": hclspec.NewDefault(
		hclspec.NewAttr("unreal_flags", "bool", false),
		hclspec.NewLiteral(`true`),
	),
	"audio": hclspec.NewDefault(
		hclspec.NewAttr("audio", "bool", false),
		hclspec.NewLiteral(`true`),
	),
	"http_port":   hclspec.NewAttr("http_port", "string", false),
	"turn_port":   hclspec.NewAttr("turn_port", "string", false),
	"max_players": hclspec.NewAttr("max_players", "number", false),
	"http_root":   hclspec.NewAttr("http_root", "string", false),
	"homepage":    hclspec.NewAttr("homepage", "string", false),
	"frontend": hclspec.NewDefault(
		hclspec.NewAttr("frontend", "string", false),
		hclspec.NewLiteral(`"`+FrontendUE57+`"`),
	),
	"allowed_origins": hclspec.NewAttr("allowed_origins", "list(string)", false),
	"max_connections_per_address": hclspec.NewDefault(
		hclspec.NewAttr("max_connections_per_address", "number", false),
		hclspec.NewLiteral(strconv.Itoa(DefaultMaxConnectionsPerAddress)),
	),
	"auth": hclspec.NewBlock("auth", false, hclspec.NewObject(map[string]*hclspec.Spec{
		"token": hclspec.NewAttr("token", "string", false),
	})),
	"turn": hclspec.NewBlock("turn", false, hclspec.NewObject(map[string]*hclspec.Spec{
		"public_address": hclspec.NewAttr("public_address", "string", false),
		"public_port":    hclspec.NewAttr("public_port", "string", false),
		"tls": hclspec.NewBlock("tls", false, hclspec.NewObject(map[string]*hclspec.Spec{
			"cert_file": hclspec.NewAttr("cert_file", "string", true),
			"key_file":  hclspec.NewAttr("key_file", "string", true),
		})),
	})),
	"tls": hclspec.NewBlock("tls", false, hclspec.NewObject(map[string]*hclspec.Spec{
		"cert_file": hclspec.NewAttr("cert_file", "string", true),
		"key_file":  hclspec.NewAttr("key_file", "string", true),
	})),
	"idle_timeout":         hclspec.NewAttr("idle_timeout", "string", false),
	"max_session_duration": hclspec.NewAttr("max_session_duration", "string", false),
	"max_session_warning": hclspec.NewDefault(
		hclspec.NewAttr("max_session_warning", "string", false),
		hclspec.NewLiteral(`"1m"`),
	),
	"startup_timeout": hclspec.NewAttr("startup_timeout", "string", false),
	"stop_signal": hclspec.NewDefault(
		hclspec.NewAttr("stop_signal", "string", false),
		hclspec.NewLiteral(`"SIGTERM"`),
	),
	"stop_timeout": hclspec.NewDefault(
		hclspec.NewAttr("stop_timeout", "string", false),
		hclspec.NewLiteral(strconv.Quote(DefaultStopTimeout.String())),
	),
	"gateway": hclspec.NewBlock("gateway", false, hclspec.NewObject(map[string]*hclspec.Spec{
		"secret":         hclspec.NewAttr("secret", "string", true),
		"claim_timeout":  hclspec.NewAttr("claim_timeout", "string", false),
		"return_to_pool": hclspec.NewAttr("return_to_pool", "bool", false),
	})),
	"gpu": hclspec.NewBlock("gpu", false, hclspec.NewObject(map[string]*hclspec.Spec{
		"adapter": hclspec.NewDefault(
			hclspec.NewAttr("adapter", "string", false),
			hclspec.NewLiteral(`"auto"`),
		),
	})),
})

// Resolution is a parsed WIDTHxHEIGHT.
type Resolution struct{ Width, Height int }

func (r Resolution) String() string { return fmt.Sprintf("%dx%d", r.Width, r.Height) }

// ParseResolution parses "WIDTHxHEIGHT" and checks it against what Xvfb, Unreal
// and the video encoders accept.
func ParseResolution(s string) (Resolution, error) {
	w, h, ok := strings.Cut(strings.ToLower(strings.TrimSpace(s)), "x")
	width, errW := strconv.Atoi(w)
	height, errH := strconv.Atoi(h)
	if !ok || errW != nil || errH != nil {
		return Resolution{}, fmt.Errorf("resolution: %q is not WIDTHxHEIGHT; use for example \"1920x1080\"", s)
	}
	r := Resolution{width, height}
	if width < minDimension || height < minDimension || width > maxDimension || height > maxDimension {
		return Resolution{}, fmt.Errorf("resolution: %q is out of range; width and height must each be between %d and %d, for example \"1920x1080\"",
			s, minDimension, maxDimension)
	}
	// H.264 and VP8 encoders (NVENC included) work on 2x2 chroma blocks.
	if width%2 != 0 || height%2 != 0 {
		return Resolution{}, fmt.Errorf("resolution: %q has an odd dimension; video encoders need even width and height, for example %dx%d",
			s, width&^1, height&^1)
	}
	return r, nil
}

var validDepths = []int{8, 15, 16, 24, 30}

// streamerIDPattern matches what Unreal accepts on its command line without
// quoting and what fits in a URL query parameter (?StreamerId=).
var streamerIDPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// Validate checks every field that can be judged without the node (the
// executable's existence is checked by the driver against the task dir) and
// reports all problems at once, each naming its field.
func (t *TaskConfig) Validate() error {
	var errs []error
	if strings.TrimSpace(t.Executable) == "" {
		errs = append(errs, errors.New(`executable: must be set to the app to run, relative to the task dir (e.g. "local/MyGame/MyGame.sh") or absolute`))
	}
	if _, err := ParseResolution(t.Resolution); err != nil {
		errs = append(errs, err)
	}
	if !slices.Contains(validDepths, t.Depth) {
		errs = append(errs, fmt.Errorf("depth: %d is not a depth Xvfb supports; use one of %v (24 is what Unreal expects)", t.Depth, validDepths))
	}
	switch t.Render {
	case RenderVulkan, RenderOpenGL, RenderNone:
	default:
		errs = append(errs, fmt.Errorf("render: %q is not a render mode; use %q, %q or %q", t.Render, RenderVulkan, RenderOpenGL, RenderNone))
	}
	if !streamerIDPattern.MatchString(t.StreamerID) {
		errs = append(errs, fmt.Errorf("streamer_id: %q must be 1 to 64 letters, digits, '.', '_' or '-' (Unreal's default is %q)", t.StreamerID, DefaultStreamerID))
	}
	if a := strings.TrimSpace(t.GPU.Adapter); a != "" && a != "auto" {
		if n, err := strconv.Atoi(a); err != nil || n < 0 || n > 63 {
			errs = append(errs, fmt.Errorf(`gpu.adapter: %q must be "auto" or a GPU index from 0 to 63`, t.GPU.Adapter))
		}
	}
	if t.Homepage != "" {
		switch {
		case t.HTTPRoot == "":
			errs = append(errs, fmt.Errorf("homepage: %q needs http_root (the embedded page has its own)", t.Homepage))
		case strings.HasPrefix(t.Homepage, "/") || strings.HasPrefix(t.Homepage, ".") || strings.Contains(t.Homepage, "/.") || strings.Contains(t.Homepage, `\`):
			errs = append(errs, fmt.Errorf(`homepage: %q must be a file name inside http_root, such as "player.html" (no leading /, no .. or dotfiles)`, t.Homepage))
		}
	}
	if !slices.Contains(Frontends, t.Frontend) {
		errs = append(errs, fmt.Errorf("frontend: %q is not an embedded player page; use %q (Epic's ue5.7 frontend, for UE 5.6 and later) or %q (for UE 5.5 builds)", t.Frontend, FrontendUE57, FrontendUE55))
	}
	if t.MaxPlayers < 0 {
		errs = append(errs, fmt.Errorf("max_players: %d must be 0 (unlimited) or a positive number of players per streamer", t.MaxPlayers))
	}
	for i, o := range t.AllowedOrigins {
		if err := validOrigin(o); err != nil {
			errs = append(errs, fmt.Errorf("allowed_origins[%d]: %w", i, err))
		}
	}
	if t.MaxConnectionsPerAddress < 0 {
		errs = append(errs, fmt.Errorf("max_connections_per_address: %d must be a positive number of connections (default %d)", t.MaxConnectionsPerAddress, DefaultMaxConnectionsPerAddress))
	}
	if t.HTTPPort != "" && t.HTTPPort == t.TURNPort {
		errs = append(errs, fmt.Errorf("turn_port: %q is also http_port; give TURN its own port label", t.TURNPort))
	}
	errs = append(errs, t.validateNetwork()...)
	if (t.TURN.TLS.CertFile == "") != (t.TURN.TLS.KeyFile == "") {
		errs = append(errs, errors.New("turn.tls: set both cert_file and key_file, or neither"))
	}
	if (t.TLS.CertFile == "") != (t.TLS.KeyFile == "") {
		errs = append(errs, errors.New("tls: set both cert_file and key_file (the player port's certificate and its key), or neither"))
	}
	if (t.TURN.PublicAddress != "" || t.TURN.PublicPort != "" || t.TURN.TLS.CertFile != "") && t.TURNPort == "" {
		errs = append(errs, errors.New("turn_port: a turn block needs turn_port set to a port label of the group's network block"))
	}
	if t.Auth.Token != "" && len(t.Auth.Token) < 16 {
		errs = append(errs, errors.New("auth.token: use at least 16 characters (e.g. a Nomad variable filled from `openssl rand -hex 16`)"))
	}
	errs = append(errs, t.validateLifecycle()...)
	errs = append(errs, t.validateGateway()...)
	for i, a := range t.Args {
		if strings.ContainsRune(a, 0) {
			errs = append(errs, fmt.Errorf("args[%d]: contains a NUL byte, which no process argument can hold", i))
		}
	}
	return errors.Join(errs...)
}

// AppArgs is the app's full argument list: the job's args first (so positional
// arguments such as a map name stay first, and because Unreal's parser takes
// the first occurrence of a flag, a job's own -ResX and the like win), then the
// Pixel Streaming flags built from the config and extra (such as
// -graphicsadapter=N) when unreal_flags is on.
func (t *TaskConfig) AppArgs(streamerURL string, extra ...string) []string {
	args := append([]string(nil), t.Args...)
	if !t.UnrealFlags {
		return args
	}
	args = append(args, extra...)
	res, _ := ParseResolution(t.Resolution) // validated before any start
	if t.RenderOffscreen {
		args = append(args, "-RenderOffScreen")
	}
	switch t.Render {
	case RenderVulkan:
		args = append(args, "-Vulkan")
	case RenderOpenGL:
		args = append(args, "-OpenGL")
	}
	return append(args,
		"-ResX="+strconv.Itoa(res.Width),
		"-ResY="+strconv.Itoa(res.Height),
		"-ForceRes",
		// Pixel Streaming 1 reads -PixelStreamingURL; Pixel Streaming 2 in
		// UE 5.5 prefers -PixelStreamingSignallingURL; UE 5.6+ reads
		// -PixelStreamingConnectionURL and translates the other two
		// (deprecated). All three carry the same value and Unreal ignores
		// flags it does not know, so every line finds its own form and no
		// line sees two different URLs: no per-version setting is needed.
		"-PixelStreamingURL="+streamerURL,
		"-PixelStreamingSignallingURL="+streamerURL,
		"-PixelStreamingConnectionURL="+streamerURL,
		"-PixelStreamingID="+t.StreamerID,
	)
}

// validOrigin checks one allowed_origins entry: "*", or scheme://host[:port]
// as a browser's Origin header carries it.
func validOrigin(o string) error {
	if o == "*" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q is not an origin; write scheme, host and optional port only, such as \"https://app.example.com\", or \"*\" for any", o)
	}
	return nil
}

// stopSignals are the signals an app can be asked to stop with.
var stopSignals = []string{"SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2"}

func (t *TaskConfig) validateLifecycle() []error {
	var errs []error
	parse := func(field, v string, optional bool) time.Duration {
		if v == "" && optional {
			return 0
		}
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			errs = append(errs, fmt.Errorf(`%s: %q must be a duration of at least 1s, such as "10m" or "1h30m"`, field, v))
			return 0
		}
		return d
	}
	parse("idle_timeout", t.IdleTimeout, true)
	maxD := parse("max_session_duration", t.MaxSessionDuration, true)
	warn := parse("max_session_warning", t.MaxSessionWarning, t.MaxSessionWarning == "")
	parse("startup_timeout", t.StartupTimeout, true)
	parse("stop_timeout", t.StopTimeout, t.StopTimeout == "")
	if maxD > 0 && warn >= maxD {
		errs = append(errs, fmt.Errorf("max_session_warning: %s must be shorter than max_session_duration (%s)", t.MaxSessionWarning, t.MaxSessionDuration))
	}
	if t.StopSignal != "" && !slices.Contains(stopSignals, strings.ToUpper(t.StopSignal)) {
		errs = append(errs, fmt.Errorf("stop_signal: %q is not one of %s", t.StopSignal, strings.Join(stopSignals, ", ")))
	}
	return errs
}

// validateGateway checks the gateway block. A pool session's player token is
// minted by each claim, so a static auth.token would lock its visitor out.
func (t *TaskConfig) validateGateway() []error {
	g := t.Gateway
	var errs []error
	if g.Secret == "" {
		if g.ClaimTimeout != "" || g.ReturnToPool {
			errs = append(errs, errors.New("gateway.secret: a gateway block needs the secret the gateway claims with (a Nomad variable through a template)"))
		}
		return errs
	}
	if len(g.Secret) < 16 {
		errs = append(errs, errors.New("gateway.secret: use at least 16 characters (e.g. a Nomad variable filled from `openssl rand -hex 32`)"))
	}
	if t.Auth.Token != "" {
		errs = append(errs, errors.New("auth.token: a pool session (gateway block) gets a one-time player token from each claim; remove auth.token"))
	}
	if g.ClaimTimeout != "" {
		if d, err := time.ParseDuration(g.ClaimTimeout); err != nil || d < time.Second || d > time.Hour {
			errs = append(errs, fmt.Errorf(`gateway.claim_timeout: %q must be a duration from 1s to 1h, such as "60s"`, g.ClaimTimeout))
		}
	}
	return errs
}
