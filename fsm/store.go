package fsm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Options configure a node's Badger store. The sizes matter for correctness as
// well as speed: the largest command a replica can apply depends on
// MemTableSize, so every node of a cluster must use the same value (see Limits).
type Options struct {
	// Dir holds the Badger files. Ignored when InMemory is set.
	Dir string
	// InMemory keeps everything in memory (tests only: nothing survives Close).
	InMemory bool
	// Logger receives Badger's log lines. Default: discard.
	Logger *slog.Logger

	// MemTableSize bounds each memtable; it also caps one Badger transaction
	// at 15% of it. Default 16 MiB (a 2.4 MB transaction: values at or above
	// ValueThreshold go to the value log and count only as pointers).
	MemTableSize int64
	// NumMemtables bounds memtables held in memory. Default 3.
	NumMemtables int
	// BlockCacheSize and IndexCacheSize bound Badger's caches.
	// Defaults 32 MiB and 16 MiB: with the memtables, about 100 MiB of
	// memory for a node (docs/benchmarks.md measures it).
	BlockCacheSize int64
	IndexCacheSize int64
	// ValueThreshold: values at least this large (with their 8-byte
	// version header) go to the value log, written once; smaller ones stay
	// in the LSM tree, which compaction rewrites level by level, dropping
	// overwritten versions as it goes. Default 1 KiB. With 128 bytes,
	// loading 1M new keys of 256-byte values wrote half the bytes per key
	// and ran a fifth to a third faster, but overwriting 10,000 keys for
	// seven minutes left 2.4 times the disk and 1.5 times the memory, as
	// overwritten values wait in the value log for its GC (GCInterval)
	// (docs/benchmarks.md, "Memory after the same load").
	ValueThreshold int64
	// ValueLogFileSize: default 256 MiB.
	ValueLogFileSize int64
	// BaseTableSize is the size Badger aims for when compaction writes a
	// table below level 0 (levels under the base level double it, level
	// by level). Badger builds each table in memory, many at once during
	// a compaction, and with compression on a builder overshoots its size
	// while the compressing goroutines lag: smaller tables bound that
	// memory, at some cost in write throughput (docs/benchmarks.md,
	// "Memory: collections and compaction tables"). Default 2 MiB,
	// Badger's.
	BaseTableSize int64
	// NumCompactors: default 2.
	NumCompactors int
	// GCInterval is how often value-log GC runs; 0 turns it off.
	// Default 5 minutes.
	GCInterval time.Duration
	// GCDiscardRatio is passed to RunValueLogGC. Default 0.5.
	GCDiscardRatio float64
	// TableRelease is how often the store hands the kernel the pages of the
	// table files Badger wrote since the last time (and of value-log files
	// Badger stopped appending to), which would otherwise stay resident in
	// the process: see pages.go. Reads fault back in the pages they need.
	// 0 keeps written pages resident; otherwise at least 1 s. Linux only.
	// Default 1 s.
	TableRelease time.Duration
}

// DefaultOptions returns options for a small node (2 cores, a few GiB).
func DefaultOptions(dir string) Options {
	return Options{
		Dir:              dir,
		MemTableSize:     16 << 20,
		NumMemtables:     3,
		BlockCacheSize:   32 << 20,
		IndexCacheSize:   16 << 20,
		ValueThreshold:   1 << 10,
		ValueLogFileSize: 256 << 20,
		BaseTableSize:    2 << 20,
		NumCompactors:    2,
		GCInterval:       5 * time.Minute,
		GCDiscardRatio:   0.5,
		TableRelease:     time.Second,
	}
}

// Validate reports every problem with o.
func (o Options) Validate() error {
	var errs []error
	if o.Dir == "" && !o.InMemory {
		errs = append(errs, errors.New("fsm: Dir is required"))
	}
	if o.MemTableSize < 4<<20 {
		errs = append(errs, fmt.Errorf("fsm: MemTableSize %d is below 4 MiB", o.MemTableSize))
	}
	if o.NumMemtables < 1 {
		errs = append(errs, errors.New("fsm: NumMemtables must be at least 1"))
	}
	if o.ValueThreshold < 64 || o.ValueThreshold > 1<<20 {
		errs = append(errs, fmt.Errorf("fsm: ValueThreshold %d outside [64, 1 MiB]", o.ValueThreshold))
	}
	if o.BaseTableSize < 64<<10 || o.BaseTableSize > o.MemTableSize {
		errs = append(errs, fmt.Errorf("fsm: BaseTableSize %d outside [64 KiB, MemTableSize]", o.BaseTableSize))
	}
	if o.NumCompactors < 2 {
		errs = append(errs, errors.New("fsm: NumCompactors must be at least 2"))
	}
	if o.TableRelease < 0 || (o.TableRelease > 0 && o.TableRelease < time.Second) {
		// Pages released in the first moments after Badger wrote them
		// leave the process but stay in the page cache.
		errs = append(errs, fmt.Errorf("fsm: TableRelease %v: want 0 or at least 1s", o.TableRelease))
	}
	if o.GCInterval > 0 && (o.GCDiscardRatio <= 0 || o.GCDiscardRatio >= 1) {
		errs = append(errs, fmt.Errorf("fsm: GCDiscardRatio %v outside (0, 1)", o.GCDiscardRatio))
	}
	return errors.Join(errs...)
}

// Store is one node's Badger database, shared by all its shard replicas.
type Store struct {
	db     *badger.DB
	opts   Options
	logger *slog.Logger
	limits Limits

	mu     sync.Mutex
	shards map[ShardID]*FSM

	cancel      context.CancelFunc
	done        chan struct{}
	releaser    *pageReleaser // nil when pages are not released
	releaseDone chan struct{}
	close       sync.Once
}

// Open opens (or creates) the store and starts value-log GC.
func Open(opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	bo := badger.DefaultOptions(opts.Dir).
		WithInMemory(opts.InMemory).
		WithSyncWrites(false).
		WithDetectConflicts(false).
		WithMemTableSize(opts.MemTableSize).
		WithNumMemtables(opts.NumMemtables).
		WithNumLevelZeroTables(opts.NumMemtables).
		WithNumLevelZeroTablesStall(opts.NumMemtables * 4).
		WithBlockCacheSize(opts.BlockCacheSize).
		WithIndexCacheSize(opts.IndexCacheSize).
		WithValueThreshold(opts.ValueThreshold).
		WithValueLogFileSize(opts.ValueLogFileSize).
		WithBaseTableSize(opts.BaseTableSize).
		WithNumCompactors(opts.NumCompactors).
		WithCompression(options.Snappy).
		WithLogger(badgerLogger{logger})
	if opts.InMemory {
		// An in-memory Badger has no value log: every value stays in the
		// LSM, so size estimates must count values inline too.
		opts.ValueThreshold = maxInMemoryValue
		bo = bo.WithDir("").WithValueDir("").WithValueThreshold(opts.ValueThreshold)
	}
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("fsm: open badger: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		db:          db,
		opts:        opts,
		logger:      logger,
		limits:      limitsFor(db, opts),
		shards:      make(map[ShardID]*FSM),
		cancel:      cancel,
		done:        make(chan struct{}),
		releaseDone: make(chan struct{}),
	}
	go s.gcLoop(ctx)
	if opts.TableRelease > 0 && !opts.InMemory && pageReleaseSupported {
		s.releaser = newPageReleaser(opts.Dir)
		go s.releaseLoop(ctx, s.releaser, opts.TableRelease)
	} else {
		close(s.releaseDone)
	}
	return s, nil
}

// handBackPagesAfter records which pages of the store's files are mapped
// now and returns a function that hands back those mapped since, for work
// that reads many tables once: defer s.handBackPagesAfter()().
func (s *Store) handBackPagesAfter() func() {
	r := s.releaser
	if r == nil {
		return func() {}
	}
	before := r.mapped()
	return func() { r.releaseSince(before) }
}

// Limits returns the largest command this store can apply in one transaction.
func (s *Store) Limits() Limits { return s.limits }

// Sync makes every write so far durable.
func (s *Store) Sync() error { return s.db.Sync() }

// Size reports the LSM and value-log sizes in bytes.
func (s *Store) Size() (lsm, vlog int64) { return s.db.Size() }

// Close stops GC and closes the database. It is idempotent. Replicas must be
// shut down (their raft groups stopped) first.
func (s *Store) Close() error {
	var err error
	s.close.Do(func() {
		s.cancel()
		<-s.done
		<-s.releaseDone
		err = s.db.Close()
	})
	return err
}

func (s *Store) gcLoop(ctx context.Context) {
	defer close(s.done)
	if s.opts.GCInterval <= 0 || s.opts.InMemory {
		return
	}
	t := time.NewTicker(s.opts.GCInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for ctx.Err() == nil {
			err := s.db.RunValueLogGC(s.opts.GCDiscardRatio)
			if err != nil {
				if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
					s.logger.Warn("value log gc", "error", err)
				}
				break
			}
		}
	}
}

// Shard opens the replica of shard id, recovering from an interrupted restore.
// A replica is opened once per Store.
func (s *Store) Shard(id ShardID) (*FSM, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.shards[id]; ok {
		return nil, fmt.Errorf("fsm: %v is already open", id)
	}
	f := &FSM{store: s, db: s.db, id: id, logger: s.logger.With("shard", uint64(id)), notify: make(chan struct{}), pruneSlack: dedupePruneSlack}
	if err := f.recover(); err != nil {
		return nil, fmt.Errorf("fsm: open %v: %w", id, err)
	}
	s.shards[id] = f
	return f, nil
}

// Drop deletes every key of shard id (all generations), for a replica that
// moved to another node. The replica must not be open.
func (s *Store) Drop(id ShardID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.shards[id]; ok {
		return fmt.Errorf("fsm: drop %v: replica is open", id)
	}
	// Data first, the generation pointers last: a crash midway leaves a
	// replica whose pointer still names a generation being deleted, which
	// the next Drop finishes, rather than a pointerless half state.
	if err := s.deletePrefix(shardPrefix(id), genPrefix(id, 1)); err != nil {
		return fmt.Errorf("fsm: drop %v: %w", id, err)
	}
	if err := s.deletePrefix(genPrefix(id, 0), nil); err != nil {
		return fmt.Errorf("fsm: drop %v: %w", id, err)
	}
	return nil
}

// deletePrefix deletes the keys under prefix (from the key from on, if
// set) in batches. Badger's DropPrefix is not used because it refuses every
// write to the database while it runs, and the database is shared: the
// other shards' applies would fail. The tables it reads to find the keys are
// handed back afterwards, as after a snapshot (Options.TableRelease).
func (s *Store) deletePrefix(prefix, from []byte) error {
	defer s.handBackPagesAfter()()
	db := s.db
	const chunk = 4096
	seek := from
	if seek == nil {
		seek = prefix
	}
	for {
		var keys [][]byte
		err := db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			defer it.Close()
			for it.Seek(seek); it.Valid() && len(keys) < chunk; it.Next() {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			return nil
		})
		if err != nil || len(keys) == 0 {
			return err
		}
		wb := db.NewWriteBatch()
		for _, k := range keys {
			if err := wb.Delete(k); err != nil {
				wb.Cancel()
				return err
			}
		}
		if err := wb.Flush(); err != nil {
			return err
		}
		seek = append(keys[len(keys)-1], 0)
	}
}

// maxInMemoryValue is Badger's largest value threshold (1 MiB).
const maxInMemoryValue = 1 << 20

// badgerLogger routes Badger's logs to slog.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error(fmt.Sprintf(f, a...), "component", "badger")
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn(fmt.Sprintf(f, a...), "component", "badger")
}
func (b badgerLogger) Infof(f string, a ...any) {
	b.l.Debug(fmt.Sprintf(f, a...), "component", "badger")
}
func (b badgerLogger) Debugf(f string, a ...any) {
	b.l.Debug(fmt.Sprintf(f, a...), "component", "badger")
}

// Footprint estimates the bytes and Badger entries cmd adds to an apply
// transaction. Proposers use it to size group-commit entries.
func (s *Store) Footprint(cmd Command) (bytes, count int64) {
	return footprint(cmd, s.opts.ValueThreshold)
}

// Close releases the replica so that the Store can open it again (after its
// raft group was shut down). Its data stays.
func (f *FSM) Close() {
	f.store.mu.Lock()
	defer f.store.mu.Unlock()
	if f.store.shards[f.id] == f {
		delete(f.store.shards, f.id)
	}
}
