package turn

import (
	"fmt"
	"os"
)

// Main runs the TURN server standalone (the `turn` subcommand).
// STUB: replaced by the turn implementation.
func Main(args []string) int {
	fmt.Fprintln(os.Stderr, "turn: not implemented yet")
	return 2
}
