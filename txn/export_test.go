package txn

import "github.com/cairndb/cairn/fsm"

// ForgetLater queues a record for deletion, as a finished transaction does.
func (co *Coordinator) ForgetLater(id string, shard fsm.ShardID) { co.forgetLater(id, shard) }
