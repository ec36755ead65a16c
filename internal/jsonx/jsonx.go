// Package jsonx decodes request bodies that must hold exactly one JSON
// value, with the options json.Unmarshal does not offer.
package jsonx

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Options for Decode.
type Options struct {
	// Numbers decodes numbers into an interface value as json.Number.
	Numbers bool
	// Strict refuses object keys that match no field of the target struct.
	Strict bool
}

// Decode decodes the one JSON value b holds into v, and refuses b when
// anything but white space follows that value, as json.Unmarshal does.
// A json.Decoder on its own cannot tell: its More reports a stray ']' or
// '}' after the value as the end of the input.
func Decode(b []byte, v any, o Options) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if o.Numbers {
		dec.UseNumber()
	}
	if o.Strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return err
	}
	if rest := bytes.TrimLeft(b[dec.InputOffset():], " \t\r\n"); len(rest) > 0 {
		return fmt.Errorf("invalid character %q after top-level value", rest[0])
	}
	return nil
}
