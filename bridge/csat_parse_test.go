package bridge

import (
	"strings"
	"testing"
)

func TestParseCSAT(t *testing.T) {
	for _, tc := range []struct {
		in        string
		rating    int
		comment   string
		isComment bool
		ok        bool
	}{
		{"/csat 4", 4, "", false, true},
		{"  /CSAT 5 ", 5, "", false, true},
		{"/csat 0", 0, "", false, true},
		{"/csat 6", 0, "", false, true},
		{"/csat four", 0, "", false, true},
		{"/comment great help", 0, "great help", true, true},
		{"/comment", 0, "", true, true},
		{"/csatx 4", 0, "", false, false},
		{"rate 4", 0, "", false, false},
		{"", 0, "", false, false},
	} {
		r, c, isC, ok := parseCSAT(tc.in)
		if r != tc.rating || c != tc.comment || isC != tc.isComment || ok != tc.ok {
			t.Errorf("parseCSAT(%q) = %d %q %v %v", tc.in, r, c, isC, ok)
		}
	}
}

func FuzzParseCSAT(f *testing.F) {
	for _, s := range []string{"/csat 4", "/comment hi", "/csat", "/CSAT  9", "hello", "/comment \x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, c, isC, ok := parseCSAT(s)
		if !ok && (r != 0 || c != "" || isC) {
			t.Fatalf("not a rating but %d %q %v", r, c, isC)
		}
		if r < 0 || r > 5 || (isC && r != 0) {
			t.Fatalf("rating %d (comment %v)", r, isC)
		}
		if ok && !strings.HasPrefix(strings.ToLower(strings.TrimSpace(s)), "/c") {
			t.Fatalf("%q taken for a rating", s)
		}
	})
}
