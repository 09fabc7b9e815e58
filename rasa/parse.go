package rasa

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/handoffhq/handoff/bridge"
)

// maxSignalField bounds the reason and queue taken from a handoff payload.
const maxSignalField = 200

const actionListen = "action_listen"

// parseReplies decodes the REST channel's answer: a JSON list of messages.
// null or an empty body is no reply. Entries that are not objects, and fields
// of an unexpected type, are skipped with a warning; only a body that is not a
// list at all is an error.
func parseReplies(data []byte, log *slog.Logger) ([]bridge.BotReply, error) {
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil, nil
	}
	var raw any
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("decode replies: %w", err)
	}
	if raw == nil {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("unexpected response: want a JSON list of messages, got %s", jsonKind(raw))
	}
	var replies []bridge.BotReply
	for i, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			log.Warn("rasa: skipping a reply that is not an object", "index", i, "kind", jsonKind(item))
			continue
		}
		r, ok := parseReply(m, log.With("index", i))
		if ok {
			replies = append(replies, r)
		}
	}
	return replies, nil
}

// parseReply maps one REST channel message. ok is false for a message with
// nothing in it.
func parseReply(m map[string]any, log *slog.Logger) (r bridge.BotReply, ok bool) {
	var lines []string
	if v, has := m["text"]; has && v != nil {
		if s, isStr := v.(string); isStr {
			if s != "" {
				lines = append(lines, s)
			}
		} else {
			log.Warn("rasa: reply text is not a string", "kind", jsonKind(v))
		}
	}
	if v, has := m["image"]; has && v != nil {
		if s, isStr := v.(string); isStr {
			r.ImageURL = s
		} else {
			log.Warn("rasa: reply image is not a string", "kind", jsonKind(v))
		}
	}
	buttons := m["buttons"]
	if isEmpty(buttons) {
		// Rasa's collecting channel turns quick replies into buttons; other
		// channels may not.
		buttons = m["quick_replies"]
	}
	var links []string
	r.Buttons, links = parseButtons(buttons, log)
	lines = append(lines, links...)

	if v, has := m["custom"]; has && v != nil {
		if obj, isObj := v.(map[string]any); isObj {
			r.Custom = obj
			r.Handoff = parseHandoff(obj, log)
		} else {
			log.Warn("rasa: dropping a custom payload that is not an object", "kind", jsonKind(v))
		}
	}
	if v, has := m["attachment"]; has && v != nil {
		switch a := v.(type) {
		case string:
			if a != "" {
				lines = append(lines, a)
			}
		default:
			if r.Custom == nil {
				r.Custom = map[string]any{}
			}
			if _, taken := r.Custom["attachment"]; !taken {
				r.Custom["attachment"] = a
			}
		}
	}
	r.Text = strings.Join(lines, "\n")
	ok = r.Text != "" || r.ImageURL != "" || len(r.Buttons) > 0 || r.Custom != nil
	return r, ok
}

// parseButtons maps Rasa buttons ({"title","payload"}). A link button
// ({"type":"web_url","url"}) cannot be a quick reply: it is returned as a
// "title: url" text line instead.
func parseButtons(v any, log *slog.Logger) (buttons []bridge.Button, links []string) {
	if isEmpty(v) {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		log.Warn("rasa: reply buttons are not a list", "kind", jsonKind(v))
		return nil, nil
	}
	for _, item := range list {
		b, ok := item.(map[string]any)
		if !ok {
			log.Warn("rasa: skipping a button that is not an object", "kind", jsonKind(item))
			continue
		}
		title := scalarString(b["title"])
		if u := stringField(b, "url"); u != "" && (stringField(b, "type") == "web_url" || b["payload"] == nil) {
			if title == "" {
				links = append(links, u)
			} else {
				links = append(links, title+": "+u)
			}
			continue
		}
		payload := scalarString(b["payload"])
		if payload == "" {
			if p, has := b["payload"]; has && p != nil {
				if enc, err := json.Marshal(p); err == nil {
					payload = string(enc)
				}
			}
		}
		if title == "" && payload == "" {
			continue
		}
		if title == "" {
			title = payload
		}
		if payload == "" {
			payload = title
		}
		buttons = append(buttons, bridge.Button{Title: title, Payload: payload})
	}
	return buttons, links
}

// parseHandoff returns the signal in a custom payload, nil if there is none.
func parseHandoff(custom map[string]any, log *slog.Logger) *bridge.HandoffSignal {
	v, has := custom["handoff"]
	if !has {
		return nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		log.Warn("rasa: ignoring a handoff payload that is not an object", "kind", jsonKind(v))
		return nil
	}
	sig := &bridge.HandoffSignal{Reason: DefaultHandoffReason}
	if rv, has := obj["reason"]; has && rv != nil {
		if s, isStr := rv.(string); isStr {
			if s = cleanField(s); s != "" {
				sig.Reason = s
			}
		} else {
			log.Warn("rasa: handoff reason is not a string", "kind", jsonKind(rv))
		}
	}
	if qv, has := obj["queue"]; has && qv != nil {
		if s, isStr := qv.(string); isStr {
			sig.Queue = cleanField(s)
		} else {
			log.Warn("rasa: handoff queue is not a string", "kind", jsonKind(qv))
		}
	}
	return sig
}

// cleanField trims s and bounds its length (on a rune boundary).
func cleanField(s string) string {
	s = strings.TrimSpace(strings.ToValidUTF8(s, ""))
	if len(s) <= maxSignalField {
		return s
	}
	cut := maxSignalField
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// parseTracker reads a tracker state (GET /conversations/{id}/tracker) into a
// BotContext. The intent fields come from latest_message; the runner-up is the
// first entry of intent_ranking naming another intent (for an nlu_fallback
// prediction that is the NLU's own best guess, since Rasa's FallbackClassifier
// puts nlu_fallback, with the threshold as confidence, in front of the
// original ranking). Turns are the user and bot messages of the current Rasa
// session (after the latest session_started event, if any); a user message that
// is the payload of a button the bot just offered shows the button's title.
func parseTracker(data []byte) (bridge.BotContext, error) {
	var raw any
	if err := json.Unmarshal(data, &raw); err != nil {
		return bridge.BotContext{}, fmt.Errorf("decode tracker: %w", err)
	}
	st, ok := raw.(map[string]any)
	if !ok {
		return bridge.BotContext{}, errors.New("unexpected tracker: not a JSON object, got " + jsonKind(raw))
	}
	var bc bridge.BotContext
	events, _ := st["events"].([]any)

	// The current session.
	start := 0
	for i := len(events) - 1; i >= 0; i-- {
		if e, ok := events[i].(map[string]any); ok && stringField(e, "event") == "session_started" {
			start = i + 1
			break
		}
	}
	session := events[start:]

	lastUser := -1
	var offered map[string]string // payload -> title of the last buttons shown
	for i, item := range session {
		e, ok := item.(map[string]any)
		if !ok {
			continue
		}
		switch stringField(e, "event") {
		case "user":
			lastUser = i
			t := bridge.Turn{Role: "user", Text: stringField(e, "text"), At: eventTime(e)}
			if title, ok := offered[t.Text]; ok && t.Text != "" {
				t.Text = title // a click on a button: show what the user saw
			}
			pd, _ := e["parse_data"].(map[string]any)
			if in, ok := pd["intent"].(map[string]any); ok {
				t.Intent = stringField(in, "name")
				t.Confidence = numberField(in, "confidence")
			}
			bc.Turns = append(bc.Turns, t)
		case "bot":
			if o := buttonPayloads(e); o != nil {
				offered = o
			}
			if text := botText(e); text != "" {
				bc.Turns = append(bc.Turns, bridge.Turn{Role: "bot", Text: text, At: eventTime(e)})
			}
		}
	}

	// The action that emitted the handoff: the last action before the last bot
	// message carrying the signal; without such a message, the last action
	// after the latest user message that is not action_listen.
	from := len(session) - 1
	for i := len(session) - 1; i > lastUser; i-- {
		if e, ok := session[i].(map[string]any); ok && stringField(e, "event") == "bot" && carriesHandoff(e) {
			from = i - 1
			break
		}
	}
	for i := from; i > lastUser; i-- {
		e, ok := session[i].(map[string]any)
		if !ok || stringField(e, "event") != "action" {
			continue
		}
		if name := stringField(e, "name"); name != "" && name != actionListen {
			bc.LatestAction = name
			break
		}
	}
	if bc.LatestAction == "" && len(events) == 0 {
		// No events were included (include_events=NONE): fall back to the
		// tracker's own field.
		if name := stringField(st, "latest_action_name"); name != actionListen {
			bc.LatestAction = name
		}
	}

	lm, _ := st["latest_message"].(map[string]any)
	if lm == nil && lastUser >= 0 {
		e, _ := session[lastUser].(map[string]any)
		lm, _ = e["parse_data"].(map[string]any)
	}
	if in, ok := lm["intent"].(map[string]any); ok {
		bc.LatestIntent = stringField(in, "name")
		bc.Confidence = numberField(in, "confidence")
	}
	if ranking, ok := lm["intent_ranking"].([]any); ok {
		for _, item := range ranking {
			in, ok := item.(map[string]any)
			if !ok {
				continue
			}
			if name := stringField(in, "name"); name != "" && name != bc.LatestIntent {
				bc.RunnerUpIntent = name
				bc.RunnerUpConfidence = numberField(in, "confidence")
				break
			}
		}
	}

	loop, _ := st["active_loop"].(map[string]any)
	if loop == nil {
		loop, _ = st["active_form"].(map[string]any) // Rasa 1.x
	}
	bc.ActiveLoop = stringField(loop, "name")
	return bc, nil
}

// buttonPayloads maps the payloads of a bot event's buttons to their titles;
// nil when it has none.
func buttonPayloads(e map[string]any) map[string]string {
	data, _ := e["data"].(map[string]any)
	buttons, _ := data["buttons"].([]any)
	var m map[string]string
	for _, item := range buttons {
		b, _ := item.(map[string]any)
		p, t := scalarString(b["payload"]), scalarString(b["title"])
		if p != "" && t != "" {
			if m == nil {
				m = map[string]string{}
			}
			m[p] = t
		}
	}
	return m
}

// carriesHandoff reports whether a bot event's custom payload holds a handoff
// object.
func carriesHandoff(e map[string]any) bool {
	data, _ := e["data"].(map[string]any)
	custom, _ := data["custom"].(map[string]any)
	_, ok := custom["handoff"].(map[string]any)
	return ok
}

// botText renders a bot event for a transcript: its text, then its buttons'
// titles, or its image when there is no text. Custom payloads are left out.
func botText(e map[string]any) string {
	text := stringField(e, "text")
	data, _ := e["data"].(map[string]any)
	if buttons, ok := data["buttons"].([]any); ok && len(buttons) > 0 {
		var titles []string
		for _, item := range buttons {
			if b, ok := item.(map[string]any); ok {
				if t := scalarString(b["title"]); t != "" {
					titles = append(titles, "["+t+"]")
				}
			}
		}
		if len(titles) > 0 {
			if text != "" {
				text += "\n"
			}
			text += strings.Join(titles, " ")
		}
	}
	if text == "" {
		text = stringField(data, "image")
	}
	return text
}

// eventTime converts a Rasa event timestamp (Unix seconds, float) to a time;
// zero when absent or absurd.
func eventTime(e map[string]any) time.Time {
	ts := numberField(e, "timestamp")
	if ts <= 0 || ts > 1e11 || math.IsNaN(ts) {
		return time.Time{}
	}
	sec, frac := math.Modf(ts)
	return time.Unix(int64(sec), int64(frac*1e9)).Round(time.Microsecond).UTC()
}

func stringField(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

func numberField(m map[string]any, key string) float64 {
	f, _ := m[key].(float64)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

// scalarString renders a string, number or bool; "" for anything else.
func scalarString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64, bool:
		b, _ := json.Marshal(x)
		return string(b)
	}
	return ""
}

func isEmpty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case []any:
		return len(x) == 0
	}
	return false
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "list"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}
