package review

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/handoffhq/handoff/bridge"
)

// nluExample is one parsed entry of a Rasa NLU file.
type nluEntry struct {
	intent   string
	examples []string
}

// checkRasaNLU parses out with a YAML parser and checks it against Rasa's
// training-data format 3.1: a mapping with version "3.1" (a string) and nlu, a
// list of mappings with exactly the keys intent (a string) and examples (a
// string whose every line starts with "- "). It returns the entries.
func checkRasaNLU(t testing.TB, out []byte) []nluEntry {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(out, &doc); err != nil {
		t.Fatalf("NLU output is not YAML: %v\n%s", err, out)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		t.Fatalf("NLU output is not one YAML mapping")
	}
	top := doc.Content[0]
	keys := map[string]*yaml.Node{}
	for i := 0; i < len(top.Content); i += 2 {
		keys[top.Content[i].Value] = top.Content[i+1]
	}
	if len(keys) != 2 {
		t.Errorf("top-level keys %v, want version and nlu", reflect.ValueOf(keys).MapKeys())
	}
	if v := keys["version"]; v == nil || v.Tag != "!!str" || v.Value != "3.1" {
		t.Fatalf("version = %+v, want the string \"3.1\"", v)
	}
	nlu := keys["nlu"]
	if nlu == nil || nlu.Kind != yaml.SequenceNode {
		t.Fatalf("nlu is not a list")
	}
	var entries []nluEntry
	for i, item := range nlu.Content {
		if item.Kind != yaml.MappingNode || len(item.Content) != 4 {
			t.Fatalf("nlu[%d] is not a mapping of two keys", i)
		}
		var e nluEntry
		for k := 0; k < 4; k += 2 {
			key, val := item.Content[k].Value, item.Content[k+1]
			if val.Kind != yaml.ScalarNode || val.Tag != "!!str" {
				t.Fatalf("nlu[%d].%s is %s, want a string", i, key, val.Tag)
			}
			switch key {
			case "intent":
				e.intent = val.Value
			case "examples":
				if val.Style != yaml.LiteralStyle {
					t.Errorf("nlu[%d].examples is not a literal block", i)
				}
				if !strings.HasSuffix(val.Value, "\n") {
					t.Errorf("nlu[%d].examples does not end with a newline", i)
				}
				for _, line := range strings.Split(strings.TrimSuffix(val.Value, "\n"), "\n") {
					if !strings.HasPrefix(line, "- ") || strings.TrimSpace(line[2:]) == "" {
						t.Fatalf("nlu[%d] example line %q does not start with \"- \" and text", i, line)
					}
					e.examples = append(e.examples, line[2:])
				}
			default:
				t.Fatalf("nlu[%d] has key %q", i, key)
			}
		}
		if e.intent == "" || e.examples == nil {
			t.Fatalf("nlu[%d] lacks intent or examples", i)
		}
		entries = append(entries, e)
	}
	return entries
}

func TestNLUStructure(t *testing.T) {
	out, _ := export(t, testExporter(t, ExportConfig{}), &memSource{records: fixtureRecords()}, weekFrom, weekTo, FormatNLU)
	got := checkRasaNLU(t, out)
	want := []nluEntry{
		{"out_of_scope", []string{
			"- starts with a dash: and a colon # and a hash",
			`see [the form] (link) and {"json": true} second line third`,
			`=HYPERLINK("http://evil.example","click")`,
		}},
		{"request_human", []string{"I want to talk to a human", "agent please"}},
		{"affirm", []string{"yes, 3 times already. Ticket INC0012345 is still open"}},
		{"email_issue", []string{"Outlook crashes with error 0x800CCC0E since 14.11.2026 at 09:30"}},
		{"nlu_fallback", []string{"my card [card] was charged twice for the license"}},
		{"password_reset", []string{"I locked myself out, my email is [email] and you can call me at [phone]"}},
		{"vpn_issue", []string{"My VPN keeps dropping every 10 minutes since the update to version 5.2.1"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("entries =\n%q\nwant\n%q", got, want)
	}
	s := string(out)
	if strings.Contains(s, "HUMAN-ONLY") {
		t.Error("human turns leaked into the NLU export")
	}
	if strings.Contains(s, "/request_human") {
		t.Error("a button payload was exported as an example")
	}
	if !strings.Contains(s, "# range: 2026-11-09T00:00:00Z to 2026-11-16T00:00:00Z") {
		t.Error("the range comment is missing")
	}
}

func TestNLUUnlabelledAndQuotedIntents(t *testing.T) {
	c := newNLUCollector(nluCaps{intents: 10, perIntent: 10, total: 100, runes: 300})
	for intent, text := range map[string]string{
		"":                "no prediction",
		"true":            "a boolean-looking intent",
		"faq/ask_vpn":     "a retrieval intent",
		"has space: x":    "a name with space and colon",
		"123":             "a numeric intent",
		`quote"back\`:     "quotes and backslashes",
		"line\nbreak":     "a name with a line break",
		"-dash":           "a leading dash",
		"\u00e9t\u00e9":   "accents",
		"&anchor *alias!": "yaml indicators",
	} {
		c.addUtterance(intent, text)
	}
	var buf bytes.Buffer
	if err := c.write(&buf, weekFrom, weekTo, 10); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range checkRasaNLU(t, buf.Bytes()) {
		got[e.intent] = e.examples[0]
	}
	want := map[string]string{
		UnlabelledIntent: "no prediction", "true": "a boolean-looking intent", "faq/ask_vpn": "a retrieval intent",
		"has_space:_x": "a name with space and colon", "123": "a numeric intent", `quote"back\`: "quotes and backslashes",
		"line_break": "a name with a line break", "-dash": "a leading dash", "été": "accents",
		"&anchor_*alias!": "yaml indicators",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("intents =\n%q\nwant\n%q", got, want)
	}
}

func TestNLUCaps(t *testing.T) {
	c := newNLUCollector(nluCaps{intents: 2, perIntent: 3, total: 5, runes: 20})
	for i := range 5 {
		c.addUtterance("a", fmt.Sprintf("a example %d", i)) // 3 kept, 2 over the per-intent cap
	}
	c.addUtterance("b", "b example")
	c.addUtterance("c", "c example")                        // third intent: over the cap
	c.addUtterance("b", "B   EXAMPLE")                      // duplicate of "b example"
	c.addUtterance("b", "this one is far too long to keep") // too long
	c.addUtterance("b", "/greet")                           // payload
	c.addUtterance("b", "b second")
	c.addUtterance("b", "b third") // over the total cap
	if c.total != 5 || c.overCap != 4 || c.dupes != 1 || c.tooLong != 1 || c.payloads != 1 {
		t.Errorf("total %d, over cap %d, dupes %d, too long %d, payloads %d", c.total, c.overCap, c.dupes, c.tooLong, c.payloads)
	}
	var buf bytes.Buffer
	if err := c.write(&buf, weekFrom, weekTo, 9); err != nil {
		t.Fatal(err)
	}
	entries := checkRasaNLU(t, buf.Bytes())
	if len(entries) != 2 || len(entries[0].examples) != 3 || len(entries[1].examples) != 2 {
		t.Errorf("entries = %q", entries)
	}
	if !strings.Contains(buf.String(), "# skipped: 1 duplicates, 1 button payloads, 1 longer than 20 characters, 4 over the caps") {
		t.Errorf("header does not report the skips:\n%s", buf.String())
	}
}

func TestNLUOnlyBotTurns(t *testing.T) {
	rec := bridge.ReviewRecord{
		Intent: "request_human",
		BotTurns: []bridge.Turn{
			{Role: "bot", Text: "bot text"},
			{Role: "user", Text: "user text", Intent: "greet"},
			{Role: "agent", Text: "agent text in the wrong list"},
		},
		HumanTurns: []bridge.Turn{{Role: "user", Text: "human stretch"}},
	}
	c := newNLUCollector(nluCaps{intents: 10, perIntent: 10, total: 10, runes: 100})
	c.add(rec, func(s string) string { return s })
	var buf bytes.Buffer
	if err := c.write(&buf, weekFrom, weekTo, 1); err != nil {
		t.Fatal(err)
	}
	got := checkRasaNLU(t, buf.Bytes())
	if want := []nluEntry{{"greet", []string{"user text"}}}; !reflect.DeepEqual(got, want) {
		t.Errorf("entries = %q, want %q", got, want)
	}
}

func TestNLURedactsWholeUtterances(t *testing.T) {
	rec := bridge.ReviewRecord{BotTurns: []bridge.Turn{
		{Role: "user", Intent: "contact", Text: "call me at +49 30\n1234567(mobile) or\r\nmail jane@contoso.com"},
	}}
	out, _ := export(t, testExporter(t, ExportConfig{}), &memSource{records: []bridge.ReviewRecord{{StartedAt: weekFrom, BotTurns: rec.BotTurns}}},
		weekFrom, weekTo, FormatNLU)
	got := checkRasaNLU(t, out)
	want := []nluEntry{{"contact", []string{"call me at [phone] (mobile) or mail [email]"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("entries = %q, want %q", got, want)
	}
}

func TestSanitizeUtterance(t *testing.T) {
	for in, want := range map[string]string{
		"  two\n\nlines \r\n and\ttabs ":    "two lines and tabs",
		"nel\u0085ls\u2028ps\u2029vt\vff\f": "nel ls ps vt ff",
		"ctrl\x00\x07\x1b\x7f\u0080chars":   "ctrlchars",
		"bom\uFEFF\uFFFE\uFFFF":             "bom",
		"[a](b) [c]{\"d\":1} [e][f]":        `[a] (b) [c] {"d":1} [e] [f]`,
		"bad \xff utf8":                     "bad \uFFFD utf8",
		"# - | > * & ! % @ `":               "# - | > * & ! % @ `",
		"\n\n":                              "",
	} {
		if got := sanitizeUtterance(in); got != want {
			t.Errorf("sanitizeUtterance(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzNLUSanitize checks that whatever users type and whatever intents the bot
// predicts, the NLU export stays valid Rasa YAML and holds the sanitised text.
func FuzzNLUSanitize(f *testing.F) {
	for _, s := range [][2]string{
		{"greet", "hello"},
		{"", "- leading dash"},
		{"true", "key: value # comment"},
		{"a\nb", "multi\nline\r\ntext\u2028x"},
		{`"quoted"`, "[link](entity) {\"a\":1}"},
		{"\t", "\x00\x1f\x7f\u0085\uFEFF"},
		{"&x *y !z", "|\n>"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, intent, text string) {
		c := newNLUCollector(nluCaps{intents: 10, perIntent: 10, total: 10, runes: 1000})
		c.addUtterance(intent, text)
		c.addUtterance("other", "fixed example")
		var buf bytes.Buffer
		if err := c.write(&buf, weekFrom, weekTo, 1); err != nil {
			t.Fatal(err)
		}
		entries := checkRasaNLU(t, buf.Bytes())
		clean := sanitizeUtterance(text)
		if clean == "" || strings.HasPrefix(clean, "/") || len([]rune(clean)) > 1000 || clean == "fixed example" {
			return
		}
		for _, e := range entries {
			if e.intent == sanitizeIntent(intent) {
				for _, ex := range e.examples {
					if ex == clean {
						return
					}
				}
			}
		}
		t.Fatalf("example %q (intent %q) not found in\n%s", clean, sanitizeIntent(intent), buf.String())
	})
}
