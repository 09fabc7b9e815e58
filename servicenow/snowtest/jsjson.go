package snowtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"unicode/utf8"
)

// jsRestringify returns JSON.stringify(JSON.parse(body)) as ServiceNow's
// server-side JavaScript computes it for the x-b2b-signature (the
// documented recipe): object keys in their order, no insignificant space,
// strings escaped only where JSON requires it ("<", ">", "&", U+2028 and
// non-ASCII stay raw), numbers in JavaScript's shortest form. (JavaScript
// moves integer-like keys first; the bridge sends none.)
func jsRestringify(body []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var out bytes.Buffer
	if err := jsValue(dec, &out); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON value")
	}
	return out.Bytes(), nil
}

func jsValue(dec *json.Decoder, out *bytes.Buffer) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch t := tok.(type) {
	case json.Delim:
		closing := byte('}')
		if t == '[' {
			closing = ']'
		}
		out.WriteByte(byte(t))
		for first := true; dec.More(); first = false {
			if !first {
				out.WriteByte(',')
			}
			if t == '{' {
				k, err := dec.Token()
				if err != nil {
					return err
				}
				jsString(out, k.(string))
				out.WriteByte(':')
			}
			if err := jsValue(dec, out); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil {
			return err
		}
		out.WriteByte(closing)
	case string:
		jsString(out, t)
	case json.Number:
		f, err := t.Float64()
		if err != nil {
			return fmt.Errorf("number %s: %w", t, err)
		}
		if f == math.Trunc(f) && math.Abs(f) < 1e21 {
			out.WriteString(strconv.FormatFloat(f, 'f', -1, 64))
		} else {
			out.WriteString(strconv.FormatFloat(f, 'g', -1, 64))
		}
	case bool:
		out.WriteString(strconv.FormatBool(t))
	case nil:
		out.WriteString("null")
	}
	return nil
}

// jsString writes s quoted as JSON.stringify does.
func jsString(out *bytes.Buffer, s string) {
	out.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			out.WriteString(`\"`)
		case '\\':
			out.WriteString(`\\`)
		case '\b':
			out.WriteString(`\b`)
		case '\f':
			out.WriteString(`\f`)
		case '\n':
			out.WriteString(`\n`)
		case '\r':
			out.WriteString(`\r`)
		case '\t':
			out.WriteString(`\t`)
		default:
			if r < 0x20 {
				fmt.Fprintf(out, `\u%04x`, r)
				continue
			}
			var b [utf8.UTFMax]byte
			out.Write(b[:utf8.EncodeRune(b[:], r)])
		}
	}
	out.WriteByte('"')
}
