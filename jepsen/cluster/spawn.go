package cluster

import (
	"os/exec"
	"runtime"
	"sync"
)

// A parent-death signal (Pdeathsig) fires when the thread that forked the
// child exits, not when the process does, and the Go runtime may end idle
// threads. So every node is forked from one goroutine locked to its thread
// for the life of the process: the nodes then die exactly when the harness
// does.

type spawnCall struct {
	cmd *exec.Cmd
	err chan error
}

var (
	spawnOnce sync.Once
	spawnReqs chan spawnCall
)

// spawn runs cmd.Start on the spawner thread.
func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnReqs = make(chan spawnCall)
		go spawner()
	})
	call := spawnCall{cmd: cmd, err: make(chan error, 1)}
	spawnReqs <- call
	return <-call.err
}

func spawner() {
	runtime.LockOSThread() // never unlocked, and the goroutine never returns
	for call := range spawnReqs {
		call.err <- call.cmd.Start()
	}
}
