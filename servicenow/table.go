package servicenow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// Table API paths used by PollMany.
const (
	pathLiveMessage = "/api/now/table/live_message"
	pathQueueEntry  = "/api/now/table/chat_queue_entry"
)

// liveMessageFields are the live_message columns PollMany reads.
const liveMessageFields = "sys_id,group,message,sys_created_on,sys_created_by,profile"

// queueEntryFields are the chat_queue_entry columns PollMany reads (position:
// the waiting chat's place in the queue, for the status card).
const queueEntryFields = "sys_id,group,state,assigned_to,position,work_start,sys_updated_on"

// PollMany returns the events of many chats with few requests: per chunk of
// up to 100 chats (sorted by cursor so each chunk's oldest cursor is close to
// the others), one Table API read of chat_queue_entry and one of live_message
// (groupIN…^sys_created_on>=<the chunk's oldest cursor>^ORDERBYsys_created_on
// ^ORDERBYsys_id),
// paged with sysparm_offset until X-Total-Count is reached (a page can come
// back short when ACLs hide rows; without the header a short page ends it;
// sys_id breaks the ties of
// the one-second sys_created_on, so rows of one second cannot move between
// pages). Rows are filtered per chat by its own cursor at second resolution
// (the Table API has no ms timestamp, so the rows of the cursor's second come
// back on every poll and are de-duplicated by sys_id downstream), and turned
// into events as Poll does; author names come from the profile's display
// value. The Table API gives no order inside a second, so a chat with two
// rows in one second is read again through the Connect messages API, whose
// ms timestamps order them.
//
// Without read access to chat_queue_entry (403 or 400) states are skipped
// with a warning and chats end by their end phrases only.
//
// Chats without events are absent from the map. When some chunks fail, the
// events of the others are returned together with the joined errors.
func (c *Client) PollMany(ctx context.Context, cursors map[bridge.AgentChatID]time.Time) (map[bridge.AgentChatID][]bridge.AgentEvent, error) {
	type target struct {
		chat  bridge.AgentChatID
		since time.Time
	}
	var (
		targets []target
		errs    []error
	)
	for chat, since := range cursors {
		if !validSysID(string(chat)) {
			errs = append(errs, fmt.Errorf("servicenow: poll chats: chat id %q is not a sys_id", chat))
			continue
		}
		targets = append(targets, target{chat, since})
	}
	slices.SortFunc(targets, func(a, b target) int {
		if n := a.since.Compare(b.since); n != 0 {
			return n
		}
		return strings.Compare(string(a.chat), string(b.chat))
	})
	out := make(map[bridge.AgentChatID][]bridge.AgentEvent)
	for chunk := range slices.Chunk(targets, c.cfg.BatchChats) {
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("servicenow: poll chats: %w", ctx.Err()))
			break
		}
		since := make(map[bridge.AgentChatID]time.Time, len(chunk))
		for _, t := range chunk {
			since[t.chat] = t.since
		}
		if err := c.pollChunk(ctx, since, chunk[0].since, out); err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// pollChunk reads one chunk of chats into out.
func (c *Client) pollChunk(ctx context.Context, cursors map[bridge.AgentChatID]time.Time, oldest time.Time, out map[bridge.AgentChatID][]bridge.AgentEvent) error {
	groups := make([]string, 0, len(cursors))
	for chat := range cursors {
		groups = append(groups, string(chat))
	}
	slices.Sort(groups)
	in := "groupIN" + strings.Join(groups, ",")

	// Queue entries first: a chat seen closed then has all its messages below.
	entries := make(map[string]QueueEntry, len(groups))
	r, err := c.do(ctx, call{op: "poll chats", method: http.MethodGet, path: pathQueueEntry, retry: true, query: url.Values{
		"sysparm_query":                  {in + "^ORDERBYsys_updated_on"},
		"sysparm_fields":                 {queueEntryFields},
		"sysparm_display_value":          {"all"},
		"sysparm_exclude_reference_link": {"true"},
		"sysparm_limit":                  {strconv.Itoa(4 * len(groups))},
	}})
	statesRead := err == nil
	switch st := httpStatus(err); {
	case err == nil:
		list, skipped, err := parseQueueEntries(r)
		if err != nil {
			return fmt.Errorf("servicenow: poll chats: %w", err)
		}
		if skipped > 0 {
			c.log.Warn("servicenow queue entries skipped", "skipped", skipped)
		}
		for _, e := range list {
			entries[e.Group] = e // ordered by sys_updated_on: the newest wins
		}
	case st == http.StatusForbidden || st == http.StatusBadRequest:
		// No read access to chat_queue_entry: carry on with the messages,
		// whose end phrases still end chats.
		c.log.Warn("servicenow: cannot read chat_queue_entry; chat states are not polled", "error", err)
	default:
		return err
	}

	query := in
	if !oldest.IsZero() {
		query += "^sys_created_on>=" + formatTime(oldest)
	}
	// sys_created_on has one-second resolution: sys_id breaks the ties, so
	// rows created in the same second keep one order across pages.
	query += "^ORDERBYsys_created_on^ORDERBYsys_id"
	var (
		byChat = make(map[bridge.AgentChatID][]message)
		seen   = make(map[string]bool)
		limit  = c.cfg.BatchLimit
	)
	for offset := 0; ; offset += limit {
		r, hdr, err := c.t.doHeader(ctx, call{op: "poll chats", method: http.MethodGet, path: pathLiveMessage, retry: true, query: url.Values{
			"sysparm_query":                  {query},
			"sysparm_fields":                 {liveMessageFields},
			"sysparm_display_value":          {"all"},
			"sysparm_exclude_reference_link": {"true"},
			"sysparm_limit":                  {strconv.Itoa(limit)},
			"sysparm_offset":                 {strconv.Itoa(offset)},
		}})
		if err != nil {
			return err
		}
		var rows []json.RawMessage
		if err := json.Unmarshal(r, &rows); err != nil {
			return fmt.Errorf("servicenow: poll chats: live_message: %w", err)
		}
		bad := 0
		for _, row := range rows {
			m, err := parseTableMessage(row)
			if err != nil {
				bad++
				continue
			}
			chat := bridge.AgentChatID(m.Group)
			since, ok := cursors[chat]
			if !ok || seen[m.SysID] || !atOrAfter(m, since) {
				continue
			}
			seen[m.SysID] = true
			byChat[chat] = append(byChat[chat], m)
		}
		if bad > 0 {
			c.log.Warn("servicenow live_message rows skipped", "skipped", bad)
		}
		// Rows an ACL hides are left out of a page without notice, so a
		// short page is the last one only when X-Total-Count says so.
		if total, err := strconv.Atoi(hdr.Get("X-Total-Count")); err == nil {
			if offset+limit >= total {
				break
			}
		} else if len(rows) < limit {
			break
		}
	}
	for chat, since := range cursors {
		if sameSecond(byChat[chat]) {
			// The Table API has no order inside a second (sys_id only keeps
			// pages stable): read this chat's messages with their ms
			// timestamps instead, one request more.
			exact, err := c.messagesSince(ctx, "poll chats", chat, since)
			if err != nil {
				return err
			}
			byChat[chat] = exact
		}
	}
	if err := c.attachFiles(ctx, "poll chats", byChat); err != nil {
		return err
	}
	for chat, since := range cursors {
		msgs := byChat[chat]
		var entry *QueueEntry
		if e, ok := entries[string(chat)]; ok {
			entry = &e
		} else if statesRead {
			c.log.Warn("servicenow chat has no queue entry", "chat_id", chat)
		}
		slices.SortStableFunc(msgs, func(a, b message) int { return a.At.Compare(b.At) })
		if evs := c.events(chat, msgs, entry, since); len(evs) > 0 {
			out[chat] = evs
		}
	}
	return nil
}

// sameSecond reports whether two of msgs (second resolution) share a second.
func sameSecond(msgs []message) bool {
	seen := make(map[int64]bool, len(msgs))
	for _, m := range msgs {
		if m.Millis {
			continue
		}
		s := m.At.Unix()
		if seen[s] {
			return true
		}
		seen[s] = true
	}
	return false
}

// validSysID reports whether s can be placed in an encoded query unescaped.
func validSysID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
