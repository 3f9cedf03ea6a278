// Command nomad-driver-pixelstream is a Nomad task driver that runs Unreal Engine
// Pixel Streaming sessions. Without arguments it serves the driver plugin to the
// Nomad client; its subcommands run the per-task session supervisor and the
// signalling and TURN servers standalone.
package main

import (
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/plugins"

	// Importing the executor registers its re-exec entry point ("executor"),
	// handled in the package's init before main runs.
	_ "github.com/hashicorp/nomad/drivers/shared/executor"

	"github.com/pixelstream/nomad-driver-pixelstream/driver"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/session"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/signallingcmd"
	"github.com/pixelstream/nomad-driver-pixelstream/driver/turn"
	"github.com/pixelstream/nomad-driver-pixelstream/gateway"
	"github.com/pixelstream/nomad-driver-pixelstream/version"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case driver.ExecutorCommand:
			os.Exit(driver.ServeExecutor(os.Args[2:]))
		case "session":
			os.Exit(session.Main(os.Args[2:]))
		case "signalling":
			os.Exit(signallingcmd.Main(os.Args[2:]))
		case "turn":
			os.Exit(turn.Main(os.Args[2:]))
		case "gateway":
			os.Exit(gateway.Main(os.Args[2:]))
		case "version", "--version", "-version":
			fmt.Println(version.String())
			return
		case "help", "-h", "--help":
			fmt.Fprintln(os.Stderr, usage)
			return
		default:
			fmt.Fprintf(os.Stderr, "unknown subcommand %q\n\n%s\n", os.Args[1], usage)
			os.Exit(2)
		}
	}
	var d *driver.Driver
	plugins.Serve(func(log hclog.Logger) interface{} {
		d = driver.NewPlugin(log)
		return d
	})
	if d != nil {
		d.Shutdown()
	}
}

const usage = `usage: nomad-driver-pixelstream [subcommand]

Without a subcommand the binary serves the Nomad task driver plugin; put it in
the Nomad client's plugin_dir.

Subcommands:
  session      run a task's session supervisor (started by the driver)
  signalling   run the Pixel Streaming signalling server standalone
  turn         run the TURN server standalone
  gateway      run the fleet gateway: one URL for a pool of sessions (-h for flags)
  version      print the version`
