// Package keys holds helpers for byte-string keys shared by the store's
// layers.
package keys

import "bytes"

// PrefixEnd returns the least key greater than every key that starts with
// p: the exclusive end of p's range. It is nil when there is none (p empty
// or all 0xFF bytes): the range is then open.
func PrefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for len(end) > 0 && end[len(end)-1] == 0xFF {
		end = end[:len(end)-1]
	}
	if len(end) == 0 {
		return nil
	}
	end[len(end)-1]++
	return end
}
