package txn

import (
	"sync"

	"github.com/cairndb/cairn/fsm"
)

// shardBatcher queues work by shard and hands each shard's queue to flush,
// one call per shard at a time: what queues while a call runs goes in the
// next one, so under load many items share a command. The coordinator
// batches the resolves and the forgets that follow its answers with it.
type shardBatcher[T any] struct {
	mu       sync.Mutex
	queued   map[fsm.ShardID][]T
	inFlight map[fsm.ShardID]bool
	flush    func(fsm.ShardID, []T)
	// start runs fn in the background and reports false (not running it)
	// once the coordinator is closed: what is queued then stays undone.
	start func(fn func()) bool
}

func newShardBatcher[T any](start func(func()) bool, flush func(fsm.ShardID, []T)) *shardBatcher[T] {
	return &shardBatcher[T]{queued: map[fsm.ShardID][]T{}, inFlight: map[fsm.ShardID]bool{}, flush: flush, start: start}
}

func (b *shardBatcher[T]) add(shard fsm.ShardID, item T) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.queued[shard] = append(b.queued[shard], item)
	b.kick(shard)
}

// kick starts a flush of shard's queue unless one is running. b.mu is held.
func (b *shardBatcher[T]) kick(shard fsm.ShardID) {
	items := b.queued[shard]
	if b.inFlight[shard] || len(items) == 0 {
		return
	}
	delete(b.queued, shard)
	b.inFlight[shard] = b.start(func() {
		b.flush(shard, items)
		b.mu.Lock()
		defer b.mu.Unlock()
		b.inFlight[shard] = false
		b.kick(shard)
	})
}
