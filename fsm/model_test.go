package fsm_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"

	"github.com/hashicorp/raft"

	"github.com/cairndb/cairn/fsm"
)

// model is the specification of apply, written as plainly as possible: the
// tests hold every replica to it.
type model struct {
	kv       map[string]modelValue
	seen     map[string]modelRecord // request ID -> first outcome
	history  map[string][]uint64    // every version a key ever had
	commands uint64
	ids      []string // request IDs used so far
}

type modelValue struct {
	version uint64
	value   string
}

type modelRecord struct {
	index  uint64 // entry that recorded it
	seq    uint64 // the recording command's number (model.commands then)
	result fsm.Result
}

func newModel() *model {
	return &model{kv: map[string]modelValue{}, seen: map[string]modelRecord{}, history: map[string][]uint64{}}
}

// apply applies one entry and returns its expected response, rendered by fmtResp.
func (m *model) apply(l *raft.Log) string {
	if l.Type != raft.LogCommand {
		return fmtResp(nil)
	}
	cmds, err := fsm.DecodeGroup(l.Data)
	if err != nil {
		panic(err)
	}
	out := make([]fsm.Result, len(cmds))
	pos := uint64(0) // writes of the entry before the current command
	for i, c := range cmds {
		m.commands++
		if rec, ok := m.seen[c.RequestID]; ok && c.RequestID != "" && l.Index-rec.index <= fsm.DedupeWindow && m.commands-rec.seq <= fsm.DedupeCommands {
			out[i] = rec.result
			out[i].Duplicate = true
		} else {
			out[i] = m.applyCommand(l.Index, pos, c)
			if c.RequestID != "" {
				m.seen[c.RequestID] = modelRecord{l.Index, m.commands, out[i]}
			}
		}
		pos += uint64(len(c.Ops))
	}
	return fmtResp(out)
}

func (m *model) applyCommand(index, pos uint64, c fsm.Command) fsm.Result {
	next := maps.Clone(m.kv)
	res := fsm.Result{Ops: make([]fsm.OpResult, len(c.Ops))}
	var written []string
	for i, op := range c.Ops {
		k := string(op.Key)
		cur := next[k].version
		if op.IfVersion != nil && *op.IfVersion != cur {
			return fsm.Result{Code: fsm.VersionMismatch, FailedOp: i, Key: op.Key, Current: cur}
		}
		switch op.Type {
		case fsm.OpPut:
			v := index<<20 | (pos + uint64(i) + 1)
			next[k] = modelValue{v, string(op.Value)}
			res.Ops[i].Version = v
			written = append(written, k)
		case fsm.OpDelete:
			res.Ops[i].Existed = cur != 0
			delete(next, k)
		}
	}
	m.kv = next
	for _, k := range written {
		m.history[k] = append(m.history[k], next[k].version)
	}
	return res
}

// randomEntry returns a random entry at index: mostly groups of commands on
// a small key space, with conditions that are current, stale, absent or
// wrong, fresh and retried request IDs, and some configuration entries.
func (m *model) randomEntry(r *rand.Rand, index uint64) *raft.Log {
	if r.IntN(10) == 0 {
		return confLog(index)
	}
	cmds := make([]fsm.Command, 1+r.IntN(4))
	for i := range cmds {
		c := &cmds[i]
		switch x := r.IntN(10); {
		case x < 2 && len(m.ids) > 0:
			c.RequestID = m.ids[r.IntN(len(m.ids))]
		case x < 4:
			c.RequestID = fmt.Sprintf("req-%d-%d", index, i)
			m.ids = append(m.ids, c.RequestID)
		}
		c.Ops = make([]fsm.Op, 1+r.IntN(4))
		for j := range c.Ops {
			k := fmt.Sprintf("k%02d", r.IntN(20))
			var op fsm.Op
			if r.IntN(4) == 0 {
				op = del(k)
			} else {
				op = fsm.Put([]byte(k), fmt.Appendf(nil, "%d.%d.%d:%x", index, i, j, r.Uint32()))
			}
			switch r.IntN(10) {
			case 0, 1, 2:
				op = op.If(m.kv[k].version) // current before the entry
			case 3:
				op = op.If(0)
			case 4:
				if h := m.history[k]; len(h) > 0 {
					op = op.If(h[r.IntN(len(h))])
				}
			case 5:
				op = op.If(r.Uint64N(index+1)<<20 | r.Uint64N(8))
			}
			c.Ops[j] = op
		}
	}
	return cmdLog(index, cmds...)
}

// items returns the model's data in key order, as Scan would.
func (m *model) items() []string {
	keys := make([]string, 0, len(m.kv))
	for k := range m.kv {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = fmt.Sprintf("%s=%s@%s", k, m.kv[k].value, fmtVer(m.kv[k].version))
	}
	return out
}

func fmtItems(items []fsm.Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = fmt.Sprintf("%s=%s@%s", it.Key, it.Value, fmtVer(it.Version))
	}
	return out
}

// randomLog returns n random entries starting at index 1, their expected
// responses, and the model after applying them.
func randomLog(seed uint64, n int) ([]*raft.Log, []string, *model) {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	m := newModel()
	logs := make([]*raft.Log, n)
	want := make([]string, n)
	for i := range logs {
		logs[i] = m.randomEntry(r, uint64(i+1))
		want[i] = m.apply(logs[i])
	}
	return logs, want, m
}
