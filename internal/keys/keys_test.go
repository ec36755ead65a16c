package keys

import (
	"bytes"
	"testing"
)

func TestPrefixEnd(t *testing.T) {
	for _, tt := range []struct{ p, want []byte }{
		{[]byte("a"), []byte("b")},
		{[]byte("a\xff"), []byte("b")},
		{[]byte("ab\xff\xff"), []byte("ac")},
		{[]byte("\xff\xff"), nil},
		{nil, nil},
	} {
		got := PrefixEnd(tt.p)
		if !bytes.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
			t.Fatalf("PrefixEnd(%q) = %q, want %q", tt.p, got, tt.want)
		}
		// Every key with the prefix sorts before the end.
		if got != nil && bytes.Compare(append(bytes.Clone(tt.p), 0xff, 0xff), got) >= 0 {
			t.Fatalf("%q+ff ff is not below %q", tt.p, got)
		}
	}
	p := []byte("x")
	PrefixEnd(p)
	if string(p) != "x" {
		t.Fatal("PrefixEnd changed its argument")
	}
}
