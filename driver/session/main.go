package session

import (
	"fmt"
	"os"
)

// Main runs the session supervisor. STUB.
func Main(args []string) int {
	fmt.Fprintln(os.Stderr, "session: not implemented yet")
	return 2
}
