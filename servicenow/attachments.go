package servicenow

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/handoffhq/handoff/bridge"
)

// This file reads the files an agent attached to Connect chat messages.
// Connect keeps them as sys_attachment records on table live_message whose
// table_sys_id is the message's sys_id; the Attachment API lists their
// metadata (GET /api/now/attachment?sysparm_query=table_name=live_message^
// table_sys_idIN<ids>): file_name, content_type, size_bytes (a string) and
// download_link, the instance URL of the file
// (…/api/now/attachment/<sys_id>/file). The bridge passes on that link, not
// the bytes: it opens for whoever can read the attachment on the instance.

// pathAttachment is the Attachment API's metadata list.
const pathAttachment = "/api/now/attachment"

// attachmentChunk bounds the message sys_ids of one Attachment API query
// (100 sys_ids are a 3.3 KB query, well inside URL limits).
const attachmentChunk = 100

// wireAttachment is one sys_attachment record as the Attachment API returns
// it, with the fields the bridge reads.
type wireAttachment struct {
	SysID        field `json:"sys_id"`
	FileName     field `json:"file_name"`
	ContentType  field `json:"content_type"`
	SizeBytes    field `json:"size_bytes"`
	DownloadLink field `json:"download_link"`
	TableName    field `json:"table_name"`
	TableSysID   field `json:"table_sys_id"`
}

// attachment is the file as the bridge passes it on; a missing or
// unreadable size is 0 (unknown).
func (w wireAttachment) attachment() bridge.Attachment {
	size, err := strconv.ParseInt(strings.TrimSpace(w.SizeBytes.Value), 10, 64)
	if err != nil || size < 0 {
		size = 0
	}
	return bridge.Attachment{
		Name:        strings.TrimSpace(w.FileName.Value),
		ContentType: strings.TrimSpace(w.ContentType.Value),
		URL:         strings.TrimSpace(w.DownloadLink.Value),
		Size:        size,
	}
}

// parseAttachments reads the Attachment API's result list, by the sys_id of
// the record each is attached to. Records of other tables or without a
// table_sys_id are skipped and counted.
func parseAttachments(result json.RawMessage) (byRecord map[string][]bridge.Attachment, skipped int, err error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(result, &raw); err != nil {
		return nil, 0, fmt.Errorf("attachments: %w", err)
	}
	byRecord = make(map[string][]bridge.Attachment)
	for _, r := range raw {
		var w wireAttachment
		if err := json.Unmarshal(r, &w); err != nil {
			skipped++
			continue
		}
		rec := strings.TrimSpace(w.TableSysID.Value)
		if rec == "" || (w.TableName.Value != "" && w.TableName.Value != "live_message") {
			skipped++
			continue
		}
		byRecord[rec] = append(byRecord[rec], w.attachment())
	}
	return byRecord, skipped, nil
}

// mayHaveFiles reports whether m needs an Attachment API read: an agent's
// message (not the bridge's echo, not a system row) whose files are not
// known from its own payload.
func (c classifier) mayHaveFiles(m message) bool {
	return !m.filesKnown && m.entry == nil && !strings.EqualFold(m.CreatedBy, "system") &&
		(c.bridgeUser == "" || !strings.EqualFold(m.CreatedBy, c.bridgeUser))
}

// attachFiles fills in the files of the agent messages of byChat whose files
// are not known yet, with one Attachment API read per 100 messages. A 401,
// 403 or 400 (no read access to sys_attachment) is logged and the messages
// go on without files, so an ACL cannot hold up the chat; other failures
// (throttling, 5xx) fail the poll, which is tried again.
//
// Polls return the rows at their cursor again (">="), so a chat whose newest
// row is an agent's would cost a read on every tick: the files read for a
// message are remembered (Client.files) and not asked for again.
func (c *Client) attachFiles(ctx context.Context, op string, byChat map[bridge.AgentChatID][]message) error {
	var ids []string
	for chat, msgs := range byChat {
		for i, m := range msgs {
			if m.filesKnown && m.entry == nil {
				c.files.put(m.SysID, m.files) // the messages API said: the Table API row costs no read later
				continue
			}
			if !c.cls.mayHaveFiles(m) {
				continue
			}
			if fs, ok := c.files.get(m.SysID); ok {
				msgs[i].files, msgs[i].filesKnown = fs, true
				continue
			}
			ids = append(ids, m.SysID)
		}
		byChat[chat] = msgs
	}
	if len(ids) == 0 {
		return nil
	}
	files := make(map[string][]bridge.Attachment)
	for start := 0; start < len(ids); start += attachmentChunk {
		chunk := ids[start:min(start+attachmentChunk, len(ids))]
		r, err := c.do(ctx, call{op: op + ": attachments", method: http.MethodGet, path: pathAttachment, retry: true, query: url.Values{
			"sysparm_query": {"table_name=live_message^table_sys_idIN" + strings.Join(chunk, ",") + "^ORDERBYsys_created_on"},
			"sysparm_limit": {strconv.Itoa(10 * len(chunk))},
		}})
		switch st := httpStatus(err); {
		case err == nil:
		case st == http.StatusUnauthorized || st == http.StatusForbidden || st == http.StatusBadRequest:
			c.log.Warn("servicenow: cannot read the attachments of chat messages; agent files are not passed on", "err", err)
			return nil
		default:
			return err
		}
		got, skipped, err := parseAttachments(r)
		if err != nil {
			return fmt.Errorf("servicenow: %s: %w", op, err)
		}
		if skipped > 0 {
			c.log.Warn("servicenow attachments skipped", "skipped", skipped)
		}
		for rec, fs := range got {
			files[rec] = append(files[rec], fs...)
		}
	}
	for _, id := range ids {
		c.files.put(id, files[id])
	}
	for chat, msgs := range byChat {
		for i := range msgs {
			if fs, ok := files[msgs[i].SysID]; ok && c.cls.mayHaveFiles(msgs[i]) {
				msgs[i].files, msgs[i].filesKnown = fs, true
			}
		}
		byChat[chat] = msgs
	}
	return nil
}

// maxFiles bounds the files of one webhook message.
const maxFiles = 20

// parseFileList reads the "attachments" list the live_message Business Rule
// sends with a message: the message's sys_attachment records in the
// Attachment API's shape. Absent or null: the files are not known (an older
// rule); [] means none.
func parseFileList(raw json.RawMessage) (files []bridge.Attachment, known bool, err error) {
	if t := strings.TrimSpace(string(raw)); t == "" || t == "null" {
		return nil, false, nil
	}
	var list []wireAttachment
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, false, fmt.Errorf("attachments: %w", err)
	}
	if len(list) > maxFiles {
		return nil, false, fmt.Errorf("%d attachments, at most %d allowed", len(list), maxFiles)
	}
	for _, w := range list {
		files = append(files, w.attachment())
	}
	return files, true, nil
}
