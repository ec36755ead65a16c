package load

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
)

// Workload names what the clients do.
type Workload string

// The workloads; every get and scan is linearizable unless it says stale.
const (
	Put      Workload = "put"       // puts of uniformly chosen keys
	Get      Workload = "get"       // linearizable gets
	StaleGet Workload = "stale-get" // Cairn consistency=stale, etcd serializable
	Mix      Workload = "mix"       // MixReadRatio gets, the rest puts
	Scan     Workload = "scan"      // ScanLimit keys from a uniformly chosen start
	Txn      Workload = "txn"       // one transaction putting two distinct uniformly chosen keys
	// DocInsert inserts a document into Collection, indexed on grp and age.
	DocInsert Workload = "doc-insert"
	// DocFind finds the DocsPerGroup documents of a uniformly chosen grp
	// through its index (after a preload of one document per key).
	DocFind Workload = "doc-find"
)

// Workloads lists every workload in the order reports show them.
var Workloads = []Workload{Put, Get, StaleGet, Mix, Scan, Txn, DocInsert, DocFind}

// Documents reports whether w works on documents (the drivers then need
// Collection and its indexes).
func (w Workload) Documents() bool { return w == DocInsert || w == DocFind }

const (
	// MixReadRatio is the share of gets in the mix workload.
	MixReadRatio = 0.9
	// ScanLimit is how many keys one scan asks for.
	ScanLimit = 100
	// KeyPrefix starts every benchmark key; KeyPrefixEnd is the first key
	// after all of them (etcd's range end for "everything from here on").
	KeyPrefix    = "bench/"
	KeyPrefixEnd = "bench0"
	// Collection holds the document workloads' documents; they are
	// indexed by grp (IndexGrp) and by age (IndexAge).
	Collection = "bench"
	IndexGrp   = "by_grp"
	IndexAge   = "by_age"
	// DocsPerGroup documents share a grp: the preload gives document k
	// grp k / DocsPerGroup.
	DocsPerGroup = 10
)

// ParseWorkload returns the workload named s.
func ParseWorkload(s string) (Workload, error) {
	for _, w := range Workloads {
		if string(w) == s {
			return w, nil
		}
	}
	return "", fmt.Errorf("load: unknown workload %q (want put, get, stale-get, mix, scan, txn, doc-insert or doc-find)", s)
}

// Kind is what one operation does.
type Kind uint8

// The kinds of operation.
const (
	KindPut Kind = iota + 1
	KindGet
	KindScan
	KindTxn
	KindDocInsert
	KindDocFind
)

func (k Kind) String() string {
	switch k {
	case KindPut:
		return "put"
	case KindGet:
		return "get"
	case KindScan:
		return "scan"
	case KindTxn:
		return "txn"
	case KindDocInsert:
		return "doc-insert"
	case KindDocFind:
		return "doc-find"
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Op is one operation a driver sends.
type Op struct {
	Kind  Kind
	Key   string // the key, or a scan's first key
	Key2  string // transactions: the second key (never Key)
	Value []byte // puts and transactions (both keys); owned by the generator (do not keep or change it)
	Stale bool   // gets: Cairn consistency=stale, etcd serializable
	Limit int    // scans: at most this many keys
	Doc   Doc    // document inserts
	Group int    // document finds: the grp to find
}

// Doc is a benchmark document: {"_id": ID, "grp": Group, "age": Age,
// "pad": Pad}.
type Doc struct {
	ID         string
	Group, Age int
	Pad        string // hex, the value size in characters
}

// Fields returns d as the JSON object both drivers store.
func (d Doc) Fields() map[string]any {
	return map[string]any{"_id": d.ID, "grp": d.Group, "age": d.Age, "pad": d.Pad}
}

// Key returns the name of key i (the same format as kvnode bench).
func Key(i int) string { return fmt.Sprintf("%s%08d", KeyPrefix, i) }

// Gen is the operation stream of one client: uniform keys over [0, keys),
// values of a fixed size filled with pseudo-random bytes, all from a PCG
// seeded with (seed, client). It is not safe for concurrent use.
type Gen struct {
	w      Workload
	keys   int
	rng    *rand.Rand
	value  []byte
	client int
	// salt and n make document IDs: <salt>c<client>-<n>.
	salt string
	n    int
}

// NewGen returns client's generator for workload w.
func NewGen(w Workload, seed uint64, client, keys, valueSize int) *Gen {
	return &Gen{w: w, keys: keys, rng: rand.New(rand.NewPCG(seed, uint64(client))), value: make([]byte, valueSize), client: client}
}

// Next returns the client's next operation. Its Value is valid until the
// following call.
func (g *Gen) Next() Op {
	i := g.rng.IntN(g.keys)
	key := Key(i)
	switch g.w {
	case Put:
		return g.put(key)
	case Get:
		return Op{Kind: KindGet, Key: key}
	case StaleGet:
		return Op{Kind: KindGet, Key: key, Stale: true}
	case Mix:
		if g.rng.Float64() < MixReadRatio {
			return Op{Kind: KindGet, Key: key}
		}
		return g.put(key)
	case Scan:
		return Op{Kind: KindScan, Key: key, Limit: ScanLimit}
	case Txn:
		// The second key is uniform over the others.
		j := g.rng.IntN(g.keys - 1)
		if j >= i {
			j++
		}
		fill(g.rng, g.value)
		return Op{Kind: KindTxn, Key: key, Key2: Key(j), Value: g.value}
	case DocInsert:
		g.n++
		fill(g.rng, g.value)
		return Op{Kind: KindDocInsert, Doc: Doc{
			ID:    fmt.Sprintf("%sc%d-%d", g.salt, g.client, g.n),
			Group: i / DocsPerGroup, Age: g.rng.IntN(100), Pad: pad(g.value)}}
	case DocFind:
		return Op{Kind: KindDocFind, Group: i / DocsPerGroup}
	}
	panic(fmt.Sprintf("load: generator for unknown workload %q", g.w))
}

func (g *Gen) put(key string) Op {
	fill(g.rng, g.value)
	return Op{Kind: KindPut, Key: key, Value: g.value}
}

// PreloadValue returns the value the preload step writes to key i: a
// function of (seed, i) only, so every preload of a key set writes the same
// bytes whatever the order the clients reach the keys in.
func PreloadValue(seed uint64, i, size int) []byte {
	v := make([]byte, size)
	fill(rand.New(rand.NewPCG(seed^0x9e3779b97f4a7c15, uint64(i))), v)
	return v
}

// PreloadDoc returns the document the preload inserts for key i: grp
// i / DocsPerGroup, age i % 100, a pad from PreloadValue.
func PreloadDoc(seed uint64, i, size int) Doc {
	return Doc{ID: fmt.Sprintf("p%08d", i), Group: i / DocsPerGroup, Age: i % 100, Pad: pad(PreloadValue(seed, i, size))}
}

// pad is b in hex, cut to len(b) characters.
func pad(b []byte) string { return hex.EncodeToString(b)[:len(b)] }

func fill(rng *rand.Rand, b []byte) {
	var w [8]byte
	for i := 0; i < len(b); i += 8 {
		binary.LittleEndian.PutUint64(w[:], rng.Uint64())
		copy(b[i:], w[:])
	}
}
