package shard

import (
	"errors"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// A follower can refuse every append after installing a snapshot: raft
// v1.8.0 checks an append's previous entry against the follower's log only,
// so when the previous entry is the snapshot's last one and the follower's
// log already holds entries past it (it stored the next entry, but the
// leader never heard so, say because the follower restarted), the check
// fails. The leader walks back, sends the same snapshot again, and the
// follower installs it and refuses again, for as long as the leader's
// latest snapshot stays the same (hashicorp/raft #205, #697). A newer
// snapshot ends the loop: its last entry is at or past the follower's log.
//
// sendWatch therefore counts complete sends of each snapshot; when one is
// sent in full resendLimit times within resendWindow, the leader takes a
// new snapshot (once per snapshot). Sends cut short (an unreachable
// follower) do not count, so a partition causes no extra snapshots.
const (
	resendLimit  = 3
	resendWindow = time.Minute
)

type sendWatch struct {
	raft.SnapshotStore
	onRepeat func(id string) error // a failure lets a later send try again

	mu    sync.Mutex
	sends map[string][]time.Time // snapshot ID → when it was sent in full
	fired map[string]bool
}

func newSendWatch(store raft.SnapshotStore, onRepeat func(id string) error) *sendWatch {
	return &sendWatch{SnapshotStore: store, onRepeat: onRepeat, sends: map[string][]time.Time{}, fired: map[string]bool{}}
}

// Open is how raft reads a snapshot to send it (and to restore it).
func (w *sendWatch) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := w.SnapshotStore.Open(id)
	if err != nil {
		return meta, rc, err
	}
	return meta, &watchedReader{ReadCloser: rc, done: func() { w.sent(id) }}, nil
}

func (w *sendWatch) sent(id string) {
	w.mu.Lock()
	now := time.Now()
	var recent []time.Time
	for _, t := range append(w.sends[id], now) {
		if now.Sub(t) <= resendWindow {
			recent = append(recent, t)
		}
	}
	w.sends[id] = recent
	for other, times := range w.sends { // forget snapshots not sent lately
		if other != id && now.Sub(times[len(times)-1]) > resendWindow {
			delete(w.sends, other)
			delete(w.fired, other)
		}
	}
	fire := len(recent) >= resendLimit && !w.fired[id]
	if fire {
		w.fired[id] = true
	}
	w.mu.Unlock()
	if fire {
		go func() {
			if w.onRepeat(id) != nil {
				w.mu.Lock()
				delete(w.fired, id)
				w.mu.Unlock()
			}
		}()
	}
}

// watchedReader calls done once, when it has been read to the end.
type watchedReader struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (r *watchedReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		r.once.Do(r.done)
	}
	return n, err
}
