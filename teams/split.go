package teams

import (
	"strings"
	"unicode/utf8"
)

// Markers shown to the user when a long message is cut into several.
const (
	continuedMarker = "\n\n[continued]"
	truncatedMarker = "\n\n[message truncated]"
)

// Teams measures a bot message as its whole payload encoded in UTF-16. These
// helpers count the UTF-16 bytes a string takes once JSON-encoded (as
// encoding/json escapes it with HTML escaping off).

// jsonRuneSize returns the UTF-16 bytes rune r takes inside a JSON string.
func jsonRuneSize(r rune) int {
	switch {
	case r == '"' || r == '\\' || r == '\n' || r == '\r' || r == '\t':
		return 4 // two-character escape
	case r < 0x20 || r == '\u2028' || r == '\u2029':
		return 12 // \uXXXX
	case r >= 0x10000:
		return 4 // surrogate pair
	default:
		return 2
	}
}

// jsonUTF16Size returns the UTF-16 bytes s takes inside a JSON string.
func jsonUTF16Size(s string) int {
	n := 0
	for _, r := range s {
		n += jsonRuneSize(r)
	}
	return n
}

// utf16Size returns the UTF-16 bytes of b (a JSON document).
func utf16Size(b []byte) int {
	n := 0
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		b = b[size:]
		if r >= 0x10000 {
			n += 4
		} else {
			n += 2
		}
	}
	return n
}

// splitText cuts text into pieces whose JSON-encoded UTF-16 size is at most
// budget bytes. It cuts at the last paragraph break, else line break, else
// space in the second half of a piece, else between runes (never inside
// one). The separator at a cut is dropped. budget is raised to 16 if lower.
func splitText(text string, budget int) []string {
	budget = max(budget, 16)
	var parts []string
	for text != "" {
		size, end := 0, 0
		for end < len(text) {
			r, n := utf8.DecodeRuneInString(text[end:])
			rs := jsonRuneSize(r)
			if size+rs > budget && end > 0 {
				break
			}
			size += rs
			end += n
		}
		if end >= len(text) {
			parts = append(parts, text)
			break
		}
		cut, skip := end, 0
		for _, sep := range []string{"\n\n", "\n", " "} {
			if p := strings.LastIndex(text[:end], sep); p > 0 && p >= end/2 {
				cut, skip = p, len(sep)
				break
			}
		}
		parts = append(parts, text[:cut])
		text = text[cut+skip:]
	}
	return parts
}
