package bridge

import (
	"testing"
	"unicode/utf8"
)

func TestParseCSATSubmit(t *testing.T) {
	rating := func(session, n, comment string) map[string]string {
		return map[string]string{SubmitAction: CSATAction, CSATSessionKey: session, CSATRatingKey: n, CSATCommentKey: comment}
	}
	for _, tc := range []struct {
		name    string
		data    map[string]string
		want    CSATSubmit
		ok, bad bool
	}{
		{"rating", rating("s1", "4", ""), CSATSubmit{Session: "s1", Rating: 4}, true, false},
		{"with comment", rating("s1", " 5 ", "  quick help "), CSATSubmit{Session: "s1", Rating: 5, Comment: "quick help"}, true, false},
		{"rating 0", rating("s1", "0", ""), CSATSubmit{}, true, true},
		{"rating 6", rating("s1", "6", ""), CSATSubmit{}, true, true},
		{"rating four", rating("s1", "four", ""), CSATSubmit{}, true, true},
		{"no session", rating("", "3", ""), CSATSubmit{}, true, true},
		{"other action", map[string]string{SubmitAction: "other", CSATRatingKey: "4"}, CSATSubmit{}, false, false},
		{"a payload", map[string]string{"payload": "/csat 4"}, CSATSubmit{}, false, false},
		{"nil", nil, CSATSubmit{}, false, false},
	} {
		got, ok, err := ParseCSATSubmit(tc.data)
		if got != tc.want || ok != tc.ok || (err != nil) != tc.bad {
			t.Errorf("%s: ParseCSATSubmit = %+v, %v, %v; want %+v, %v, error %v", tc.name, got, ok, err, tc.want, tc.ok, tc.bad)
		}
	}
}

// FuzzParseCSATSubmit: whatever a card submit carries, a rating is 1 to 5
// with a session, its comment is valid UTF-8 of at most maxCommentLen runes,
// and only the rating action is ever taken for one.
func FuzzParseCSATSubmit(f *testing.F) {
	f.Add(CSATAction, "s1", "4", "great")
	f.Add(CSATAction, "", "9", "")
	f.Add("other", "s1", "3", "x")
	f.Add(CSATAction, "s", "+3", "\xff\xfe")
	f.Fuzz(func(t *testing.T, action, session, rating, comment string) {
		sub, ok, err := ParseCSATSubmit(map[string]string{SubmitAction: action, CSATSessionKey: session, CSATRatingKey: rating, CSATCommentKey: comment})
		if action != CSATAction && (ok || err != nil) {
			t.Fatalf("action %q taken for a rating", action)
		}
		if ok && err == nil {
			if sub.Rating < 1 || sub.Rating > 5 || sub.Session == "" {
				t.Fatalf("accepted %+v", sub)
			}
			if !utf8.ValidString(sub.Comment) || utf8.RuneCountInString(sub.Comment) > maxCommentLen {
				t.Fatalf("comment %q", sub.Comment)
			}
		}
		if err != nil && sub != (CSATSubmit{}) {
			t.Fatalf("malformed but %+v", sub)
		}
	})
}
