package servicenow

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
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

// PollMany returns the events of many chats with few requests. Queue
// entries come first (a chat seen closed then has all its messages below):
// one Table API read of chat_queue_entry per chunk of up to 100 chats whose
// state is due — every chat on every poll, except that a chat an agent is
// working on is read only every LiveStateEvery-th poll. Then, per chunk of up
// to 100 chats (sorted by cursor so each chunk's oldest cursor is close to the
// others), one read of live_message
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
	chats := make([]bridge.AgentChatID, len(targets))
	for i, t := range targets {
		chats[i] = t.chat
	}
	st, err := c.readStates(ctx, c.live.due(chats, c.cfg.LiveStateEvery))
	if err != nil {
		errs = append(errs, err)
	}
	c.live.update(chats, st)
	out := make(map[bridge.AgentChatID][]bridge.AgentEvent)
	for chunk := range slices.Chunk(targets, c.cfg.BatchChats) {
		if ctx.Err() != nil {
			errs = append(errs, fmt.Errorf("servicenow: poll chats: %w", ctx.Err()))
			break
		}
		since := make(map[bridge.AgentChatID]time.Time, len(chunk))
		oldest := time.Time{}
		for _, t := range chunk {
			if st.failed[t.chat] {
				continue // fetched again next poll, state first
			}
			if len(since) == 0 {
				oldest = t.since
			}
			since[t.chat] = t.since
		}
		if len(since) == 0 {
			continue
		}
		if err := c.pollChunk(ctx, since, oldest, st, out); err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// chatStates are the queue entries one PollMany read.
type chatStates struct {
	entries map[string]QueueEntry       // by group, the newest entry
	read    map[bridge.AgentChatID]bool // chats whose entries were read
	failed  map[bridge.AgentChatID]bool // chats whose read failed: not polled this time
}

// readStates reads the queue entries of chats, one request per chunk of
// BatchChats. A failed chunk marks its chats failed and returns its error;
// without read access (403 or 400) no state is read and nothing fails.
func (c *Client) readStates(ctx context.Context, chats []bridge.AgentChatID) (chatStates, error) {
	st := chatStates{entries: make(map[string]QueueEntry, len(chats)), read: make(map[bridge.AgentChatID]bool, len(chats)),
		failed: make(map[bridge.AgentChatID]bool)}
	var errs []error
	for chunk := range slices.Chunk(chats, c.cfg.BatchChats) {
		groups := make([]string, len(chunk))
		for i, chat := range chunk {
			groups[i] = string(chat)
		}
		slices.Sort(groups)
		r, err := c.do(ctx, call{op: "poll chats", method: http.MethodGet, path: pathQueueEntry, retry: true, query: url.Values{
			"sysparm_query":                  {"groupIN" + strings.Join(groups, ",") + "^ORDERBYsys_updated_on"},
			"sysparm_fields":                 {queueEntryFields},
			"sysparm_display_value":          {"all"},
			"sysparm_exclude_reference_link": {"true"},
			"sysparm_limit":                  {strconv.Itoa(4 * len(groups))},
		}})
		if err == nil {
			var list []QueueEntry
			var skipped int
			list, skipped, err = parseQueueEntries(r)
			if err == nil {
				if skipped > 0 {
					c.log.Warn("servicenow queue entries skipped", "skipped", skipped)
				}
				for _, e := range list {
					st.entries[e.Group] = e // ordered by sys_updated_on: the newest wins
				}
				for _, chat := range chunk {
					st.read[chat] = true
				}
				continue
			}
			err = fmt.Errorf("servicenow: poll chats: %w", err)
		}
		if s := httpStatus(err); s == http.StatusForbidden || s == http.StatusBadRequest {
			// No read access to chat_queue_entry: carry on with the messages,
			// whose end phrases still end chats.
			c.log.Warn("servicenow: cannot read chat_queue_entry; chat states are not polled", "err", err)
			return st, errors.Join(errs...)
		}
		for _, chat := range chunk {
			st.failed[chat] = true
		}
		errs = append(errs, err)
	}
	return st, errors.Join(errs...)
}

// liveStates remembers which chats an agent was working on at their last
// state read, so that PollMany reads their states less often.
type liveStates struct {
	mu    sync.Mutex
	polls uint64
	live  map[bridge.AgentChatID]bool
}

// due returns the chats whose state this poll reads: all but the live ones
// whose turn it is not (each live chat's turn comes every every-th poll, at an
// offset of its own so that the reads spread over the polls).
func (l *liveStates) due(chats []bridge.AgentChatID, every int) []bridge.AgentChatID {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.polls++
	out := make([]bridge.AgentChatID, 0, len(chats))
	for _, chat := range chats {
		if !l.live[chat] || every <= 1 || (l.polls+uint64(chatHash(chat)))%uint64(every) == 0 {
			out = append(out, chat)
		}
	}
	return out
}

// update keeps what this poll learned about chats (the chats polled now;
// others are forgotten).
func (l *liveStates) update(chats []bridge.AgentChatID, st chatStates) {
	l.mu.Lock()
	defer l.mu.Unlock()
	next := make(map[bridge.AgentChatID]bool, len(l.live))
	for _, chat := range chats {
		live := l.live[chat]
		if st.read[chat] {
			e, ok := st.entries[string(chat)]
			live = ok && e.State == StateWorkInProgress
		}
		if live {
			next[chat] = true
		}
	}
	l.live = next
}

func chatHash(chat bridge.AgentChatID) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(chat))
	return h.Sum32()
}

// pollChunk reads the messages of one chunk of chats into out.
func (c *Client) pollChunk(ctx context.Context, cursors map[bridge.AgentChatID]time.Time, oldest time.Time, st chatStates, out map[bridge.AgentChatID][]bridge.AgentEvent) error {
	groups := make([]string, 0, len(cursors))
	for chat := range cursors {
		groups = append(groups, string(chat))
	}
	slices.Sort(groups)
	in := "groupIN" + strings.Join(groups, ",")

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
		msgs := c.knownMillis(byChat[chat])
		if sameSecond(msgs) {
			// The Table API has no order inside a second (sys_id only keeps
			// pages stable): read this chat's messages with their ms
			// timestamps instead, one request more. The times are
			// remembered, so rows a later poll returns again at its cursor
			// (">=") cost nothing: a chat whose last second holds two rows
			// (an agent's join notice and greeting) is read once, not on
			// every poll.
			exact, err := c.messagesSince(ctx, "poll chats", chat, since)
			if err != nil {
				return err
			}
			// Rows of one ms keep the order the messages API gave them: the
			// memo keeps that rank next to the time.
			slices.SortStableFunc(exact, func(a, b message) int { return a.At.Compare(b.At) })
			for i := range exact {
				if exact[i].Millis {
					exact[i].rank = c.ranks.Add(1)
					c.exact.put(exact[i].SysID, exactTime{at: exact[i].At, rank: exact[i].rank})
				}
			}
			msgs = exact
		}
		byChat[chat] = msgs
	}
	if err := c.attachFiles(ctx, "poll chats", byChat); err != nil {
		return err
	}
	for chat, since := range cursors {
		msgs := byChat[chat]
		var entry *QueueEntry
		if e, ok := st.entries[string(chat)]; ok {
			entry = &e
		} else if st.read[chat] {
			c.log.Warn("servicenow chat has no queue entry", "chat_id", chat)
		}
		slices.SortStableFunc(msgs, func(a, b message) int {
			if n := a.At.Compare(b.At); n != 0 {
				return n
			}
			return cmp.Compare(a.rank, b.rank)
		})
		if evs := c.events(chat, msgs, entry, since); len(evs) > 0 {
			out[chat] = evs
		}
	}
	return nil
}

// exactTime is a row's ms creation time as the messages API gave it, and
// its rank in that API's order (rows of one ms keep it).
type exactTime struct {
	at   time.Time
	rank uint64
}

// knownMillis gives the rows whose ms creation time an earlier read
// remembered that time (if it lies in the row's second), so that sameSecond
// does not count them.
func (c *Client) knownMillis(msgs []message) []message {
	for i, m := range msgs {
		if m.Millis {
			continue
		}
		if e, ok := c.exact.get(m.SysID); ok && e.at.Truncate(time.Second).Equal(m.At.Truncate(time.Second)) {
			msgs[i].At, msgs[i].Millis, msgs[i].rank = e.at, true, e.rank
		}
	}
	return msgs
}

// sameSecond reports whether a row of msgs whose time has second resolution
// shares its second with another row: their order is then unknown. Rows
// with ms times are ordered among themselves.
func sameSecond(msgs []message) bool {
	rows := make(map[int64]int, len(msgs))
	coarse := make(map[int64]bool, len(msgs))
	for _, m := range msgs {
		s := m.At.Unix()
		rows[s]++
		if !m.Millis {
			coarse[s] = true
		}
	}
	for s := range coarse {
		if rows[s] > 1 {
			return true
		}
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
