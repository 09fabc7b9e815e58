package review

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Replacement tokens written in place of redacted text. None of them contains a
// digit or an '@', so redacting already redacted text changes nothing.
const (
	TokenEmail    = "[email]"
	TokenPhone    = "[phone]"
	TokenCard     = "[card]"
	TokenName     = "[name]"
	TokenRedacted = "[redacted]" // matches of configured extra patterns
)

// Redactor removes personal data from free text: e-mail addresses, phone
// numbers, card-like digit runs and configured extra patterns. It is meant to
// over-redact a little rather than leak, but it leaves ordinary numbers alone:
// counts ("3 tickets"), ticket numbers glued to their prefix ("INC0012345"),
// status codes, versions, dates, times, room numbers and years.
//
// The rules, in the order they run:
//
//   - each extra pattern → [redacted] (first, so that a configured pattern
//     such as an IBAN or an employee id wins over the generic rules);
//   - e-mail: local@domain.tld (Unicode letters allowed) → [email];
//   - card: 13–19 digits, optionally grouped by single spaces or dashes, that
//     pass the Luhn check and are not glued to letters or part of a decimal
//     number → [card];
//   - phone, international: "+" and 8–15 digits ("+49 (0)30 1234567",
//     "+1-555-123-4567"), or "00" + country code + separated groups
//     ("0044 20 7946 0958") → [phone];
//   - phone, North American: "(555) 123-4567", "555-123-4567", "555.123.4567",
//     "555 123 4567", optionally with a leading "1-" → [phone];
//   - phone, European trunk "0": "030 1234567", "0171/1234567",
//     "(020) 7946 0958", "07700 900123", "01711234567", "01 23 45 67 89" —
//     9 to 13 digits in all → [phone];
//   - phone, by context: 6–15 digits right after a word such as "phone",
//     "tel", "mobile", "call me at", "Handy", "Telefon" ("call me at 5551234",
//     "phone: 12345678"), unless they look like a date, time or version.
//
// Redact is idempotent: Redact(Redact(s)) == Redact(s). A Redactor is safe for
// concurrent use.
type Redactor struct {
	extra []*regexp.Regexp
}

// NewRedactor returns a Redactor with the built-in rules plus the extra
// patterns (Go regexp syntax), each of whose matches becomes [redacted]. It
// returns an error naming the first pattern that does not compile or that
// matches the empty string.
func NewRedactor(extra ...string) (*Redactor, error) {
	r := &Redactor{}
	for _, p := range extra {
		if strings.TrimSpace(p) == "" {
			continue
		}
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("review: redaction pattern %q: %w", p, err)
		}
		if re.MatchString("") {
			return nil, fmt.Errorf("review: redaction pattern %q matches the empty string", p)
		}
		r.extra = append(r.extra, re)
	}
	return r, nil
}

// maxRedactPasses bounds the passes Redact makes until the text stops changing
// (a replacement can expose a new match: "x@contoso.com5551234567"). Each
// built-in replacement removes digits or an '@' and adds none, so the passes
// end on their own, in practice after two; the bound guards against extra
// patterns that match their own replacement.
const maxRedactPasses = 4

// Redact returns s with personal data replaced by tokens. Invalid UTF-8 is
// replaced by U+FFFD first.
func (r *Redactor) Redact(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	for range maxRedactPasses {
		out := r.pass(s)
		if out == s {
			return out
		}
		s = out
	}
	return s
}

// pass applies every rule once. Rules that cannot match (too few digits, no
// '@') are skipped, which keeps the common case — short texts without numbers
// — cheap.
func (r *Redactor) pass(s string) string {
	digits := 0
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			digits++
		}
	}
	for _, re := range r.extra {
		s = re.ReplaceAllLiteralString(s, TokenRedacted)
	}
	if strings.IndexByte(s, '@') >= 0 {
		s = redactEmails(s)
	}
	if digits >= 13 {
		s = redactCards(s)
	}
	if digits >= 6 {
		s = redactPhones(s)
	}
	return s
}

// emailRE is what redactEmails finds: local@domain.tld. The scanner does the
// same job without a regular expression, which is an order of magnitude
// faster on long texts; the tests keep emailRE as its specification.
var emailRE = regexp.MustCompile(`[\p{L}\p{N}._%+\-]+@(?:[\p{L}\p{N}\-]+\.)+\p{L}{2,}`)

// redactEmails replaces every leftmost-longest match of emailRE with [email].
func redactEmails(s string) string {
	var b strings.Builder
	last := 0 // end of the previous match: a local part cannot start before it
	for i := 0; i < len(s); i++ {
		if s[i] != '@' {
			continue
		}
		// The local part: the run of local-part characters before '@'.
		l := i
		for l > last {
			r, size := utf8.DecodeLastRuneInString(s[last:l])
			if !isLocalRune(r) {
				break
			}
			l -= size
		}
		if l == i {
			continue
		}
		end := emailDomainEnd(s, i+1)
		if end < 0 {
			continue
		}
		b.WriteString(s[last:l])
		b.WriteString(TokenEmail)
		last = end
		i = end - 1
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

func isLocalRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsNumber(r) || strings.ContainsRune("._%+-", r)
}

func isLabelRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsNumber(r) || r == '-'
}

// emailDomainEnd matches (?:[\p{L}\p{N}-]+\.)+\p{L}{2,} at s[start:] greedily
// and returns where the match ends, or -1.
func emailDomainEnd(s string, start int) int {
	// Labels: runs of label runes separated by single dots.
	type label struct{ start, end int }
	var labels []label
	i := start
	for {
		j := i
		for j < len(s) {
			r, size := utf8.DecodeRuneInString(s[j:])
			if !isLabelRune(r) {
				break
			}
			j += size
		}
		labels = append(labels, label{i, j})
		if j == i || j >= len(s) || s[j] != '.' {
			break
		}
		i = j + 1
	}
	// The longest k >= 2 whose first k-1 labels are non-empty and whose k-th
	// label starts with at least two letters.
	for k := len(labels); k >= 2; k-- {
		ok := true
		for _, l := range labels[:k-1] {
			if l.end == l.start {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		tld := labels[k-1]
		n, end := 0, tld.start
		for end < tld.end {
			r, size := utf8.DecodeRuneInString(s[end:])
			if !unicode.IsLetter(r) {
				break
			}
			n++
			end += size
		}
		if n >= 2 {
			return end
		}
	}
	return -1
}

// phoneDigits returns the most digits in one cluster of s: digits connected by
// separators (space . - / ( ) +), not counting a leading group glued to a
// letter ("INC0012345"), in which no phone rule can start. Every phone rule's
// match lies within one cluster, so a rule needing n digits cannot match when
// phoneDigits(s) < n.
func phoneDigits(s string) int {
	longest := 0
	i := 0
	for i < len(s) {
		if !isDigit(s[i]) {
			i++
			continue
		}
		glued := false
		if i > 0 {
			r, _ := utf8.DecodeLastRuneInString(s[:i])
			glued = unicode.IsLetter(r) || r == '_'
		}
		digits := 0
		j := i
		for j < len(s) {
			if isDigit(s[j]) {
				if !glued {
					digits++
				}
				j++
				continue
			}
			k := j
			for k < len(s) && strings.IndexByte(" .-/()+", s[k]) >= 0 {
				k++
			}
			if k == j || k == len(s) || !isDigit(s[k]) {
				break
			}
			glued = false // the glued group ends at the first separator
			j = k
		}
		longest = max(longest, digits)
		i = j
	}
	return longest
}

// phoneRule is a candidate pattern plus a check of the candidate (group of the
// match) that decides whether it is really a phone number. minDigits and need
// are cheap necessary conditions: a rule is not run on a text whose longest
// digit cluster (see phoneDigits) is shorter than minDigits, or for which need
// returns false.
type phoneRule struct {
	re        *regexp.Regexp
	group     int
	valid     func(string) bool
	minDigits int
	need      func(s string) bool
	// find, when set, returns what re.FindAllStringSubmatchIndex(s, -1)
	// returns, faster.
	find func(s string) [][]int
}

// redactPhones runs the phone rules that can match s. Regular expressions
// are slow next to the rest of the redaction; the cheap conditions keep the
// common text (ticket numbers, versions, dates) away from them.
func redactPhones(s string) string {
	longest := phoneDigits(s)
	for _, rule := range phoneRules {
		if longest < rule.minDigits || (rule.need != nil && !rule.need(s)) {
			continue
		}
		var locs [][]int
		if rule.find != nil {
			locs = rule.find(s)
		} else {
			locs = rule.re.FindAllStringSubmatchIndex(s, -1)
		}
		if out := replaceLocs(s, locs, rule.group, rule.valid, TokenPhone); out != s {
			s = out
			longest = phoneDigits(s)
		}
	}
	return s
}

// phoneKeywords are the stems of the context rule's words, lower case.
var phoneKeywords = []string{"phone", "tel", "mobil", "cell", "fax", "whatsapp", "handy",
	"call me", "reach me", "text me", "ring me", "rufnummer"}

// hasPhoneKeyword reports whether s may hold a word of the context rule. The
// rule is case-insensitive under Unicode simple folding, where the long s
// (U+017F) folds to "s"; strings.ToLower leaves it, so it is mapped here.
func hasPhoneKeyword(s string) bool {
	l := strings.ToLower(s)
	if strings.ContainsRune(l, '\u017F') {
		l = strings.ReplaceAll(l, "\u017F", "s")
	}
	for _, k := range phoneKeywords {
		if strings.Contains(l, k) {
			return true
		}
	}
	return false
}

var phoneRules = []phoneRule{
	{ // +49 (0)30 1234567, +1 (555) 123-4567, +4915112345678
		re:    regexp.MustCompile(`(?:^|[^\p{L}\p{N}_+])(\+\d{1,4}(?:[ .\-/]?\(\d{1,5}\))?(?:[ .\-/]?\d{1,7}){1,6})`),
		group: 1,
		valid: digitsBetween(8, 15), minDigits: 8,
		need: func(s string) bool { return strings.IndexByte(s, '+') >= 0 },
		find: findInternational,
	},
	{ // 0049 30 1234567, 0044 (20) 7946 0958
		re:    regexp.MustCompile(`\b(00[1-9]\d{0,3}(?:[ .\-/]?\(\d{1,5}\))?(?:[ .\-/]\d{1,7}){1,6})\b`),
		group: 1,
		valid: digitsBetween(10, 17), minDigits: 10,
		need: func(s string) bool { return strings.Contains(s, "00") },
	},
	{ // (555) 123-4567, 555-123-4567, 555.123.4567, 555 123 4567, 1-800-555-1234
		re:    regexp.MustCompile(`(?:^|[^\p{L}\p{N}_.\-])((?:1[ .\-])?(?:\(\d{3}\)[ .\-]?|\d{3}[ .\-])\d{3}[ .\-]\d{4})\b`),
		group: 1,
		valid: func(string) bool { return true }, minDigits: 10,
	},
	{ // 01 23 45 67 89
		re:    regexp.MustCompile(`\b(0[1-9](?:[ .\-]\d{2}){4})\b`),
		group: 1,
		valid: func(string) bool { return true }, minDigits: 10,
	},
	{ // 030 1234567, 0171/1234567, (020) 7946 0958, 07700 900123, 01711234567
		re:    regexp.MustCompile(`(?:^|[^\p{L}\p{N}_.,])((?:\(0[1-9]\d{1,4}\) ?|0[1-9]\d{1,4}[ /\-]?)\d{3,8}(?:[ \-]\d{2,5}){0,3})\b`),
		group: 1,
		valid: digitsBetween(9, 13), minDigits: 9,
	},
	{ // by context: "phone: 12345678", "call me at 5551234567", "Handy 0171 …"
		re: regexp.MustCompile(`(?i)\b(?:phone|telephone|tel|mobile|cell|cellphone|fax|whatsapp|handy|telefon|telefonnummer|mobil|mobilnummer|rufnummer|call me|reach me|text me|ring me)\b\.?` +
			`[\s:#=\-]*(?:(?:number|no\.?|nr\.?|nummer|is|ist|at|on|under|unter)\b\.?[\s:#=\-]*){0,3}` +
			`(\+?\(?\d[\d .\-/()]{4,24}\d)`),
		group: 1,
		valid: func(s string) bool {
			return digitsBetween(6, 15)(s) && !dateOrVersionRE.MatchString(s)
		},
		minDigits: 6, need: hasPhoneKeyword,
	},
}

// intlRE is the international rule anchored at its "+". A match is at most
// 61 bytes long (1 + 4 + 8 + 6×8).
var intlRE = regexp.MustCompile(`^\+\d{1,4}(?:[ .\-/]?\(\d{1,5}\))?(?:[ .\-/]?\d{1,7}){1,6}`)

// findInternational finds the international rule's matches by trying the
// anchored expression at each "+" that follows a boundary, on a 64-byte window:
// the same matches as the unanchored expression, without running it over the
// whole text.
func findInternational(s string) [][]int {
	var locs [][]int
	last := 0 // end of the previous match
	for p := strings.IndexByte(s, '+'); p >= 0; {
		start := p // the boundary character's start, or p at the text's start
		ok := true
		if p > 0 {
			r, size := utf8.DecodeLastRuneInString(s[:p])
			start = p - size
			ok = start >= last && !unicode.IsLetter(r) && !unicode.IsNumber(r) && r != '_' && r != '+'
		}
		next := p + 1
		if ok {
			if m := intlRE.FindStringIndex(s[p:min(len(s), p+64)]); m != nil {
				locs = append(locs, []int{start, p + m[1], p, p + m[1]})
				last = p + m[1]
				next = last
			}
		}
		i := strings.IndexByte(s[next:], '+')
		if i < 0 {
			break
		}
		p = next + i
	}
	return locs
}

// dateOrVersionRE matches shapes the context rule must not take for a phone
// number: dates (16.11.2026, 2026-11-16, 11/16/2026), times and versions.
var dateOrVersionRE = regexp.MustCompile(`^(?:\d{1,4}[./\-]\d{1,2}[./\-]\d{1,4}|\d{1,2}:\d{2}(?::\d{2})?|\d+(?:\.\d+){2,})$`)

func digitsBetween(lo, hi int) func(string) bool {
	return func(s string) bool {
		n := countDigits(s)
		return n >= lo && n <= hi
	}
}

func countDigits(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			n++
		}
	}
	return n
}

// replaceMatches replaces submatch group of every match of re that passes valid
// with token.
func replaceMatches(s string, re *regexp.Regexp, group int, valid func(string) bool, token string) string {
	return replaceLocs(s, re.FindAllStringSubmatchIndex(s, -1), group, valid, token)
}

// replaceLocs replaces submatch group of every match in locs (as returned by
// FindAllStringSubmatchIndex) that passes valid with token.
func replaceLocs(s string, locs [][]int, group int, valid func(string) bool, token string) string {
	if locs == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for _, loc := range locs {
		start, end := loc[2*group], loc[2*group+1]
		if start < 0 || !valid(s[start:end]) {
			continue
		}
		b.WriteString(s[last:start])
		b.WriteString(token)
		last = end
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// digitRuns returns the [start, end) of every run of digit groups separated
// by single spaces or dashes (`\d+(?:[ -]\d+)*`): the candidates for card
// numbers.
func digitRuns(s string) [][2]int {
	var runs [][2]int
	for i := 0; i < len(s); {
		if !isDigit(s[i]) {
			i++
			continue
		}
		j := i + 1
		for j < len(s) {
			if isDigit(s[j]) {
				j++
			} else if (s[j] == ' ' || s[j] == '-') && j+1 < len(s) && isDigit(s[j+1]) {
				j += 2
			} else {
				break
			}
		}
		runs = append(runs, [2]int{i, j})
		i = j
	}
	return runs
}

// redactCards replaces Luhn-valid 13–19 digit sequences. A run of groups
// ("room 1204 4111 1111 1111 1111") is searched for the leftmost, longest
// window of whole groups that is card-like, so neighbouring numbers survive.
func redactCards(s string) string {
	locs := digitRuns(s)
	var b strings.Builder
	last := 0
	for _, loc := range locs {
		run := s[loc[0]:loc[1]]
		if countDigits(run) < 13 || gluedNumber(s, loc[0], loc[1]) {
			continue
		}
		// Split the run into groups (byte offsets within s).
		type span struct{ start, end int }
		var groups []span
		for i := loc[0]; i < loc[1]; {
			j := i
			for j < loc[1] && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			groups = append(groups, span{i, j})
			i = j + 1 // skip the single separator
		}
		for i := 0; i < len(groups); {
			found := -1
			// At most 19 digits: a window spans at most 19 groups.
			for j := min(len(groups)-1, i+18); j >= i; j-- {
				var digits []byte
				for _, g := range groups[i : j+1] {
					digits = append(digits, s[g.start:g.end]...)
				}
				if len(digits) >= 13 && len(digits) <= 19 && luhn(digits) {
					found = j
					break
				}
			}
			if found < 0 {
				i++
				continue
			}
			b.WriteString(s[last:groups[i].start])
			b.WriteString(TokenCard)
			last = groups[found].end
			i = found + 1
		}
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// gluedNumber reports whether s[start:end] is part of a longer token: glued to
// a letter ("INC0012345…"), the integer or fraction of a decimal number, or an
// international phone number after its "+".
func gluedNumber(s string, start, end int) bool {
	if start > 0 {
		r, size := utf8.DecodeLastRuneInString(s[:start])
		if unicode.IsLetter(r) || r == '_' || r == '+' {
			return true // "+49…" is a phone number, left to the phone rules
		}
		if (r == '.' || r == ',') && start-size > 0 && isDigit(s[start-size-1]) {
			return true
		}
	}
	if end < len(s) {
		r, size := utf8.DecodeRuneInString(s[end:])
		if unicode.IsLetter(r) || r == '_' {
			return true
		}
		if (r == '.' || r == ',') && end+size < len(s) && isDigit(s[end+size]) {
			return true
		}
	}
	return false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// luhn reports whether the ASCII digits pass the Luhn checksum.
func luhn(digits []byte) bool {
	sum := 0
	double := false
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// nameRedactor returns a function replacing the words of the user's display
// name (each of at least 3 letters, matched case-sensitively as whole words)
// with [name], or nil when the name gives nothing to match. Agents greet users
// by first name, so the parts matter more than the full name.
func nameRedactor(displayName string) func(string) string {
	var parts []string
	seen := map[string]bool{}
	for _, p := range strings.FieldsFunc(displayName, func(r rune) bool {
		return !unicode.IsLetter(r) && r != '\'' && r != '-'
	}) {
		p = strings.Trim(p, "'-")
		if utf8.RuneCountInString(p) < 3 || seen[p] {
			continue
		}
		seen[p] = true
		parts = append(parts, regexp.QuoteMeta(p))
	}
	if len(parts) == 0 {
		return nil
	}
	re := regexp.MustCompile(`(?:^|[^\p{L}\p{N}_])(` + strings.Join(parts, "|") + `)(?:$|[^\p{L}\p{N}_])`)
	return func(s string) string {
		// Matches consume one boundary character each side, so adjacent names
		// ("Jane Doe") need a second pass; two suffice for any text because a
		// replaced name is never a name part again.
		for range 2 {
			s = replaceMatches(s, re, 1, func(string) bool { return true }, TokenName)
		}
		return s
	}
}
