package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/cairndb/cairn/fsm"
)

func TestCheck(t *testing.T) {
	s := openStore(t, t.TempDir())
	l := s.Limits()
	if l.MaxKeySize != 4<<10 || l.MaxValueSize != 1<<20 || l.MaxOps != 1024 || l.MaxFootprint <= 0 || l.MaxCount <= 0 {
		t.Fatalf("limits %+v", l)
	}
	big := func(n int) []byte { return bytes.Repeat([]byte{'x'}, n) }
	puts := func(n, keySize int) []fsm.Op {
		ops := make([]fsm.Op, n)
		for i := range ops {
			k := big(keySize)
			copy(k, fmt.Sprintf("%06d", i))
			ops[i] = fsm.Put(k, []byte("v"))
		}
		return ops
	}
	// Enough 4 KiB keys to exceed one transaction's share, but under MaxOps.
	tooBig := int(l.MaxFootprint/(4<<10)) + 1
	if tooBig > l.MaxOps {
		t.Fatalf("test needs %d ops over the footprint, more than MaxOps %d", tooBig, l.MaxOps)
	}

	tests := []struct {
		name string
		cmd  fsm.Command
		want error // nil: valid
	}{
		{"one put", fsm.Command{Ops: []fsm.Op{kv("k", "v")}}, nil},
		{"mixed with id and conditions", fsm.Command{RequestID: "req-1", Ops: []fsm.Op{kv("a", "1").If(0), del("b").If(7), del("c")}}, nil},
		{"empty value", fsm.Command{Ops: []fsm.Op{kv("k", "")}}, nil},
		{"largest key", fsm.Command{Ops: []fsm.Op{fsm.Put(big(4<<10), nil)}}, nil},
		{"largest value", fsm.Command{Ops: []fsm.Op{fsm.Put([]byte("k"), big(1<<20))}}, nil},
		{"MaxOps small writes", fsm.Command{Ops: puts(1024, 8)}, nil},
		{"request id of 256 bytes", fsm.Command{RequestID: string(big(256)), Ops: []fsm.Op{kv("k", "v")}}, nil},

		{"no writes", fsm.Command{}, fsm.ErrInvalid},
		{"empty key", fsm.Command{Ops: []fsm.Op{kv("a", "1"), kv("", "v")}}, fsm.ErrInvalid},
		{"empty key delete", fsm.Command{Ops: []fsm.Op{del("")}}, fsm.ErrInvalid},
		{"unknown op type", fsm.Command{Ops: []fsm.Op{{Type: 7, Key: []byte("k")}}}, fsm.ErrInvalid},
		{"delete with a value", fsm.Command{Ops: []fsm.Op{{Type: fsm.OpDelete, Key: []byte("k"), Value: []byte("v")}}}, fsm.ErrInvalid},
		{"key over 4 KiB", fsm.Command{Ops: []fsm.Op{fsm.Put(big(4<<10+1), nil)}}, fsm.ErrTooLarge},
		{"delete key over 4 KiB", fsm.Command{Ops: []fsm.Op{fsm.Delete(big(4<<10 + 1))}}, fsm.ErrTooLarge},
		{"value over 1 MiB", fsm.Command{Ops: []fsm.Op{fsm.Put([]byte("k"), big(1<<20+1))}}, fsm.ErrTooLarge},
		{"too many ops", fsm.Command{Ops: puts(1025, 8)}, fsm.ErrTooLarge},
		{"request id over 256 bytes", fsm.Command{RequestID: string(big(257)), Ops: []fsm.Op{kv("k", "v")}}, fsm.ErrTooLarge},
		{"too large for a transaction", fsm.Command{Ops: puts(tooBig, 4<<10)}, fsm.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Check(tt.cmd)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Check = %v, want %v", err, tt.want)
			}
			other := fsm.ErrTooLarge
			if tt.want == fsm.ErrTooLarge {
				other = fsm.ErrInvalid
			}
			if errors.Is(err, other) {
				t.Fatalf("Check = %v wraps both ErrInvalid and ErrTooLarge", err)
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	if err := fsm.DefaultOptions("/x").Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	mem := fsm.DefaultOptions("")
	mem.InMemory = true
	if err := mem.Validate(); err != nil {
		t.Fatalf("in-memory defaults: %v", err)
	}
	bad := fsm.DefaultOptions("")
	bad.MemTableSize = 1 << 20
	bad.NumMemtables = 0
	bad.ValueThreshold = 8
	bad.NumCompactors = 1
	bad.GCDiscardRatio = 1
	bad.TableRelease = 100 * time.Millisecond
	bad.BaseTableSize = 4 << 20 // above the memtable
	err := bad.Validate()
	for _, want := range []string{"Dir", "MemTableSize", "NumMemtables", "ValueThreshold", "NumCompactors", "GCDiscardRatio", "BaseTableSize", "TableRelease"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want a problem with %s", err, want)
		}
	}
	if _, err := fsm.Open(bad); err == nil {
		t.Fatal("Open accepted invalid options")
	}
	small := fsm.DefaultOptions("")
	small.BaseTableSize = 32 << 10
	if err := small.Validate(); err == nil || !strings.Contains(err.Error(), "BaseTableSize") {
		t.Fatalf("BaseTableSize of 32 KiB: %v", err)
	}
}

func TestOpenPassesTableSize(t *testing.T) {
	opts := testOptions(t.TempDir())
	opts.BaseTableSize = 768 << 10
	opts.ValueThreshold = 300
	s, err := fsm.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.BadgerOptions().BaseTableSize; got != 768<<10 {
		t.Fatalf("Badger's BaseTableSize %d, want %d", got, 768<<10)
	}
	if got := s.BadgerOptions().ValueThreshold; got != 300 {
		t.Fatalf("Badger's ValueThreshold %d, want 300", got)
	}
}

// A batch far larger than one Badger transaction, of entries that each pass
// Check near the footprint limit, applies completely: the applier splits it
// at entry boundaries.
//
// On disk: an in-memory Badger rejects values above the value threshold, and
// the dedupe record of a command this large is one.
func TestApplyBatchLargerThanTransaction(t *testing.T) {
	o := testOptions(t.TempDir())
	o.ValueThreshold = 1 << 10
	s, err := fsm.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	f := openShard(t, s, 1)
	l := s.Limits()

	value := bytes.Repeat([]byte{'v'}, 900) // below the value threshold: stored in the LSM
	command := func(entry, n int) fsm.Command {
		c := fsm.Command{RequestID: fmt.Sprintf("req-%03d", entry), Ops: make([]fsm.Op, n)}
		for i := range c.Ops {
			c.Ops[i] = fsm.Put(fmt.Appendf(nil, "e%03d/k%04d", entry, i), value)
		}
		return c
	}
	// The most writes one command may hold under the footprint limit.
	n := sort.Search(l.MaxOps, func(n int) bool { return s.Check(command(0, n+1)) != nil })
	if !errors.Is(s.Check(command(0, n+1)), fsm.ErrTooLarge) || n < 50 {
		t.Fatalf("%d writes of %d bytes fit one command; limits %+v", n, len(value), l)
	}

	const entries = 12 // 3 times what one Badger transaction holds
	var logs []*raft.Log
	for e := 1; e <= entries; e++ {
		logs = append(logs, cmdLog(uint64(len(logs)+1), command(e, n)))
		if e%5 == 0 {
			logs = append(logs, confLog(uint64(len(logs)+1)))
		}
	}
	resp := f.ApplyBatch(logs)

	last := logs[len(logs)-1].Index
	if f.Applied() != last {
		t.Fatalf("applied %d, want %d", f.Applied(), last)
	}
	if got, want := f.AppliedCommands(), uint64(entries); got != want {
		t.Fatalf("applied commands %d, want %d", got, want)
	}
	e := 0
	for i, lg := range logs {
		if lg.Type != raft.LogCommand {
			if resp[i] != nil {
				t.Fatalf("entry %d: response %v for a configuration entry", lg.Index, resp[i])
			}
			continue
		}
		e++
		r := results(t, resp[i], 1)[0]
		if r.Code != fsm.OK || len(r.Ops) != n || r.Ops[n-1].Version != ver(lg.Index, uint64(n)) {
			t.Fatalf("entry %d: %d results, code %v", lg.Index, len(r.Ops), r.Code)
		}
		it := get(t, f, fmt.Sprintf("e%03d/k%04d", e, n-1))
		if it.Version != ver(lg.Index, uint64(n)) || !bytes.Equal(it.Value, value) {
			t.Fatalf("entry %d: last key at %s", lg.Index, fmtVer(it.Version))
		}
	}
	if items := scanAll(t, f); len(items) != entries*n {
		t.Fatalf("%d keys stored, want %d", len(items), entries*n)
	}

	// Same state as a replica that applied the entries one by one.
	ref := openShard(t, openStore(t, t.TempDir()), 1)
	applyInBatches(ref, logs, 1)
	if a, b := hashOf(t, f), hashOf(t, ref); a != b {
		t.Fatalf("hash after one big batch %v, entry by entry %v", a, b)
	}
	// The dedupe records were written too.
	if r := apply(t, f, command(3, 1))[0]; !r.Duplicate {
		t.Fatalf("retry of an entry of the big batch: %s", fmtResult(r))
	}
}

// In-memory Badger keeps every value inline; its limits must admit only what
// it can store, and everything admitted must apply.
func TestInMemoryLargestValueApplies(t *testing.T) {
	s := openStore(t, "")
	f := openShard(t, s, 1)
	l := s.Limits()
	if l.MaxValueSize >= 1<<20 {
		t.Fatalf("in-memory store admits values of %d bytes, more than it can hold inline", l.MaxValueSize)
	}
	big := bytes.Repeat([]byte{'v'}, l.MaxValueSize)
	cmd := fsm.Command{RequestID: "big", Ops: []fsm.Op{fsm.Put([]byte("big"), big)}}
	if err := s.Check(cmd); err != nil {
		t.Fatalf("largest value rejected: %v", err)
	}
	over := fsm.Command{Ops: []fsm.Op{fsm.Put([]byte("big"), append(big, 'x'))}}
	if err := s.Check(over); !errors.Is(err, fsm.ErrTooLarge) {
		t.Fatalf("value over the limit: got %v", err)
	}
	if r := apply(t, f, cmd)[0]; r.Code != fsm.OK {
		t.Fatalf("apply: %v", r.Err())
	}
	if it := get(t, f, "big"); !bytes.Equal(it.Value, big) {
		t.Fatalf("read back %d bytes, want %d", len(it.Value), len(big))
	}
}
