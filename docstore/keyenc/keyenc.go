// Package keyenc encodes JSON values as byte strings whose byte order is
// the values' order, for index keys: null < false < true < numbers <
// strings < arrays < objects. Numbers compare by value, whether written 1,
// 1.0 or 1e0 (as float64: integers beyond 2^53 may collapse); strings
// compare by their bytes; arrays element by element, a prefix first;
// objects by their fields in key order, key then value.
//
// No encoding is a prefix of another, so the order also holds with more
// bytes after each (the next part of a compound key).
//
// Every encoded value is self-delimiting, so a compound key is the
// concatenation of its parts and still sorts part by part; Decode reads one
// value and returns the rest.
package keyenc

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
)

// Type tags, in order. 0x00 ends arrays and objects, so no tag is 0.
const (
	tagNull   = 0x05
	tagFalse  = 0x10
	tagTrue   = 0x11
	tagNumber = 0x20
	tagString = 0x30
	tagArray  = 0x40
	tagObject = 0x50

	end = 0x00 // closes an array or an object
)

// Inside strings, 0x00 is written 0x00 0xFF and the string ends with
// 0x00 0x01: the terminator sorts before every continuation.
const (
	escZero = 0xFF
	escEnd  = 0x01
)

// ErrCorrupt: bytes that Encode did not produce.
var ErrCorrupt = errors.New("keyenc: corrupt encoding")

// Append appends the encoding of v to b. v is a value as encoding/json
// decodes it (nil, bool, float64 or json.Number, string, []any,
// map[string]any); ints of Go's integer kinds are accepted too.
func Append(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, tagNull), nil
	case bool:
		if x {
			return append(b, tagTrue), nil
		}
		return append(b, tagFalse), nil
	case float64:
		return appendNumber(b, x)
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return nil, fmt.Errorf("keyenc: number %s: %w", x, err)
		}
		return appendNumber(b, f)
	case int:
		return appendNumber(b, float64(x))
	case int64:
		return appendNumber(b, float64(x))
	case string:
		return appendString(append(b, tagString), x), nil
	case []any:
		b = append(b, tagArray)
		for _, e := range x {
			var err error
			if b, err = Append(b, e); err != nil {
				return nil, err
			}
		}
		return append(b, end), nil
	case map[string]any:
		b = append(b, tagObject)
		for _, k := range sortedKeys(x) {
			// Keys carry the string tag, so that none starts with end.
			b = appendString(append(b, tagString), k)
			var err error
			if b, err = Append(b, x[k]); err != nil {
				return nil, err
			}
		}
		return append(b, end), nil
	}
	return nil, fmt.Errorf("keyenc: cannot encode %T", v)
}

// Encode returns the encoding of v (see Append).
func Encode(v any) ([]byte, error) { return Append(nil, v) }

func appendNumber(b []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("keyenc: %v is not a JSON number", f)
	}
	if f == 0 {
		f = 0 // -0 and +0 are one number
	}
	u := math.Float64bits(f)
	if u>>63 == 1 {
		u = ^u // negatives: larger magnitude sorts first
	} else {
		u |= 1 << 63 // positives after every negative
	}
	return binary.BigEndian.AppendUint64(append(b, tagNumber), u), nil
}

func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			b = append(b, 0, escZero)
			continue
		}
		b = append(b, s[i])
	}
	return append(b, 0, escEnd)
}

func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

// Decode reads one value from b and returns it with the bytes after it.
// Numbers come back as float64, arrays as []any, objects as map[string]any.
func Decode(b []byte) (v any, rest []byte, err error) {
	return decode(b, 0)
}

// maxDepth bounds nesting when decoding, so corrupt input cannot exhaust
// the stack.
const maxDepth = 256

func decode(b []byte, depth int) (any, []byte, error) {
	if len(b) == 0 {
		return nil, nil, fmt.Errorf("%w: missing value", ErrCorrupt)
	}
	if depth > maxDepth {
		return nil, nil, fmt.Errorf("%w: nested deeper than %d", ErrCorrupt, maxDepth)
	}
	switch tag, b := b[0], b[1:]; tag {
	case tagNull:
		return nil, b, nil
	case tagFalse:
		return false, b, nil
	case tagTrue:
		return true, b, nil
	case tagNumber:
		if len(b) < 8 {
			return nil, nil, fmt.Errorf("%w: short number", ErrCorrupt)
		}
		u := binary.BigEndian.Uint64(b)
		if u>>63 == 1 {
			u &^= 1 << 63
		} else {
			u = ^u
		}
		f := math.Float64frombits(u)
		if math.IsNaN(f) || math.IsInf(f, 0) || f == 0 && math.Signbit(f) {
			return nil, nil, fmt.Errorf("%w: bad number", ErrCorrupt)
		}
		return f, b[8:], nil
	case tagString:
		return decodeString(b)
	case tagArray:
		out := []any{}
		for {
			if len(b) > 0 && b[0] == end {
				return out, b[1:], nil
			}
			v, rest, err := decode(b, depth+1)
			if err != nil {
				return nil, nil, err
			}
			out, b = append(out, v), rest
		}
	case tagObject:
		out := map[string]any{}
		var prev *string
		for {
			if len(b) > 0 && b[0] == end {
				return out, b[1:], nil
			}
			if len(b) == 0 || b[0] != tagString {
				return nil, nil, fmt.Errorf("%w: object key is not a string", ErrCorrupt)
			}
			k, rest, err := decodeString(b[1:])
			if err != nil {
				return nil, nil, err
			}
			if prev != nil && k.(string) <= *prev {
				return nil, nil, fmt.Errorf("%w: object keys out of order", ErrCorrupt)
			}
			key := k.(string)
			prev = &key
			v, rest, err := decode(rest, depth+1)
			if err != nil {
				return nil, nil, err
			}
			out[key], b = v, rest
		}
	default:
		return nil, nil, fmt.Errorf("%w: unknown tag %#x", ErrCorrupt, tag)
	}
}

func decodeString(b []byte) (any, []byte, error) {
	var sb strings.Builder
	for {
		i := bytes.IndexByte(b, 0)
		if i < 0 || i+1 >= len(b) {
			return nil, nil, fmt.Errorf("%w: unterminated string", ErrCorrupt)
		}
		sb.Write(b[:i])
		switch b[i+1] {
		case escEnd:
			return sb.String(), b[i+2:], nil
		case escZero:
			sb.WriteByte(0)
			b = b[i+2:]
		default:
			return nil, nil, fmt.Errorf("%w: bad escape in string", ErrCorrupt)
		}
	}
}

// Compare orders two JSON values as their encodings do, without encoding
// them: the reference the encoding is tested against, and what query
// filters use to compare values.
func Compare(a, b any) int {
	ra, rb := rank(a), rank(b)
	if ra != rb {
		return cmpInt(ra, rb)
	}
	switch x := a.(type) {
	case string:
		return strings.Compare(x, b.(string))
	case []any:
		y := b.([]any)
		for i := 0; i < len(x) && i < len(y); i++ {
			if c := Compare(x[i], y[i]); c != 0 {
				return c
			}
		}
		return cmpInt(len(x), len(y))
	case map[string]any:
		y := b.(map[string]any)
		kx, ky := sortedKeys(x), sortedKeys(y)
		for i := 0; i < len(kx) && i < len(ky); i++ {
			if c := strings.Compare(kx[i], ky[i]); c != 0 {
				return c
			}
			if c := Compare(x[kx[i]], y[ky[i]]); c != 0 {
				return c
			}
		}
		return cmpInt(len(kx), len(ky))
	}
	if fa, ok := number(a); ok {
		fb, _ := number(b)
		switch {
		case fa < fb:
			return -1
		case fa > fb:
			return 1
		}
	}
	return 0
}

// rank is a value's type position (and for booleans their value).
func rank(v any) int {
	switch x := v.(type) {
	case nil:
		return tagNull
	case bool:
		if x {
			return tagTrue
		}
		return tagFalse
	case string:
		return tagString
	case []any:
		return tagArray
	case map[string]any:
		return tagObject
	}
	if _, ok := number(v); ok {
		return tagNumber
	}
	return -1 // not a JSON value
}

// number returns v as a float64 if it is a number.
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	}
	return 0, false
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TypeBounds returns the range [lo, hi) of the encodings of every value of
// v's type (null, booleans, numbers, strings, arrays or objects).
func TypeBounds(v any) (lo, hi []byte) {
	switch rank(v) {
	case tagNull:
		return []byte{tagNull}, []byte{tagNull + 1}
	case tagFalse, tagTrue:
		return []byte{tagFalse}, []byte{tagTrue + 1}
	case tagNumber:
		return []byte{tagNumber}, []byte{tagNumber + 1}
	case tagString:
		return []byte{tagString}, []byte{tagString + 1}
	case tagArray:
		return []byte{tagArray}, []byte{tagArray + 1}
	}
	return []byte{tagObject}, []byte{tagObject + 1}
}

// AppendStringPrefix appends the encoding of every string that starts with
// p, up to where they differ: the range of those strings' encodings is the
// keys with this prefix.
func AppendStringPrefix(b []byte, p string) []byte {
	b = appendString(append(b, tagString), p)
	return b[:len(b)-2] // without the terminator
}
