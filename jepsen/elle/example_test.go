package elle_test

import (
	"fmt"
	"os"

	"github.com/cairndb/cairn/jepsen/elle"
)

// A stale read: process 1 appends 1 to x and commits; process 2 then
// starts a read and does not see it. That is serializable (the read can be
// ordered first) but not strictly serializable.
func Example() {
	history := []elle.Op{
		{Index: 1, Process: 1, Type: elle.Invoke, Txn: []elle.Mop{elle.Append("x", 1)}},
		{Index: 2, Process: 1, Type: elle.OK, Txn: []elle.Mop{elle.Append("x", 1)}},
		{Index: 3, Process: 2, Type: elle.Invoke, Txn: []elle.Mop{elle.Read("x", nil)}},
		{Index: 4, Process: 2, Type: elle.OK, Txn: []elle.Mop{elle.Read("x", nil)}},
		{Index: 5, Process: 3, Type: elle.Invoke, Txn: []elle.Mop{elle.Read("x", nil)}},
		{Index: 6, Process: 3, Type: elle.OK, Txn: []elle.Mop{elle.Read("x", []int{1})}},
	}
	for _, model := range []elle.Model{elle.Serializable, elle.StrictSerializable} {
		res, err := elle.Check(history, elle.Options{Model: model})
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(model, res.Valid, res.AnomalyTypes)
	}
	res, _ := elle.Check(history, elle.DefaultOptions())
	_ = res.WriteText(os.Stdout)
	// Output:
	// serializable true []
	// strict-serializable false [G-single-realtime]
	// Elle list-append check against strict-serializable: INVALID
	// 6 events, 3 transactions (3 ok, 0 fail, 0 info), 1 keys, 4 dependency edges, 1 cyclic components
	//
	// Anomalies found:
	//   G-single-realtime           1  read skew or lost update: a dependency cycle with exactly one anti-dependency (rw) edge; the cycle needs real-time edges, so it only breaks strict serializability
	//
	// --- G-single-realtime #1 ---
	// G-single-realtime (read skew or lost update: a dependency cycle with exactly one anti-dependency (rw) edge; the cycle needs real-time edges, so it only breaks strict serializability).
	// Cycle: T2 < T4 < T2. Each edge means the first transaction must take effect before the second:
	//   T2 < T4 (realtime): T2 completed (event index 2) before T4 was invoked (event index 3)
	//   T4 < T2 (rw): T4 read x = [], missing 1, the first value of x's order, which T2 appended
	// Following the edges leads from T2 back to itself, so no order of these transactions satisfies them all.
	// where
	//   T2 = process 1, ok: [append x 1]
	//   T4 = process 2, ok: [r x []]
}
