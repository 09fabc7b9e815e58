package review

import (
	"hash/fnv"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestRedactorRedacts(t *testing.T) {
	r, err := NewRedactor()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, in, want string
	}{
		{"email", "my email is jane.doe@contoso.com, please reply there",
			"my email is [email], please reply there"},
		{"email with plus and subdomain", "send it to j.doe+vpn@mail.eu.contoso.co.uk.",
			"send it to [email]."},
		{"email unicode", "schreib an jürgen.müller@firma.de", "schreib an [email]"},
		{"email glued to digits", "x@contoso.com5551234567", "[email]5551234567"},
		{"phone international spaces", "call me at +49 30 1234567 after 3pm",
			"call me at [phone] after 3pm"},
		{"phone international trunk", "Tel. +49 (0)30 1234567", "Tel. [phone]"},
		{"phone international compact", "whatsapp: +4915112345678", "whatsapp: [phone]"},
		{"phone US international", "I'm on +1 (555) 123-4567 all day", "I'm on [phone] all day"},
		{"phone UK", "ring +44 20 7946 0958", "ring [phone]"},
		{"phone 00 prefix", "unter 0049 30 1234567 erreichbar", "unter [phone] erreichbar"},
		{"phone NANP parens", "my desk phone (555) 123-4567 is dead", "my desk phone [phone] is dead"},
		{"phone NANP dashes", "call 555-123-4567", "call [phone]"},
		{"phone NANP dots", "555.123.4567 is my cell", "[phone] is my cell"},
		{"phone NANP leading 1", "toll free 1-800-555-1234", "toll free [phone]"},
		{"phone German landline", "Festnetz 030 1234567, Handy 0171 1234567",
			"Festnetz [phone], Handy [phone]"},
		{"phone German slash", "Tel 0171/1234567", "Tel [phone]"},
		{"phone German compact mobile", "ruf mich an: 01711234567", "ruf mich an: [phone]"},
		{"phone UK local", "mobile 07700 900123 or office (020) 7946 0958",
			"mobile [phone] or office [phone]"},
		{"phone French", "mon numéro: 01 23 45 67 89", "mon numéro: [phone]"},
		{"phone by context", "call me at 5551234567", "call me at [phone]"},
		{"phone by context colon", "my phone: 12345678 (extension 4711)", "my phone: [phone] (extension 4711)"},
		{"phone by context number is", "my mobile number is 98765432", "my mobile number is [phone]"},
		{"card spaced", "my card 4111 1111 1111 1111 was charged twice",
			"my card [card] was charged twice"},
		{"card dashed", "card no 5555-5555-5555-4444.", "card no [card]."},
		{"card compact", "visa:4012888888881881", "visa:[card]"},
		{"card amex grouping", "amex 3782 822463 10005 expired", "amex [card] expired"},
		{"card next to room number", "room 1204 4111 1111 1111 1111", "room 1204 [card]"},
		{"card next to year", "4111 1111 1111 1111 2026", "[card] 2026"},
		{"several", "jane@contoso.com / +49 30 1234567 / 4111111111111111",
			"[email] / [phone] / [card]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.Redact(tt.in); got != tt.want {
				t.Errorf("Redact(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestRedactorKeepsPlainNumbers(t *testing.T) {
	r, err := NewRedactor()
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{
		"I have 3 tickets open",
		"ticket INC0012345 is still open",
		"see RITM0054321 and KB0012345, and REQ0001234",
		"error 404 when I open the portal",
		"Outlook says error 0x800CCC0E",
		"the VPN client version 10.2.1 keeps crashing",
		"updated to 5.2.1234 yesterday",
		"since 16.11.2026 nothing works",
		"since 2026-11-16 nothing works",
		"since 11/16/2026 nothing works",
		"the meeting is on 05.11.2026 at 14:05:00",
		"between 09:30 and 17:00",
		"I'm in room 1204 on floor 3",
		"it worked in 2025 but not in 2026",
		"Windows 11 23H2 build 22631.4460",
		"my laptop asset tag is 012345",
		"my phone broke, ticket 12345678 was opened",
		"phone extension 4711",
		"the printer on floor 2 printed 250 pages",
		"order 12345678 arrived",
		"I called 3 times between 10 and 11",
		"disk is at 95% with 1,234,567 files",
		"IP 10.0.0.1 and port 8080",
		"the file is 12.5 MB, 1024 KB chunks",
		"serial 5CD1234XYZ",
		"1234567890123.45 is the checksum",
		"Q3 2026 budget of 120000 EUR",
	} {
		if got := r.Redact(in); got != in {
			t.Errorf("Redact(%q) = %q, want it unchanged", in, got)
		}
	}
}

func TestFindInternational(t *testing.T) {
	for _, s := range []string{
		"+49 30 1234567", "call +49 30 1234567, or +44 20 7946 0958", "a+49 30 1234567", "++49 30 1234567",
		"+1+2 3456789", "é+33 1 23 45 67 89", "+49 30 1234567+49 30 7654321", "x +", "+", "",
		"+1 (555) 123-4567 " + strings.Repeat("9", 100),
	} {
		got, want := findInternational(s), phoneRules[0].re.FindAllStringSubmatchIndex(s, -1)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("findInternational(%q) = %v, the regexp gives %v", s, got, want)
		}
	}
}

func TestRedactorCardNeedsLuhn(t *testing.T) {
	r, _ := NewRedactor()
	// 16 digits failing the Luhn check: an id, not a card.
	in := "reference 4111 1111 1111 1112"
	if got := r.Redact(in); got != in {
		t.Errorf("Redact(%q) = %q, want it unchanged", in, got)
	}
}

func TestRedactorExtraPatterns(t *testing.T) {
	r, err := NewRedactor(`\bE\d{6}\b`, "", `(?i)iban:?\s*[A-Z]{2}\d{2}[A-Z0-9 ]{10,30}`)
	if err != nil {
		t.Fatal(err)
	}
	got := r.Redact("employee E123456, IBAN DE89 3704 0044 0532 0130 00")
	want := "employee [redacted], [redacted]"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestNewRedactorErrors(t *testing.T) {
	for _, p := range []string{`(unclosed`, `x*`} {
		if _, err := NewRedactor(p); err == nil || !strings.HasPrefix(err.Error(), "review: ") {
			t.Errorf("NewRedactor(%q) error = %v, want a review: error", p, err)
		}
	}
}

func TestRedactIdempotent(t *testing.T) {
	r, _ := NewRedactor()
	for _, in := range []string{
		"x@contoso.com5551234567",
		"call me at +49 30 1234567 or jane@contoso.com",
		"[email] [phone] [card] [redacted] [name]",
		"4111 1111 1111 1111 4111 1111 1111 1111",
	} {
		once := r.Redact(in)
		if twice := r.Redact(once); twice != once {
			t.Errorf("Redact is not idempotent on %q: %q then %q", in, once, twice)
		}
	}
}

func TestNameRedactor(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"Jane Doe", "Hi Jane, is this Jane Doe's laptop?", "Hi [name], is this [name] [name]'s laptop?"},
		{"Jane Doe", "Janet and jane are not Jane", "Janet and jane are not [name]"},
		{"Li", "Li is too short to match", "Li is too short to match"},
		{"", "nothing", "nothing"},
		{"Doe, Jane (IT)", "Doe here", "[name] here"},
	}
	for _, tt := range tests {
		got := tt.in
		if f := nameRedactor(tt.name); f != nil {
			got = f(tt.in)
		}
		if got != tt.want {
			t.Errorf("name %q: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

func FuzzRedact(f *testing.F) {
	for _, s := range []string{
		"call me at +49 30 1234567 or jane@contoso.com",
		"card 4111 1111 1111 1111, room 1204, INC0012345",
		"(555) 123-4567 555.123.4567 1-800-555-1234",
		"0171/1234567 01 23 45 67 89 0049 30 1234567",
		"phone: 12345678 version 10.2.1 on 16.11.2026",
		"x@y.zz1234567890123 \xff\xfe",
	} {
		f.Add(s)
	}
	r, err := NewRedactor()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := r.Redact(s)
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8 out of %q: %q", s, out)
		}
		if again := r.Redact(out); again != out {
			t.Fatalf("not idempotent on %q:\n once %q\ntwice %q", s, out, again)
		}
		if m := emailRE.FindString(out); m != "" {
			t.Fatalf("e-mail %q left in %q", m, out)
		}
		if countDigits(out) > countDigits(s) {
			t.Fatalf("digits added: %q → %q", s, out)
		}
		// The hand-written scanners agree with their specifications.
		v := strings.ToValidUTF8(s, "\uFFFD")
		var runs [][2]int
		for _, loc := range digitRunRE.FindAllStringIndex(v, -1) {
			runs = append(runs, [2]int{loc[0], loc[1]})
		}
		if got := digitRuns(v); !reflect.DeepEqual(got, runs) {
			t.Fatalf("digitRuns(%q) = %v, the regexp gives %v", v, got, runs)
		}
		if got, want := foldHash(v), fnvLower(v); got != want {
			t.Fatalf("foldHash(%q) = %x, want %x", v, got, want)
		}
		if got, want := redactEmails(v), emailRE.ReplaceAllLiteralString(v, TokenEmail); got != want {
			t.Fatalf("redactEmails(%q) = %q, emailRE gives %q", v, got, want)
		}
		for i, rule := range phoneRules {
			if rule.find != nil {
				if got, want := rule.find(v), rule.re.FindAllStringSubmatchIndex(v, -1); !reflect.DeepEqual(got, want) {
					t.Fatalf("rule %d: find(%q) = %v, the regexp gives %v", i, v, got, want)
				}
			}
			if phoneDigits(v) >= rule.minDigits && (rule.need == nil || rule.need(v)) {
				continue
			}
			if got := replaceMatches(v, rule.re, rule.group, rule.valid, TokenPhone); got != v {
				t.Fatalf("phone rule %d was skipped on %q, yet it redacts it: %q", i, v, got)
			}
		}
	})
}

// digitRunRE specifies digitRuns.
var digitRunRE = regexp.MustCompile(`\d+(?:[ \-]\d+)*`)

// fnvLower specifies foldHash.
func fnvLower(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(strings.ToLower(s)))
	return h.Sum64()
}
