// Package fsm is Cairn's replicated state machine: the Badger-backed store that
// every shard replica applies its raft log to.
//
// # Layout
//
// One Badger database per node (a Store) holds every shard replica of that node.
// Each replica owns the key prefix of its ShardID (8 bytes, big-endian). Under it:
//
//	[shard][gen=0]['G']            current generation (uint32)
//	[shard][gen=0]['R']            restore in progress: the staging generation
//	[shard][gen]['a']              applied index, term and applied-command counter
//	[shard][gen]['d'][user key]    user data: [version uint64][value]
//	[shard][gen]['b'][command number uint64]  a batch of dedupe records, keyed by its last record's
//	                               command number: [its index uint64] then records of [uvarint len][request id]
//	                               [index uint64][command number uint64][uvarint len][encoded result]
//	[shard][gen]['e'][len uint16][request id][index]  dedupe record of a build before batches: [command number uint64][encoded result]
//	[shard][gen]['q'][index][id]   those records in index order, for pruning: [command number uint64]
//	[shard][gen]['r'][request id]  dedupe record of a build before the command bound: [index uint64][encoded result]
//	                               (its 'q' entry has an empty value)
//	[shard][gen]['i'][user key]    intent of a cross-shard transaction: [txn id][record shard][op][value]
//	[shard][gen]['t'][txn id]      transaction record: [status][deadline][participants]
//
// All data of a replica lives under one generation (uint32, ≥ 1). A snapshot
// restore writes the incoming state under a fresh generation, marked by the 'R'
// key, and swaps the 'G' pointer in one transaction; the old generation is then
// dropped. A crash at any point leaves either the old state or the new one:
// Store.Shard removes a half-written staging generation and any generation older
// than the current one.
//
// # Durability
//
// The raft log is the write-ahead log, so Badger runs without SyncWrites. Every
// ApplyBatch writes the replica's applied index in the same Badger transaction as
// the data, and entries at or below the persisted applied index are skipped, so
// replaying the log tail after a crash is idempotent. Before raft may compact
// its log, the snapshot path syncs Badger (see fsmSnapshot.Persist), so the
// durable state always covers what the log no longer holds.
//
// # Determinism
//
// Apply uses nothing but the log entry and the stored state: no clocks, no
// randomness, no map iteration order, no node-local settings. A key's version
// is derived from the raft index of the entry that wrote it and the write's
// position inside that entry (index<<20 | position), so versions grow with every
// write to a key, across deletes too, and a stale if_version can never match.
// An entry that cannot be decoded panics: stopping beats diverging. Domain
// outcomes (a failed condition, deleting an absent key) are values in Result.
//
// # Transactions
//
// A Command with Txn set is a one-shard transaction: comparisons, then one
// of two branches of puts, deletes and gets, all in one entry. A Command
// with a Phase is one step of a cross-shard transaction (twophase.go): a
// record on the first key's shard decides it; intents lock its keys on every
// participant until they are resolved. While a key holds an intent, plain
// writes and one-shard transactions touching it fail with Conflict, and
// reads of a key with a write intent fail with a *LockedError, so that
// nobody sees the state before an undecided write as if it were final. The
// replica counts its intents, so that with none (the usual case) no command
// or read looks for them.
//
// # Concurrency
//
// Raft calls ApplyBatch, Snapshot and Restore from one goroutine. Reads (Get,
// Scan, StateHash) may run concurrently from any goroutine; each sees one
// consistent Badger snapshot.
package fsm
