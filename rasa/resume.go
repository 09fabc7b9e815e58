package rasa

import (
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/handoffhq/handoff/bridge"
)

// MetadataKey is the message metadata field that carries the bridge's key of
// a user message (the Teams activity id). Rasa stores a message's metadata on
// its "user" tracker event, so a retry can tell whether an earlier attempt
// was processed.
const MetadataKey = "activity_id"

// answeredInTracker looks for the tracker's latest "user" event. When it
// carries key in its metadata, the message was processed by an earlier
// attempt: it returns the bot's replies to it (the "bot" events that follow,
// as the REST channel sent them) and true.
func answeredInTracker(data []byte, key string, log *slog.Logger) ([]bridge.BotReply, bool, error) {
	var tr struct {
		SenderID string           `json:"sender_id"`
		Events   []map[string]any `json:"events"`
	}
	if err := json.Unmarshal(data, &tr); err != nil {
		return nil, false, fmt.Errorf("decode tracker: %w", err)
	}
	last := -1
	for i, e := range tr.Events {
		if stringField(e, "event") == "user" {
			last = i
		}
	}
	if last < 0 {
		return nil, false, nil
	}
	meta, _ := tr.Events[last]["metadata"].(map[string]any)
	if got, _ := meta[MetadataKey].(string); got == "" || got != key {
		return nil, false, nil
	}
	// Rebuild the REST channel's answer from the bot events.
	var msgs []map[string]any
	for _, e := range tr.Events[last+1:] {
		if stringField(e, "event") != "bot" {
			continue
		}
		m := map[string]any{"recipient_id": tr.SenderID}
		if t, ok := e["text"].(string); ok && t != "" {
			m["text"] = t
		}
		if d, ok := e["data"].(map[string]any); ok {
			for _, k := range []string{"buttons", "image", "custom", "attachment"} {
				if !isEmpty(d[k]) {
					m[k] = d[k]
				}
			}
		}
		if len(m) > 1 {
			msgs = append(msgs, m)
		}
	}
	if msgs == nil {
		msgs = []map[string]any{}
	}
	raw, err := json.Marshal(msgs)
	if err != nil {
		return nil, false, err
	}
	replies, err := parseReplies(raw, log)
	if err != nil {
		return nil, false, err
	}
	return replies, true, nil
}
