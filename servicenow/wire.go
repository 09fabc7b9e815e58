package servicenow

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/handoffhq/handoff/bridge"
)

// This file holds the JSON wire types of the Connect Support and Table APIs and
// their parsers. ServiceNow is loose about types (the Table API returns every
// value as a string, references as {"link","value"} objects, and
// sysparm_display_value=all as {"display_value","value"} objects), so the
// parsers accept every shape seen and never trust the input.

// TimeLayout is ServiceNow's date-time format: UTC, second resolution.
const TimeLayout = "2006-01-02 15:04:05"

// maxMillis is the last millisecond of year 9999: later times cannot be written
// back in TimeLayout.
const maxMillis = 253402300799999

// envelope is the body of every /api/now answer: {"result": ...} on success,
// {"error":{"message","detail"},"status":"failure"} on failure. A few Connect
// endpoints answer a 403 with a plain string in result.
type envelope struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message field `json:"message"`
		Detail  field `json:"detail"`
	} `json:"error"`
	Status string `json:"status"`
}

// errorText returns the error envelope's message and detail, or a string
// result, from a failed response body. It returns empty strings for anything
// else (an HTML error page, an empty body).
func errorText(body []byte) (message, detail string) {
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		// OAuth errors: {"error":"access_denied","error_description":"..."}.
		var oe struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(body, &oe) == nil {
			return oe.Description, oe.Error
		}
		return "", ""
	}
	if env.Error != nil {
		return env.Error.Message.Value, env.Error.Detail.Value
	}
	var s string
	if json.Unmarshal(env.Result, &s) == nil {
		return s, ""
	}
	return "", ""
}

// field is one ServiceNow JSON value: a string, number, boolean or null, or an
// object such as {"link","value"} (a reference), {"display_value","value"}
// (sysparm_display_value=all) or {"sys_id","name"} (an embedded record). Value
// is the raw value (a sys_id for references), Display the human-readable one
// (Value when the wire gave none).
type field struct {
	Value   string
	Display string
}

func (f *field) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '{' {
		var o map[string]json.RawMessage
		if err := json.Unmarshal(b, &o); err != nil {
			return err
		}
		pick := func(keys ...string) (string, error) {
			for _, k := range keys {
				if raw, ok := o[k]; ok {
					s, err := scalar(raw)
					if err != nil {
						return "", fmt.Errorf("field %q: %w", k, err)
					}
					return s, nil
				}
			}
			return "", nil
		}
		v, err := pick("value", "sys_id")
		if err != nil {
			return err
		}
		d, err := pick("display_value", "name")
		if err != nil {
			return err
		}
		if _, ok := o["display_value"]; !ok && d == "" {
			d = v
		}
		*f = field{Value: v, Display: d}
		return nil
	}
	s, err := scalar(b)
	if err != nil {
		return err
	}
	*f = field{Value: s, Display: s}
	return nil
}

func (f field) MarshalJSON() ([]byte, error) {
	if f.Display == f.Value {
		return json.Marshal(f.Value)
	}
	return json.Marshal(map[string]string{"value": f.Value, "display_value": f.Display})
}

// scalar renders a JSON string, number, boolean or null as text.
func scalar(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", errors.New("empty value")
	}
	switch raw[0] {
	case '"':
		if len(raw) >= 2 && raw[len(raw)-1] == '"' {
			inner := raw[1 : len(raw)-1]
			if bytes.IndexByte(inner, '\\') < 0 && bytes.IndexByte(inner, '"') < 0 && utf8.Valid(inner) && !hasControl(inner) {
				return string(inner), nil // the common case: no escapes
			}
		}
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	case 'n':
		if string(raw) == "null" {
			return "", nil
		}
	case 't', 'f':
		var v bool
		if err := json.Unmarshal(raw, &v); err != nil {
			return "", err
		}
		return strconv.FormatBool(v), nil
	default:
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return "", err
		}
		return n.String(), nil
	}
	return "", fmt.Errorf("unexpected JSON value %.20q", raw)
}

// hasControl reports whether b holds a byte JSON forbids unescaped in strings.
func hasControl(b []byte) bool {
	for _, c := range b {
		if c < 0x20 {
			return true
		}
	}
	return false
}

// parseTime parses a ServiceNow date-time ("YYYY-MM-DD HH:MM:SS", UTC).
// Empty text is the zero time.
func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.ParseInLocation(TimeLayout, s, time.UTC)
	if err != nil {
		return time.Time{}, fmt.Errorf("date-time %q: %w", s, err)
	}
	return t, nil
}

// formatTime renders t as a ServiceNow UTC date-time (seconds truncated).
func formatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// parseMillis parses an epoch-millisecond timestamp given as a JSON number or
// string ("1714658591123", 1714658591123 or 1.714658591123e12).
func parseMillis(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || math.IsNaN(f) || f != math.Trunc(f) || f < 0 || f > maxMillis {
			return 0, false
		}
		n = int64(f)
	}
	if n < 0 || n > maxMillis {
		return 0, false
	}
	return n, true
}

// message is a chat message from the Connect messages API or a live_message
// row from the Table API.
type message struct {
	SysID      string
	Group      string
	Profile    string
	CreatedBy  string // user name of the author; "system" for system messages
	SenderName string // display name ("" from the Table API unless display values were asked for)
	Text       string
	At         time.Time // UTC; ms precision when Millis
	Millis     bool      // At came from the ms timestamp, not the seconds of created_on
	// rank orders rows of the same ms as an earlier messages API read did
	// (0: no such read; see Client.exact).
	rank uint64
	// entry is set instead of the fields above for a webhook's queue-entry
	// state event (a chat closed without a message in the chat).
	entry *QueueEntry
	// prev and hasPrev are a webhook's "previous" pointer: the sys_ids of the
	// chat's newest earlier messages the Business Rule also sends, comma
	// separated ("": the first). hasPrev is false for payloads without it
	// (older rules).
	prev    string
	hasPrev bool
	// files are the agent's files of the message; filesKnown says whether
	// they are known (from the payload or the Attachment API) or still to be
	// read (see attachFiles).
	files      []bridge.Attachment
	filesKnown bool
}

// wireMessage is the Connect message object, with the fields the bridge reads.
type wireMessage struct {
	SysID            field `json:"sys_id"`
	Group            field `json:"group"`
	Profile          field `json:"profile"`
	CreatedBy        field `json:"created_by"`
	SenderName       field `json:"sender_name"`
	CreatedOn        field `json:"created_on"`
	Timestamp        field `json:"timestamp"`
	Message          field `json:"message"`
	FormattedMessage field `json:"formatted_message"`
	// Attachments is only a hint: an empty list means no files; anything
	// else (absent, or listing files in a shape that is not documented)
	// means the Attachment API is asked.
	Attachments json.RawMessage `json:"attachments"`
}

// parseMessage reads one Connect message object.
func parseMessage(data []byte) (message, error) {
	var w wireMessage
	if err := json.Unmarshal(data, &w); err != nil {
		return message{}, fmt.Errorf("message: %w", err)
	}
	return w.message()
}

func (w wireMessage) message() (message, error) {
	m := message{
		SysID:      strings.TrimSpace(w.SysID.Value),
		Group:      w.Group.Value,
		Profile:    w.Profile.Value,
		CreatedBy:  w.CreatedBy.Value,
		SenderName: w.SenderName.Display,
		Text:       w.Message.Value,
	}
	if m.Text == "" {
		m.Text = w.FormattedMessage.Value
	}
	var list []json.RawMessage
	if json.Unmarshal(w.Attachments, &list) == nil && list != nil && len(list) == 0 {
		m.filesKnown = true // "attachments":[]
	}
	if m.SenderName == "" && w.Profile.Display != w.Profile.Value {
		m.SenderName = w.Profile.Display
	}
	if m.SysID == "" {
		return message{}, errors.New("message: no sys_id")
	}
	if ms, ok := parseMillis(w.Timestamp.Value); ok {
		m.At, m.Millis = time.UnixMilli(ms).UTC(), true
		return m, nil
	}
	at, err := parseTime(w.CreatedOn.Value)
	if err != nil {
		return message{}, fmt.Errorf("message %s: created_on: %w", m.SysID, err)
	}
	if at.IsZero() {
		return message{}, fmt.Errorf("message %s: no created_on or timestamp", m.SysID)
	}
	m.At = at
	return m, nil
}

// wire renders m as a Connect message object (the inverse of parseMessage).
func (m message) wire() wireMessage {
	w := wireMessage{
		SysID:      field{m.SysID, m.SysID},
		Group:      field{m.Group, m.Group},
		Profile:    field{m.Profile, m.Profile},
		CreatedBy:  field{m.CreatedBy, m.CreatedBy},
		SenderName: field{m.SenderName, m.SenderName},
		CreatedOn:  field{formatTime(m.At), formatTime(m.At)},
		Message:    field{m.Text, m.Text},
	}
	if m.Millis {
		ms := strconv.FormatInt(m.At.UnixMilli(), 10)
		w.Timestamp = field{ms, ms}
	}
	if m.filesKnown && len(m.files) == 0 {
		w.Attachments = json.RawMessage("[]")
	}
	return w
}

// parseMessages reads a {"result":[...]} list of Connect messages. Items that
// cannot be read (no sys_id, no time) are skipped and counted.
func parseMessages(result json.RawMessage) (msgs []message, skipped int, err error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(result, &raw); err != nil {
		return nil, 0, fmt.Errorf("messages: %w", err)
	}
	msgs = make([]message, 0, len(raw))
	for _, r := range raw {
		m, err := parseMessage(r)
		if err != nil {
			skipped++
			continue
		}
		msgs = append(msgs, m)
	}
	return msgs, skipped, nil
}

// parseTableMessage reads one live_message row of the Table API
// (sys_created_on, sys_created_by, message; values plain or display-value
// objects).
func parseTableMessage(data []byte) (message, error) {
	var w struct {
		SysID     field `json:"sys_id"`
		Group     field `json:"group"`
		Profile   field `json:"profile"`
		CreatedBy field `json:"sys_created_by"`
		CreatedOn field `json:"sys_created_on"`
		Message   field `json:"message"`
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return message{}, fmt.Errorf("live_message row: %w", err)
	}
	m := message{
		SysID:     strings.TrimSpace(w.SysID.Value),
		Group:     w.Group.Value,
		Profile:   w.Profile.Value,
		CreatedBy: w.CreatedBy.Value,
		Text:      w.Message.Value,
	}
	if w.Profile.Display != w.Profile.Value {
		m.SenderName = w.Profile.Display
	}
	if m.SysID == "" || m.Group == "" {
		return message{}, errors.New("live_message row: no sys_id or group")
	}
	at, err := parseTime(w.CreatedOn.Value)
	if err != nil || at.IsZero() {
		return message{}, fmt.Errorf("live_message row %s: bad sys_created_on %q", m.SysID, w.CreatedOn.Value)
	}
	m.At = at
	return m, nil
}

// QueueState is the state of a Connect Support queue entry (chat_queue_entry).
type QueueState int

// The queue-entry states of factory.queueEntry.js.
const (
	StateWaiting         QueueState = 1 // waiting for an agent
	StateWorkInProgress  QueueState = 2 // an agent accepted the chat
	StateClosedComplete  QueueState = 3 // the agent closed it
	StateClosedEscalated QueueState = 4 // the agent escalated and closed it
	StateClosedByClient  QueueState = 7 // closed from the requester's side
	StateClosedAbandoned QueueState = 8 // abandoned (nobody worked it to the end)
)

// Closed reports whether the state is one of the closed states (3, 4, 7, 8).
func (s QueueState) Closed() bool {
	switch s {
	case StateClosedComplete, StateClosedEscalated, StateClosedByClient, StateClosedAbandoned:
		return true
	}
	return false
}

func (s QueueState) String() string {
	switch s {
	case StateWaiting:
		return "waiting"
	case StateWorkInProgress:
		return "work_in_progress"
	case StateClosedComplete:
		return "closed_complete"
	case StateClosedEscalated:
		return "closed_escalated"
	case StateClosedByClient:
		return "closed_by_client"
	case StateClosedAbandoned:
		return "closed_abandoned"
	}
	return "state_" + strconv.Itoa(int(s))
}

// QueueEntry is a Connect Support chat's queue entry (chat_queue_entry).
type QueueEntry struct {
	SysID            string
	Group            string // the conversation id (bridge.AgentChatID)
	Queue            string // queue sys_id
	Number           string // e.g. CHAT0010001
	State            QueueState
	AssignedTo       string // the agent's display name when given, else the sys_id; "" while waiting
	Position         int    // place in the queue while waiting
	ShortDescription string
	WorkStart        time.Time
	WorkEnd          time.Time
	UpdatedOn        time.Time
}

type wireQueueEntry struct {
	SysID            field `json:"sys_id"`
	Group            field `json:"group"`
	Queue            field `json:"queue"`
	Number           field `json:"number"`
	State            field `json:"state"`
	AssignedTo       field `json:"assigned_to"`
	Position         field `json:"position"`
	ShortDescription field `json:"short_description"`
	WorkStart        field `json:"work_start"`
	WorkEnd          field `json:"work_end"`
	UpdatedOn        field `json:"sys_updated_on"`
}

// parseQueueEntry reads one queue-entry object (Connect API or Table API row).
func parseQueueEntry(data []byte) (QueueEntry, error) {
	var w wireQueueEntry
	if err := json.Unmarshal(data, &w); err != nil {
		return QueueEntry{}, fmt.Errorf("queue entry: %w", err)
	}
	return w.entry()
}

func (w wireQueueEntry) entry() (QueueEntry, error) {
	e := QueueEntry{
		SysID:            w.SysID.Value,
		Group:            w.Group.Value,
		Queue:            w.Queue.Value,
		Number:           w.Number.Value,
		AssignedTo:       w.AssignedTo.Display,
		ShortDescription: w.ShortDescription.Value,
	}
	if e.Group == "" {
		return QueueEntry{}, errors.New("queue entry: no group")
	}
	st, err := strconv.Atoi(strings.TrimSpace(w.State.Value))
	if err != nil {
		return QueueEntry{}, fmt.Errorf("queue entry %s: state %q: %w", e.Group, w.State.Value, err)
	}
	e.State = QueueState(st)
	if p := strings.TrimSpace(w.Position.Value); p != "" {
		if n, err := strconv.Atoi(p); err == nil {
			e.Position = n
		}
	}
	// Times are informational: a malformed one is left zero.
	e.WorkStart, _ = parseTime(w.WorkStart.Value)
	e.WorkEnd, _ = parseTime(w.WorkEnd.Value)
	e.UpdatedOn, _ = parseTime(w.UpdatedOn.Value)
	return e, nil
}

// wire renders e as a queue-entry object (the inverse of parseQueueEntry).
func (e QueueEntry) wire() wireQueueEntry {
	f := func(s string) field { return field{s, s} }
	t := func(x time.Time) field {
		if x.IsZero() {
			return field{}
		}
		return f(formatTime(x))
	}
	return wireQueueEntry{
		SysID:            f(e.SysID),
		Group:            f(e.Group),
		Queue:            f(e.Queue),
		Number:           f(e.Number),
		State:            f(strconv.Itoa(int(e.State))),
		AssignedTo:       f(e.AssignedTo),
		Position:         f(strconv.Itoa(e.Position)),
		ShortDescription: f(e.ShortDescription),
		WorkStart:        t(e.WorkStart),
		WorkEnd:          t(e.WorkEnd),
		UpdatedOn:        t(e.UpdatedOn),
	}
}

// parseQueueEntries reads a result list of queue entries; unreadable items are
// skipped and counted.
func parseQueueEntries(result json.RawMessage) (entries []QueueEntry, skipped int, err error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(result, &raw); err != nil {
		return nil, 0, fmt.Errorf("queue entries: %w", err)
	}
	for _, r := range raw {
		e, err := parseQueueEntry(r)
		if err != nil {
			skipped++
			continue
		}
		entries = append(entries, e)
	}
	return entries, skipped, nil
}

// parseConversation reads a Connect conversation object: its embedded
// queueEntry and its last_message (nil when absent, null or unreadable).
func parseConversation(result json.RawMessage) (QueueEntry, *message, error) {
	var w struct {
		SysID       field           `json:"sys_id"`
		QueueEntry  json.RawMessage `json:"queueEntry"`
		LastMessage json.RawMessage `json:"last_message"`
	}
	if err := json.Unmarshal(result, &w); err != nil {
		return QueueEntry{}, nil, fmt.Errorf("conversation: %w", err)
	}
	if len(w.QueueEntry) == 0 || string(w.QueueEntry) == "null" {
		return QueueEntry{}, nil, errors.New("conversation: no queueEntry")
	}
	var qe wireQueueEntry
	if err := json.Unmarshal(w.QueueEntry, &qe); err != nil {
		return QueueEntry{}, nil, fmt.Errorf("conversation: queueEntry: %w", err)
	}
	if qe.Group.Value == "" {
		qe.Group = w.SysID
	}
	e, err := qe.entry()
	if err != nil {
		return QueueEntry{}, nil, fmt.Errorf("conversation: %w", err)
	}
	var last *message
	if len(w.LastMessage) > 0 && w.LastMessage[0] == '{' {
		if m, err := parseMessage(w.LastMessage); err == nil {
			last = &m
		}
	}
	return e, last, nil
}

// Queue is a Connect Support queue (chat_queue) as listed by
// GET /api/now/connect/support/queues.
type Queue struct {
	SysID        string
	Name         string
	Question     string
	WaitingCount int
	NotAvailable bool
}

func parseQueues(result json.RawMessage) ([]Queue, error) {
	var raw []struct {
		SysID        field `json:"sys_id"`
		Name         field `json:"name"`
		Question     field `json:"question"`
		WaitingCount field `json:"waiting_count"`
		NotAvailable field `json:"not_available"`
	}
	if err := json.Unmarshal(result, &raw); err != nil {
		return nil, fmt.Errorf("queues: %w", err)
	}
	qs := make([]Queue, 0, len(raw))
	for _, r := range raw {
		n, _ := strconv.Atoi(r.WaitingCount.Value)
		na, _ := strconv.ParseBool(r.NotAvailable.Value)
		qs = append(qs, Queue{SysID: r.SysID.Value, Name: r.Name.Display, Question: r.Question.Value, WaitingCount: n, NotAvailable: na})
	}
	return qs, nil
}
