package review

import (
	"strings"
	"testing"
	"time"
)

// FuzzParseRange: any from/to/last never panics, and an accepted range is
// non-empty and, for last, ends now.
func FuzzParseRange(f *testing.F) {
	for _, s := range [][3]string{
		{"", "", "7d"}, {"", "", "2w"}, {"", "", "36h"}, {"", "", "90m"}, {"", "", "0d"}, {"", "", "-5h"},
		{"", "", "999999w"}, {"", "", "9223372036854775807ns"}, {"2026-11-01", "2026-11-30", ""},
		{"2026-11-16T06:00:00Z", "2026-11-16T05:00:00Z", ""}, {"2026-02-30", "", ""}, {"x", "", "7d"}, {"", "2026-11-01", ""},
	} {
		f.Add(s[0], s[1], s[2])
	}
	now := time.Date(2026, 12, 2, 15, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, from, to, last string) {
		start, end, err := ParseRange(from, to, last, now)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "review: ") {
				t.Fatalf("error %q does not name the package", err)
			}
			return
		}
		if !start.Before(end) {
			t.Fatalf("(%q, %q, %q) → [%v, %v): empty", from, to, last, start, end)
		}
		if last != "" && !end.Equal(now) {
			t.Fatalf("last %q ends at %v, not now", last, end)
		}
	})
}

// FuzzParseFormat: a format it accepts is valid, and its own name parses to
// itself.
func FuzzParseFormat(f *testing.F) {
	for _, s := range []string{"csv", " JSONL ", "ndjson", "nlu", "rasa", "YAML", "yml", "html", "pdf", "", "c\x00sv"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ft, err := ParseFormat(s)
		if err != nil {
			return
		}
		if !ft.valid() || ft.Ext() == "" || ft.ContentType() == "" {
			t.Fatalf("%q → invalid format %q", s, ft)
		}
		if again, err := ParseFormat(string(ft)); err != nil || again != ft {
			t.Fatalf("%q → %q, which parses to %q, %v", s, ft, again, err)
		}
	})
}
