// Package txn coordinates transactions whose keys live on more than one
// shard: two-phase commit over the shard leaders, with the decision in a
// replicated record on the shard of the transaction's first key.
//
// # Protocol
//
// A coordinator (any node) runs a transaction in steps, each a raft
// proposal to one shard (fsm.Phase):
//
//  1. Read every key the transaction compares or gets, linearizably.
//     Reads that meet another transaction's intent settle it first.
//  2. Evaluate the comparisons, pick the branch, work out its writes.
//  3. Prepare the shard of the record first: it checks and locks that
//     shard's keys and, in the same entry, creates the record, pending
//     until a deadline (TTL ahead). A heartbeat moves the deadline on
//     while the coordinator works. Every intent is thus written after its
//     record exists, so whoever meets one finds the record.
//  4. Prepare every other participant at once: each checks that the keys
//     it holds still have the versions read (optimistic validation), that
//     each scanned range still holds exactly what was read, and that no
//     other transaction holds them, and locks keys with intents and
//     ranges with range locks.
//  5. Decide on the record shard: committed if every prepare succeeded,
//     else aborted. The decision is final; a coordinator whose commit finds
//     the record aborted (someone gave up on it) has lost. The same entry
//     resolves the record shard's own intents.
//  6. Resolve the other participants: committed intents become data (with
//     the versions of that entry), aborted ones vanish, range locks go.
//     Then answer, and Forget the record in the background.
//
// A transaction across two shards thus takes four rounds before its
// answer (prepare, prepare, decide, resolve) and five raft entries.
//
// Because every key read or written stays locked from its prepare until
// the decision, and the reads were validated under those locks, the
// transaction takes effect at the moment of the decision: strictly
// serializable. A prepare that finds a version changed or a key held fails,
// the transaction aborts and is retried from step 1 (a few times, with
// jittered backoff, then ErrConflict): conflicts fail fast, nothing waits
// for a lock, so there are no deadlocks.
//
// # Recovery
//
// A coordinator may die at any step. Whoever meets an intent (a reader, a
// writer, another transaction's prepare, the background resolver) settles
// it: a Decide with the current time aborts the record if its deadline has
// passed, or reports the decision if there is one; then a Resolve applies
// or drops the intent. A get that finds the record still pending returns
// the key's committed value: the transaction cannot have taken effect
// before the record was seen pending, so the read is ordered before it.
// Writers (and scans) wait for a live transaction, with backoff, for as
// long as their context allows. No lock outlives its transaction's
// deadline plus the time to settle it.
//
// Every step is idempotent (a request ID per step, phases that tolerate
// repetition), so an outcome-unknown step is simply proposed again.
package txn
