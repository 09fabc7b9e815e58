package bridge_test

import (
	"strings"
	"testing"

	"github.com/handoffhq/handoff/bridge"
)

// FuzzParseCommand: only the two commands are recognised, and surrounding
// space or letter case never changes the answer.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"/end_chat", " /Restart ", "/END_CHAT\n", "/end_chat please", "end_chat", "/restart/", "\u00a0/restart", "/ｒestart", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := bridge.ParseCommand(s)
		switch c {
		case bridge.CommandNone:
		case bridge.CommandEndChat, bridge.CommandRestart:
			if !strings.EqualFold(strings.TrimSpace(s), string(c)) {
				t.Fatalf("%q recognised as %s", s, c)
			}
		default:
			t.Fatalf("%q: unknown command %q", s, c)
		}
		//lint:ignore SA6005 the condition is exactly that lower-casing survives the upper-casing round trip
		if got := bridge.ParseCommand(" \t" + strings.ToUpper(s) + "\n "); got != c && strings.ToLower(strings.ToUpper(s)) == strings.ToLower(s) {
			t.Fatalf("%q: %s, but padded and upper-cased: %s", s, c, got)
		}
	})
}
