package fsm_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cairndb/cairn/fsm"
)

// BenchmarkRead reads 256-byte values of 10,000 keys, one key at a time
// and 100 keys per scan, with the values in the LSM tree (threshold 1 KiB,
// the default) and in the value log (128 bytes):
//
//	go test -run '^$' -bench BenchmarkRead -count 5 ./fsm/
func BenchmarkRead(b *testing.B) {
	const keys = 10000
	key := func(i int) []byte { return fmt.Appendf(nil, "bench/%08d", i) }
	for _, threshold := range []int64{1 << 10, 128} {
		o := fsm.DefaultOptions(b.TempDir())
		o.ValueThreshold = threshold
		s, err := fsm.Open(o)
		if err != nil {
			b.Fatal(err)
		}
		f := openShard(b, s, 1)
		rng := rand.New(rand.NewPCG(1, 2))
		for i := 0; i < keys; i += 100 {
			cmds := make([]fsm.Command, 0, 100)
			for j := i; j < i+100; j++ {
				v := make([]byte, 256)
				for k := range v {
					v[k] = byte(rng.Uint32())
				}
				cmds = append(cmds, fsm.Command{Ops: []fsm.Op{fsm.Put(key(j), v)}})
			}
			apply(b, f, cmds...)
		}
		b.Run(fmt.Sprintf("get/threshold=%d", threshold), func(b *testing.B) {
			for b.Loop() {
				it, err := f.Get(key(rng.IntN(keys)))
				if err != nil || len(it.Value) != 256 {
					b.Fatalf("get: %d bytes, %v", len(it.Value), err)
				}
			}
		})
		b.Run(fmt.Sprintf("scan100/threshold=%d", threshold), func(b *testing.B) {
			for b.Loop() {
				r, err := f.Scan(fsm.ScanOptions{Start: key(rng.IntN(keys - 100)), Limit: 100})
				if err != nil || len(r.Items) != 100 {
					b.Fatalf("scan: %d items, %v", len(r.Items), err)
				}
			}
		})
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
