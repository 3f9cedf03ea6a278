// Package signallingcmd is the `signalling` subcommand: a session's
// signalling (the router and its player port) run standalone, without Nomad.
package signallingcmd

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pixelstream/nomad-driver-pixelstream/config"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/playerhttp"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling"
)

// Main runs the signalling server standalone (the `signalling` subcommand)
// until SIGTERM or SIGINT, and returns the process exit code.
func Main(args []string) int {
	return run(args, os.Stdout, os.Stderr, nil)
}

// run is Main with its streams and an optional stop channel, for tests.
func run(args []string, stdout, stderr io.Writer, stop <-chan struct{}) int {
	fs := flag.NewFlagSet("signalling", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: nomad-driver-pixelstream signalling --player-listen ADDR --streamer-listen ADDR [flags]")
		fs.PrintDefaults()
	}
	playerListen := fs.String("player-listen", "", "host:port of the player page and WebSocket (required, e.g. :80)")
	streamerListen := fs.String("streamer-listen", "", "host:port of the streamer WebSocket (required, e.g. 127.0.0.1:8888)")
	sfuListen := fs.String("sfu-listen", "", "host:port of the SFU WebSocket (default: no SFU endpoint)")
	maxPlayers := fs.Int("max-players", 0, "max players per streamer (0 = unlimited)")
	token := fs.String("player-token", "", "token players must present (?token=, Authorization: Bearer, or the page's cookie); default none")
	peerOptions := fs.String("peer-options", "", `peerConnectionOptions JSON sent to peers, e.g. '{"iceServers":[{"urls":["stun:stun.l.google.com:19302"]}]}'`)
	httpRoot := fs.String("http-root", "", "serve this directory at / instead of the embedded player page")
	homepage := fs.String("homepage", "", "with --http-root: the file served at / (default index.html, else player.html, as Epic's frontend build names its page)")
	frontend := fs.String("frontend", config.FrontendUE57, fmt.Sprintf("embedded player page: one of %q (Epic's frontend line it is built from)", config.Frontends))
	logLevel := fs.String("log-level", "info", "log level: trace, debug, info, warn, error")
	var limits signalling.Limits
	origins := fs.String("allowed-origins", "", `comma-separated origins whose pages may open a player WebSocket besides the page's own, e.g. "https://app.example.com"; "*" for any`)
	fs.IntVar(&limits.MaxConnectionsPerAddress, "max-connections-per-address", 0, "TCP connections one IPv4 address or IPv6 /64 may hold on the player port (default 32)")
	fs.IntVar(&limits.MaxPlayerConnections, "max-player-connections", 0, "TCP connections on the player port in all (default 10000)")
	fs.DurationVar(&limits.HTTPIdleTimeout, "http-idle-timeout", 0, "close idle keep-alive HTTP connections after this long (default 60s)")
	fs.DurationVar(&limits.HTTPReadHeaderTimeout, "http-read-header-timeout", 0, "time a client has to send a request header (default 10s)")
	fs.DurationVar(&limits.HTTPReadTimeout, "http-read-timeout", 0, "time a client has to send a whole request, body included (default 30s; WebSockets have their own deadlines)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "signalling: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	if *token == "" {
		*token = os.Getenv("PIXELSTREAM_PLAYER_TOKEN")
	}
	level := hclog.LevelFromString(*logLevel)
	if level == hclog.NoLevel {
		fmt.Fprintf(stderr, "signalling: --log-level %q is not one of trace, debug, info, warn, error\n", *logLevel)
		return 2
	}
	for _, req := range []struct{ flag, value string }{{"player-listen", *playerListen}, {"streamer-listen", *streamerListen}} {
		if req.value == "" {
			fmt.Fprintf(stderr, "signalling: --%s is required (host:port, e.g. 127.0.0.1:0)\n", req.flag)
			return 2
		}
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "signalling", Level: level, Output: stderr})
	cfg := signalling.Config{
		StreamerListen: *streamerListen,
		SFUListen:      *sfuListen,
		MaxPlayers:     *maxPlayers,
		Limits:         limits,
		Logger:         logger,
	}
	webCfg := playerhttp.Config{
		Listen:      *playerListen,
		PlayerToken: *token,
		HTTPRoot:    *httpRoot,
		Frontend:    *frontend,
		Homepage:    *homepage,
		Logger:      logger.Named("http"),
	}
	if *origins != "" {
		for _, o := range strings.Split(*origins, ",") {
			webCfg.AllowedOrigins = append(webCfg.AllowedOrigins, strings.TrimSpace(o))
		}
	}
	if *peerOptions != "" {
		if !json.Valid([]byte(*peerOptions)) {
			fmt.Fprintf(stderr, "signalling: --peer-options is not valid JSON: %s\n", *peerOptions)
			return 2
		}
		cfg.PeerConnectionOptions = json.RawMessage(*peerOptions)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	srv, err := playerhttp.Start(cfg, webCfg)
	if err != nil {
		fmt.Fprintf(stderr, "signalling: %v\n", err)
		return 2
	}
	fmt.Fprintf(stdout, "player http://%s/\n", printable(srv.PlayerAddr()))
	fmt.Fprintf(stdout, "streamer ws://%s\n", printable(srv.StreamerAddr()))
	if a := srv.Router.SFUAddr(); a != nil {
		fmt.Fprintf(stdout, "sfu ws://%s\n", printable(a))
	}
	select {
	case sig := <-sigs:
		cfg.Logger.Info("stopping", "signal", sig.String())
	case <-stop:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		cfg.Logger.Warn("shutdown", "error", err)
	}
	return 0
}

// printable turns a wildcard listen address into one a browser can open.
func printable(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return a.String()
	}
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(tcp.Port))
}
