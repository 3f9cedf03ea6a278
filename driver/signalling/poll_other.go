//go:build !linux

package signalling

func newPoll() poll { return goroutinePoll{} }
