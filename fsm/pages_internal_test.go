package fsm

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// mapsText renders /proc/self/maps lines for the given paths, one 8 KiB
// mapping each, at increasing addresses.
func mapsText(paths ...string) []byte {
	var b strings.Builder
	for i, p := range paths {
		start := 0x7f0000000000 + i*0x10000
		fmt.Fprintf(&b, "%x-%x r--s 00000000 fd:01 %d                       %s\n", start, start+0x2000, 1000+i, p)
	}
	// Lines that are never the store's.
	b.WriteString("00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/kvnode\n")
	b.WriteString("7f0100000000-7f0100021000 rw-p 00000000 00:00 0 \n")
	b.WriteString("7ffd5b1e0000-7ffd5b201000 rw-p 00000000 00:00 0                          [stack]\n")
	return []byte(b.String())
}

func duePaths(r *pageReleaser, paths ...string) []string {
	var out []string
	for _, m := range r.due(r.storeMappings(mapsText(paths...))) {
		out = append(out, strings.TrimPrefix(m.path, "/data/badger/"))
	}
	slices.Sort(out)
	return out
}

func TestPageReleaseChoosesWrittenFiles(t *testing.T) {
	r := &pageReleaser{dir: "/data/badger/", seen: map[string]fileState{}}
	d := func(name string) string { return "/data/badger/" + name }

	ms := r.storeMappings(mapsText(d("000001.sst"), "/data/badger-old/000002.sst", d("sub/000003.sst"),
		d("00001.mem"), d("MANIFEST"), d("000004.sst")+" (deleted)", "/elsewhere/000005.sst"))
	if len(ms) != 1 || ms[0].path != d("000001.sst") || ms[0].start != 0x7f0000000000 || ms[0].end != 0x7f0000002000 {
		t.Fatalf("store mappings %+v, want only 000001.sst at 7f0000000000-7f0000002000", ms)
	}

	steps := []struct {
		mapped []string
		want   []string
	}{
		// A table found for the first time may still be being copied in.
		{[]string{"000001.sst", "000001.vlog"}, nil},
		// Found again: released. The only value log is the one written to.
		{[]string{"000001.sst", "000001.vlog"}, []string{"000001.sst"}},
		// A new table waits a pass; 000001.sst waits for its second release.
		{[]string{"000001.sst", "000002.sst", "000001.vlog"}, nil},
		// 000001.sst released once more, in case the first caught it still
		// being written; 000002.sst for the first time.
		{[]string{"000001.sst", "000002.sst", "000001.vlog"}, []string{"000001.sst", "000002.sst"}},
		// A newer value log takes the writes: the old one waits a pass.
		{[]string{"000001.sst", "000002.sst", "000001.vlog", "000002.vlog"}, nil},
		// Then it goes, and 000002.sst a second time. 000001.sst is done.
		{[]string{"000001.sst", "000002.sst", "000001.vlog", "000002.vlog"}, []string{"000001.vlog", "000002.sst"}},
		{[]string{"000001.sst", "000002.sst", "000001.vlog", "000002.vlog"}, nil},
		{[]string{"000001.sst", "000002.sst", "000001.vlog", "000002.vlog"}, []string{"000001.vlog"}},
		{[]string{"000001.sst", "000002.sst", "000001.vlog", "000002.vlog"}, nil},
		// 000001.sst and 000001.vlog are deleted: forgotten. Nothing new.
		{[]string{"000002.sst", "000002.vlog"}, nil},
		// A file of the same name mapped again later (a reopened store) is
		// new again.
		{[]string{"000001.sst", "000002.sst", "000002.vlog"}, nil},
		{[]string{"000001.sst", "000002.sst", "000002.vlog"}, []string{"000001.sst"}},
	}
	for i, s := range steps {
		var mapped []string
		for _, p := range s.mapped {
			mapped = append(mapped, d(p))
		}
		if got := duePaths(r, mapped...); !slices.Equal(got, s.want) {
			t.Fatalf("pass %d with %v mapped: released %v, want %v", i, s.mapped, got, s.want)
		}
	}
	if len(r.seen) != 2 || r.seen["/data/badger/000001.sst"] != firstRelease || r.seen["/data/badger/000002.sst"] != releasedAgain {
		t.Fatalf("releaser remembers %v, want 000001.sst released once and 000002.sst twice", r.seen)
	}
}

func TestPageReleaseFileWithTwoRanges(t *testing.T) {
	r := &pageReleaser{dir: "/d/", seen: map[string]fileState{}}
	text := []byte("7f0000000000-7f0000001000 r--s 00000000 fd:01 7 /d/000009.sst\n" +
		"7f0000005000-7f0000006000 r--s 00001000 fd:01 7 /d/000009.sst\n")
	if got := r.due(r.storeMappings(text)); len(got) != 0 {
		t.Fatalf("first pass released %v", got)
	}
	got := r.due(r.storeMappings(text))
	if len(got) != 2 || got[0].start != 0x7f0000000000 || got[1].start != 0x7f0000005000 {
		t.Fatalf("second pass released %+v, want both ranges of the file", got)
	}
}
