package fsm

import (
	"os"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// CachedTablePages counts the pages of the store's table files that are in
// the page cache, mapped by the process or not (mincore): the memory the
// tables hold, where RSS counts only what the process maps.
func (s *Store) CachedTablePages() (n int) {
	r := newPageReleaser(s.opts.Dir)
	maps, err := readMappings()
	if err != nil {
		panic(err)
	}
	page := uintptr(os.Getpagesize())
	for _, m := range r.storeMappings(maps) {
		if !strings.HasSuffix(m.path, ".sst") {
			continue
		}
		vec := make([]byte, (m.end-m.start+page-1)/page)
		if _, _, e := unix.Syscall(unix.SYS_MINCORE, m.start, m.end-m.start, uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
			continue // unmapped meanwhile
		}
		for _, b := range vec {
			n += int(b & 1)
		}
	}
	return n
}

// ReleaseTablesNow hands back the pages of every table and value-log file
// mapped now, and from then on makes snapshots hand back the pages they bring
// in, as a store opened with TableRelease does, without its loop (whose
// passes would race the test's reads).
func (s *Store) ReleaseTablesNow() {
	if s.releaser == nil {
		s.releaser = newPageReleaser(s.opts.Dir)
	}
	maps, err := readMappings()
	if err != nil {
		panic(err)
	}
	for _, m := range s.releaser.storeMappings(maps) {
		_ = pageOut(m.start, m.end-m.start)
	}
}
