package driver

import (
	"sync"
	"time"

	"github.com/hashicorp/nomad/plugins/drivers"
	pstructs "github.com/hashicorp/nomad/plugins/shared/structs"
)

// taskHandleVersion is the version of TaskState; bump it when its shape changes.
const taskHandleVersion = 2

// TaskState is what the driver stores in Nomad's task handle so a restarted
// plugin can find the session again: the executor to reattach to and the
// session's runtime dir, whose state socket knows the rest.
type TaskState struct {
	ReattachConfig *pstructs.ReattachConfig
	TaskConfig     *drivers.TaskConfig
	Pid            int // the session supervisor
	StartedAt      time.Time
	RuntimeDir     string
	// UID and GID are the task user's, for `nomad alloc exec`.
	UID, GID int
	// GPUs are the UUIDs of the GPUs the task was given, for GPU stats.
	GPUs []string
}

type taskStore struct {
	mu    sync.RWMutex
	store map[string]*taskHandle
}

func newTaskStore() *taskStore { return &taskStore{store: map[string]*taskHandle{}} }

func (ts *taskStore) Set(id string, h *taskHandle) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.store[id] = h
}

func (ts *taskStore) Get(id string) (*taskHandle, bool) {
	ts.mu.RLock()
	defer ts.mu.RUnlock()
	h, ok := ts.store[id]
	return h, ok
}

func (ts *taskStore) Delete(id string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	delete(ts.store, id)
}
