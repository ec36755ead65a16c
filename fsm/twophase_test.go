package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"

	"github.com/cairndb/cairn/fsm"
)

func phase(p fsm.Phase) fsm.Command { return fsm.Command{Phase: &p} }

func status(t *testing.T, f *fsm.FSM, p fsm.Phase) fsm.TxnStatus {
	t.Helper()
	r := apply(t, f, phase(p))[0]
	if r.Code != fsm.OK {
		t.Fatalf("%s: %s", p.Kind, fmtResult(r))
	}
	return r.Status
}

// The record goes pending → committed or aborted and never changes after;
// an abort on someone else's behalf waits for the deadline.
func TestTxnRecordLifecycle(t *testing.T) {
	f := memShard(t)
	begin := fsm.Phase{Kind: fsm.PhaseBegin, TxnID: "t1", Deadline: 1000, Participants: []fsm.ShardID{1, 2}}
	steps := []struct {
		name string
		p    fsm.Phase
		want fsm.TxnStatus
	}{
		{"begin", begin, fsm.TxnPending},
		{"begin again changes nothing", fsm.Phase{Kind: fsm.PhaseBegin, TxnID: "t1", Deadline: 5}, fsm.TxnPending},
		{"abort before the deadline is refused", fsm.Phase{Kind: fsm.PhaseDecide, TxnID: "t1", Now: 999}, fsm.TxnPending},
		{"heartbeat extends", fsm.Phase{Kind: fsm.PhaseHeartbeat, TxnID: "t1", Deadline: 2000}, fsm.TxnPending},
		{"heartbeat never shortens", fsm.Phase{Kind: fsm.PhaseHeartbeat, TxnID: "t1", Deadline: 1500}, fsm.TxnPending},
		{"abort at the old deadline is refused", fsm.Phase{Kind: fsm.PhaseDecide, TxnID: "t1", Now: 1999}, fsm.TxnPending},
		{"abort past the deadline", fsm.Phase{Kind: fsm.PhaseDecide, TxnID: "t1", Now: 2001}, fsm.TxnAborted},
		{"commit after an abort loses", fsm.Phase{Kind: fsm.PhaseDecide, TxnID: "t1", Commit: true}, fsm.TxnAborted},
		{"begin after an abort", begin, fsm.TxnAborted},
		{"heartbeat after an abort", fsm.Phase{Kind: fsm.PhaseHeartbeat, TxnID: "t1", Deadline: 9000}, fsm.TxnAborted},

		{"begin t2", fsm.Phase{Kind: fsm.PhaseBegin, TxnID: "t2", Deadline: 1000}, fsm.TxnPending},
		{"commit t2", fsm.Phase{Kind: fsm.PhaseDecide, TxnID: "t2", Commit: true}, fsm.TxnCommitted},
		{"abort after a commit loses", fsm.Phase{Kind: fsm.PhaseDecide, TxnID: "t2", Now: 99999}, fsm.TxnCommitted},
		{"the coordinator's own abort after a commit loses", fsm.Phase{Kind: fsm.PhaseDecide, TxnID: "t2"}, fsm.TxnCommitted},
		{"forget t2", fsm.Phase{Kind: fsm.PhaseForget, TxnID: "t2"}, fsm.TxnCommitted},

		{"a decision on an unknown record aborts it", fsm.Phase{Kind: fsm.PhaseDecide, TxnID: "t3", Commit: true}, fsm.TxnAborted},
		{"and it stays aborted", fsm.Phase{Kind: fsm.PhaseBegin, TxnID: "t3", Deadline: 1000}, fsm.TxnAborted},
		{"forget of a pending record keeps it", fsm.Phase{Kind: fsm.PhaseForget, TxnID: "t4"}, fsm.TxnAborted},
	}
	for _, s := range steps {
		if got := status(t, f, s.p); got != s.want {
			t.Fatalf("%s: status %v, want %v", s.name, got, s.want)
		}
	}
	if _, _, found, err := f.Record("t2"); err != nil || found {
		t.Fatalf("t2 after forget: found %t, %v", found, err)
	}
	if st, deadline, found, err := f.Record("t1"); err != nil || !found || st != fsm.TxnAborted || deadline != 2000 {
		t.Fatalf("t1: %v %d %t %v", st, deadline, found, err)
	}
	// A pending record is not forgotten.
	status(t, f, fsm.Phase{Kind: fsm.PhaseBegin, TxnID: "t5", Deadline: 1})
	status(t, f, fsm.Phase{Kind: fsm.PhaseForget, TxnID: "t5"})
	if st, _, found, _ := f.Record("t5"); !found || st != fsm.TxnPending {
		t.Fatalf("pending t5 after forget: %v %t", st, found)
	}
}

func prepare(txn string, reads []fsm.Compare, writes ...fsm.Op) fsm.Command {
	return phase(fsm.Phase{Kind: fsm.PhasePrepare, TxnID: txn, RecordShard: 7, Reads: reads, Writes: writes})
}

func resolve(txn string, commit bool, keys ...string) fsm.Command {
	p := fsm.Phase{Kind: fsm.PhaseResolve, TxnID: txn, Commit: commit}
	for _, k := range keys {
		p.Keys = append(p.Keys, []byte(k))
	}
	return phase(p)
}

func wantLocked(t *testing.T, err error, key, txn string) {
	t.Helper()
	var le *fsm.LockedError
	if !errors.As(err, &le) || string(le.Key) != key || le.TxnID != txn || le.RecordShard != 7 || !errors.Is(err, fsm.ErrLocked) {
		t.Fatalf("err %v, want %q locked by %s (record on shard 7)", err, key, txn)
	}
}

func wantConflict(t *testing.T, r fsm.Result, key, holder string) {
	t.Helper()
	if r.Code != fsm.Conflict || string(r.Key) != key || r.Holder != holder || r.HolderShard != 7 || !errors.Is(r.Err(), fsm.ErrConflict) {
		t.Fatalf("result %+v, want a conflict on %q held by %s", r, key, holder)
	}
}

// One Resolve settles several transactions (More), each as its own
// Resolve would: commits land with their prepared versions, aborts vanish.
func TestBatchedResolve(t *testing.T) {
	s := openStore(t, t.TempDir()) // on disk: values past 1 KiB go to the value log, so a resolve's footprint is small
	f := openShard(t, s, 1)
	apply1(t, f, kv("b", "old")) // 1.1
	p1 := f.Applied() + 1
	apply(t, f, prepare("t1", nil, kv("a", "1")))
	apply(t, f, prepare("t2", nil, kv("b", "2"), kv("c", "3")))
	p3 := f.Applied() + 1
	apply(t, f, prepare("t3", nil, kv("d", "4")))
	cmd := resolve("t1", true, "a")
	cmd.Phase.More = []fsm.Resolution{
		{TxnID: "t2", Keys: [][]byte{[]byte("b"), []byte("c")}},
		{TxnID: "t3", Commit: true, Keys: [][]byte{[]byte("d")}},
	}
	if err := s.Check(cmd); err != nil {
		t.Fatalf("check: %v", err)
	}
	if r := apply(t, f, cmd)[0]; r.Code != fsm.OK {
		t.Fatalf("batched resolve: %s", fmtResult(r))
	}
	wantValue(t, f, "a", "1", ver(p1, 1))
	wantValue(t, f, "b", "old", ver(1, 1))
	wantAbsent(t, f, "c")
	wantValue(t, f, "d", "4", ver(p3, 1))
	if infos, _ := f.Intents(10); len(infos) != 0 {
		t.Fatalf("intents after the batched resolve: %+v", infos)
	}
	// More belongs to a resolve only.
	bad := prepare("t4", nil, kv("e", "5"))
	bad.Phase.More = cmd.Phase.More
	if err := s.Check(bad); !errors.Is(err, fsm.ErrInvalid) {
		t.Fatalf("check of a prepare with More: %v", err)
	}
}

// An intent written before prepares fixed versions (a replica upgraded in
// place) still commits, with a version from the resolve's entry.
func TestOldIntentResolvesWithTheResolvesVersion(t *testing.T) {
	f := memShard(t)
	apply1(t, f, kv("a", "1")) // 1.1
	if err := f.PutOldIntent("old", 7, []byte("a"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	_, err := f.Get([]byte("a"))
	wantLocked(t, err, "a", "old")
	index := f.Applied() + 1
	r := apply(t, f, resolve("old", true, "a"))[0]
	if r.Code != fsm.OK || len(r.Ops) != 1 || r.Ops[0].Version != ver(index, 1) {
		t.Fatalf("resolve of an old intent: %+v", r)
	}
	wantValue(t, f, "a", "2", ver(index, 1))
}

// Prepare validates the reads and locks every key; locked keys refuse other
// writers and readers until resolve; commit writes the intents' values with
// fresh versions, abort drops them.
func TestPrepareLocksAndResolveReleases(t *testing.T) {
	f := memShard(t)
	apply1(t, f, kv("a", "100"), kv("b", "0"), kv("gone", "x"), kv("seen", "s")) // 1.1 .. 1.4

	// A read that no longer holds: nothing is locked.
	r := apply(t, f, prepare("t1", []fsm.Compare{{Kind: fsm.CompareVersion, Key: []byte("a"), Version: ver(9, 9)}}, kv("a", "60")))[0]
	if r.Code != fsm.VersionMismatch || r.Current != ver(1, 1) {
		t.Fatalf("prepare with a stale read: %s", fmtResult(r))
	}
	if infos, _ := f.Intents(10); len(infos) != 0 {
		t.Fatalf("a failed prepare left intents: %+v", infos)
	}

	reads := []fsm.Compare{{Kind: fsm.CompareVersion, Key: []byte("a"), Version: ver(1, 1)}, {Kind: fsm.CompareVersion, Key: []byte("seen"), Version: ver(1, 4)}}
	// The prepare fixes the puts' versions: this entry's, by position in
	// the writes.
	prepIndex := f.Applied() + 1
	wantPrepared := []fsm.OpResult{{Version: ver(prepIndex, 1)}, {Version: ver(prepIndex, 2)}, {}}
	if r := apply(t, f, prepare("t1", reads, kv("a", "60"), kv("new", "n"), del("gone")))[0]; r.Code != fsm.OK || !reflect.DeepEqual(r.Ops, wantPrepared) {
		t.Fatalf("prepare: %s, ops %+v; want %+v", fmtResult(r), r.Ops, wantPrepared)
	}
	infos, err := f.Intents(10)
	if err != nil || len(infos) != 4 {
		t.Fatalf("intents %+v, %v; want a, gone, new, seen", infos, err)
	}
	for _, in := range infos {
		if in.TxnID != "t1" || in.RecordShard != 7 || in.Write != (string(in.Key) != "seen") {
			t.Fatalf("intent %+v", in)
		}
	}
	if first, _ := f.Intents(2); len(first) != 2 || string(first[1].Key) != "gone" {
		t.Fatalf("the first two intents: %+v", first)
	}

	// Writers of any locked key are refused, whatever else they touch.
	wantConflict(t, apply1(t, f, kv("free", "1"), kv("a", "1")), "a", "t1")
	wantConflict(t, apply1(t, f, kv("seen", "1")), "seen", "t1")
	wantConflict(t, apply(t, f, txn(nil, []fsm.Op{getOp("new")}, nil))[0], "new", "t1")
	wantConflict(t, apply(t, f, prepare("t2", nil, kv("gone", "again")))[0], "gone", "t1")
	wantAbsent(t, f, "free")
	// Preparing again (a retry) is harmless and keeps the versions.
	if r := apply(t, f, prepare("t1", reads, kv("a", "60"), kv("new", "n"), del("gone")))[0]; r.Code != fsm.OK || !reflect.DeepEqual(r.Ops, wantPrepared) {
		t.Fatalf("prepare again: %s, ops %+v; want %+v", fmtResult(r), r.Ops, wantPrepared)
	}

	// Readers of a written key must learn the decision first; a read lock
	// does not stop them.
	_, err = f.Get([]byte("a"))
	wantLocked(t, err, "a", "t1")
	var le *fsm.LockedError
	if errors.As(err, &le); !le.Found || string(le.Committed.Value) != "100" || le.Committed.Version != ver(1, 1) {
		t.Fatalf("locked get of a carries %+v, want the committed 100@1.1", le)
	}
	_, err = f.Get([]byte("new")) // absent, but about to exist
	wantLocked(t, err, "new", "t1")
	if errors.As(err, &le); le.Found {
		t.Fatalf("locked get of an absent key says found: %+v", le)
	}
	if it, err := f.Get([]byte("seen")); err != nil || string(it.Value) != "s" {
		t.Fatalf("read-locked key: %q %v", it.Value, err)
	}
	_, err = f.Scan(fsm.ScanOptions{Prefix: []byte("n")})
	wantLocked(t, err, "new", "t1")
	if res, err := f.Scan(fsm.ScanOptions{Start: []byte("b"), End: []byte("gone")}); err != nil || len(res.Items) != 1 {
		t.Fatalf("scan of [b, gone): %+v %v", res, err)
	}
	if res, err := f.Scan(fsm.ScanOptions{Start: []byte("seen")}); err != nil || len(res.Items) != 1 {
		t.Fatalf("scan of a read-locked key: %+v %v", res, err)
	}
	// A page that stops before the next locked key is served; one that
	// reaches a locked key is not.
	if res, err := f.Scan(fsm.ScanOptions{Start: []byte("b"), Limit: 1}); err != nil || len(res.Items) != 1 || !res.More {
		t.Fatalf("page [b] before the locked gone: %+v %v", res, err)
	}
	_, err = f.Scan(fsm.ScanOptions{Limit: 1})
	wantLocked(t, err, "a", "t1")
	// Backwards alike: what a reverse page covered is from its last key up.
	if res, err := f.Scan(fsm.ScanOptions{Reverse: true, Limit: 1}); err != nil || len(res.Items) != 1 || string(res.Items[0].Key) != "seen" || !res.More {
		t.Fatalf("reverse page [seen] after the locked new: %+v %v", res, err)
	}
	_, err = f.Scan(fsm.ScanOptions{Reverse: true, Limit: 2})
	wantLocked(t, err, "gone", "t1")
	_, err = f.Scan(fsm.ScanOptions{Start: []byte("h"), Reverse: true})
	wantLocked(t, err, "new", "t1")
	if res, err := f.Scan(fsm.ScanOptions{Start: []byte("b"), End: []byte("gone"), Reverse: true}); err != nil || len(res.Items) != 1 {
		t.Fatalf("reverse scan of [b, gone): %+v %v", res, err)
	}

	// Commit: values land with the versions the prepare fixed.
	index := prepIndex
	r = apply(t, f, resolve("t1", true, "a", "new", "gone", "seen", "unrelated"))[0]
	if r.Code != fsm.OK || len(r.Ops) != 5 || r.Ops[0].Version != ver(index, 1) || r.Ops[1].Version != ver(index, 2) ||
		!r.Ops[2].Existed || !reflect.DeepEqual(r.Ops[3], fsm.OpResult{}) || !reflect.DeepEqual(r.Ops[4], fsm.OpResult{}) {
		t.Fatalf("resolve: %+v", r)
	}
	wantValue(t, f, "a", "60", ver(index, 1))
	wantValue(t, f, "new", "n", ver(index, 2))
	wantAbsent(t, f, "gone")
	wantValue(t, f, "seen", "s", ver(1, 4))
	if infos, _ := f.Intents(10); len(infos) != 0 {
		t.Fatalf("intents after resolve: %+v", infos)
	}
	// Resolving again changes nothing; the keys are free.
	if r := apply(t, f, resolve("t1", true, "a", "new")); !reflect.DeepEqual(r[0].Ops[0], fsm.OpResult{}) {
		t.Fatalf("second resolve wrote: %+v", r)
	}
	wantValue(t, f, "a", "60", ver(index, 1))
	if r := apply1(t, f, kv("a", "61")); r.Code != fsm.OK {
		t.Fatalf("put after resolve: %s", fmtResult(r))
	}

	// Abort: nothing of the transaction stays.
	if r := apply(t, f, prepare("t3", nil, kv("b", "999"), del("a")))[0]; r.Code != fsm.OK {
		t.Fatalf("prepare t3: %s", fmtResult(r))
	}
	apply(t, f, resolve("t2", false, "b")) // another transaction's resolve leaves t3's intents
	if _, err := f.Get([]byte("b")); !errors.Is(err, fsm.ErrLocked) {
		t.Fatalf("b after a foreign resolve: %v", err)
	}
	apply(t, f, resolve("t3", false, "b", "a"))
	wantValue(t, f, "b", "0", ver(1, 2))
	if it, err := f.Get([]byte("a")); err != nil || string(it.Value) != "61" {
		t.Fatalf("a after abort: %q %v", it.Value, err)
	}
}

// Intents survive a restart and travel in snapshots, and readers still see
// them (the count that lets reads skip the lookup is rebuilt).
func TestIntentsSurviveReopenAndSnapshot(t *testing.T) {
	dir := t.TempDir()
	s, err := fsm.Open(testOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	f := openShard(t, s, 1)
	apply(t, f, prepare("t1", nil, kv("k", "v")))
	s.Close()

	s = openStore(t, dir)
	f = openShard(t, s, 1)
	_, err = f.Get([]byte("k"))
	wantLocked(t, err, "k", "t1")
	wantConflict(t, apply1(t, f, kv("k", "other")), "k", "t1")

	dst2 := openShard(t, openStore(t, ""), 1)
	snap := snapshotBytes(t, f)
	if err := dst2.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	_, err = dst2.Get([]byte("k"))
	wantLocked(t, err, "k", "t1")
	if a, b := hashOf(t, f), hashOf(t, dst2); a != b {
		t.Fatalf("hash %v after restore, %v at the source", b, a)
	}
	apply(t, dst2, resolve("t1", true, "k"))
	if it, err := dst2.Get([]byte("k")); err != nil || string(it.Value) != "v" {
		t.Fatalf("after resolve on the restored replica: %q %v", it.Value, err)
	}
}

// A retried phase returns its first outcome.
func TestPhaseRetryIsDeduplicated(t *testing.T) {
	f := memShard(t)
	status(t, f, fsm.Phase{Kind: fsm.PhaseBegin, TxnID: "t", Deadline: 10})
	decide := phase(fsm.Phase{Kind: fsm.PhaseDecide, TxnID: "t", Commit: true})
	decide.RequestID = "d1"
	if r := apply(t, f, decide)[0]; r.Status != fsm.TxnCommitted || r.Duplicate {
		t.Fatalf("decide: %+v", r)
	}
	status(t, f, fsm.Phase{Kind: fsm.PhaseForget, TxnID: "t"})
	if r := apply(t, f, decide)[0]; r.Status != fsm.TxnCommitted || !r.Duplicate {
		t.Fatalf("retried decide after forget: %+v (a fresh decide would find no record and abort)", r)
	}
	// A conflict is not remembered: the same request runs again once the
	// key is free.
	prep := prepare("u", nil, kv("x", "1"))
	apply(t, f, prepare("other", nil, kv("x", "0")))
	prep.RequestID = "p1"
	wantConflict(t, apply(t, f, prep)[0], "x", "other")
	apply(t, f, resolve("other", false, "x"))
	if again := apply(t, f, prep)[0]; again.Code != fsm.OK || again.Duplicate {
		t.Fatalf("retried prepare after the holder let go: %+v", again)
	}
}

func TestPhaseCheckRejects(t *testing.T) {
	s := openStore(t, "")
	for _, tt := range []struct {
		name string
		cmd  fsm.Command
		want error
	}{
		{"no txn id", phase(fsm.Phase{Kind: fsm.PhaseDecide}), fsm.ErrInvalid},
		{"unknown kind", phase(fsm.Phase{Kind: 9, TxnID: "t"}), fsm.ErrInvalid},
		{"begin without deadline", phase(fsm.Phase{Kind: fsm.PhaseBegin, TxnID: "t"}), fsm.ErrInvalid},
		{"empty prepare", prepare("t", nil), fsm.ErrInvalid},
		{"prepare with a get", prepare("t", nil, getOp("a")), fsm.ErrInvalid},
		{"prepare with a condition", prepare("t", nil, kv("a", "1").If(3)), fsm.ErrInvalid},
		{"read of another kind", prepare("t", []fsm.Compare{{Kind: fsm.CompareExists, Key: []byte("a")}}), fsm.ErrInvalid},
		{"read without key", prepare("t", []fsm.Compare{{Kind: fsm.CompareVersion}}), fsm.ErrInvalid},
		{"scan outside a prepare", phase(fsm.Phase{Kind: fsm.PhaseResolve, TxnID: "t", Scans: []fsm.ScanRead{{Start: []byte("a")}}}), fsm.ErrInvalid},
		{"empty scan range", scanPrepare("t", fsm.ScanRead{Start: []byte("b"), End: []byte("a")}), fsm.ErrInvalid},
		{"scan item outside its range", scanPrepare("t", fsm.ScanRead{Start: []byte("b"), End: []byte("c"), Items: []fsm.KeyVersion{{Key: []byte("a"), Version: 1}}}), fsm.ErrInvalid},
		{"scan items out of order", scanPrepare("t", fsm.ScanRead{Items: []fsm.KeyVersion{{Key: []byte("b"), Version: 1}, {Key: []byte("a"), Version: 1}}}), fsm.ErrInvalid},
		{"scan item without version", scanPrepare("t", fsm.ScanRead{Items: []fsm.KeyVersion{{Key: []byte("b")}}}), fsm.ErrInvalid},
		{"begin with keys", phase(fsm.Phase{Kind: fsm.PhaseBegin, TxnID: "t", Deadline: 1, Keys: [][]byte{[]byte("a")}}), fsm.ErrInvalid},
		{"phase with ops", fsm.Command{Ops: []fsm.Op{kv("a", "1")}, Phase: &fsm.Phase{Kind: fsm.PhaseDecide, TxnID: "t"}}, fsm.ErrInvalid},
		{"long txn id", phase(fsm.Phase{Kind: fsm.PhaseDecide, TxnID: string(make([]byte, 300))}), fsm.ErrTooLarge},
		{"long key", resolve("t", true, string(make([]byte, 5000))), fsm.ErrTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.Check(tt.cmd); !errors.Is(err, tt.want) {
				t.Fatalf("Check = %v, want %v", err, tt.want)
			}
		})
	}
	if err := s.Check(prepare("t", []fsm.Compare{{Kind: fsm.CompareVersion, Key: []byte("a")}}, kv("b", ""), del("c"))); err != nil {
		t.Fatalf("a valid prepare: %v", err)
	}
	if err := s.Check(scanPrepare("t", fsm.ScanRead{Start: []byte("a"), Items: []fsm.KeyVersion{{Key: []byte("a"), Version: 1}, {Key: []byte("b"), Version: 2}}})); err != nil {
		t.Fatalf("a valid scan prepare: %v", err)
	}
	if err := s.Check(resolve("t", true)); err != nil {
		t.Fatalf("a resolve releasing range locks only: %v", err)
	}
}

func scanPrepare(txn string, scans ...fsm.ScanRead) fsm.Command {
	return phase(fsm.Phase{Kind: fsm.PhasePrepare, TxnID: txn, RecordShard: 7, Scans: scans})
}

func scanOf(start, end string, items ...fsm.KeyVersion) fsm.ScanRead {
	sc := fsm.ScanRead{Start: []byte(start), Items: items}
	if end != "" {
		sc.End = []byte(end)
	}
	return sc
}

func kver(k string, v uint64) fsm.KeyVersion { return fsm.KeyVersion{Key: []byte(k), Version: v} }

// A prepare with a scan validates the range (same keys, same versions, no
// key added) and locks it: writers of any key in it, existing or not, get
// Conflict until the transaction resolves; readers and other scanners do
// not.
func TestPrepareScanValidatesAndLocksRange(t *testing.T) {
	f := memShard(t)
	apply1(t, f, kv("a1", "1"), kv("a2", "2"), kv("a3", "3"), kv("b1", "x")) // 1.1 .. 1.4
	whole := scanOf("a", "b", kver("a1", ver(1, 1)), kver("a2", ver(1, 2)), kver("a3", ver(1, 3)))

	for _, tt := range []struct {
		name string
		sc   fsm.ScanRead
	}{
		{"a key missing from the read", scanOf("a", "b", kver("a1", ver(1, 1)), kver("a3", ver(1, 3)))},
		{"a key read that is gone", scanOf("a", "b", kver("a1", ver(1, 1)), kver("a2", ver(1, 2)), kver("a25", ver(1, 2)), kver("a3", ver(1, 3)))},
		{"a stale version", scanOf("a", "b", kver("a1", ver(1, 1)), kver("a2", ver(1, 1)), kver("a3", ver(1, 3)))},
		{"an open range missing b1", scanOf("a", "", kver("a1", ver(1, 1)), kver("a2", ver(1, 2)), kver("a3", ver(1, 3)))},
	} {
		r := apply(t, f, scanPrepare("stale", tt.sc))[0]
		if r.Code != fsm.VersionMismatch || r.FailedOp != 0 {
			t.Fatalf("%s: %s, want a version mismatch of scan 0", tt.name, fmtResult(r))
		}
	}
	// The failed position counts reads first.
	r := apply(t, f, phase(fsm.Phase{Kind: fsm.PhasePrepare, TxnID: "stale", RecordShard: 7,
		Reads: []fsm.Compare{{Kind: fsm.CompareVersion, Key: []byte("b1"), Version: ver(1, 4)}},
		Scans: []fsm.ScanRead{whole, scanOf("c", "d", kver("c1", 5))}}))[0]
	if r.Code != fsm.VersionMismatch || r.FailedOp != 2 {
		t.Fatalf("second scan stale: %s, want failed op 2", fmtResult(r))
	}
	if infos, _ := f.Intents(10); len(infos) != 0 {
		t.Fatalf("failed prepares left locks: %+v", infos)
	}

	if r := apply(t, f, scanPrepare("t1", whole))[0]; r.Code != fsm.OK {
		t.Fatalf("prepare of a scan that holds: %s", fmtResult(r))
	}
	infos, err := f.Intents(10)
	if err != nil || len(infos) != 1 || !infos[0].Range || string(infos[0].Key) != "a" || string(infos[0].End) != "b" || infos[0].TxnID != "t1" || infos[0].Write {
		t.Fatalf("locks %+v, %v; want the range [a, b) of t1", infos, err)
	}
	wantConflict(t, apply1(t, f, kv("a25", "new")), "a25", "t1") // a phantom
	wantConflict(t, apply1(t, f, del("a1")), "a1", "t1")
	wantConflict(t, apply(t, f, prepare("t2", nil, kv("zz", "1"), kv("a0", "1")))[0], "a0", "t1")
	if r := apply1(t, f, kv("b2", "outside")); r.Code != fsm.OK {
		t.Fatalf("write outside the range: %s", fmtResult(r))
	}
	if it, err := f.Get([]byte("a2")); err != nil || string(it.Value) != "2" {
		t.Fatalf("read inside a range lock: %+v %v", it, err)
	}
	// Another transaction may read and scan the range, not write it.
	if r := apply(t, f, phase(fsm.Phase{Kind: fsm.PhasePrepare, TxnID: "t3", RecordShard: 7,
		Reads: []fsm.Compare{{Kind: fsm.CompareVersion, Key: []byte("a1"), Version: ver(1, 1)}}, Scans: []fsm.ScanRead{whole}}))[0]; r.Code != fsm.OK {
		t.Fatalf("a second reader of the range: %s", fmtResult(r))
	}
	// Resolving t1 and t3 (with no keys of theirs to name for t1) frees
	// the range.
	apply(t, f, resolve("t1", true), resolve("t3", false, "a1"))
	if infos, _ := f.Intents(10); len(infos) != 0 {
		t.Fatalf("locks after resolve: %+v", infos)
	}
	if r := apply1(t, f, kv("a25", "new")); r.Code != fsm.OK {
		t.Fatalf("write after the range was released: %s", fmtResult(r))
	}

	// A write intent of another transaction in a scanned range: the
	// scanner cannot know what the range will hold, so it conflicts.
	if r := apply(t, f, prepare("w", nil, kv("c5", "1")))[0]; r.Code != fsm.OK {
		t.Fatalf("prepare w: %s", fmtResult(r))
	}
	wantConflict(t, apply(t, f, scanPrepare("t4", scanOf("c", "d")))[0], "c5", "w")
	// A range lock in an open range catches keys past every existing one.
	apply(t, f, resolve("w", false, "c5"))
	if r := apply(t, f, scanPrepare("t5", scanOf("x", "")))[0]; r.Code != fsm.OK {
		t.Fatalf("prepare of an empty open range: %s", fmtResult(r))
	}
	wantConflict(t, apply1(t, f, kv("zzzz", "1")), "zzzz", "t5")
}

// The record shard's prepare begins the record in the same entry, and the
// decision resolves that shard's intents in its own entry.
func TestPrepareBeginsRecordAndDecideResolves(t *testing.T) {
	f := memShard(t)
	apply1(t, f, kv("b", "old")) // 1.1
	r := apply(t, f, phase(fsm.Phase{Kind: fsm.PhasePrepare, TxnID: "t", RecordShard: 7, Deadline: 5000, Participants: []fsm.ShardID{7, 8},
		Reads: []fsm.Compare{{Kind: fsm.CompareVersion, Key: []byte("b"), Version: ver(1, 1)}}, Writes: []fsm.Op{kv("a", "new"), del("b")}}))[0]
	if r.Code != fsm.OK || r.Status != fsm.TxnPending {
		t.Fatalf("prepare: %s status %v", fmtResult(r), r.Status)
	}
	if st, deadline, found, _ := f.Record("t"); !found || st != fsm.TxnPending || deadline != 5000 {
		t.Fatalf("record: %v %d %t", st, deadline, found)
	}
	if infos, _ := f.Intents(10); len(infos) != 2 {
		t.Fatalf("intents %+v, want a and b", infos)
	}
	// A failed prepare begins nothing.
	if r := apply(t, f, phase(fsm.Phase{Kind: fsm.PhasePrepare, TxnID: "u", RecordShard: 7, Deadline: 5000, Writes: []fsm.Op{kv("a", "u")}}))[0]; r.Code != fsm.Conflict {
		t.Fatalf("conflicting prepare: %s", fmtResult(r))
	}
	if _, _, found, _ := f.Record("u"); found {
		t.Fatal("a failed prepare created its record")
	}
	// A record decided before its prepare: nothing is locked.
	status(t, f, fsm.Phase{Kind: fsm.PhaseDecide, TxnID: "late", Now: 1})
	if r := apply(t, f, phase(fsm.Phase{Kind: fsm.PhasePrepare, TxnID: "late", RecordShard: 7, Deadline: 5000, Writes: []fsm.Op{kv("c", "x")}}))[0]; r.Code != fsm.OK || r.Status != fsm.TxnAborted {
		t.Fatalf("prepare of an aborted record: %s status %v", fmtResult(r), r.Status)
	}
	if infos, _ := f.Intents(10); len(infos) != 2 {
		t.Fatalf("intents %+v, want still a and b only", infos)
	}

	r = apply(t, f, phase(fsm.Phase{Kind: fsm.PhaseDecide, TxnID: "t", Commit: true, Keys: [][]byte{[]byte("a"), []byte("b")}}))[0]
	if r.Status != fsm.TxnCommitted || len(r.Ops) != 2 || r.Ops[0].Version == 0 || !r.Ops[1].Existed {
		t.Fatalf("decide with keys: %+v", r)
	}
	if it, err := f.Get([]byte("a")); err != nil || string(it.Value) != "new" || it.Version != r.Ops[0].Version {
		t.Fatalf("a = %+v %v", it, err)
	}
	if _, err := f.Get([]byte("b")); !errors.Is(err, fsm.ErrNotFound) {
		t.Fatalf("b: %v, want deleted", err)
	}
	if infos, _ := f.Intents(10); len(infos) != 0 {
		t.Fatalf("intents after the decision: %+v", infos)
	}

	// An abort with keys drops them.
	apply(t, f, phase(fsm.Phase{Kind: fsm.PhasePrepare, TxnID: "v", RecordShard: 7, Deadline: 10, Writes: []fsm.Op{kv("a", "v")}}))
	r = apply(t, f, phase(fsm.Phase{Kind: fsm.PhaseDecide, TxnID: "v", Now: 11, Keys: [][]byte{[]byte("a")}}))[0]
	if r.Status != fsm.TxnAborted {
		t.Fatalf("abort with keys: %+v", r)
	}
	if it, err := f.Get([]byte("a")); err != nil || string(it.Value) != "new" {
		t.Fatalf("a after the abort = %+v %v", it, err)
	}
	if infos, _ := f.Intents(10); len(infos) != 0 {
		t.Fatalf("intents after the abort: %+v", infos)
	}
}

// A range lock still stops writers after the store is reopened, and in a
// replica restored from a snapshot: both count the locks they hold again
// (apply looks for range locks only while it counts some).
func TestRangeLockSurvivesReopenAndRestore(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	f := openShard(t, s, 1)
	apply1(t, f, kv("a1", "1"))
	if r := apply(t, f, scanPrepare("t1", scanOf("a", "b", kver("a1", ver(1, 1)))))[0]; r.Code != fsm.OK {
		t.Fatalf("prepare: %s", fmtResult(r))
	}
	// A key intent too: apply keeps the locked keys in memory, which a
	// reopen and a restore must rebuild.
	if r := apply(t, f, prepare("t2", nil, kv("k", "v")))[0]; r.Code != fsm.OK {
		t.Fatalf("prepare t2: %s", fmtResult(r))
	}
	snap := snapshotBytes(t, f)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	reopened := openShard(t, openStore(t, dir), 1)
	wantConflict(t, apply1(t, reopened, kv("a5", "phantom")), "a5", "t1")
	wantConflict(t, apply1(t, reopened, kv("k", "other")), "k", "t2")

	restored := memShard(t)
	apply1(t, restored, kv("k", "before")) // state the restore replaces
	if err := restored.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	wantConflict(t, apply1(t, restored, kv("a5", "phantom")), "a5", "t1")
	wantConflict(t, apply1(t, restored, kv("k", "other")), "k", "t2")
	// Released there, writers pass, and the commit lands.
	apply(t, restored, resolve("t1", false))
	if r := apply1(t, restored, kv("a5", "now")); r.Code != fsm.OK {
		t.Fatalf("write after release: %s", fmtResult(r))
	}
	apply(t, restored, resolve("t2", true, "k"))
	if it, err := restored.Get([]byte("k")); err != nil || string(it.Value) != "v" {
		t.Fatalf("k after t2 committed: %q %v", it.Value, err)
	}
	if r := apply1(t, restored, kv("k", "later")); r.Code != fsm.OK {
		t.Fatalf("write after t2 resolved: %s", fmtResult(r))
	}
}

// Commit is the record shard's whole part in one step: it checks like a
// prepare, then writes and records the decision; a failed check records an
// abort; a record already decided wins. A decision asked for a record not
// written yet leaves it alone until the deadline the asker names.
func TestCommitInOneStep(t *testing.T) {
	f := memShard(t)
	apply1(t, f, kv("a", "1"), kv("b", "2")) // 1.1, 1.2
	commit := func(txn string, reads []fsm.Compare, writes ...fsm.Op) fsm.Command {
		return fsm.Command{RequestID: txn + "/commit", Phase: &fsm.Phase{Kind: fsm.PhaseCommit, TxnID: txn, RecordShard: 1, Now: 10,
			Participants: []fsm.ShardID{1, 2}, Reads: reads, Writes: writes}}
	}
	readA := []fsm.Compare{{Kind: fsm.CompareVersion, Key: []byte("a"), Version: ver(1, 1)}}

	// Not written yet: an asker before the deadline it names leaves the
	// record missing; without a deadline, or past it, the record is
	// aborted.
	if got := status(t, f, fsm.Phase{Kind: fsm.PhaseDecide, TxnID: "t1", Now: 50, Deadline: 100}); got != fsm.TxnPending {
		t.Fatalf("decide before the deadline on a missing record: %v", got)
	}
	if _, _, found, _ := f.Record("t1"); found {
		t.Fatal("a pending answer wrote a record")
	}
	index := f.Applied() + 1
	r := apply(t, f, commit("t1", readA, kv("a", "10"), kv("new", "n"), del("b")))[0]
	if r.Code != fsm.OK || r.Status != fsm.TxnCommitted || len(r.Ops) != 3 || r.Ops[0].Version != ver(index, 1) || r.Ops[1].Version != ver(index, 2) || !r.Ops[2].Existed {
		t.Fatalf("commit: %s", fmtResult(r))
	}
	wantValue(t, f, "a", "10", ver(index, 1))
	wantValue(t, f, "new", "n", ver(index, 2))
	wantAbsent(t, f, "b")
	if st, _, found, _ := f.Record("t1"); !found || st != fsm.TxnCommitted {
		t.Fatalf("t1's record: %v %t", st, found)
	}
	if infos, _ := f.Intents(10); len(infos) != 0 {
		t.Fatalf("a commit in one step left locks: %+v", infos)
	}
	// A retry is a duplicate; an abort afterwards loses.
	if r := apply(t, f, commit("t1", readA, kv("a", "99")))[0]; !r.Duplicate || r.Status != fsm.TxnCommitted {
		t.Fatalf("retried commit: %s", fmtResult(r))
	}
	if got := status(t, f, fsm.Phase{Kind: fsm.PhaseDecide, TxnID: "t1", Now: 1 << 40}); got != fsm.TxnCommitted {
		t.Fatalf("abort after the commit: %v", got)
	}

	// A stale read: nothing written, the record aborted.
	r = apply(t, f, commit("t2", readA, kv("a", "20")))[0]
	if r.Code != fsm.VersionMismatch || r.Status != fsm.TxnAborted || r.Current != ver(index, 1) {
		t.Fatalf("commit with a stale read: %s", fmtResult(r))
	}
	wantValue(t, f, "a", "10", ver(index, 1))
	if st, _, found, _ := f.Record("t2"); !found || st != fsm.TxnAborted {
		t.Fatalf("t2's record: %v %t", st, found)
	}

	// Another transaction's lock: a conflict naming it and its time.
	if r := apply(t, f, phase(fsm.Phase{Kind: fsm.PhasePrepare, TxnID: "other", RecordShard: 7, Now: 1234, Writes: []fsm.Op{kv("new", "x")}}))[0]; r.Code != fsm.OK {
		t.Fatalf("prepare: %s", fmtResult(r))
	}
	r = apply(t, f, commit("t3", nil, kv("new", "mine")))[0]
	if r.Code != fsm.Conflict || r.Holder != "other" || r.HolderShard != 7 || r.HolderSince != 1234 || r.Status != fsm.TxnAborted {
		t.Fatalf("commit over another's lock: %s", fmtResult(r))
	}
	apply(t, f, resolve("other", false, "new"))
	wantValue(t, f, "new", "n", ver(index, 2))

	// Given up on first (past the deadline, or with none): the commit loses.
	for _, p := range []fsm.Phase{{Kind: fsm.PhaseDecide, TxnID: "t4", Now: 100, Deadline: 100}, {Kind: fsm.PhaseDecide, TxnID: "t5", Now: 100}} {
		if got := status(t, f, p); got != fsm.TxnAborted {
			t.Fatalf("%s given up on: %v", p.TxnID, got)
		}
		if r := apply(t, f, commit(p.TxnID, nil, kv("late", "x")))[0]; r.Code != fsm.OK || r.Status != fsm.TxnAborted {
			t.Fatalf("commit of %s after it was given up on: %s", p.TxnID, fmtResult(r))
		}
	}
	wantAbsent(t, f, "late")

	// One Forget deletes many decided records; a pending one stays.
	status(t, f, fsm.Phase{Kind: fsm.PhaseBegin, TxnID: "p", Deadline: 1})
	if got := status(t, f, fsm.Phase{Kind: fsm.PhaseForget, TxnID: "t1", Keys: [][]byte{[]byte("t2"), []byte("p"), []byte("t4")}}); got != fsm.TxnCommitted {
		t.Fatalf("forget: %v, want t1's status", got)
	}
	for _, id := range []string{"t1", "t2", "t4"} {
		if _, _, found, _ := f.Record(id); found {
			t.Fatalf("%s not forgotten", id)
		}
	}
	if st, _, found, _ := f.Record("p"); !found || st != fsm.TxnPending {
		t.Fatalf("pending p after forget: %v %t", st, found)
	}
}

// A read whose Badger transaction opened while an intent was there reports
// the intent, even when the intent's resolve commits before the read looks
// for intents. By then the replica counts no intent, but the read's view
// still holds it beside the key's old value: returned as the committed
// value, that would hide a transaction that had committed (its record is
// on another shard) before the read began.
func TestReadReportsIntentResolvedUnderIt(t *testing.T) {
	f := memShard(t)
	apply1(t, f, kv("a", "old"))
	reads := []struct {
		name string
		read func() error
	}{
		{"get", func() error { _, err := f.Get([]byte("a")); return err }},
		{"scan", func() error { _, err := f.Scan(fsm.ScanOptions{}); return err }},
		{"reverse scan", func() error { _, err := f.Scan(fsm.ScanOptions{Reverse: true}); return err }},
	}
	for i, r := range reads {
		id := fmt.Sprintf("t%d", i)
		value := fmt.Sprintf("v%d", i)
		apply(t, f, prepare(id, nil, kv("a", value)))
		resolved := false
		f.OnViewOpened(func() {
			if !resolved {
				resolved = true
				if res := apply(t, f, resolve(id, true, "a"))[0]; res.Code != fsm.OK {
					t.Fatalf("resolve: %s", fmtResult(res))
				}
			}
		})
		err := r.read()
		f.OnViewOpened(nil)
		if !resolved {
			t.Fatalf("%s: the read opened no view", r.name)
		}
		wantLocked(t, err, "a", id)
		if got := get(t, f, "a"); string(got.Value) != value {
			t.Fatalf("%s: after the resolve a = %q, want %q", r.name, got.Value, value)
		}
	}
}
