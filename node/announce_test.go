package node

import (
	"slices"
	"testing"

	"github.com/cairndb/cairn/fsm"
)

func TestAnnouncementRoundTripAndTruncation(t *testing.T) {
	a := announcement{InCluster: true, Expect: 3, Proposal: 0xdeadbeef, RingEpoch: 2, Epoch: 7, Leads: []fsm.ShardID{9, 0, 3, 1000}}
	got, err := decodeAnnouncement(a.encode(512))
	if err != nil {
		t.Fatal(err)
	}
	if got.InCluster != a.InCluster || got.Expect != 3 || got.Proposal != a.Proposal || got.RingEpoch != 2 || got.Epoch != 7 ||
		!slices.Equal(got.Leads, []fsm.ShardID{0, 3, 9, 1000}) {
		t.Fatalf("round trip: %+v", got)
	}
	// Too many leads for the room: a prefix of them, still decodable.
	many := announcement{Expect: 1}
	for i := range 2000 {
		many.Leads = append(many.Leads, fsm.ShardID(i*300))
	}
	b := many.encode(120)
	if len(b) > 120 {
		t.Fatalf("encoding of %d bytes exceeds the room of 120", len(b))
	}
	got, err = decodeAnnouncement(b)
	if err != nil || len(got.Leads) == 0 || !slices.Equal(got.Leads, many.Leads[:len(got.Leads)]) {
		t.Fatalf("truncated: %d leads, %v", len(got.Leads), err)
	}
}

func FuzzDecodeAnnouncement(f *testing.F) {
	f.Add(announcement{InCluster: true, Expect: 3, Proposal: 5, RingEpoch: 1, Epoch: 2, Leads: []fsm.ShardID{0, 1, 4}}.encode(400))
	f.Add([]byte{announcementVersion, 0, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := decodeAnnouncement(b) // must not panic
		if err != nil {
			return
		}
		again, err := decodeAnnouncement(a.encode(1 << 20))
		if err != nil || again.InCluster != a.InCluster || again.Expect != a.Expect || again.Proposal != a.Proposal ||
			again.RingEpoch != a.RingEpoch || again.Epoch != a.Epoch || !slices.Equal(again.Leads, a.Leads) {
			t.Fatalf("re-encoding %+v gave %+v, %v", a, again, err)
		}
	})
}
