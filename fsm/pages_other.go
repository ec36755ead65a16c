//go:build !linux

package fsm

import "errors"

// Other systems have no MADV_PAGEOUT: tables Badger writes stay resident
// until the system needs the memory, as they do with TableRelease 0.
const pageReleaseSupported = false

func readMappings() ([]byte, error) { return nil, errors.ErrUnsupported }

func pageOut(start, n uintptr) error { return errors.ErrUnsupported }

func mappedPages(start, n uintptr) ([]byte, error) { return nil, errors.ErrUnsupported }

func dropCached(path string) error { return errors.ErrUnsupported }

func isUnmapped(error) bool { return false }
