package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/cairndb/cairn/fsm"
)

// testOptions are the defaults with a smaller memtable, which keeps stores
// cheap and makes the per-transaction limits small enough to hit in tests.
// An empty dir gives an in-memory store.
func testOptions(dir string) fsm.Options {
	o := fsm.DefaultOptions(dir)
	o.MemTableSize = 8 << 20
	o.InMemory = dir == ""
	return o
}

// openStore opens a store in dir ("" for memory), closed when the test ends.
func openStore(t testing.TB, dir string) *fsm.Store {
	t.Helper()
	s, err := fsm.Open(testOptions(dir))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func openShard(t testing.TB, s *fsm.Store, id fsm.ShardID) *fsm.FSM {
	t.Helper()
	f, err := s.Shard(id)
	if err != nil {
		t.Fatalf("open %v: %v", id, err)
	}
	return f
}

// memShard is a replica of shard 1 in a fresh in-memory store.
func memShard(t testing.TB) *fsm.FSM {
	t.Helper()
	return openShard(t, openStore(t, ""), 1)
}

func cmdLog(index uint64, cmds ...fsm.Command) *raft.Log {
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: fsm.EncodeGroup(cmds)}
}

var configData = raft.EncodeConfiguration(raft.Configuration{Servers: []raft.Server{
	{Suffrage: raft.Voter, ID: "n1", Address: "127.0.0.1:1"},
	{Suffrage: raft.Voter, ID: "n2", Address: "127.0.0.1:2"},
}})

func confLog(index uint64) *raft.Log {
	return &raft.Log{Index: index, Term: 1, Type: raft.LogConfiguration, Data: configData}
}

// apply applies one entry holding cmds at the next index and returns its results.
func apply(t testing.TB, f *fsm.FSM, cmds ...fsm.Command) []fsm.Result {
	t.Helper()
	l := cmdLog(f.Applied()+1, cmds...)
	resp := f.ApplyBatch([]*raft.Log{l})
	if len(resp) != 1 {
		t.Fatalf("ApplyBatch returned %d responses for 1 entry", len(resp))
	}
	if f.Applied() != l.Index {
		t.Fatalf("applied index %d after applying entry %d", f.Applied(), l.Index)
	}
	return results(t, resp[0], len(cmds))
}

// apply1 applies a single command in its own entry.
func apply1(t testing.TB, f *fsm.FSM, ops ...fsm.Op) fsm.Result {
	t.Helper()
	return apply(t, f, fsm.Command{Ops: ops})[0]
}

func results(t testing.TB, resp any, n int) []fsm.Result {
	t.Helper()
	rs, ok := resp.([]fsm.Result)
	if !ok {
		t.Fatalf("response %T (%v), want []fsm.Result", resp, resp)
	}
	if len(rs) != n {
		t.Fatalf("%d results, want %d", len(rs), n)
	}
	return rs
}

// applyInBatches applies logs in batches of size n and returns the
// responses, one per entry.
func applyInBatches(f *fsm.FSM, logs []*raft.Log, n int) []any {
	var out []any
	for len(logs) > 0 {
		k := min(n, len(logs))
		out = append(out, f.ApplyBatch(logs[:k])...)
		logs = logs[k:]
	}
	return out
}

type stateSum struct {
	Index uint64
	Sum   [32]byte
}

func hashOf(t testing.TB, f *fsm.FSM) stateSum {
	t.Helper()
	i, s, err := f.StateHash()
	if err != nil {
		t.Fatalf("state hash: %v", err)
	}
	return stateSum{i, s}
}

func (s stateSum) String() string { return fmt.Sprintf("%d/%x", s.Index, s.Sum[:6]) }

func get(t testing.TB, f *fsm.FSM, key string) fsm.Item {
	t.Helper()
	it, err := f.Get([]byte(key))
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	return it
}

func wantValue(t testing.TB, f *fsm.FSM, key, value string, version uint64) {
	t.Helper()
	it := get(t, f, key)
	if string(it.Value) != value || it.Version != version || string(it.Key) != key {
		t.Fatalf("get %q = {%q %q v%s}, want {%q v%s}", key, it.Key, it.Value, fmtVer(it.Version), value, fmtVer(version))
	}
}

func wantAbsent(t testing.TB, f *fsm.FSM, key string) {
	t.Helper()
	it, err := f.Get([]byte(key))
	if !errors.Is(err, fsm.ErrNotFound) {
		t.Fatalf("get %q = %+v, %v; want ErrNotFound", key, it, err)
	}
}

// ver is the version written by the write at 1-based position pos of entry index.
func ver(index, pos uint64) uint64 { return index<<20 | pos }

func fmtVer(v uint64) string { return fmt.Sprintf("%d.%d", v>>20, v&(1<<20-1)) }

// fmtResult renders a result so that nil and empty slices compare equal.
func fmtResult(r fsm.Result) string {
	if r.Code != fsm.OK {
		return fmt.Sprintf("{mismatch op=%d key=%q cur=%s dup=%t}", r.FailedOp, r.Key, fmtVer(r.Current), r.Duplicate)
	}
	var b bytes.Buffer
	b.WriteString("{ok")
	for _, o := range r.Ops {
		fmt.Fprintf(&b, " %s/%t", fmtVer(o.Version), o.Existed)
	}
	fmt.Fprintf(&b, " dup=%t}", r.Duplicate)
	return b.String()
}

func fmtResp(resp any) string {
	rs, ok := resp.([]fsm.Result)
	if !ok {
		return fmt.Sprintf("%T(%v)", resp, resp)
	}
	var b bytes.Buffer
	for _, r := range rs {
		b.WriteString(fmtResult(r))
	}
	return "[" + b.String() + "]"
}

// scanAll returns every item of the replica, in order.
func scanAll(t testing.TB, f *fsm.FSM) []fsm.Item {
	t.Helper()
	res, err := f.Scan(fsm.ScanOptions{})
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	if res.More {
		t.Fatal("unlimited scan reported More")
	}
	return res.Items
}

func rawKeys(t testing.TB, f *fsm.FSM) map[uint32]map[byte]int {
	t.Helper()
	m, err := f.RawKeys()
	if err != nil {
		t.Fatalf("raw keys: %v", err)
	}
	return m
}

// dedupeBatches counts f's batched dedupe records: live ones, all, and
// batches of expired ones only.
func dedupeBatches(t testing.TB, f *fsm.FSM) (live, records, expired int) {
	t.Helper()
	live, records, expired, err := f.DedupeBatches()
	if err != nil {
		t.Fatalf("dedupe batches: %v", err)
	}
	return live, records, expired
}

func kv(k, v string) fsm.Op { return fsm.Put([]byte(k), []byte(v)) }
func del(k string) fsm.Op   { return fsm.Delete([]byte(k)) }
