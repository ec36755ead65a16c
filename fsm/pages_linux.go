package fsm

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// pageReleaseSupported: MADV_PAGEOUT exists from Linux 5.4; older kernels
// answer EINVAL, which stops the release loop.
const pageReleaseSupported = true

func readMappings() ([]byte, error) { return os.ReadFile("/proc/self/maps") }

// pageOut asks the kernel to reclaim the pages of [start, start+n). The range
// is an address of a file mapping read from /proc/self/maps, never Go memory,
// so it passes as a plain integer.
func pageOut(start, n uintptr) error {
	if _, _, e := unix.Syscall(unix.SYS_MADVISE, start, n, unix.MADV_PAGEOUT); e != 0 {
		return e
	}
	return nil
}

// mappedPages reports which pages of [start, start+n) are mapped in this
// process (counted in its RSS): one byte per page, bit 0 set if so. It reads
// the present bit of /proc/self/pagemap, which a process may read for itself.
func mappedPages(start, n uintptr) ([]byte, error) {
	page := uintptr(os.Getpagesize())
	pages := int((n + page - 1) / page)
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw := make([]byte, 8*pages)
	if _, err := f.ReadAt(raw, int64(start/page)*8); err != nil {
		return nil, err
	}
	vec := make([]byte, pages)
	for i := range vec {
		vec[i] = raw[8*i+7] >> 7 // bit 63 of the little-endian entry: present
	}
	return vec, nil
}

// dropCached asks the kernel to drop the file's clean pages from the page
// cache (pages still mapped are not dropped).
func dropCached(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// isUnmapped: the range was unmapped after the mappings were read (Badger
// closed the file); nothing to release.
func isUnmapped(err error) bool { return errors.Is(err, unix.ENOMEM) }
