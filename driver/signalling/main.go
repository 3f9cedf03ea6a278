package signalling

import (
	"fmt"
	"os"
)

// Main runs the signalling server standalone (the `signalling` subcommand).
// STUB: replaced by the signalling implementation.
func Main(args []string) int {
	fmt.Fprintln(os.Stderr, "signalling: not implemented yet")
	return 2
}
