package fsm

import (
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

	groupVersion byte = 1
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
)

func (t OpType) String() string {
	switch t {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	}
	return fmt.Sprintf("op(%d)", uint8(t))
}

// Op is one write. When IfVersion is set, the write applies only if the key's
// current version equals *IfVersion; 0 means the key must be absent.
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

// Command is what a client proposes: one write, or an atomic batch of writes
// within one shard. RequestID, when set, makes the command apply at most once:
// a retry with the same ID returns the first outcome.
type Command struct {
	RequestID string
	Ops       []Op
}

// EncodeGroup encodes commands as one log entry.
func EncodeGroup(cmds []Command) []byte {
	n := 3 + binary.MaxVarintLen64
	for _, c := range cmds {
		n += c.encodedSize()
	}
	b := make([]byte, 0, n)
	b = append(b, envelopeMagic, TypeGroup, groupVersion)
	b = binary.AppendUvarint(b, uint64(len(cmds)))
	for _, c := range cmds {
		b = c.append(b)
	}
	return b
}

func (c Command) encodedSize() int {
	n := 2*binary.MaxVarintLen64 + len(c.RequestID)
	for _, op := range c.Ops {
		n += 2 + 3*binary.MaxVarintLen64 + len(op.Key) + len(op.Value)
	}
	return n
}

func (c Command) append(b []byte) []byte {
	b = appendBytes(b, []byte(c.RequestID))
	b = binary.AppendUvarint(b, uint64(len(c.Ops)))
	for _, op := range c.Ops {
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
	if data[2] != groupVersion {
		return nil, fmt.Errorf("%w: unknown group version %d", ErrCorrupt, data[2])
	}
	d := decoder{b: data[3:]}
	n := d.count(1)
	cmds := make([]Command, 0, n)
	ops := 0
	for i := uint64(0); i < n && d.err == nil; i++ {
		var c Command
		c.RequestID = string(d.bytes())
		nops := d.count(3)
		ops += int(nops)
		if ops > MaxOpsPerEntry {
			return nil, fmt.Errorf("%w: more than %d writes in one entry", ErrCorrupt, MaxOpsPerEntry)
		}
		c.Ops = make([]Op, 0, nops)
		for j := uint64(0); j < nops && d.err == nil; j++ {
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
			switch op.Type {
			case OpPut:
				op.Value = d.bytes()
			case OpDelete:
			default:
				d.fail("unknown op type")
			}
			c.Ops = append(c.Ops, op)
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
