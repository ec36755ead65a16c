package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/cairndb/cairn/fsm"
)

// pipeSink is a raft.SnapshotSink writing into one end of a pipe.
type pipeSink struct{ *io.PipeWriter }

var errSinkCancelled = errors.New("sink cancelled")

func (pipeSink) ID() string      { return "pipe" }
func (s pipeSink) Cancel() error { return s.CloseWithError(errSinkCancelled) }

// bufferSink is a raft.SnapshotSink collecting the snapshot in memory.
type bufferSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *bufferSink) ID() string    { return "buffer" }
func (s *bufferSink) Close() error  { s.closed = true; return nil }
func (s *bufferSink) Cancel() error { s.cancelled = true; return nil }

var (
	_ raft.SnapshotSink = pipeSink{}
	_ raft.SnapshotSink = (*bufferSink)(nil)
)

// snapshotBytes persists a snapshot of f into memory.
func snapshotBytes(t testing.TB, f *fsm.FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var sink bufferSink
	if err := snap.Persist(&sink); err != nil || !sink.closed || sink.cancelled {
		t.Fatalf("persist: %v (closed %t, cancelled %t)", err, sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

// streamSnapshot persists snap into dst's Restore through a pipe, both at once.
func streamSnapshot(snap raft.FSMSnapshot, dst *fsm.FSM) (persistErr, restoreErr error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- snap.Persist(pipeSink{pw}) }()
	restoreErr = dst.Restore(pr)
	return <-done, restoreErr
}

// fill writes n keys of valueSize bytes to f, many entries per batch. The
// entries are small enough for an in-memory store (whose Badger refuses
// values above the value threshold, dedupe records included).
func fill(t testing.TB, f *fsm.FSM, n, valueSize int) {
	t.Helper()
	const perEntry = 100
	var logs []*raft.Log
	for i := 0; i < n; i += perEntry {
		c := fsm.Command{RequestID: fmt.Sprintf("fill-%d", i)}
		for j := i; j < min(i+perEntry, n); j++ {
			v := bytes.Repeat([]byte{byte(j)}, valueSize)
			c.Ops = append(c.Ops, fsm.Put(fmt.Appendf(nil, "key/%06d", j), v))
		}
		logs = append(logs, cmdLog(f.Applied()+uint64(len(logs))+1, c))
	}
	for i, r := range f.ApplyBatch(logs) {
		if rs := results(t, r, 1); rs[0].Err() != nil {
			t.Fatalf("fill entry %d: %v", i, rs[0].Err())
		}
	}
}

func TestSnapshotRestoreStreamed(t *testing.T) {
	src := openShard(t, openStore(t, t.TempDir()), 1)
	const keys = 30_000
	fill(t, src, keys, 256)
	apply(t, src, fsm.Command{RequestID: "last", Ops: []fsm.Op{del("key/000000"), kv("extra", "x")}})
	want := hashOf(t, src)
	wantCommands := src.AppliedCommands()

	dst := openShard(t, openStore(t, t.TempDir()), 1)
	apply1(t, dst, kv("old-only", "gone after restore"))
	oldGen := dst.Generation()

	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	// The snapshot is the state when it was taken, not when it is persisted.
	later := []*raft.Log{
		cmdLog(want.Index+1, fsm.Command{Ops: []fsm.Op{del("key/000001"), kv("key/000002", "changed"), kv("later", "1")}}),
		confLog(want.Index + 2),
		cmdLog(want.Index+3, fsm.Command{RequestID: "last", Ops: []fsm.Op{kv("dup", "never")}}),
	}
	src.ApplyBatch(later)

	persistErr, restoreErr := streamSnapshot(snap, dst)
	if persistErr != nil || restoreErr != nil {
		t.Fatalf("persist: %v, restore: %v", persistErr, restoreErr)
	}
	if got := hashOf(t, dst); got != want || dst.Applied() != want.Index || dst.AppliedCommands() != wantCommands {
		t.Fatalf("restored %v (applied %d, %d commands), want %v (%d commands)", got, dst.Applied(), dst.AppliedCommands(), want, wantCommands)
	}
	items := scanAll(t, dst)
	if len(items) != keys {
		t.Fatalf("%d keys restored, want %d", len(items), keys)
	}
	wantAbsent(t, dst, "old-only")
	wantAbsent(t, dst, "key/000000")
	wantAbsent(t, dst, "later")
	if it := get(t, dst, "key/029999"); !bytes.Equal(it.Value, bytes.Repeat([]byte{29999 % 256}, 256)) {
		t.Fatalf("key/029999 = %x...", it.Value[:8])
	}
	// Only the new generation (and the pointer) is left.
	raw := rawKeys(t, dst)
	if len(raw) != 2 || raw[oldGen] != nil || raw[0][fsm.SpaceCurrentGen] != 1 || raw[0][fsm.SpaceRestoring] != 0 || raw[dst.Generation()][fsm.SpaceData] != keys {
		t.Fatalf("raw keys after restore: %v (old generation %d)", raw, oldGen)
	}

	// The restored replica applies what followed, like the source did.
	resp := dst.ApplyBatch(later)
	if got := fmtResp(resp[2]); got != "[{ok 0.0/true "+fmtVer(ver(want.Index, 2))+"/false dup=true}]" {
		t.Fatalf("dedupe record not restored: %s", got)
	}
	if a, b := hashOf(t, dst), hashOf(t, src); a != b {
		t.Fatalf("after applying the same entries: restored %v, source %v", a, b)
	}
	wantValue(t, dst, "key/000002", "changed", ver(want.Index+1, 2))

	// A second restore, from the snapshot of the restored replica, round-trips.
	again := openShard(t, openStore(t, ""), 1)
	if err := again.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, dst)))); err != nil {
		t.Fatal(err)
	}
	if a, b := hashOf(t, again), hashOf(t, dst); a != b {
		t.Fatalf("second generation restore %v, want %v", a, b)
	}
}

func TestRestoreRejectsDamagedSnapshot(t *testing.T) {
	src := memShard(t)
	fill(t, src, 300, 40)
	snap := snapshotBytes(t, src)

	dst := memShard(t)
	apply1(t, dst, kv("mine", "1"), kv("key/000001", "mine"))
	want := hashOf(t, dst)
	wantRaw := rawKeys(t, dst)

	flip := func(at int) []byte {
		b := bytes.Clone(snap)
		b[at] ^= 0x20
		return b
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"magic", flip(0)},
		{"shard id", flip(15)},
		{"applied index", flip(20)},
		{"first record", flip(45)},
		{"middle", flip(len(snap) / 2)},
		{"end marker", flip(len(snap) - 33)},
		{"checksum", flip(len(snap) - 1)},
		{"truncated header", snap[:30]},
		{"truncated half", snap[:len(snap)/2]},
		{"truncated checksum", snap[:len(snap)-1]},
		{"no checksum", snap[:len(snap)-32]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := dst.Restore(io.NopCloser(bytes.NewReader(tt.data))); err == nil {
				t.Fatal("damaged snapshot restored")
			}
			if got := hashOf(t, dst); got != want || dst.Applied() != want.Index {
				t.Fatalf("state after a rejected restore: %v, want %v", got, want)
			}
			wantValue(t, dst, "key/000001", "mine", ver(1, 2))
			if got := rawKeys(t, dst); !maps.EqualFunc(got, wantRaw, maps.Equal) {
				t.Fatalf("raw keys after a rejected restore: %v, want %v", got, wantRaw)
			}
		})
	}

	// The undamaged snapshot still restores, and a snapshot of another
	// shard is refused.
	if err := dst.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if a, b := hashOf(t, dst), hashOf(t, src); a != b {
		t.Fatalf("restored %v, want %v", a, b)
	}
	other := openShard(t, openStore(t, ""), 2)
	h := hashOf(t, other)
	if err := other.Restore(io.NopCloser(bytes.NewReader(snap))); err == nil {
		t.Fatal("snapshot of shard 1 restored into shard 2")
	}
	if hashOf(t, other) != h {
		t.Fatal("refused restore changed shard 2")
	}
}

// A restore that fails midway stops the stream and cancels the sink.
func TestPersistCancelsOnBrokenStream(t *testing.T) {
	src := memShard(t)
	fill(t, src, 5000, 100)
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	other := openShard(t, openStore(t, ""), 9) // refuses shard 1's snapshot after the header
	persistErr, restoreErr := streamSnapshot(snap, other)
	if restoreErr == nil || persistErr == nil {
		t.Fatalf("persist: %v, restore: %v; want both to fail", persistErr, restoreErr)
	}
}

// A crash in the middle of a restore leaves the old state, and nothing of
// the staged generation, once the store is reopened.
func TestRestoreCrashRecovers(t *testing.T) {
	src := memShard(t)
	fill(t, src, 5000, 64)
	snap := snapshotBytes(t, src)

	dir := t.TempDir()
	s := openStore(t, dir)
	dst := openShard(t, s, 1)
	apply(t, dst, fsm.Command{RequestID: "mine", Ops: []fsm.Op{kv("mine", "1"), kv("key/000001", "mine")}})
	dst.ApplyBatch([]*raft.Log{confLog(2)})
	want := hashOf(t, dst)
	gen := dst.Generation()

	dst.SetFailRestore(1000)
	if err := dst.Restore(io.NopCloser(bytes.NewReader(snap))); !errors.Is(err, fsm.ErrCrashed) {
		t.Fatalf("restore with a failpoint: %v", err)
	}
	// What a crash leaves: a marker and a half-written staging generation.
	raw := rawKeys(t, dst)
	staged := 0
	for _, n := range raw[gen+1] {
		staged += n
	}
	if raw[0][fsm.SpaceRestoring] != 1 || staged < 1000 || raw[gen+1][fsm.SpaceData] >= 5000 {
		t.Fatalf("failpoint left %v, want a marker and a partial generation %d", raw, gen+1)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, dir)
	dst = openShard(t, s, 1)
	if got := hashOf(t, dst); got != want || dst.Applied() != 2 || dst.Generation() != gen {
		t.Fatalf("after recovery: %v at generation %d, want %v at %d", got, dst.Generation(), want, gen)
	}
	wantValue(t, dst, "key/000001", "mine", ver(1, 2))
	raw = rawKeys(t, dst)
	if len(raw) != 2 || len(raw[0]) != 1 || raw[0][fsm.SpaceCurrentGen] != 1 || raw[gen] == nil {
		t.Fatalf("raw keys after recovery: %v, want only the pointer and generation %d", raw, gen)
	}
	if r := apply(t, dst, fsm.Command{RequestID: "mine", Ops: []fsm.Op{kv("mine", "2")}})[0]; !r.Duplicate {
		t.Fatalf("dedupe record lost in recovery: %s", fmtResult(r))
	}

	// Now a full restore succeeds and replaces everything.
	if err := dst.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if a, b := hashOf(t, dst), hashOf(t, src); a != b {
		t.Fatalf("restore after recovery: %v, want %v", a, b)
	}
	raw = rawKeys(t, dst)
	if len(raw) != 2 || raw[gen] != nil || raw[dst.Generation()][fsm.SpaceData] != 5000 {
		t.Fatalf("raw keys after the restore: %v", raw)
	}

	// And it survives a reopen, with a stale generation (as a crash after
	// the swap would leave) dropped on open.
	want = hashOf(t, dst)
	newGen := dst.Generation()
	if err := dst.WriteRaw(newGen-1, []byte("dstale"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	dst = openShard(t, openStore(t, dir), 1)
	if got := hashOf(t, dst); got != want || dst.Generation() != newGen {
		t.Fatalf("after reopen: %v at generation %d, want %v at %d", got, dst.Generation(), want, newGen)
	}
	if raw := rawKeys(t, dst); len(raw) != 2 || raw[newGen-1] != nil {
		t.Fatalf("stale generation kept: %v", raw)
	}
}
