package snowtest

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// timeLayout is ServiceNow's UTC date-time format.
const timeLayout = "2006-01-02 15:04:05"

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeLayout)
}

// pageSize is the Connect messages API's page size.
const pageSize = 30

// notFound answers like an ACL-hidden or missing record.
func notFound(w http.ResponseWriter) {
	writeError(w, http.StatusNotFound, "No Record found", "Record doesn't exist or ACL restricts the record retrieval")
}

// queueJSON renders a queue as GET .../support/queues lists it. Callers hold in.mu.
func (in *Instance) queueJSON(q Queue) map[string]any {
	waiting := 0
	for _, c := range in.order {
		if c.Queue == q.SysID && c.State == Waiting {
			waiting++
		}
	}
	return map[string]any{
		"sys_id":            q.SysID,
		"name":              q.Name,
		"question":          q.Question,
		"average_wait_time": "0 Seconds",
		"waiting_count":     waiting,
		"not_available":     q.NotAvailable,
		"escalate_to":       "",
		"is_agent_for":      false,
	}
}

// entryJSON renders a queue entry as the Connect API does. Callers hold in.mu.
func (in *Instance) entryJSON(c *chat) map[string]any {
	var assigned any = ""
	if c.assignedUser != "" {
		assigned = map[string]any{"sys_id": sysIDOf("sys_user", c.assignedUser), "name": c.AssignedTo}
	}
	wait := c.UpdatedAt.Sub(c.OpenedAt)
	if c.State == Waiting {
		wait = in.now().Sub(c.OpenedAt)
	} else if !c.WorkStart.IsZero() {
		wait = c.WorkStart.Sub(c.OpenedAt)
	}
	transferState := ""
	if c.transferFrom != "" {
		transferState = "complete"
	}
	return map[string]any{
		"sys_id":            c.QueueEntry,
		"queue":             c.Queue,
		"group":             c.Group,
		"assigned_to":       assigned,
		"number":            c.Number,
		"position":          in.position(c),
		"short_description": c.ShortDescription,
		"state":             int(c.State),
		"wait_time":         int(max(wait, 0).Seconds()),
		"work_start":        fmtTime(c.WorkStart),
		"work_end":          fmtTime(c.WorkEnd),
		"opened_by":         sysIDOf("sys_user", c.OpenedBy),
		"transfer_state":    transferState,
		"transfer_to":       "",
		"transfer_from":     c.transferFrom,
		"sys_updated_on":    fmtTime(c.UpdatedAt),
	}
}

// messageJSON renders a message as the Connect API does. Its
// "attachments" list is [] without files; with files it lists their
// sys_ids (ServiceNow's UI reads the field, its item shape is not
// documented: the bridge only takes a non-empty list as "ask the Attachment
// API").
func messageJSON(m *Message) map[string]any {
	files := []any{}
	for _, f := range m.Files {
		files = append(files, map[string]any{"sys_id": f.SysID})
	}
	return map[string]any{
		"sys_id":            m.SysID,
		"group":             m.Group,
		"profile":           m.Profile,
		"created_by":        m.CreatedBy,
		"sender_name":       m.SenderName,
		"created_on":        fmtTime(m.At),
		"timestamp":         m.At.UnixMilli(),
		"message":           m.Text,
		"formatted_message": m.Text,
		"reflected_field":   "",
		"links":             []any{},
		"attachments":       files,
		"mentions":          []any{},
	}
}

// conversationJSON renders a conversation with its queue entry. Callers hold in.mu.
func (in *Instance) conversationJSON(c *chat) map[string]any {
	members := []any{map[string]any{"user_name": c.OpenedBy, "name": in.displayName(c.OpenedBy)}}
	if c.assignedUser != "" {
		members = append(members, map[string]any{"user_name": c.assignedUser, "name": c.AssignedTo})
	}
	var last any
	if n := len(c.msgs); n > 0 {
		last = messageJSON(c.msgs[n-1])
	}
	return map[string]any{
		"sys_id":          c.Group,
		"name":            c.Number,
		"members":         members,
		"last_message":    last,
		"last_viewed":     "",
		"unread_messages": 0,
		"queueEntry":      in.entryJSON(c),
		"table":           "chat_queue_entry",
		"document":        c.QueueEntry,
	}
}

// ownChat returns the chat in the path if user opened it (other chats are
// hidden by ACL: 404). Callers hold in.mu.
func (in *Instance) ownChat(w http.ResponseWriter, r *http.Request, user string) *chat {
	c, ok := in.chats[r.PathValue("group")]
	if !ok || c.OpenedBy != user {
		notFound(w)
		return nil
	}
	return c
}

func (in *Instance) handleQueues(w http.ResponseWriter, r *http.Request, _ string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make([]any, 0, len(in.queues))
	for _, q := range in.queues {
		out = append(out, in.queueJSON(q))
	}
	writeResult(w, http.StatusOK, out)
}

// handleOpen is POST .../queues/{queue}/sessions {"message"}: a new chat
// waiting in the queue, answered with its queue entry. An unknown or
// unavailable queue answers 403 with a string result, as the Connect UI expects.
func (in *Instance) handleOpen(w http.ResponseWriter, r *http.Request, user string) {
	var body struct {
		Message string `json:"message"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	i := slices.IndexFunc(in.queues, func(q Queue) bool { return q.SysID == r.PathValue("queue") })
	if i < 0 || in.queues[i].NotAvailable {
		writeResult(w, http.StatusForbidden, "The support queue is not available. Please try again later.")
		return
	}
	if strings.TrimSpace(body.Message) == "" {
		writeError(w, http.StatusBadRequest, "Message is required", "")
		return
	}
	c := in.openChat(in.queues[i].SysID, user, body.Message)
	writeResult(w, http.StatusOK, in.entryJSON(c))
}

// handleQueueSessions is GET .../queues/{queue}/sessions: the user's open
// conversations in the queue, each with its queueEntry.
func (in *Instance) handleQueueSessions(w http.ResponseWriter, r *http.Request, user string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := []any{}
	for _, c := range in.order {
		if c.Queue == r.PathValue("queue") && c.OpenedBy == user && !c.State.Closed() {
			out = append(out, in.conversationJSON(c))
		}
	}
	writeResult(w, http.StatusOK, out)
}

// handleSessions is GET /api/now/connect/support/sessions?group_id=&queue_id=&closed=:
// the user's queue entries.
func (in *Instance) handleSessions(w http.ResponseWriter, r *http.Request, user string) {
	q := r.URL.Query()
	in.mu.Lock()
	defer in.mu.Unlock()
	out := []any{}
	for _, c := range in.order {
		switch {
		case c.OpenedBy != user:
		case q.Get("group_id") != "" && q.Get("group_id") != c.Group:
		case q.Get("queue_id") != "" && q.Get("queue_id") != c.Queue:
		case q.Get("closed") == "true" && !c.State.Closed():
		case q.Get("closed") == "false" && c.State.Closed():
		default:
			out = append(out, in.entryJSON(c))
		}
	}
	writeResult(w, http.StatusOK, out)
}

// handleLeave is POST .../sessions/{group}/leave (and /close): the requester
// leaves; an open chat becomes Closed by Client (7) with a system message for
// the agent. Leaving a closed chat answers its entry unchanged.
func (in *Instance) handleLeave(w http.ResponseWriter, r *http.Request, user string) {
	var body map[string]any
	if r.ContentLength != 0 && !readJSON(w, r, &body) {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	c := in.ownChat(w, r, user)
	if c == nil {
		return
	}
	if !c.State.Closed() {
		in.addMessage(c, "system", in.displayName(user)+" left the conversation")
		in.setState(c, ClosedByClient)
	}
	writeResult(w, http.StatusOK, in.entryJSON(c))
}

func (in *Instance) handleConversation(w http.ResponseWriter, r *http.Request, user string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if c := in.ownChat(w, r, user); c != nil {
		writeResult(w, http.StatusOK, in.conversationJSON(c))
	}
}

// handleMessages is GET .../conversations/{group}/messages?before=<ms>: the
// newest 30 messages older than before (exclusive), newest first.
func (in *Instance) handleMessages(w http.ResponseWriter, r *http.Request, user string) {
	before := int64(-1)
	if s := r.URL.Query().Get("before"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			before = n
		}
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	c := in.ownChat(w, r, user)
	if c == nil {
		return
	}
	msgs := slices.Clone(c.msgs)
	slices.SortStableFunc(msgs, func(a, b *Message) int {
		if n := b.At.Compare(a.At); n != 0 {
			return n
		}
		return b.seq - a.seq
	})
	out := make([]any, 0, pageSize)
	for _, m := range msgs {
		if before >= 0 && m.At.UnixMilli() >= before {
			continue
		}
		if len(out) == pageSize {
			break
		}
		out = append(out, messageJSON(m))
	}
	writeResult(w, http.StatusOK, out)
}

// handlePost is POST .../conversations/{group}/messages {"message"}: the
// user's message, answered with the created message. A closed chat refuses
// with 403.
func (in *Instance) handlePost(w http.ResponseWriter, r *http.Request, user string) {
	var body struct {
		Message string `json:"message"`
	}
	if !readJSON(w, r, &body) {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	c := in.ownChat(w, r, user)
	if c == nil {
		return
	}
	if c.State.Closed() {
		writeError(w, http.StatusForbidden, "Conversation is closed", "The support session has ended; no new messages can be added.")
		return
	}
	if strings.TrimSpace(body.Message) == "" {
		writeError(w, http.StatusBadRequest, "Message is required", "")
		return
	}
	writeResult(w, http.StatusOK, messageJSON(in.addMessage(c, user, body.Message)))
}
