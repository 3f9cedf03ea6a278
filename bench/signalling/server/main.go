// Command server runs the signalling server as its own process for the
// benchmark, with the per-connection rate limits raised so the benchmark
// measures the server, not its limiter. It prints its addresses like the
// `signalling` subcommand and stops on SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pixelstream/nomad-driver-pixelstream/driver/playerhttp"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/signalling"
)

func main() {
	player := flag.String("player-listen", "127.0.0.1:0", "player endpoint")
	streamer := flag.String("streamer-listen", "127.0.0.1:0", "streamer endpoint")
	flag.Parse()
	logger := hclog.New(&hclog.LoggerOptions{Name: "signalling", Level: hclog.Warn, Output: os.Stderr})
	srv, err := playerhttp.Start(signalling.Config{
		StreamerListen: *streamer,
		Limits: signalling.Limits{
			MessagesPerSecond:         1e6,
			Burst:                     1e6,
			StreamerMessagesPerSecond: 1e7,
			StreamerBurst:             1e7,
			MaxConnections:            100000,
			// Every simulated player connects from 127.0.0.1.
			MaxConnectionsPerAddress: 100000,
			MaxPlayerConnections:     100000,
			SubscribeTimeout:         time.Hour,
		},
		Logger: logger,
	}, playerhttp.Config{Listen: *player, Logger: logger})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("player http://%s/\nstreamer ws://%s\n", srv.PlayerAddr(), srv.StreamerAddr())
	// SIGUSR1 collects garbage and returns it to the OS, so the benchmark
	// can report the floor of the memory held per player besides plain RSS.
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for range usr1 {
			runtime.GC()
			debug.FreeOSMemory()
		}
	}()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
}
