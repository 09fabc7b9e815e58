package servicenow

import (
	"slices"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// TestVAJoinNamesTheAgent: SwitchToLiveAgent names nobody; the System text
// of the same callback does, and the joined event carries that name (the
// status card's "Connected to <agent>").
func TestVAJoinNamesTheAgent(t *testing.T) {
	k := newVAClassifier(VAWebhookConfig{EndPhrases: append(slices.Clone(DefaultEndPhrases), VAClosePhrases...), IdlePhrases: DefaultVAIdlePhrases, JoinPhrases: DefaultVAJoinPhrases})
	tests := []struct{ body, want string }{
		{`[{"uiType":"ActionMsg","actionType":"SwitchToLiveAgent"},{"uiType":"ActionMsg","actionType":"System","message":"Beth Anglin has entered the chat."}]`, "Beth Anglin"},
		{`[{"uiType":"ActionMsg","actionType":"SwitchToLiveAgent"}]`, ""},
		{`[{"uiType":"ActionMsg","actionType":"System","message":"İrem Şahin has entered the chat."}]`, "İrem Şahin"},
		{`[{"uiType":"ActionMsg","actionType":"System","message":"Agent HAS ENTERED THE CHAT."}]`, ""},
	}
	for _, tt := range tests {
		cb, err := ParseVACallback([]byte(`{"requestId":"r","clientSessionId":"c","userId":"u","clientVariables":{"nonce":"n"},"body":` + tt.body + `}`))
		if err != nil {
			t.Fatal(err)
		}
		evs := k.events("c", cb, time.Now())
		if len(evs) == 0 || evs[0].Kind != bridge.AgentJoined || evs[0].Author != tt.want {
			t.Errorf("%s: events %+v, want joined by %q", tt.body, evs, tt.want)
		}
	}
}
