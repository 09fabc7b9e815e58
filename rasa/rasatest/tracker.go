package rasatest

import (
	"fmt"
	"maps"
	"slices"
	"sort"
)

// Event is one tracker event as Rasa serialises it, e.g.
// {"event": "slot", "timestamp": 1732093401.1, "name": "handoff_active", "value": false}.
type Event map[string]any

// Name returns the event's type ("user", "bot", "action", "slot", ...).
func (e Event) Name() string { s, _ := e["event"].(string); return s }

// Tracker is a copy of one conversation's state in the fake.
type Tracker struct {
	SenderID string
	// Events holds every event, oldest first, including those before a
	// restart (the API returns only those after the latest one by default).
	Events []Event
	Slots  map[string]any
	Paused bool
	// ActiveLoop is the active loop's (form's) name, "" if none.
	ActiveLoop string
	// LatestAction is the latest executed action's name.
	LatestAction string
	// LatestIntent is the intent of the latest user message since the latest
	// restart or session start.
	LatestIntent string
	// ConsecutiveFallbacks counts the fallbacks since the last understood
	// message, restart or fallback handoff.
	ConsecutiveFallbacks int
}

// tracker is the fake's state of one conversation. Events are stored in the
// form encoding/json decodes, so copies are deep copies of plain values.
type tracker struct {
	sender        string
	events        []Event
	slots         map[string]any
	paused        bool
	latestMessage map[string]any // parse data; nil = empty
	latestAction  string
	latestChannel string
	activeLoop    map[string]any
	followup      any // action name or nil
	fallbacks     int
}

func newTracker(sender string, initial map[string]any) *tracker {
	t := &tracker{sender: sender}
	t.reset(initial)
	return t
}

// reset is Rasa's DialogueStateTracker._reset: what restart and
// session_started do to the state.
func (t *tracker) reset(initial map[string]any) {
	t.slots = deepCopy(initial).(map[string]any)
	if t.slots == nil {
		t.slots = map[string]any{}
	}
	t.paused = false
	t.latestMessage = nil
	t.latestAction = ""
	t.activeLoop = map[string]any{}
	t.followup = "action_listen"
}

// add appends e and applies it to the state, as tracker.update does.
func (t *tracker) add(e Event, initial map[string]any) {
	t.events = append(t.events, e)
	switch e.Name() {
	case "user":
		pd, _ := e["parse_data"].(map[string]any)
		t.latestMessage = pd
		if t.latestMessage == nil {
			t.latestMessage = map[string]any{"intent": map[string]any{}, "entities": []any{}, "text": e["text"]}
		}
		t.latestChannel, _ = e["input_channel"].(string)
		t.followup = nil
	case "action":
		t.latestAction, _ = e["name"].(string)
		if t.latestAction == "" {
			t.latestAction, _ = e["action_text"].(string)
		}
		if name, _ := t.activeLoop["name"].(string); name != "" {
			t.activeLoop["is_interrupted"] = false
		}
		t.followup = nil
	case "slot":
		name, _ := e["name"].(string)
		if _, declared := t.slots[name]; declared {
			t.slots[name] = deepCopy(e["value"])
		}
	case "reset_slots":
		t.slots = deepCopy(initial).(map[string]any)
	case "pause":
		t.paused = true
	case "resume":
		t.paused = false
	case "restart":
		t.reset(initial)
		t.followup = "action_session_start"
	case "session_started":
		t.reset(initial)
	case "active_loop", "form":
		if name, _ := e["name"].(string); name != "" {
			t.activeLoop = map[string]any{"name": name, "is_interrupted": false, "rejected": false, "trigger_message": deepCopy(t.latestMessage)}
		} else {
			t.activeLoop = map[string]any{}
		}
	case "loop_interrupted":
		if len(t.activeLoop) > 0 {
			t.activeLoop["is_interrupted"], _ = e["is_interrupted"].(bool)
		}
	case "followup":
		t.followup = e["name"]
	}
}

// afterRestart is the index of the first event after the latest restart.
func (t *tracker) afterRestart() int {
	for i := len(t.events) - 1; i >= 0; i-- {
		if t.events[i].Name() == "restart" {
			return i + 1
		}
	}
	return 0
}

// applied returns the events that make the current state, roughly Rasa's
// applied_events: those after the latest restart or session start.
func (t *tracker) applied() []Event {
	for i := len(t.events) - 1; i >= 0; i-- {
		if n := t.events[i].Name(); n == "restart" || n == "session_started" {
			return t.events[i+1:]
		}
	}
	return t.events
}

func (t *tracker) clone() *tracker {
	c := *t
	c.events = make([]Event, len(t.events))
	for i, e := range t.events {
		c.events[i] = deepCopy(map[string]any(e)).(map[string]any)
	}
	c.slots = deepCopy(t.slots).(map[string]any)
	c.latestMessage, _ = deepCopy(t.latestMessage).(map[string]any)
	c.activeLoop = deepCopy(t.activeLoop).(map[string]any)
	return &c
}

func (t *tracker) public() Tracker {
	c := t.clone()
	pub := Tracker{
		SenderID:             t.sender,
		Events:               c.events,
		Slots:                c.slots,
		Paused:               t.paused,
		LatestAction:         t.latestAction,
		ConsecutiveFallbacks: t.fallbacks,
	}
	pub.ActiveLoop, _ = t.activeLoop["name"].(string)
	if in, ok := t.latestMessage["intent"].(map[string]any); ok {
		pub.LatestIntent, _ = in["name"].(string)
	}
	return pub
}

// verbosity is Rasa's EventVerbosity.
type verbosity string

const (
	verbosityNone         verbosity = "NONE"
	verbosityApplied      verbosity = "APPLIED"
	verbosityAfterRestart verbosity = "AFTER_RESTART"
	verbosityAll          verbosity = "ALL"
)

// state is Rasa's DialogueStateTracker.current_state.
func (t *tracker) state(v verbosity) map[string]any {
	var events []Event
	switch v {
	case verbosityAll:
		events = t.events
	case verbosityAfterRestart:
		events = t.events[t.afterRestart():]
	case verbosityApplied:
		events = t.applied()
	}
	var evs any // null for NONE, as Rasa
	if v != verbosityNone {
		list := make([]any, 0, len(events))
		for _, e := range events {
			list = append(list, deepCopy(map[string]any(e)))
		}
		evs = list
	}
	var latestTime any
	if n := len(t.events); n > 0 {
		latestTime = t.events[n-1]["timestamp"]
	}
	lm := any(map[string]any{"intent": map[string]any{}, "entities": []any{}, "text": nil, "message_id": nil, "metadata": map[string]any{}})
	if t.latestMessage != nil {
		lm = deepCopy(t.latestMessage)
	}
	var channel, actionName any
	latestAction := map[string]any{}
	if t.latestChannel != "" {
		channel = t.latestChannel
	}
	if t.latestAction != "" {
		actionName = t.latestAction
		latestAction["action_name"] = t.latestAction
	}
	return map[string]any{
		"sender_id":            t.sender,
		"slots":                deepCopy(t.slots),
		"latest_message":       lm,
		"latest_event_time":    latestTime,
		"followup_action":      t.followup,
		"paused":               t.paused,
		"events":               evs,
		"latest_input_channel": channel,
		"active_loop":          deepCopy(t.activeLoop),
		"latest_action":        latestAction,
		"latest_action_name":   actionName,
	}
}

// deepCopy copies JSON-shaped values.
func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		if x == nil {
			return map[string]any(nil)
		}
		m := make(map[string]any, len(x))
		for k, val := range x {
			m[k] = deepCopy(val)
		}
		return m
	case Event:
		return Event(deepCopy(map[string]any(x)).(map[string]any))
	case []any:
		s := make([]any, len(x))
		for i, val := range x {
			s[i] = deepCopy(val)
		}
		return s
	}
	return v
}

// sortedKeys returns m's keys in order.
func sortedKeys(m map[string]any) []string {
	keys := slices.Collect(maps.Keys(m))
	sort.Strings(keys)
	return keys
}

// validateEvent checks one appended event the way Rasa's EVENTS_SCHEMA does
// (the subset that matters) and returns jsonschema-like messages.
func validateEvent(v any) error {
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("%s is not of type 'object'", pyRepr(v))
	}
	raw, has := m["event"]
	if !has {
		return fmt.Errorf("'event' is a required property")
	}
	name, ok := raw.(string)
	if !ok {
		return fmt.Errorf("%s is not of type 'string'", pyRepr(raw))
	}
	if !knownEvents[name] {
		return fmt.Errorf("%s is not valid under any of the given schemas", pyRepr(v))
	}
	if ts, has := m["timestamp"]; has && ts != nil {
		if _, ok := ts.(float64); !ok {
			return fmt.Errorf("%s is not of type 'number', 'null'", pyRepr(ts))
		}
	}
	if md, has := m["metadata"]; has && md != nil {
		if _, ok := md.(map[string]any); !ok {
			return fmt.Errorf("%s is not of type 'object', 'null'", pyRepr(md))
		}
	}
	switch name {
	case "slot":
		n, has := m["name"]
		if !has {
			return fmt.Errorf("'name' is a required property")
		}
		if _, ok := n.(string); !ok {
			return fmt.Errorf("%s is not of type 'string'", pyRepr(n))
		}
		if _, has := m["value"]; !has {
			return fmt.Errorf("'value' is a required property")
		}
	case "user":
		if tx, has := m["text"]; has && tx != nil {
			if _, ok := tx.(string); !ok {
				return fmt.Errorf("%s is not of type 'string', 'null'", pyRepr(tx))
			}
		}
		if pd, has := m["parse_data"]; has {
			if _, ok := pd.(map[string]any); !ok {
				return fmt.Errorf("%s is not of type 'object'", pyRepr(pd))
			}
		}
	case "action":
		for _, k := range []string{"name", "policy", "action_text"} {
			if x, has := m[k]; has && x != nil {
				if _, ok := x.(string); !ok {
					return fmt.Errorf("%s is not of type 'string', 'null'", pyRepr(x))
				}
			}
		}
		if x, has := m["confidence"]; has && x != nil {
			if _, ok := x.(float64); !ok {
				return fmt.Errorf("%s is not of type 'number', 'null'", pyRepr(x))
			}
		}
	}
	return nil
}

var knownEvents = map[string]bool{
	"user": true, "action": true, "slot": true, "entities": true, "user_featurization": true,
	"cancel_reminder": true, "reminder": true, "action_execution_rejected": true,
	"form_validation": true, "loop_interrupted": true, "form": true, "active_loop": true,
	"reset_slots": true, "resume": true, "pause": true, "followup": true, "export": true,
	"restart": true, "undo": true, "rewind": true, "bot": true, "session_started": true, "agent": true,
}

// pyRepr renders a JSON value roughly as Python would in an error message.
func pyRepr(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	case string:
		return "'" + x + "'"
	case map[string]any:
		return "{...}"
	case []any:
		return "[...]"
	}
	return fmt.Sprint(v)
}
