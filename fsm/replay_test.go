package fsm_test

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/cairndb/cairn/fsm"
)

func countCommands(t testing.TB, logs []*raft.Log) uint64 {
	t.Helper()
	var n uint64
	for _, l := range logs {
		if l.Type == raft.LogCommand {
			cmds, err := fsm.DecodeGroup(l.Data)
			if err != nil {
				t.Fatal(err)
			}
			n += uint64(len(cmds))
		}
	}
	return n
}

func wantResponses(t testing.TB, what string, logs []*raft.Log, resp []any, want []string) {
	t.Helper()
	if len(resp) != len(logs) {
		t.Fatalf("%s: %d responses for %d entries", what, len(resp), len(logs))
	}
	for i, l := range logs {
		if got := fmtResp(resp[i]); got != want[i] {
			t.Fatalf("%s: entry %d: response %s, want %s", what, l.Index, got, want[i])
		}
	}
}

func wantAllNil(t testing.TB, what string, resp []any) {
	t.Helper()
	for i, r := range resp {
		if r != nil {
			t.Fatalf("%s: response %d of a replayed entry is %s, want nil", what, i, fmtResp(r))
		}
	}
}

// Replaying entries at or below the applied index changes nothing, in one
// process and after a reopen from disk.
func TestReplayIsIdempotent(t *testing.T) {
	const n = 60
	logs, want, m := randomLog(1, n+10)
	head := logs[:n]

	dir := t.TempDir()
	s := openStore(t, dir)
	f := openShard(t, s, 1)
	wantResponses(t, "first apply", head, applyInBatches(f, head, 5), want)
	h := hashOf(t, f)
	commands := f.AppliedCommands()
	if h.Index != n || commands != countCommands(t, head) {
		t.Fatalf("after 1..%d: hash index %d, %d commands; want %d", n, h.Index, commands, countCommands(t, head))
	}

	for _, size := range []int{n, 1, 7} {
		wantAllNil(t, fmt.Sprintf("replay 1..%d in batches of %d", n, size), applyInBatches(f, head, size))
		if got := hashOf(t, f); got != h || f.Applied() != n || f.AppliedCommands() != commands {
			t.Fatalf("replay in batches of %d moved the state: %v -> %v, %d commands", size, h, got, f.AppliedCommands())
		}
	}

	// An overlapping batch applies only its new part.
	ref := memShard(t)
	refResp := applyInBatches(ref, logs, 1)
	wantResponses(t, "reference", logs, refResp, want)

	overlap := logs[n/2:]
	resp := f.ApplyBatch(overlap)
	for i, l := range overlap {
		if l.Index <= n {
			if resp[i] != nil {
				t.Fatalf("entry %d was applied twice: %s", l.Index, fmtResp(resp[i]))
			}
		} else if got := fmtResp(resp[i]); got != want[l.Index-1] {
			t.Fatalf("entry %d: %s, want %s", l.Index, got, want[l.Index-1])
		}
	}
	h = hashOf(t, f)
	if ref := hashOf(t, ref); h != ref || h.Index != n+10 {
		t.Fatalf("after the overlapping batch: %v, reference %v", h, ref)
	}
	commands = f.AppliedCommands()
	if commands != countCommands(t, logs) || commands != m.commands {
		t.Fatalf("%d commands applied, the log holds %d", commands, countCommands(t, logs))
	}
	if got, want := fmtItems(scanAll(t, f)), m.items(); !slices.Equal(got, want) {
		t.Fatalf("data %q, model %q", got, want)
	}

	// The applied index, hash and command count survive a reopen, and
	// replaying the whole log again changes nothing.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir)
	f = openShard(t, s, 1)
	if got := hashOf(t, f); got != h || f.Applied() != n+10 || f.AppliedCommands() != commands {
		t.Fatalf("after reopen: hash %v applied %d commands %d; want %v, %d, %d", got, f.Applied(), f.AppliedCommands(), h, n+10, commands)
	}
	wantAllNil(t, "replay after reopen", f.ApplyBatch(logs))
	wantAllNil(t, "replay after reopen, one by one", applyInBatches(f, logs, 1))
	if got := hashOf(t, f); got != h || f.AppliedCommands() != commands {
		t.Fatalf("replay after reopen moved the state: %v -> %v", h, got)
	}
	if got, want := fmtItems(scanAll(t, f)), m.items(); !slices.Equal(got, want) {
		t.Fatalf("data after reopen %q, model %q", got, want)
	}

	// The reopened replica goes on applying like the reference.
	more := cmdLog(n+11, fsm.Command{RequestID: m.ids[0], Ops: []fsm.Op{kv("k00", "x")}}, fsm.Command{Ops: []fsm.Op{kv("new", "y")}})
	a, b := f.ApplyBatch([]*raft.Log{more}), ref.ApplyBatch([]*raft.Log{more})
	if fmtResp(a[0]) != fmtResp(b[0]) || hashOf(t, f) != hashOf(t, ref) {
		t.Fatalf("after reopen: %s vs reference %s", fmtResp(a[0]), fmtResp(b[0]))
	}
	if r := results(t, a[0], 2); !r[0].Duplicate || r[1].Ops[0].Version != ver(n+11, 2) {
		t.Fatalf("entry after reopen: %s", fmtResp(a[0]))
	}
}

// The same log gives the same state at the same index, whatever the batch
// boundaries, and matches the model.
func TestDeterminism(t *testing.T) {
	const n = 400
	logs, want, m := randomLog(42, n)

	a := memShard(t)
	hashes := make(map[uint64]stateSum, n)
	for i, l := range logs {
		wantResponses(t, "entry by entry", logs[i:i+1], a.ApplyBatch(logs[i:i+1]), want[i:i+1])
		hashes[l.Index] = hashOf(t, a)
	}
	if got := fmtItems(scanAll(t, a)); !slices.Equal(got, m.items()) {
		t.Fatalf("data %q, model %q", got, m.items())
	}
	if a.AppliedCommands() != m.commands {
		t.Fatalf("%d commands applied, model %d", a.AppliedCommands(), m.commands)
	}

	for _, size := range []int{7, 64} {
		b := openShard(t, openStore(t, ""), 1)
		for start := 0; start < len(logs); start += size {
			batch := logs[start:min(start+size, len(logs))]
			wantResponses(t, fmt.Sprintf("batches of %d", size), batch, b.ApplyBatch(batch), want[start:])
			last := batch[len(batch)-1].Index
			if got := hashOf(t, b); got != hashes[last] {
				t.Fatalf("batches of %d: hash at %d is %v, entry by entry %v", size, last, got, hashes[last])
			}
		}
	}
	// A different log gives a different hash: the hash sees the data.
	other, _, _ := randomLog(43, n)
	c := memShard(t)
	c.ApplyBatch(other)
	if hashOf(t, c) == hashes[n] {
		t.Fatal("two different logs hash equal")
	}
}

// A request ID is remembered for DedupeWindow entries, on every replica
// alike: a retry exactly DedupeWindow entries later is a duplicate, one entry
// later it applies again, whatever the batch boundaries and however far
// pruning has got.
func TestDedupeWindow(t *testing.T) {
	const w = fsm.DedupeWindow
	d := newDedupeLog()
	// Entry 1 records more request IDs than two batches prune, so that how
	// many expired records are left depends on the batch boundaries; entry
	// 1+j (j = 1..20) applies request id-j.
	d.bulk(1)
	d.firsts()
	for i := 22; i <= w+1; i++ {
		d.add(confLog(uint64(i)))
	}
	// Entry w+1+k retries IDs first applied k entries after the bulk.
	d.retries(w + 1)
	// The model's own expectations, spelled out for two entries.
	if d.want[w+1] != "[{ok 2.1/false dup=true}]" {
		t.Fatalf("model: entry w+2 = %s", d.want[w+1])
	}
	// Entry w+3: id-2 is w entries old, id-1 one more.
	if d.want[w+2] != fmt.Sprintf("[{ok 3.1/false dup=true}{ok %s/false dup=false}]", fmtVer(ver(w+3, 2))) {
		t.Fatalf("model: entry w+3 = %s", d.want[w+2])
	}
	d.check(t, w+1)
}

// A request ID is also forgotten after DedupeCommands more commands, even
// well inside DedupeWindow entries: a retry that is exactly the
// DedupeCommands-th command after the recording one is a duplicate, the next
// applies again, on every replica alike.
func TestDedupeCommandWindow(t *testing.T) {
	const c = fsm.DedupeCommands
	d := newDedupeLog()
	d.bulk(1) // commands 1..dedupeBulk, all expired once the retries begin
	d.firsts()
	// Entry 22 holds commands without request IDs (they record nothing),
	// up to command c+dedupeBulk, so the retry of id-1 (recorded as command
	// dedupeBulk+1) that comes next is exactly c commands after it.
	filler := make([]fsm.Command, c-20)
	d.add(cmdLog(22, filler...))
	d.retries(22)
	if d.m.commands < c+dedupeBulk {
		t.Fatalf("the log holds %d commands, want more than %d", d.m.commands, c+dedupeBulk)
	}
	if d.want[22] != "[{ok 2.1/false dup=true}]" {
		t.Fatalf("model: entry 23 = %s", d.want[22])
	}
	if d.want[23] != fmt.Sprintf("[{ok 3.1/false dup=true}{ok %s/false dup=false}]", fmtVer(ver(24, 2))) {
		t.Fatalf("model: entry 24 = %s", d.want[23])
	}
	d.check(t, 22)
}

// Records written before the command bound (keyed by ID alone, with empty
// index entries) still answer retries and expire by entries alone, so a data
// directory from such a build keeps its promises; pruning removes them, and
// records written since expire by commands.
func TestDedupeRecordsOfOlderBuilds(t *testing.T) {
	f := memShard(t)
	f.SetPruneSlack(0) // prune as soon as a record expires: the counts below are exact
	put := func(id, v string) fsm.Result {
		t.Helper()
		return apply(t, f, fsm.Command{RequestID: id, Ops: []fsm.Op{kv(id, v)}})[0]
	}
	old := put("old", "first") // entry 1
	if err := f.MakeDedupeOld(); err != nil {
		t.Fatal(err)
	}
	if raw := rawKeys(t, f)[f.Generation()]; raw[fsm.SpaceDedupeOld] != 1 || raw[fsm.SpaceDedupeIdx] != 1 || raw[fsm.SpaceDedupeBat] != 0 {
		t.Fatalf("after MakeDedupeOld: %v", raw)
	}
	put("new", "first")                                        // entry 2
	apply(t, f, make([]fsm.Command, fsm.DedupeCommands+10)...) // entry 3
	if r := put("old", "retry"); !r.Duplicate || r.Ops[0].Version != old.Ops[0].Version {
		t.Fatalf("retry of an older build's record: %+v, want the duplicate of %+v", r, old)
	}
	r := put("new", "retry") // entry 5
	if r.Duplicate || r.Ops[0].Version != ver(5, 1) {
		t.Fatalf("retry of a record %d commands old: %+v, want it applied again", fsm.DedupeCommands+11, r)
	}
	// Entries up to w+2: the older build's record (entry 1) expires by
	// entries, and pruning removes it with the expired record of entry 2.
	var conf []*raft.Log
	for i := uint64(6); i <= fsm.DedupeWindow+2; i++ {
		conf = append(conf, confLog(i))
	}
	f.ApplyBatch(conf)
	again := put("old", "again")
	if again.Duplicate || again.Ops[0].Version != ver(fsm.DedupeWindow+3, 1) {
		t.Fatalf("retry %d entries after an older build's record: %+v, want it applied again", fsm.DedupeWindow+2, again)
	}
	want := []string{"new=retry@" + fmtVer(r.Ops[0].Version), "old=again@" + fmtVer(again.Ops[0].Version)}
	if got := fmtItems(scanAll(t, f)); !slices.Equal(got, want) {
		t.Fatalf("data %q, want %q", got, want)
	}
	raw := rawKeys(t, f)[f.Generation()]
	live, records, _ := dedupeBatches(t, f)
	if raw[fsm.SpaceDedupeOld] != 0 || raw[fsm.SpaceDedupeIdx] != 0 || live != 2 || records != 2 {
		t.Fatalf("%d older records, %d index entries, %d batched records (%d live); want 0, 0, 2 (new at 5, old at w+3) and 2",
			raw[fsm.SpaceDedupeOld], raw[fsm.SpaceDedupeIdx], records, live)
	}
}

// Records of the builds before batches (one per ID and entry, each with an
// index entry) still answer retries in a replica upgraded in place, expire
// by entries and commands like batched ones, and pruning removes them.
func TestDedupeRecordsPerID(t *testing.T) {
	f := memShard(t)
	f.SetPruneSlack(0)
	put := func(id, v string) fsm.Result {
		t.Helper()
		return apply(t, f, fsm.Command{RequestID: id, Ops: []fsm.Op{kv(id, v)}})[0]
	}
	first := put("prev", "first") // entry 1, command 1
	if err := f.MakeDedupePerID(); err != nil {
		t.Fatal(err)
	}
	if raw := rawKeys(t, f)[f.Generation()]; raw[fsm.SpaceDedupe] != 1 || raw[fsm.SpaceDedupeIdx] != 1 || raw[fsm.SpaceDedupeBat] != 0 {
		t.Fatalf("after MakeDedupePerID: %v", raw)
	}
	if r := put("prev", "retry"); !r.Duplicate || r.Ops[0].Version != first.Ops[0].Version {
		t.Fatalf("retry of a per-ID record: %+v, want the duplicate of %+v", r, first)
	}
	// Command 2 was the retry; commands 3 to DedupeCommands leave the
	// record (command 1) exactly DedupeCommands behind the next.
	apply(t, f, make([]fsm.Command, fsm.DedupeCommands-2)...) // entry 3
	if r := put("prev", "again"); !r.Duplicate {
		t.Fatalf("retry %d commands after a per-ID record: %+v, want a duplicate", fsm.DedupeCommands, r)
	}
	if r := put("prev", "later"); r.Duplicate || r.Ops[0].Version != ver(5, 1) {
		t.Fatalf("retry %d commands after a per-ID record: %+v, want it applied again", fsm.DedupeCommands+1, r)
	}
	raw := rawKeys(t, f)[f.Generation()]
	live, records, _ := dedupeBatches(t, f)
	if raw[fsm.SpaceDedupe] != 0 || raw[fsm.SpaceDedupeIdx] != 0 || live != 1 || records != 1 {
		t.Fatalf("%d per-ID records, %d index entries, %d batched records (%d live); want 0, 0, 1 and 1",
			raw[fsm.SpaceDedupe], raw[fsm.SpaceDedupeIdx], records, live)
	}
	if got, want := fmtItems(scanAll(t, f)), []string{"prev=later@" + fmtVer(ver(5, 1))}; !slices.Equal(got, want) {
		t.Fatalf("data %q, want %q", got, want)
	}
}

// Apply prunes dedupe records in bulk: while nothing can have expired it
// opens no iterator, and then only once the oldest live record has been
// expired for DedupePruneSlack commands. So a replica holds the live
// records and at most the slack's worth of expired ones, and a record
// expired but not yet pruned answers no retry.
func TestDedupePruneCadence(t *testing.T) {
	const (
		c        = fsm.DedupeCommands
		slack    = fsm.DedupePruneSlack
		perEntry = 8
		entries  = 2000
		live     = entries * perEntry
	)
	f := memShard(t)
	next := 0 // IDs r-0, r-1, ... in the order they are recorded
	recorded := func() []fsm.Command {
		cmds := make([]fsm.Command, perEntry)
		for i := range cmds {
			id := fmt.Sprintf("r-%d", next)
			cmds[i] = fsm.Command{RequestID: id, Ops: []fsm.Op{del(id)}}
			next++
		}
		return cmds
	}
	// records counts the batched records and the expired ones among them.
	records := func() (int, int) {
		live, n, _ := dedupeBatches(t, f)
		return n, n - live
	}
	// Commands 1 to live record r-0 to r-(live-1); commands without an ID
	// (which record nothing) bring the count to c.
	for range entries {
		apply(t, f, recorded()...)
	}
	apply(t, f, make([]fsm.Command, c-live)...)
	if p := f.PrunePasses(); p != 1 {
		t.Fatalf("%d prune passes over the first %d commands, want 1: nothing could expire", p, c)
	}
	if n, expired := records(); n != live || expired != 0 {
		t.Fatalf("%d records, %d of them expired, after %d recorded commands", n, expired, live)
	}
	// From here each recorded command expires the oldest record: command
	// c+j is the c-th after r-(j-1)'s. So live records stay at live.
	lingered := false
	for i := range entries {
		apply(t, f, recorded()...)
		if i%250 != 249 {
			continue
		}
		// A batch goes once its last record has expired: besides the
		// slack, it may keep up to a batch's worth of expired records
		// (fewer than batchMost of these).
		const batchMost = 64
		n, expired := records()
		if n-expired != live || n > live+slack+perEntry+batchMost {
			t.Fatalf("after %d recorded commands: %d records, %d of them expired; want %d live and at most %d in all", next, n, expired, live, live+slack+perEntry+batchMost)
		}
		lingered = lingered || n > live
	}
	if !lingered {
		t.Fatal("no expired record was ever left for a later prune: the slack was not exercised")
	}
	passes := f.PrunePasses() - 1
	if most := uint64(entries*perEntry/slack + 2); passes == 0 || passes > most {
		t.Fatalf("%d prune passes over %d entries of %d recorded commands, want 1 to %d", passes, entries, perEntry, most)
	}
	// The next command is number c+live+1. r-live, recorded as command
	// c+1, is a duplicate; r-(live-1), recorded as command live, expired
	// with the last entry, pruned or not.
	dup, expired := fmt.Sprintf("r-%d", live), fmt.Sprintf("r-%d", live-1)
	if r := apply(t, f, fsm.Command{RequestID: dup, Ops: []fsm.Op{del(dup)}})[0]; !r.Duplicate {
		t.Fatalf("retry of %s: %s, want a duplicate", dup, fmtResult(r))
	}
	if r := apply(t, f, fsm.Command{RequestID: expired, Ops: []fsm.Op{del(expired)}})[0]; r.Duplicate {
		t.Fatalf("retry of %s, %d commands after it: %s, want it applied again", expired, c+2, fmtResult(r))
	}
}

func dedupeID(j int) string { return fmt.Sprintf("id-%02d", j) }

// dedupeLog builds a log for the dedupe window tests with the responses the
// model expects.
type dedupeLog struct {
	m    *model
	logs []*raft.Log
	want []string
}

func newDedupeLog() *dedupeLog { return &dedupeLog{m: newModel()} }

func (d *dedupeLog) add(l *raft.Log) {
	d.logs = append(d.logs, l)
	d.want = append(d.want, d.m.apply(l))
}

// dedupeBulk is more records than two batches prune.
const dedupeBulk = 1200

// bulk adds an entry of dedupeBulk recorded deletes.
func (d *dedupeLog) bulk(index uint64) {
	var cmds []fsm.Command
	for i := range dedupeBulk {
		id := fmt.Sprintf("bulk-%04d", i)
		cmds = append(cmds, fsm.Command{RequestID: id, Ops: []fsm.Op{fsm.Delete([]byte(id))}})
	}
	d.add(cmdLog(index, cmds...))
}

// firsts adds entries 2 to 21: entry 1+j applies request id-j.
func (d *dedupeLog) firsts() {
	for j := 1; j <= 20; j++ {
		d.add(cmdLog(uint64(1+j), fsm.Command{RequestID: dedupeID(j), Ops: []fsm.Op{kv(dedupeID(j), "first")}}))
	}
}

// retries adds 40 entries after index: entry index+k retries id-k, id-(k-1),
// id-(k-2) and id-(k-4), where they exist, some of them re-applied by an
// earlier retry.
func (d *dedupeLog) retries(index uint64) {
	for k := 1; k <= 40; k++ {
		var cmds []fsm.Command
		for _, j := range []int{k, k - 1, k - 2, k - 4} {
			if j >= 1 && j <= 20 {
				cmds = append(cmds, fsm.Command{RequestID: dedupeID(j), Ops: []fsm.Op{kv(dedupeID(j), fmt.Sprint("retry at ", k))}})
			}
		}
		if cmds == nil {
			d.add(confLog(index + uint64(k)))
			continue
		}
		d.add(cmdLog(index+uint64(k), cmds...))
	}
}

// check applies the first n entries and then the rest to three replicas,
// each in batches of its own size: each must answer as the model does, replicas at the same
// index must hash alike, and at the end each must hold the model's data,
// exactly the dedupe records a later command could still match, and no
// batch of records that all have expired. The replicas prune as soon as a
// batch has expired (slack 0), which makes the count exact;
// TestDedupePruneCadence covers the default slack.
func (d *dedupeLog) check(t *testing.T, n int) {
	t.Helper()
	prefix, tail := d.logs[:n], d.logs[n:]
	replicas := []struct {
		name          string
		prefix, sizes int
		f             *fsm.FSM
		hashes        map[uint64]stateSum
	}{
		{name: "entry by entry", prefix: n, sizes: 1},
		{name: "batches of 7", prefix: 1000, sizes: 7},
		{name: "batches of 3", prefix: 333, sizes: 3},
	}
	for i := range replicas {
		r := &replicas[i]
		r.f = openShard(t, openStore(t, ""), 1)
		r.f.SetPruneSlack(0)
		r.hashes = map[uint64]stateSum{}
		wantResponses(t, r.name, prefix, applyInBatches(r.f, prefix, r.prefix), d.want[:n])
		for start := 0; start < len(tail); start += r.sizes {
			batch := tail[start:min(start+r.sizes, len(tail))]
			wantResponses(t, r.name, batch, r.f.ApplyBatch(batch), d.want[n+start:])
			r.hashes[batch[len(batch)-1].Index] = hashOf(t, r.f)
		}
	}
	for _, r := range replicas[1:] {
		for idx, h := range r.hashes {
			if ref, ok := replicas[0].hashes[idx]; ok && ref != h {
				t.Fatalf("%s: hash at %d is %v, entry by entry %v", r.name, idx, h, ref)
			}
		}
	}
	last := d.logs[len(d.logs)-1].Index
	live := 0
	for _, rec := range d.m.seen {
		if rec.index+fsm.DedupeWindow >= last+1 && rec.seq+fsm.DedupeCommands >= d.m.commands+1 {
			live++
		}
	}
	for _, r := range replicas {
		if got := fmtItems(scanAll(t, r.f)); !slices.Equal(got, d.m.items()) {
			t.Fatalf("%s: data %q, model %q", r.name, got, d.m.items())
		}
		raw := rawKeys(t, r.f)[r.f.Generation()]
		if raw[fsm.SpaceDedupe] != 0 || raw[fsm.SpaceDedupeIdx] != 0 {
			t.Fatalf("%s: %d records and %d index entries of the per-ID format, want none", r.name, raw[fsm.SpaceDedupe], raw[fsm.SpaceDedupeIdx])
		}
		got, _, expired := dedupeBatches(t, r.f)
		if got != live || expired != 0 {
			t.Fatalf("%s: %d live dedupe records and %d batches of expired ones, want the %d live ones and no such batch", r.name, got, expired, live)
		}
	}
}

// A retry is a duplicate after the store is reopened and in a replica
// restored from a snapshot: both learn again which request IDs they hold
// (apply asks Badger only about IDs it may have seen).
func TestDedupeAcrossReopenAndRestore(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	f := openShard(t, s, 1)
	put := func(f *fsm.FSM, id, v string) fsm.Result {
		t.Helper()
		return apply(t, f, fsm.Command{RequestID: id, Ops: []fsm.Op{kv("k-"+id, v)}})[0]
	}
	var first []fsm.Result
	for i := range 50 {
		first = append(first, put(f, fmt.Sprintf("req-%d", i), "first"))
	}
	snap := snapshotBytes(t, f)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	restored := memShard(t)
	if err := restored.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	for name, g := range map[string]*fsm.FSM{"reopened": openShard(t, openStore(t, dir), 1), "restored": restored} {
		for i := range 50 {
			id := fmt.Sprintf("req-%d", i)
			r := put(g, id, "retry")
			if !r.Duplicate || r.Ops[0].Version != first[i].Ops[0].Version {
				t.Fatalf("%s: retry of %s: %s, want the first outcome %s as a duplicate", name, id, fmtResult(r), fmtResult(first[i]))
			}
			wantValue(t, g, "k-"+id, "first", first[i].Ops[0].Version)
		}
		if r := put(g, "new", "x"); r.Duplicate {
			t.Fatalf("%s: a new request ID is answered as a duplicate", name)
		}
	}
}
