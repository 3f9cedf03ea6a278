package session

import (
	"os/signal"
	"syscall"
)

func signalReset(sig syscall.Signal) { signal.Reset(sig) }
