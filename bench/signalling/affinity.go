package main

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// pinSelfAwayFrom keeps the load generator off CPUs 0 and 1, where the
// server runs. Go applies affinity per thread, so every thread that exists
// now is moved; threads created later inherit it from their creator.
func pinSelfAwayFrom() {
	var set unix.CPUSet
	for c := 2; c < runtime.NumCPU(); c++ {
		set.Set(c)
	}
	tids, err := threadIDs()
	if err != nil {
		return
	}
	for _, tid := range tids {
		_ = unix.SchedSetaffinity(tid, &set)
	}
}
