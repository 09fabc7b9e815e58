package snowtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/handoffhq/handoff/servicenow/recorded"
)

// File is a file an agent attached to a chat message: a sys_attachment
// record on table live_message whose table_sys_id is the message.
type File struct {
	SysID       string // set by the instance when empty
	Name        string
	ContentType string
	// Content is served by GET /api/now/attachment/{sys_id}/file; Size is
	// len(Content) unless set.
	Content []byte
	Size    int64
}

// SayFiles writes text with files as agent in the chat (Say's rules): the
// message and its sys_attachment records appear together, so the Business
// Rule, the Connect messages API and the Attachment API all see the files.
func (in *Instance) SayFiles(group, agent, text string, files ...File) (Message, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	c, err := in.chat(group)
	if err != nil {
		return Message{}, err
	}
	switch {
	case c.State.Closed():
		return Message{}, fmt.Errorf("%w: %s", ErrChatClosed, group)
	case c.State != WorkInProgress:
		return Message{}, fmt.Errorf("%w: %s", ErrNotAccepted, group)
	}
	fs := make([]File, len(files))
	for i, f := range files {
		if f.SysID == "" {
			f.SysID = newSysID()
		}
		if f.Size == 0 {
			f.Size = int64(len(f.Content))
		}
		fs[i] = f
	}
	return *in.addMessageFiles(c, in.agent(agent), text, fs), nil
}

// attachmentTemplate is a record of the recorded Attachment API answer: the
// fake's records have its fields, with the file's values put in.
var attachmentTemplate = sync.OnceValue(func() map[string]any {
	var body struct {
		Result []map[string]any `json:"result"`
	}
	if err := json.Unmarshal(recorded.Load("attachment_live_message.json").Body, &body); err != nil || len(body.Result) == 0 {
		panic(fmt.Sprintf("snowtest: recorded attachment list: %v", err))
	}
	return body.Result[0]
})

// attachmentJSON renders f of message m as the Attachment API does. Callers
// hold in.mu.
func (in *Instance) attachmentJSON(m *Message, f File) map[string]any {
	rec := make(map[string]any, len(attachmentTemplate()))
	for k, v := range attachmentTemplate() {
		rec[k] = v
	}
	on := fmtTime(m.At)
	for k, v := range map[string]any{
		"sys_id": f.SysID, "table_name": "live_message", "table_sys_id": m.SysID, "file_name": f.Name,
		"content_type": f.ContentType, "size_bytes": strconv.FormatInt(f.Size, 10), "size_compressed": strconv.FormatInt(f.Size, 10),
		"download_link": in.fileURL(f.SysID), "sys_created_on": on, "sys_updated_on": on,
		"sys_created_by": m.CreatedBy, "sys_updated_by": m.CreatedBy, "image_height": "", "image_width": "", "average_image_color": "",
	} {
		rec[k] = v
	}
	return rec
}

// fileURL is the download_link of attachment id.
func (in *Instance) fileURL(id string) string {
	return in.srv.URL + "/api/now/attachment/" + id + "/file"
}

// handleAttachments serves GET /api/now/attachment: the records matching
// sysparm_query (the terms table_name=, table_sys_id=, table_sys_idIN and
// ORDERBY…; another term is a 400), of the chats the user opened (the rest
// are hidden by ACL), at most sysparm_limit (default 1000).
func (in *Instance) handleAttachments(w http.ResponseWriter, r *http.Request, user string) {
	table, ids := "", map[string]bool(nil)
	for _, term := range strings.Split(r.URL.Query().Get("sysparm_query"), "^") {
		switch {
		case term == "" || strings.HasPrefix(term, "ORDERBY"):
		case strings.HasPrefix(term, "table_name="):
			table = strings.TrimPrefix(term, "table_name=")
		case strings.HasPrefix(term, "table_sys_idIN"):
			ids = map[string]bool{}
			for _, id := range strings.Split(strings.TrimPrefix(term, "table_sys_idIN"), ",") {
				ids[id] = true
			}
		case strings.HasPrefix(term, "table_sys_id="):
			ids = map[string]bool{strings.TrimPrefix(term, "table_sys_id="): true}
		default:
			writeError(w, http.StatusBadRequest, "Invalid query", fmt.Sprintf("snowtest: unsupported term %q", term))
			return
		}
	}
	limit := 1000
	if v := r.URL.Query().Get("sysparm_limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "Invalid sysparm_limit", v)
			return
		}
		limit = n
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	out := []map[string]any{}
	for _, m := range in.messages {
		if (table != "" && table != "live_message") || (ids != nil && !ids[m.SysID]) {
			continue
		}
		if c, ok := in.chats[m.Group]; !ok || c.OpenedBy != user {
			continue
		}
		for _, f := range m.Files {
			if len(out) < limit {
				out = append(out, in.attachmentJSON(m, f))
			}
		}
	}
	writeResult(w, http.StatusOK, out)
}

// handleAttachmentFile serves GET /api/now/attachment/{sys_id}/file.
func (in *Instance) handleAttachmentFile(w http.ResponseWriter, r *http.Request, user string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	id := r.PathValue("sys_id")
	for _, m := range in.messages {
		for _, f := range m.Files {
			if f.SysID != id {
				continue
			}
			if c, ok := in.chats[m.Group]; !ok || c.OpenedBy != user {
				break
			}
			w.Header().Set("Content-Type", f.ContentType)
			_, _ = w.Write(f.Content)
			return
		}
	}
	writeError(w, http.StatusNotFound, "Record doesn't exist or ACL restricts the record retrieval", "")
}

// filesJSON is what the Business Rule (live_message_webhook.js) sends as
// "attachments". Callers hold in.mu.
func (in *Instance) filesJSON(m *Message) []any {
	out := []any{}
	for _, f := range m.Files {
		out = append(out, map[string]any{"sys_id": f.SysID, "file_name": f.Name, "content_type": f.ContentType,
			"size_bytes": strconv.FormatInt(f.Size, 10), "download_link": in.fileURL(f.SysID)})
	}
	return out
}

// vaLinkTemplate is the agent's Output Link item of the recorded callback:
// the fake's file items have its fields, with the file's values put in.
var vaLinkTemplate = sync.OnceValue(func() map[string]any {
	var req struct {
		Body []map[string]any `json:"body"`
	}
	if err := json.Unmarshal(recorded.Load("va_agent_file_callback.json").Request, &req); err != nil {
		panic(fmt.Sprintf("snowtest: recorded VA file callback: %v", err))
	}
	for _, it := range req.Body {
		if it["uiType"] == "OutputLink" {
			return it
		}
	}
	panic("snowtest: recorded VA file callback has no OutputLink")
})

// vaFileItems are the callback items of m's files in a VA chat: one Output
// Link per file, named by the file, its link the instance's file URL, from
// the agent. Callers hold in.mu.
func (in *Instance) vaFileItems(m *Message) []any {
	var out []any
	for _, f := range m.Files {
		it := make(map[string]any, len(vaLinkTemplate()))
		for k, v := range vaLinkTemplate() {
			it[k] = v
		}
		it["label"], it["header"], it["messageId"] = f.Name, "", f.SysID
		it["value"] = map[string]any{"action": in.fileURL(f.SysID), "target": "_blank"}
		it["agentInfo"] = map[string]any{"sentFromAgent": true, "agentName": m.SenderName, "agentId": m.Profile, "agentAvatar": ""}
		out = append(out, it)
	}
	return out
}
