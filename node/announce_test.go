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
	// The disk flag survives truncation, which leaves it its byte.
	many.DiskLow = true
	b = many.encode(120)
	if got, err = decodeAnnouncement(b); len(b) > 120 || err != nil || !got.DiskLow || len(got.Leads) == 0 {
		t.Fatalf("truncated with the disk flag: %d bytes, %+v, %v", len(b), got, err)
	}
}

// TestAnnouncementDiskFlag: the flag round-trips, and a node whose disk
// has room announces the same bytes as before the flag existed.
func TestAnnouncementDiskFlag(t *testing.T) {
	a := announcement{InCluster: true, Expect: 3, RingEpoch: 2, Epoch: 7, Leads: []fsm.ShardID{1, 2}}
	plain := a.encode(512)
	// The layout of builds without the flag, written out by hand.
	old := []byte{announcementVersion, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 2, 7, 2, 1, 1}
	if !slices.Equal(plain, old) {
		t.Fatalf("without the flag: % x, want % x", plain, old)
	}
	if got, err := decodeAnnouncement(old); err != nil || got.DiskLow {
		t.Fatalf("an older build's announcement: %+v, %v", got, err)
	}
	a.DiskLow = true
	flagged := a.encode(512)
	if !slices.Equal(flagged, append(old, announceDiskLow)) {
		t.Fatalf("with the flag: % x", flagged)
	}
	if got, err := decodeAnnouncement(flagged); err != nil || !got.DiskLow || !slices.Equal(got.Leads, a.Leads) {
		t.Fatalf("with the flag: %+v, %v", got, err)
	}
	for _, bad := range [][]byte{append(old, 2), append(old, announceDiskLow, 0)} {
		if _, err := decodeAnnouncement(bad); err == nil {
			t.Fatalf("% x decoded", bad)
		}
	}
}

func FuzzDecodeAnnouncement(f *testing.F) {
	f.Add(announcement{InCluster: true, Expect: 3, Proposal: 5, RingEpoch: 1, Epoch: 2, Leads: []fsm.ShardID{0, 1, 4}}.encode(400))
	f.Add([]byte{announcementVersion, 0, 0xff})
	f.Add(announcement{Expect: 1, Leads: []fsm.ShardID{2}, DiskLow: true}.encode(400))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := decodeAnnouncement(b) // must not panic
		if err != nil {
			return
		}
		again, err := decodeAnnouncement(a.encode(1 << 20))
		if err != nil || again.InCluster != a.InCluster || again.Expect != a.Expect || again.Proposal != a.Proposal ||
			again.RingEpoch != a.RingEpoch || again.Epoch != a.Epoch || !slices.Equal(again.Leads, a.Leads) || again.DiskLow != a.DiskLow {
			t.Fatalf("re-encoding %+v gave %+v, %v", a, again, err)
		}
	})
}
