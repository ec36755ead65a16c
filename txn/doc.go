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
//  3. Prepare every participant but the record's shard, all at once: each
//     checks that the keys it holds still have the versions read
//     (optimistic validation), that each scanned range still holds exactly
//     what was read, and that no other transaction holds them, and locks
//     keys with intents and ranges with range locks. Intents name the
//     record's shard and carry the coordinator's time; a put's intent also
//     carries the version the put takes on commit, fixed now (the
//     prepare's entry and the put's position), which the prepare reports.
//  4. Commit on the record's shard, in one entry (PhaseCommit): the same
//     checks for that shard's keys and ranges; if they hold, its writes
//     become data and the record is written committed, else it is written
//     aborted. That entry is the commit point. A record already there
//     (someone gave up on the transaction first) wins: the coordinator has
//     lost.
//  5. Answer: every put's version is known (from the prepares and the
//     commit entry).
//  6. In the background, resolve the other participants (committed
//     intents become data with the versions fixed at prepare, range locks
//     go), then Forget the record. Both are batched by shard: one Resolve
//     carries every transaction queued for its shard while the previous
//     one was in flight (fsm.Phase.More), and one Forget every record
//     queued likewise.
//
// A transaction across two shards thus takes two rounds before its answer
// (prepare, commit) and four raft entries. An aborted transaction's
// intents are dropped before the answer (ErrConflict, ErrChanged).
//
// Fixing a put's version at prepare keeps versions unique and growing per
// key: the key stays locked from its prepare until it is resolved, so no
// other write to it falls in between. Answering before the resolve keeps
// reads linearizable: an intent stays until it is resolved, and whoever
// meets one learns the decision from the record (below).
//
// Every key read or written on the other shards stays locked from its
// prepare until it is resolved, and the record's shard checks its keys in
// the commit entry itself, so every read still held at the commit point:
// the transaction takes effect there, strictly serializable. A check that
// finds a version changed or a key held fails, the transaction aborts and
// is retried from step 1 (a few times, with jittered backoff, then
// ErrConflict): conflicts fail fast, nothing waits for a lock, so there
// are no deadlocks.
//
// # Recovery
//
// A coordinator may die at any step. Whoever meets an intent (a reader, a
// writer, another transaction's prepare, the background resolver) settles
// it: a Decide on the record's shard reports the decision if there is one,
// and a Resolve applies or drops the intent. With no record, the
// transaction may still be preparing, for a TTL from the intent's time:
// until then Decide writes nothing and reports it pending; after, it
// records the transaction aborted (so a late commit loses). No lock thus
// outlives its transaction's prepare by more than the TTL plus the time to
// settle it.
//
// A missing record is also what a forgotten one looks like (Forget runs
// once every intent is resolved). A get that is told "pending" therefore
// reads the key again: if the same intent is still there, the record was
// not forgotten but not written yet, so the transaction had not taken
// effect when Decide looked, and the key's committed value (locked,
// unchanged since) is the answer. Writers (and scans) wait for a live
// transaction, with backoff, for as long as their context allows.
//
// Every step is idempotent (a request ID per step, phases that tolerate
// repetition), so an outcome-unknown step is simply proposed again.
package txn
