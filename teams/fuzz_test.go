package teams

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/teams/teamstest"
)

// FuzzActivity feeds arbitrary bodies to the activity decoder and mapper:
// they must never panic, and whatever they pass on must be usable.
func FuzzActivity(f *testing.F) {
	ch := &teamstest.Channel{AppID: testAppID, BotName: "Bot", ServiceURL: "https://smba.trafficmanager.net/emea/", TenantID: testTenant}
	u := teamstest.NewUser("Fuzz")
	withAtt := ch.Message(u, "file")
	withAtt.Attachments = []teamstest.Attachment{{ContentType: "application/vnd.microsoft.teams.file.download.info", Name: "a", Content: map[string]any{"downloadUrl": "https://x/y"}}}
	for _, a := range []teamstest.Activity{
		ch.Message(u, "hello"),
		withAtt,
		ch.CardSubmit(u, map[string]any{"payload": "/restart"}),
		ch.CardSubmit(u, []any{1, 2}),
		ch.ConversationUpdate(u),
		ch.InstallationUpdate(u, "remove"),
		ch.Typing(u),
	} {
		b, err := json.Marshal(a)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"type":"message","conversation":{"id":"a:1","isGroup":"x"},"value":"\u0000","timestamp":1}`))
	f.Add([]byte(`{"type":"message","conversation":{"id":"a:1"},"attachments":[{"contentUrl":"http://[::1"}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))

	now := time.Unix(1_700_000_000, 0)
	kinds := map[bridge.ActivityKind]bool{
		bridge.ActivityMessage: true, bridge.ActivityInstall: true, bridge.ActivityUpdate: true,
		bridge.ActivityTyping: true, bridge.ActivityRemoved: true,
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		a, err := decodeActivity(body)
		if err != nil {
			return
		}
		ua, ok, err := mapActivity(a, now)
		if err != nil || !ok {
			return
		}
		if !kinds[ua.Kind] {
			t.Fatalf("kind %q", ua.Kind)
		}
		if ua.Ref.Conversation == "" {
			t.Fatal("passed on without a conversation")
		}
		if ua.Kind == bridge.ActivityMessage && strings.TrimSpace(ua.Text) == "" && len(ua.LostFiles) == 0 && ua.Submit == nil {
			t.Fatal("passed on an empty message (no text, no file to tell the user about, no card data)")
		}
		if ua.Submit != nil && (ua.Text != "" || !strings.HasPrefix(ua.Submit[bridge.SubmitAction], "handoff.")) {
			t.Fatalf("card data %v with text %q", ua.Submit, ua.Text)
		}
		for _, name := range ua.LostFiles {
			if strings.TrimSpace(name) == "" {
				t.Fatal("lost file without a name")
			}
		}
		if !utf8.ValidString(ua.Text) {
			t.Fatal("text is not valid UTF-8")
		}
		if ua.At.IsZero() {
			t.Fatal("zero time")
		}
	})
}

// FuzzSplitText checks the splitter's promises on arbitrary text.
func FuzzSplitText(f *testing.F) {
	f.Add("hello world", 40)
	f.Add(strings.Repeat("日本語 🎉\n\n", 50), 64)
	f.Add("\"\\\n\t\x01\u2028", 16)
	f.Add(string([]byte{0xff, 0xfe, 'a'}), 20)
	f.Fuzz(func(t *testing.T, text string, budget int) {
		if budget < 0 || budget > 1<<16 {
			return
		}
		parts := splitText(text, budget)
		limit := max(budget, 16)
		total := 0
		for i, p := range parts {
			if p == "" {
				t.Fatalf("part %d is empty", i)
			}
			if size := jsonUTF16Size(p); size > limit && utf8.RuneCountInString(p) > 1 {
				t.Fatalf("part %d is %d bytes, budget %d", i, size, limit)
			}
			total += len(p)
		}
		if total > len(text) {
			t.Fatal("parts longer than the text")
		}
		if text != "" && len(parts) == 0 {
			t.Fatal("text lost")
		}
		// Cuts only drop separators: the text without whitespace is kept.
		strip := func(s string) string { return strings.Join(strings.Fields(s), "") }
		if strip(strings.Join(parts, "")) != strip(text) {
			t.Fatal("content lost")
		}
	})
}
