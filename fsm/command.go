package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Envelope: every raft command entry is [magic][type][version][payload].
const (
	envelopeMagic = 0xCA

	// TypeGroup is a group-commit entry: one or more Commands coalesced by the
	// proposer into one log entry. Each Command applies (or fails) on its own.
	TypeGroup byte = 1

	// Group version 1 holds plain commands; version 2 adds transactions
	// (comparisons, gets, an else branch). Entries are written as version 1
	// whenever no command needs more, so nodes that know only version 1 keep
	// applying plain KV traffic.
	groupVersion1 byte = 1
	groupVersion2 byte = 2
	// groupVersion3 adds a phase's More (batched resolves) after its
	// scans; encoders use it only for a group that has some.
	groupVersion3 byte = 3
)

// MaxOpsPerEntry bounds the writes in one log entry, so that a write's position
// fits in the low 20 bits of its version.
const MaxOpsPerEntry = 1<<20 - 1

// ErrCorrupt reports bytes that are not a valid command encoding.
var ErrCorrupt = errors.New("fsm: corrupt command")

// OpType is the kind of one write.
type OpType uint8

const (
	OpPut    OpType = 1
	OpDelete OpType = 2
	// OpGet reads a key inside a transaction (Command.Txn), seeing the
	// transaction's earlier writes.
	OpGet OpType = 3
)

func (t OpType) String() string {
	switch t {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	case OpGet:
		return "get"
	}
	return fmt.Sprintf("op(%d)", uint8(t))
}

// Op is one write, or a get inside a transaction. When IfVersion is set, the
// op applies only if the key's current version equals *IfVersion; 0 means the
// key must be absent.
type Op struct {
	Type      OpType
	Key       []byte
	Value     []byte // OpPut only
	IfVersion *uint64
}

// Put returns an unconditional put.
func Put(key, value []byte) Op { return Op{Type: OpPut, Key: key, Value: value} }

// Delete returns an unconditional delete.
func Delete(key []byte) Op { return Op{Type: OpDelete, Key: key} }

// If returns op made conditional on the key's version (0 = must be absent).
func (op Op) If(version uint64) Op {
	op.IfVersion = &version
	return op
}

// Get returns a get (transactions only).
func Get(key []byte) Op { return Op{Type: OpGet, Key: key} }

// CompareKind is what a transaction's comparison checks.
type CompareKind uint8

const (
	CompareVersion   CompareKind = 1 // version == Version (0: absent)
	CompareVersionLt CompareKind = 2 // version < Version
	CompareVersionGt CompareKind = 3 // version > Version
	CompareExists    CompareKind = 4 // present
	CompareAbsent    CompareKind = 5 // absent
	CompareValue     CompareKind = 6 // present with value == Value
)

func (k CompareKind) String() string {
	switch k {
	case CompareVersion:
		return "version"
	case CompareVersionLt:
		return "version_lt"
	case CompareVersionGt:
		return "version_gt"
	case CompareExists:
		return "exists"
	case CompareAbsent:
		return "absent"
	case CompareValue:
		return "value"
	}
	return fmt.Sprintf("compare(%d)", uint8(k))
}

// Compare is one condition of a transaction, on a key's state before the
// transaction.
type Compare struct {
	Kind    CompareKind
	Key     []byte
	Version uint64
	Value   []byte
}

// Holds reports whether the comparison holds for a key at version (0:
// absent) holding value.
func (c Compare) Holds(version uint64, value []byte) bool {
	switch c.Kind {
	case CompareVersion:
		return version == c.Version
	case CompareVersionLt:
		return version < c.Version
	case CompareVersionGt:
		return version > c.Version
	case CompareExists:
		return version != 0
	case CompareAbsent:
		return version == 0
	case CompareValue:
		return version != 0 && bytes.Equal(value, c.Value)
	}
	return false
}

// Command is what a client proposes: one write, or an atomic batch of writes
// within one shard. RequestID, when set, makes the command apply at most once:
// a retry with the same ID returns the first outcome.
//
// With Txn set the command is a compare-and-write transaction on one shard:
// when every comparison in If holds, Ops apply, otherwise Else does; either
// branch may hold gets. It applies in one log entry, so it is atomic and
// strictly serializable with everything else on the shard.
//
// With Phase set the command is a step of a cross-shard transaction (see
// PhaseKind) and Ops, Txn, If and Else are empty.
type Command struct {
	RequestID string
	Ops       []Op
	Txn       bool
	If        []Compare
	Else      []Op
	Phase     *Phase
}

// Keys returns every user key the command touches (compared, read or
// written); a phase's record lives under its transaction ID, not a key.
func (c Command) Keys() [][]byte {
	if p := c.Phase; p != nil {
		keys := make([][]byte, 0, len(p.Reads)+len(p.Writes)+len(p.Keys))
		for _, r := range p.Reads {
			keys = append(keys, r.Key)
		}
		for _, w := range p.Writes {
			keys = append(keys, w.Key)
		}
		keys = append(keys, p.Keys...)
		for _, m := range p.More {
			keys = append(keys, m.Keys...)
		}
		return keys
	}
	keys := make([][]byte, 0, len(c.If)+len(c.Ops)+len(c.Else))
	for _, cmp := range c.If {
		keys = append(keys, cmp.Key)
	}
	for _, op := range c.Ops {
		keys = append(keys, op.Key)
	}
	for _, op := range c.Else {
		keys = append(keys, op.Key)
	}
	return keys
}

// writeKeys returns the keys the command's puts and deletes may write,
// in either branch.
func (c Command) writeKeys() [][]byte {
	var keys [][]byte
	for _, op := range append(c.Ops[:len(c.Ops):len(c.Ops)], c.Else...) {
		if op.Type != OpGet {
			keys = append(keys, op.Key)
		}
	}
	return keys
}

// writes reports whether the command may write: any put or delete in
// either branch, or any phase (phases change records and intents).
func (c Command) writes() bool {
	if c.Phase != nil {
		return true
	}
	for _, op := range c.Ops {
		if op.Type != OpGet {
			return true
		}
	}
	for _, op := range c.Else {
		if op.Type != OpGet {
			return true
		}
	}
	return false
}

// positions is how many version positions the command takes in its entry:
// one per op of both branches, whichever runs, so that versions do not
// depend on the outcome of comparisons.
func (c Command) positions() uint64 {
	if c.Phase != nil {
		if c.Phase.Kind == PhaseCommit || c.Phase.Kind == PhasePrepare {
			return uint64(len(c.Phase.Writes))
		}
		return uint64(len(c.Phase.Keys) + c.Phase.moreKeys()) // a Resolve's writes
	}
	return uint64(len(c.Ops) + len(c.Else))
}

// EncodeGroup encodes commands as one log entry.
func EncodeGroup(cmds []Command) []byte {
	n := 3 + binary.MaxVarintLen64
	version := groupVersion1
	for _, c := range cmds {
		n += c.encodedSize()
		if (c.Txn || c.Phase != nil) && version < groupVersion2 {
			version = groupVersion2
		}
		if c.Phase != nil && len(c.Phase.More) > 0 {
			version = groupVersion3
		}
	}
	b := make([]byte, 0, n)
	b = append(b, envelopeMagic, TypeGroup, version)
	b = binary.AppendUvarint(b, uint64(len(cmds)))
	for _, c := range cmds {
		b = c.append(b, version)
	}
	return b
}

func (c Command) encodedSize() int {
	n := 4*binary.MaxVarintLen64 + 1 + len(c.RequestID)
	for _, op := range append(c.Ops[:len(c.Ops):len(c.Ops)], c.Else...) {
		n += 2 + 3*binary.MaxVarintLen64 + len(op.Key) + len(op.Value)
	}
	for _, cmp := range c.If {
		n += 1 + 3*binary.MaxVarintLen64 + len(cmp.Key) + len(cmp.Value)
	}
	if p := c.Phase; p != nil {
		n += 2 + 10*binary.MaxVarintLen64 + len(p.TxnID) + len(p.Participants)*binary.MaxVarintLen64
		for _, r := range p.Reads {
			n += 1 + 3*binary.MaxVarintLen64 + len(r.Key) + len(r.Value)
		}
		for _, w := range p.Writes {
			n += 2 + 3*binary.MaxVarintLen64 + len(w.Key) + len(w.Value)
		}
		for _, k := range p.Keys {
			n += binary.MaxVarintLen64 + len(k)
		}
		n += 2 * binary.MaxVarintLen64
		for _, m := range p.More {
			n += 1 + 2*binary.MaxVarintLen64 + len(m.TxnID)
			for _, k := range m.Keys {
				n += binary.MaxVarintLen64 + len(k)
			}
		}
		for _, sc := range p.Scans {
			n += 3*binary.MaxVarintLen64 + len(sc.Start) + len(sc.End)
			for _, it := range sc.Items {
				n += 2*binary.MaxVarintLen64 + len(it.Key)
			}
		}
	}
	return n
}

// append encodes c; version 2 adds a flags byte after the request ID and,
// for a transaction, its comparisons before and its else branch after the
// ops.
func (c Command) append(b []byte, version byte) []byte {
	b = appendBytes(b, []byte(c.RequestID))
	if version == groupVersion1 {
		return appendOps(b, c.Ops)
	}
	switch {
	case c.Phase != nil:
		b = append(b, 2)
		return c.Phase.append(b, version)
	case !c.Txn:
		b = append(b, 0)
		return appendOps(b, c.Ops)
	}
	b = append(b, 1)
	b = appendCompares(b, c.If)
	b = appendOps(b, c.Ops)
	return appendOps(b, c.Else)
}

// appendBool appends v as one byte, 0 or 1 (decoder.bool reads it).
func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendCompares(b []byte, cmps []Compare) []byte {
	b = binary.AppendUvarint(b, uint64(len(cmps)))
	for _, cmp := range cmps {
		b = append(b, byte(cmp.Kind))
		b = appendBytes(b, cmp.Key)
		b = binary.AppendUvarint(b, cmp.Version)
		b = appendBytes(b, cmp.Value)
	}
	return b
}

func (p *Phase) append(b []byte, version byte) []byte {
	b = append(b, byte(p.Kind))
	b = appendBytes(b, []byte(p.TxnID))
	b = binary.AppendUvarint(b, uint64(p.RecordShard))
	b = binary.AppendUvarint(b, p.Deadline)
	b = binary.AppendUvarint(b, p.Now)
	b = appendBool(b, p.Commit)
	b = binary.AppendUvarint(b, uint64(len(p.Participants)))
	for _, s := range p.Participants {
		b = binary.AppendUvarint(b, uint64(s))
	}
	b = appendCompares(b, p.Reads)
	b = appendOps(b, p.Writes)
	b = binary.AppendUvarint(b, uint64(len(p.Keys)))
	for _, k := range p.Keys {
		b = appendBytes(b, k)
	}
	b = binary.AppendUvarint(b, uint64(len(p.Scans)))
	for _, sc := range p.Scans {
		b = appendBytes(b, sc.Start)
		b = appendBytes(b, sc.End)
		b = binary.AppendUvarint(b, uint64(len(sc.Items)))
		for _, it := range sc.Items {
			b = appendBytes(b, it.Key)
			b = binary.AppendUvarint(b, it.Version)
		}
	}
	if version < groupVersion3 {
		return b
	}
	b = binary.AppendUvarint(b, uint64(len(p.More)))
	for _, m := range p.More {
		b = appendBytes(b, []byte(m.TxnID))
		b = appendBool(b, m.Commit)
		b = binary.AppendUvarint(b, uint64(len(m.Keys)))
		for _, k := range m.Keys {
			b = appendBytes(b, k)
		}
	}
	return b
}

func appendOps(b []byte, ops []Op) []byte {
	b = binary.AppendUvarint(b, uint64(len(ops)))
	for _, op := range ops {
		b = append(b, byte(op.Type))
		if op.IfVersion != nil {
			b = append(b, 1)
			b = binary.AppendUvarint(b, *op.IfVersion)
		} else {
			b = append(b, 0)
		}
		b = appendBytes(b, op.Key)
		if op.Type == OpPut {
			b = appendBytes(b, op.Value)
		}
	}
	return b
}

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// DecodeGroup decodes a log entry produced by EncodeGroup. It never panics;
// garbage yields an error wrapping ErrCorrupt. Byte slices in the result alias
// data.
func DecodeGroup(data []byte) ([]Command, error) {
	if len(data) < 3 || data[0] != envelopeMagic {
		return nil, fmt.Errorf("%w: bad envelope", ErrCorrupt)
	}
	if data[1] != TypeGroup {
		return nil, fmt.Errorf("%w: unknown command type %d", ErrCorrupt, data[1])
	}
	version := data[2]
	if version != groupVersion1 && version != groupVersion2 && version != groupVersion3 {
		return nil, fmt.Errorf("%w: unknown group version %d", ErrCorrupt, version)
	}
	d := decoder{b: data[3:]}
	n := d.count(1)
	cmds := make([]Command, 0, n)
	ops := 0
	for i := uint64(0); i < n && d.err == nil; i++ {
		var c Command
		c.RequestID = string(d.bytes())
		var flags byte
		if version >= groupVersion2 {
			flags = d.byte()
		}
		switch flags {
		case 0:
			c.Ops = d.ops(false)
		case 1:
			c.Txn = true
			c.If = d.compares()
			c.Ops = d.ops(true)
			c.Else = d.ops(true)
		case 2:
			c.Phase = d.phase(version)
		default:
			d.fail("bad command flags")
		}
		ops += len(c.Ops) + len(c.Else)
		if c.Phase != nil {
			ops += len(c.Phase.Reads) + len(c.Phase.Writes) + len(c.Phase.Keys) + c.Phase.moreKeys() + c.Phase.scanItems()
		}
		if ops > MaxOpsPerEntry {
			return nil, fmt.Errorf("%w: more than %d ops in one entry", ErrCorrupt, MaxOpsPerEntry)
		}
		cmds = append(cmds, c)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	return cmds, nil
}

func (d *decoder) compares() []Compare {
	n := d.count(4)
	cmps := make([]Compare, 0, n)
	for j := uint64(0); j < n && d.err == nil; j++ {
		cmp := Compare{Kind: CompareKind(d.byte()), Key: d.bytes(), Version: d.uvarint(), Value: d.bytes()}
		if cmp.Kind < CompareVersion || cmp.Kind > CompareValue {
			d.fail("unknown comparison")
		}
		cmps = append(cmps, cmp)
	}
	return cmps
}

func (d *decoder) phase(version byte) *Phase {
	p := &Phase{Kind: PhaseKind(d.byte()), TxnID: string(d.bytes()), RecordShard: ShardID(d.uvarint()),
		Deadline: d.uvarint(), Now: d.uvarint()}
	if p.Kind < PhaseBegin || p.Kind > PhaseCommit {
		d.fail("unknown phase")
	}
	p.Commit = d.bool("commit flag")
	n := d.count(1)
	for i := uint64(0); i < n && d.err == nil; i++ {
		p.Participants = append(p.Participants, ShardID(d.uvarint()))
	}
	p.Reads = d.compares()
	p.Writes = d.ops(false)
	n = d.count(1)
	for i := uint64(0); i < n && d.err == nil; i++ {
		p.Keys = append(p.Keys, d.bytes())
	}
	n = d.count(3)
	for i := uint64(0); i < n && d.err == nil; i++ {
		sc := ScanRead{Start: d.bytes(), End: d.bytes()}
		m := d.count(2)
		for j := uint64(0); j < m && d.err == nil; j++ {
			sc.Items = append(sc.Items, KeyVersion{Key: d.bytes(), Version: d.uvarint()})
		}
		p.Scans = append(p.Scans, sc)
	}
	if version < groupVersion3 {
		return p
	}
	n = d.count(3)
	for i := uint64(0); i < n && d.err == nil; i++ {
		m := Resolution{TxnID: string(d.bytes()), Commit: d.bool("commit flag")}
		k := d.count(1)
		for j := uint64(0); j < k && d.err == nil; j++ {
			m.Keys = append(m.Keys, d.bytes())
		}
		p.More = append(p.More, m)
	}
	return p
}

// ops decodes a list of ops; gets are allowed in transactions only.
func (d *decoder) ops(txn bool) []Op {
	n := d.count(3)
	ops := make([]Op, 0, n)
	for j := uint64(0); j < n && d.err == nil; j++ {
		var op Op
		op.Type = OpType(d.byte())
		switch d.byte() {
		case 0:
		case 1:
			v := d.uvarint()
			op.IfVersion = &v
		default:
			d.fail("bad condition flag")
		}
		op.Key = d.bytes()
		switch {
		case op.Type == OpPut:
			op.Value = d.bytes()
		case op.Type == OpDelete, op.Type == OpGet && txn:
		default:
			d.fail("unknown op type")
		}
		ops = append(ops, op)
	}
	return ops
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(msg string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, msg)
	}
	d.b = nil
}

// bool reads a byte that must be 0 or 1.
func (d *decoder) bool(what string) bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("bad " + what)
	return false
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail("short buffer")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads an element count and checks it against the bytes left, each
// element taking at least min bytes, so garbage cannot force a huge allocation.
func (d *decoder) count(min int) uint64 {
	v := d.uvarint()
	if v > uint64(len(d.b)/min) {
		d.fail("count exceeds input")
		return 0
	}
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("length exceeds input")
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}
