package servicenow

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestEncodeJSONIsStringifyForm: the bytes the VA desk signs are already in
// the form ServiceNow hashes, JSON.stringify(JSON.parse(body)) run by
// Node.js, for every ASCII character, the line and paragraph separators,
// non-ASCII, a literal backslash-u text and invalid UTF-8 (which Go writes
// as an escaped U+FFFD and JavaScript as the character itself).
func TestEncodeJSONIsStringifyForm(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("node is required with CI=true: %v", err)
		}
		t.Skip("node not installed")
	}
	var ascii strings.Builder
	for r := rune(0); r < 0x80; r++ {
		ascii.WriteRune(r)
	}
	for _, tc := range []struct{ name, text string }{
		{"ascii", ascii.String()},
		{"separators and non-ASCII", "a\u2028b\u2029c Café 😀 \u00a0\ufeff\u200b"},
		{"escape-like text stays text", `\u2028 \\u2029 \ufffd \\ufffd`},
		{"invalid UTF-8", "bad \xff\xfe byte, cut \xe2\x82 rune, and a real \ufffd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := encodeJSON(vaRequest{RequestID: "r", ClientSessionID: "c", UserID: "u",
				Message: vaText{Text: tc.text, Typed: true}, ContextVariables: map[string]string{"handoff_reason": tc.text}})
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(node, "-e", `let b="";process.stdin.setEncoding("utf8");`+
				`process.stdin.on("data",d=>b+=d).on("end",()=>process.stdout.write(JSON.stringify(JSON.parse(b))))`)
			cmd.Stdin = bytes.NewReader(raw)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("node: %v", err)
			}
			if !bytes.Equal(out, raw) {
				t.Errorf("sent  %q\nnode  %q", raw, out)
			}
		})
	}
}
