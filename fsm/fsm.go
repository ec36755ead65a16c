package fsm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
)

// DedupeWindow is how many log entries a request ID is remembered for: a retry
// at most DedupeWindow entries after the first outcome is a duplicate, unless
// DedupeCommands bounds it first. It is a constant, not a setting: it decides
// outcomes in Apply and must be identical on every replica.
const DedupeWindow = 100_000

// DedupeCommands bounds the same memory by commands: a request ID is also
// forgotten once more than DedupeCommands commands have applied on its shard
// after the one that recorded it. Group commit puts several commands in one
// entry, so under load this is the bound that holds; it caps a replica's
// live dedupe records at DedupeCommands. A constant for the same reason.
const DedupeCommands = 100_000

// dedupeExpired reports whether a request recorded at index can no longer
// match a retry at entry. Lookups and StateHash use it rather than whether
// pruning has removed the record yet: how far pruning has got depends on
// batch boundaries, which differ between replicas.
func dedupeExpired(recorded, entry uint64) bool { return recorded+DedupeWindow < entry }

// dedupeCommandsExpired is the same for commands: a request recorded as
// command number seq (the replica's applied-command count once it applied)
// can no longer match command number cmd. Records written before this bound
// existed carry no number (seq 0) and expire by entries alone.
func dedupeCommandsExpired(seq, cmd uint64) bool { return seq != 0 && seq+DedupeCommands < cmd }

// dedupePrunePerBatch bounds the records one ApplyBatch prunes.
const dedupePrunePerBatch = 512

// dedupePruneSlack is how many commands (or entries) past the expiry of the
// oldest live record apply waits before it prunes again, so that one prune
// removes a few hundred records: each prune opens a Badger iterator, which
// cost about 5% of a node's CPU under puts when apply pruned after every
// batch. Expired records left for that long answer no retry (lookups check
// expiry themselves); they only take room.
const dedupePruneSlack = dedupePrunePerBatch / 2

// FSM is one shard replica's state machine. It implements raft.BatchingFSM.
type FSM struct {
	store  *Store
	db     *badger.DB
	id     ShardID
	logger *slog.Logger

	// mu guards gen against the swap at the end of Restore. Readers hold it
	// shared for the length of their read; ApplyBatch runs on the goroutine that
	// swaps, so it reads gen without locking.
	mu  sync.RWMutex
	gen uint32

	// persisting is held shared while a snapshot streams from a generation,
	// and exclusively by Restore before it drops the generation it replaced.
	persisting sync.RWMutex

	applied atomic.Uint64 // last index whose effects are in Badger
	// intents counts this replica's transaction intents; never below what
	// Badger holds (apply adds before writing one and subtracts after
	// committing its removal), so at zero nobody needs to look for
	// intents. A reader must load it before it opens its Badger
	// transaction (readView): a transaction opened earlier keeps seeing an
	// intent whose removal has since committed and been subtracted.
	intents atomic.Int64
	// rangeLocks counts the range locks among them, kept the same way:
	// at zero, apply need not look for range locks (every write would
	// otherwise open an iterator over them while any intent exists).
	rangeLocks atomic.Int64
	// locked holds every key with an intent in the current generation,
	// exactly as apply has written them: apply looks an intent up in
	// Badger only for a key in it. Most lookups are of keys without one,
	// whose past intents' deletion markers Badger would otherwise seek
	// through its tables. Owned by the apply goroutine (Open and Restore
	// set it when apply is not running).
	locked map[string]struct{}
	// recent points apply at the batched dedupe record of a request ID.
	recent atomic.Pointer[dedupeIndex]
	// dedupes spares apply the Badger read for request IDs that older
	// builds' records (written one per ID) do not hold.
	dedupes atomic.Pointer[dedupeFilter]
	meta    appliedMeta // owned by the apply goroutine
	// pruneFrom is the last dedupe index entry prune deleted, and the
	// generation it belongs to (owned by the apply goroutine). The next
	// prune starts there rather than at the first key, so that it does not
	// walk over the deletion markers of every entry pruned before, which
	// stay in Badger until compaction drops them.
	pruneFrom struct {
		gen uint32
		key []byte
	}
	// pruneBatchFrom is the same for batches of dedupe records.
	pruneBatchFrom struct {
		gen uint32
		key []byte
	}
	// pruneAt is when apply next prunes (owned by the apply goroutine):
	// once the applied index or command count reaches it, in generation
	// gen. Before that no record can have expired for dedupePruneSlack
	// commands or entries. The zero value prunes at the next batch.
	pruneAt struct {
		gen             uint32
		index, commands uint64
	}
	// pruneSlack is dedupePruneSlack; tests set 0 to prune as soon as a
	// record has expired.
	pruneSlack uint64
	// prunes counts prune passes (each opens an iterator), for tests.
	prunes   atomic.Uint64
	notifyMu sync.Mutex
	notify   chan struct{} // closed and replaced whenever applied grows

	// failRestore, set by tests, makes Restore stop as a crash would after
	// staging that many records.
	failRestore int
	// viewOpened, set by tests, runs in readView once its Badger
	// transaction is open, before the read.
	viewOpened func()
}

// appliedMeta is stored at [gen]['a'] with every applied batch.
type appliedMeta struct {
	Index    uint64
	Term     uint64
	Commands uint64 // commands applied (duplicates included): numbers dedupe records, and replay checks use it
}

func (m appliedMeta) encode() []byte {
	b := make([]byte, 0, 24)
	b = binary.BigEndian.AppendUint64(b, m.Index)
	b = binary.BigEndian.AppendUint64(b, m.Term)
	return binary.BigEndian.AppendUint64(b, m.Commands)
}

func decodeAppliedMeta(b []byte) (appliedMeta, error) {
	if len(b) != 24 {
		return appliedMeta{}, fmt.Errorf("applied index record of %d bytes", len(b))
	}
	return appliedMeta{
		Index:    binary.BigEndian.Uint64(b),
		Term:     binary.BigEndian.Uint64(b[8:]),
		Commands: binary.BigEndian.Uint64(b[16:]),
	}, nil
}

// ID returns the replica's shard.
func (f *FSM) ID() ShardID { return f.id }

// Applied returns the last raft index whose effects are in the store.
func (f *FSM) Applied() uint64 { return f.applied.Load() }

// AppliedCommands returns how many commands this replica has applied.
// Replaying the log tail after a crash must not change it.
func (f *FSM) AppliedCommands() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var m appliedMeta
	_ = f.db.View(func(txn *badger.Txn) error {
		var err error
		m, err = f.readMeta(txn, f.gen)
		return err
	})
	return m.Commands
}

// WaitApplied blocks until Applied() >= index or ctx ends.
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	for {
		f.notifyMu.Lock()
		ch := f.notify
		f.notifyMu.Unlock()
		if f.applied.Load() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("fsm: wait for index %d (applied %d): %w", index, f.applied.Load(), ctx.Err())
		}
	}
}

// AppliedChanged returns a channel closed the next time Applied grows.
func (f *FSM) AppliedChanged() <-chan struct{} {
	f.notifyMu.Lock()
	defer f.notifyMu.Unlock()
	return f.notify
}

func (f *FSM) setApplied(m appliedMeta) {
	f.meta = m
	f.applied.Store(m.Index)
	f.notifyMu.Lock()
	close(f.notify)
	f.notify = make(chan struct{})
	f.notifyMu.Unlock()
}

// recover runs at open: it finishes or undoes an interrupted restore, drops
// generations older than the current one and loads the applied index.
func (f *FSM) recover() error {
	var gen, staging uint32
	err := f.db.View(func(txn *badger.Txn) error {
		var err error
		if gen, err = readUint32(txn, pointerKey(f.id, spaceCurrentGen)); err != nil {
			return err
		}
		staging, err = readUint32(txn, pointerKey(f.id, spaceRestoring))
		return err
	})
	if err != nil {
		return err
	}
	if gen == 0 {
		gen = 1
		if err := f.db.Update(func(txn *badger.Txn) error {
			return txn.Set(pointerKey(f.id, spaceCurrentGen), binary.BigEndian.AppendUint32(nil, gen))
		}); err != nil {
			return err
		}
	}
	if staging != 0 {
		f.logger.Warn("removing interrupted snapshot restore", "generation", staging)
		if err := f.store.deletePrefix(genPrefix(f.id, staging), nil); err != nil {
			return err
		}
		if err := f.db.Update(func(txn *badger.Txn) error { return txn.Delete(pointerKey(f.id, spaceRestoring)) }); err != nil {
			return err
		}
	}
	if err := f.dropOlderGenerations(gen); err != nil {
		return err
	}
	if err := f.db.Sync(); err != nil {
		return err
	}
	f.gen = gen
	n, locks, locked, err := f.countIntents(gen)
	if err != nil {
		return err
	}
	f.intents.Store(n)
	f.rangeLocks.Store(locks)
	f.locked = locked
	var m appliedMeta
	if err := f.db.View(func(txn *badger.Txn) error {
		var err error
		m, err = f.readMeta(txn, gen)
		return err
	}); err != nil {
		return err
	}
	d, recent, err := f.loadDedupes(gen, m)
	if err != nil {
		return err
	}
	f.dedupes.Store(d)
	f.recent.Store(recent)
	f.setApplied(m)
	return nil
}

// dropOlderGenerations removes any generation in [1, current) that a crash
// after a restore's swap left behind.
func (f *FSM) dropOlderGenerations(current uint32) error {
	for {
		var stale uint32
		err := f.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: shardPrefix(f.id)})
			defer it.Close()
			it.Seek(genPrefix(f.id, 1))
			if it.Valid() {
				g := binary.BigEndian.Uint32(it.Item().Key()[shardPrefixLen:])
				if g < current {
					stale = g
				}
			}
			return nil
		})
		if err != nil || stale == 0 {
			return err
		}
		f.logger.Info("dropping old generation", "generation", stale)
		if err := f.store.deletePrefix(genPrefix(f.id, stale), nil); err != nil {
			return err
		}
	}
}

func readUint32(txn *badger.Txn, key []byte) (uint32, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var v uint32
	err = item.Value(func(b []byte) error {
		if len(b) != 4 {
			return fmt.Errorf("pointer of %d bytes", len(b))
		}
		v = binary.BigEndian.Uint32(b)
		return nil
	})
	return v, err
}

func (f *FSM) readMeta(txn *badger.Txn, gen uint32) (appliedMeta, error) {
	item, err := txn.Get(newKeyspace(f.id, gen).applied())
	if errors.Is(err, badger.ErrKeyNotFound) {
		return appliedMeta{}, nil
	}
	if err != nil {
		return appliedMeta{}, err
	}
	var m appliedMeta
	err = item.Value(func(b []byte) error {
		m, err = decodeAppliedMeta(b)
		return err
	})
	return m, err
}

// Apply implements raft.FSM for a single entry.
func (f *FSM) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch implements raft.BatchingFSM. All entries of the batch go into one
// Badger transaction together with the new applied index; if the batch is too
// large for one transaction it is split at entry boundaries, each part carrying
// the applied index of its last entry. Entries at or below the applied index
// are skipped (their response is nil). The response of a command entry is a
// []Result, one per Command of the group.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	resp := make([]any, len(logs))
	a := f.newApplier()
	for i, l := range logs {
		if l.Index <= f.meta.Index {
			continue
		}
		a.cur = l.Index
		if l.Type == raft.LogCommand {
			cmds, err := DecodeGroup(l.Data)
			if err != nil {
				// Every replica holds the same bytes: applying nothing and
				// continuing would diverge from a replica with a fixed decoder.
				panic(fmt.Sprintf("fsm: %v: undecodable entry at index %d: %v", f.id, l.Index, err))
			}
			a.makeRoom(cmds)
			resp[i] = a.applyEntry(l.Index, cmds)
		}
		a.meta.Index, a.meta.Term = l.Index, l.Term
	}
	a.commit()
	return resp
}

// applier accumulates one Badger transaction of an ApplyBatch.
type applier struct {
	f      *FSM
	ks     keyspace
	txn    *badger.Txn
	meta   appliedMeta
	cur    uint64 // entry being applied, for error messages
	bytes  int64
	count  int64
	pruned bool
	// pending holds the dedupe records of this transaction, written as
	// batches when it commits.
	pending []dedupeRecord
	// released counts intents removed in this transaction (and
	// releasedLocks the range locks among them); subtracted from
	// FSM.intents (FSM.rangeLocks) once it has committed.
	released, releasedLocks int64
}

func (f *FSM) newApplier() *applier {
	return &applier{f: f, ks: newKeyspace(f.id, f.gen), txn: f.db.NewTransaction(true), meta: f.meta}
}

// makeRoom commits the transaction so far if cmds might not fit beside it.
func (a *applier) makeRoom(cmds []Command) {
	var b, c int64
	for _, cmd := range cmds {
		cb, cc := footprint(cmd, a.f.store.opts.ValueThreshold)
		b, c = b+cb, c+cc
	}
	lim := a.f.store.limits
	if a.count > 0 && (a.bytes+b > 2*lim.MaxFootprint || a.count+c > 2*lim.MaxCount) {
		a.commit()
		a.txn = a.f.db.NewTransaction(true)
	}
	a.bytes += b
	a.count += c
}

func (a *applier) commit() {
	if a.meta.Index == a.f.meta.Index {
		a.txn.Discard()
		return
	}
	a.writeRecords()
	a.prune()
	a.must(a.txn.Set(a.ks.applied(), a.meta.encode()))
	a.must(a.txn.Commit())
	a.f.intents.Add(-a.released)
	a.f.rangeLocks.Add(-a.releasedLocks)
	a.released, a.releasedLocks = 0, 0
	a.f.setApplied(a.meta)
	a.bytes, a.count = 0, 0
}

// must stops the replica on a storage error inside apply: carrying on would
// acknowledge writes that are not in the state.
func (a *applier) must(err error) {
	if err != nil {
		panic(fmt.Sprintf("fsm: %v: apply at index %d: %v", a.f.id, a.cur, err))
	}
}

func (a *applier) applyEntry(index uint64, cmds []Command) []Result {
	results := make([]Result, len(cmds))
	pos := uint64(0)
	for i, cmd := range cmds {
		a.meta.Commands++
		// A command that cannot write is not deduplicated: running it
		// again changes nothing, and a duplicate could not repeat what it
		// read (a retry of a read-only transaction must read afresh).
		dedupe := cmd.RequestID != "" && cmd.writes()
		if dedupe {
			if r, ok := a.lookup(index, cmd.RequestID); ok {
				r.Duplicate = true
				results[i] = r
				pos += cmd.positions()
				continue
			}
		}
		if cmd.Phase != nil {
			base := pos
			pos += cmd.positions()
			results[i] = a.applyPhase(index, base, cmd)
		} else {
			results[i] = a.applyCommand(index, &pos, cmd)
		}
		// A conflict applied nothing and is not remembered: a retry
		// under the same ID runs again once the key is free.
		if dedupe && results[i].Code != Conflict {
			a.remember(index, cmd.RequestID, results[i].encode(cmd))
		}
	}
	return results
}

// lookup finds a live record of id for the current command, at entry
// index: a batched one, else one that an older build wrote. Every batched
// record is newer than those: if id's newest batched record has expired,
// so have they.
func (a *applier) lookup(index uint64, id string) (Result, bool) {
	if seq, ok := a.f.recent.Load().find(a.meta.Commands, id); ok {
		if rec, ok := a.lookupRecord(seq, id); ok {
			if rec.expired(index, a.meta.Commands) {
				return Result{}, false
			}
			r, err := decodeResult(rec.result)
			a.must(err)
			return r, true
		}
	}
	if a.f.dedupes.Load().mayHave(index, id) {
		return a.dedupe(index, id)
	}
	return Result{}, false
}

// dedupe looks id up among the records of older builds: one per request ID
// and entry (spaceDedupe), or one per request ID (spaceDedupeOld).
func (a *applier) dedupe(index uint64, id string) (Result, bool) {
	// The newest record is the last; it is newer than any record of an
	// older build, so if it has expired, so has that.
	prefix := a.ks.dedupeOf(id)
	it := a.txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	var last []byte
	var recorded uint64
	for it.Rewind(); it.Valid(); it.Next() {
		v, err := it.Item().ValueCopy(nil)
		a.must(err)
		last, recorded = v, binary.BigEndian.Uint64(it.Item().Key()[len(prefix):])
	}
	it.Close()
	if last == nil {
		return a.dedupeOld(index, id)
	}
	if len(last) < 8 {
		a.must(fmt.Errorf("dedupe record of %d bytes", len(last)))
	}
	if dedupeExpired(recorded, index) || dedupeCommandsExpired(binary.BigEndian.Uint64(last), a.meta.Commands) {
		return Result{}, false
	}
	r, err := decodeResult(last[8:])
	a.must(err)
	return r, true
}

// dedupeOld looks id up among the records of builds before the command
// bound, which expire by entries alone.
func (a *applier) dedupeOld(index uint64, id string) (Result, bool) {
	item, err := a.txn.Get(a.ks.dedupeOld(id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Result{}, false
	}
	a.must(err)
	var r Result
	var expired bool
	a.must(item.Value(func(b []byte) error {
		if len(b) < 8 {
			return fmt.Errorf("dedupe record of %d bytes", len(b))
		}
		if expired = dedupeExpired(binary.BigEndian.Uint64(b), index); expired {
			return nil // not pruned yet
		}
		r, err = decodeResult(b[8:])
		return err
	}))
	return r, !expired
}

// decodeDedupeSeq reads an index entry's value: the command number, or
// nothing (0) in entries written before commands bounded the window.
func decodeDedupeSeq(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// applyCommand applies all ops of cmd or none. Conditions are checked in op
// order against the state as changed by the command's earlier ops. A
// transaction first evaluates its comparisons against the state before it,
// then runs the branch they select; its gets see its earlier writes.
func (a *applier) applyCommand(index uint64, pos *uint64, cmd Command) Result {
	type pending struct {
		key     []byte
		version uint64 // 0: delete
		value   []byte
	}
	base := *pos
	*pos += cmd.positions()
	if res, ok := a.conflict("", cmd.Keys(), cmd.writeKeys()); ok {
		return res
	}
	ops, offset, succeeded := cmd.Ops, uint64(0), true
	if cmd.Txn {
		for _, cmp := range cmd.If {
			if !a.holds(cmp) {
				succeeded = false
				break
			}
		}
		if !succeeded {
			ops, offset = cmd.Else, uint64(len(cmd.Ops))
		}
	}
	overlay := make([]pending, 0, len(ops))
	// lookup returns key's version (0: absent) and, with value, its value.
	lookup := func(key []byte, value bool) (uint64, []byte) {
		for i := len(overlay) - 1; i >= 0; i-- {
			if bytes.Equal(overlay[i].key, key) {
				return overlay[i].version, overlay[i].value
			}
		}
		if value {
			return a.read(key)
		}
		return a.version(key), nil
	}
	res := Result{Ops: make([]OpResult, len(ops)), Succeeded: cmd.Txn && succeeded}
	for i, op := range ops {
		// An unconditional put needs nothing of the key's current state, so
		// it skips the lookup (a Badger read per put is a large share of
		// apply's cost).
		var cur uint64
		var val []byte
		if op.IfVersion != nil || op.Type != OpPut {
			cur, val = lookup(op.Key, op.Type == OpGet)
		}
		if op.IfVersion != nil && *op.IfVersion != cur {
			return Result{Code: VersionMismatch, FailedOp: i, Key: op.Key, Current: cur}
		}
		switch op.Type {
		case OpPut:
			v := index<<20 | (base + offset + uint64(i) + 1)
			overlay = append(overlay, pending{key: op.Key, version: v, value: op.Value})
			res.Ops[i].Version = v
		case OpDelete:
			res.Ops[i].Existed = cur != 0
			if cur != 0 {
				overlay = append(overlay, pending{key: op.Key})
			}
		case OpGet:
			if cur != 0 {
				res.Ops[i] = OpResult{Version: cur, Found: true, Value: bytes.Clone(val)}
			}
		}
	}
	for _, p := range overlay {
		k := a.ks.data(p.key)
		if p.version == 0 {
			a.must(a.txn.Delete(k))
			continue
		}
		a.putData(p.key, p.version, p.value)
	}
	return res
}

// putData stores key's value with its version (the version first, 8 bytes
// big-endian, as decodeItem reads it).
func (a *applier) putData(key []byte, version uint64, value []byte) {
	a.must(a.txn.Set(a.ks.data(key), append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(value)), version), value...)))
}

// holds evaluates a transaction's comparison against the stored state
// (reading the value only when the comparison needs it).
func (a *applier) holds(cmp Compare) bool {
	if cmp.Kind == CompareValue {
		return cmp.Holds(a.read(cmp.Key))
	}
	return cmp.Holds(a.version(cmp.Key), nil)
}

// read returns key's version (0 if absent) and a copy of its value.
func (a *applier) read(key []byte) (uint64, []byte) {
	item, err := a.txn.Get(a.ks.data(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	a.must(err)
	it, err := decodeItem(key, item)
	a.must(err)
	return it.Version, it.Value
}

// version returns the stored version of key, 0 if absent.
func (a *applier) version(key []byte) uint64 { return a.header(a.ks.data(key)) }

// header returns the 8-byte big-endian header that data values (version) and
// older builds' dedupe records (index) start with, 0 if the key is absent.
func (a *applier) header(key []byte) uint64 {
	item, err := a.txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0
	}
	a.must(err)
	var v uint64
	a.must(item.Value(func(b []byte) error {
		if len(b) < 8 {
			return fmt.Errorf("record %q of %d bytes", key, len(b))
		}
		v = binary.BigEndian.Uint64(b)
		return nil
	}))
	return v
}

// prune forgets dedupe records that no later command can match: older than
// DedupeWindow entries, or than DedupeCommands commands. It runs only once
// the oldest live record has been expired for the prune slack, so that one
// pass removes many (each pass opens iterators).
func (a *applier) prune() {
	if a.pruned {
		return
	}
	a.pruned = true
	if at := a.f.pruneAt; at.gen == a.f.gen && a.meta.Index < at.index && a.meta.Commands < at.commands {
		return
	}
	a.f.prunes.Add(1)
	var cutoff uint64
	if a.meta.Index > DedupeWindow {
		cutoff = a.meta.Index - DedupeWindow
	}
	oldIndex, oldSeq, oldMore := a.pruneIndexed(cutoff)
	index, commands, more := a.pruneBatches(cutoff)
	a.f.pruneAt.gen = a.f.gen
	if oldMore || more {
		a.f.pruneAt.index, a.f.pruneAt.commands = 0, 0 // more may have expired: go on next batch
		return
	}
	// The oldest live record expires once the applied index passes its
	// index+DedupeWindow, or the command count reaches its
	// number+DedupeCommands; an older build's record (number 0) only by
	// entries. (Records of one entry in the older index sort by ID, not by
	// number, so another of that entry's may expire a few commands sooner:
	// it waits for the next prune.)
	a.f.pruneAt.index = min(oldIndex, index) + DedupeWindow + 1 + a.f.pruneSlack
	a.f.pruneAt.commands = commands + DedupeCommands + a.f.pruneSlack
	if oldSeq != 0 {
		a.f.pruneAt.commands = min(a.f.pruneAt.commands, oldSeq+DedupeCommands+a.f.pruneSlack)
	}
}

// pruneIndexed prunes the records of older builds, one per request ID with
// an index entry each, which a replica upgraded in place still holds. It
// returns where the oldest live one sits (its index and command number), or
// more if it stopped at dedupePrunePerBatch.
func (a *applier) pruneIndexed(cutoff uint64) (liveIndex, liveSeq uint64, more bool) {
	prefix := a.ks.dedupeIdxPrefix()
	it := a.txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	from := prefix
	if p := a.f.pruneFrom; p.gen == a.f.gen && p.key != nil {
		from = p.key // deleted: everything before it is too
	}
	type entry struct {
		key []byte
		old bool // an older build's: its record is under spaceDedupeOld
	}
	var doomed []entry
	// Where the oldest live record sits: none means none is left (records
	// are no longer written this way).
	liveIndex, liveSeq = math.MaxUint64-DedupeWindow-1-a.f.pruneSlack, 0
	for it.Seek(from); it.Valid() && len(doomed) < dedupePrunePerBatch; it.Next() {
		k := it.Item().KeyCopy(nil)
		var seq uint64
		a.must(it.Item().Value(func(b []byte) error {
			seq = decodeDedupeSeq(b)
			return nil
		}))
		// Expired for every command after this batch's last.
		index := binary.BigEndian.Uint64(k[len(prefix):])
		if index >= cutoff && !dedupeCommandsExpired(seq, a.meta.Commands+1) {
			liveIndex, liveSeq = index, seq
			break
		}
		doomed = append(doomed, entry{k, seq == 0})
	}
	it.Close()
	for _, d := range doomed {
		index, id := binary.BigEndian.Uint64(d.key[len(prefix):]), string(d.key[len(prefix)+8:])
		a.must(a.txn.Delete(d.key))
		if !d.old {
			a.must(a.txn.Delete(a.ks.dedupe(id, index)))
			continue
		}
		// An older build's record is keyed by ID alone, and the ID may
		// have applied again after it expired: keep that newer record.
		if a.header(a.ks.dedupeOld(id)) == index {
			a.must(a.txn.Delete(a.ks.dedupeOld(id)))
		}
	}
	if len(doomed) > 0 {
		a.f.pruneFrom.gen, a.f.pruneFrom.key = a.f.gen, doomed[len(doomed)-1].key
	}
	return liveIndex, liveSeq, len(doomed) == dedupePrunePerBatch
}
