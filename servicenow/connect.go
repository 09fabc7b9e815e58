package servicenow

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// Connect Support REST paths (undocumented API of the Connect UI; see
// reference/servicenow.md §1).
const (
	pathQueues   = "/api/now/connect/support/queues"
	pathSessions = "/api/now/connect/support/sessions"
)

func queueSessionsPath(queue string) string {
	return pathQueues + "/" + url.PathEscape(queue) + "/sessions"
}

func leavePath(chat bridge.AgentChatID) string {
	return pathSessions + "/" + url.PathEscape(string(chat)) + "/leave"
}

func conversationPath(chat bridge.AgentChatID) string {
	return "/api/now/connect/conversations/" + url.PathEscape(string(chat))
}

func messagesPath(chat bridge.AgentChatID) string { return conversationPath(chat) + "/messages" }

// Queues lists the Connect Support queues the integration user can see.
func (c *Client) Queues(ctx context.Context) ([]Queue, error) {
	r, err := c.do(ctx, call{op: "list queues", method: http.MethodGet, path: pathQueues, retry: true})
	if err != nil {
		return nil, err
	}
	qs, err := parseQueues(r)
	if err != nil {
		return nil, fmt.Errorf("servicenow: list queues: %w", err)
	}
	return qs, nil
}

// CheckQueue verifies at startup that Connect Support answers and lists the
// configured queue. A 400 or 404 means Connect Support is not available on the
// instance; a missing queue is reported with the names and sys_ids of the
// queues that exist. Both are permanent errors.
func (c *Client) CheckQueue(ctx context.Context) error {
	qs, err := c.Queues(ctx)
	if st := httpStatus(err); st == http.StatusNotFound || st == http.StatusBadRequest {
		return fmt.Errorf("servicenow: check queue: Connect Support not available on %s (deprecated since Utah; use the Virtual Agent desk): %w",
			c.cfg.InstanceURL, err)
	}
	if err != nil {
		return fmt.Errorf("servicenow: check queue: %w", err)
	}
	var names []string
	for _, q := range qs {
		if q.SysID == c.cfg.Queue {
			if q.NotAvailable {
				c.log.Warn("servicenow queue reports not_available", "queue", q.SysID, "queue_name", q.Name)
			}
			return nil
		}
		names = append(names, fmt.Sprintf("%q (%s)", q.Name, q.SysID))
	}
	avail := "none"
	if len(names) > 0 {
		avail = strings.Join(names, ", ")
	}
	return bridge.Permanent(fmt.Errorf("servicenow: check queue: queue %s not found on %s; available queues: %s",
		c.cfg.Queue, c.cfg.InstanceURL, avail))
}

// Open starts a Connect Support chat in h.Queue (or the configured queue) with
// a first message naming the employee, the handoff reason and the recent
// transcript, and returns the conversation's group sys_id. The post is retried
// only when h.Session is set: before each retry the open queue entries are
// searched for the session's marker, and a chat an earlier attempt created is
// returned instead of opening a second one. A refused queue (403, whose
// result is ServiceNow's message) is a permanent error.
func (c *Client) Open(ctx context.Context, h bridge.Handoff) (bridge.DeskChat, error) {
	queue := h.Queue
	if queue == "" {
		queue = c.cfg.Queue
	}
	marker := openMarker(h.Session)
	if h.Retry && marker != "" {
		// An earlier attempt (before a crash or a lost answer) may have opened
		// the chat already: adopt it rather than open a second one.
		e, err := c.findOpen(ctx, marker)
		if err != nil {
			return bridge.DeskChat{}, fmt.Errorf("servicenow: open chat: duplicate check: %w", err)
		}
		if e != nil {
			c.log.Info("servicenow chat opened by an earlier attempt", "session_id", h.Session, "chat_id", e.Group)
			return bridge.DeskChat{ID: bridge.AgentChatID(e.Group)}, nil
		}
	}
	var found *QueueEntry
	cl := call{
		op:     "open chat",
		method: http.MethodPost,
		path:   queueSessionsPath(queue),
		body:   map[string]string{"message": firstMessage(c.cfg, h)},
		retry:  marker != "",
		beforeRetry: func(ctx context.Context, _ int) error {
			e, err := c.findOpen(ctx, marker)
			if err != nil {
				return fmt.Errorf("duplicate check: %w", err)
			}
			if e != nil {
				found = e
				return errDone
			}
			return nil
		},
	}
	r, err := c.do(ctx, cl)
	if errors.Is(err, errDone) && found != nil {
		c.log.Info("servicenow chat opened by an earlier attempt", "session_id", h.Session, "chat_id", found.Group)
		return bridge.DeskChat{ID: bridge.AgentChatID(found.Group)}, nil
	}
	if err != nil {
		return bridge.DeskChat{}, err
	}
	e, err := parseQueueEntry(r)
	if err != nil {
		return bridge.DeskChat{}, fmt.Errorf("servicenow: open chat: %w", err)
	}
	c.log.Info("servicenow chat opened", "session_id", h.Session, "chat_id", e.Group, "queue", queue, "number", e.Number)
	return bridge.DeskChat{ID: bridge.AgentChatID(e.Group)}, nil
}

// findOpen returns the open queue entry whose short description carries
// marker, or nil.
func (c *Client) findOpen(ctx context.Context, marker string) (*QueueEntry, error) {
	r, err := c.do(ctx, call{op: "list sessions", method: http.MethodGet, path: pathSessions,
		query: url.Values{"closed": {"false"}}, retry: true})
	if err != nil {
		return nil, err
	}
	entries, _, err := parseQueueEntries(r)
	if err != nil {
		return nil, fmt.Errorf("servicenow: list sessions: %w", err)
	}
	for _, e := range entries {
		if !e.State.Closed() && strings.Contains(e.ShortDescription, marker) {
			return &e, nil
		}
	}
	return nil, nil
}

// Send posts the user's message to the chat. A post that may have reached
// the instance before (m.Retry, or an in-call retry after a connection error
// or 5xx) is identified by ordinal, not text: the chat's messages by the
// bridge user are counted (the opening message aside), and if there are more
// than m.Confirmed the earlier attempt was posted and nothing is sent again.
// So two identical texts stay two messages. An attempt that got no answer (a
// timeout) may still commit on the instance: before its retry the count is
// read again for up to CommitWait until the post shows, then it is posted
// anew. ErrChatClosed if the chat is closed or cannot be found.
func (c *Client) Send(ctx context.Context, dc bridge.DeskChat, m bridge.DeskMessage) error {
	chat := dc.ID
	if m.Retry {
		// The earlier call's last attempt may have timed out: give a slow
		// commit its window.
		ok, err := c.postedWithin(ctx, chat, m.Confirmed, c.cfg.CommitWait)
		if err != nil {
			return fmt.Errorf("servicenow: send message: duplicate check: %w", err)
		}
		if ok {
			c.log.Info("servicenow message already posted", "chat_id", chat, "message_key", m.Key)
			return nil
		}
	}
	cl := call{
		op:     "send message",
		method: http.MethodPost,
		path:   messagesPath(chat),
		body:   map[string]string{"message": m.Text},
		retry:  true,
		beforeRetry: func(ctx context.Context, last int) error {
			wait := time.Duration(0)
			if last == 0 {
				wait = c.cfg.CommitWait // no answer: it may still commit
			}
			ok, err := c.postedWithin(ctx, chat, m.Confirmed, wait)
			if err != nil {
				return fmt.Errorf("duplicate check: %w", err)
			}
			if ok {
				return errDone
			}
			return nil
		},
	}
	_, err := c.do(ctx, cl)
	if errors.Is(err, errDone) {
		c.log.Info("servicenow message posted by an earlier attempt", "chat_id", chat, "message_key", m.Key)
		return nil
	}
	if err != nil {
		return c.chatError(ctx, chat, err)
	}
	return nil
}

// postedWithin reports whether the chat holds more than confirmed messages of
// the bridge's own, reading the count again with growing pauses for up to
// wait (bounded by half of what is left of ctx) while it does not.
func (c *Client) postedWithin(ctx context.Context, chat bridge.AgentChatID, confirmed int, wait time.Duration) (bool, error) {
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl)/2)
	}
	end := time.Now().Add(wait)
	pause := 250 * time.Millisecond
	for {
		n, err := c.ownPosts(ctx, chat)
		if err != nil {
			return false, err
		}
		if n > confirmed {
			return true, nil
		}
		left := time.Until(end)
		if left <= 0 {
			return false, nil
		}
		t := time.NewTimer(min(pause, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		case <-t.C:
		}
		pause = min(2*pause, 2*time.Second)
	}
}

// ownPosts counts the chat's messages created by the bridge user, leaving
// out the chat's opening message (the first of them, when it carries the
// session marker).
func (c *Client) ownPosts(ctx context.Context, chat bridge.AgentChatID) (int, error) {
	msgs, err := c.messagesSince(ctx, "duplicate check", chat, time.Time{})
	if err != nil {
		return 0, err
	}
	n, first := 0, true
	for _, m := range msgs {
		if !strings.EqualFold(m.CreatedBy, c.cfg.BridgeUser) {
			continue
		}
		if first && strings.HasPrefix(strings.TrimSpace(m.Text), markerPrefix) {
			first = false
			continue
		}
		first = false
		n++
	}
	return n, nil
}

// chatError classifies a failed chat operation: a 404 means the chat is gone;
// a 400, 403 or 409 means it is closed if its queue entry says so (or has
// vanished). Both wrap bridge.ErrChatClosed.
func (c *Client) chatError(ctx context.Context, chat bridge.AgentChatID, err error) error {
	switch httpStatus(err) {
	case http.StatusNotFound:
		return withChatClosed(err)
	case http.StatusBadRequest, http.StatusForbidden, http.StatusConflict:
		e, qerr := c.QueueEntry(ctx, chat)
		if errors.Is(qerr, bridge.ErrChatClosed) || (qerr == nil && e.State.Closed()) {
			return withChatClosed(err)
		}
	}
	return err
}

// QueueEntry returns the chat's queue entry (its state says waiting, in
// progress or closed). ErrChatClosed if the instance has no entry for chat.
func (c *Client) QueueEntry(ctx context.Context, chat bridge.AgentChatID) (QueueEntry, error) {
	r, err := c.do(ctx, call{op: "queue entry", method: http.MethodGet, path: pathSessions,
		query: url.Values{"group_id": {string(chat)}}, retry: true})
	if err != nil {
		if httpStatus(err) == http.StatusNotFound {
			return QueueEntry{}, withChatClosed(err)
		}
		return QueueEntry{}, err
	}
	entries, _, err := parseQueueEntries(r)
	if err != nil {
		return QueueEntry{}, fmt.Errorf("servicenow: queue entry: %w", err)
	}
	for _, e := range entries {
		if e.Group == string(chat) {
			return e, nil
		}
	}
	return QueueEntry{}, fmt.Errorf("servicenow: queue entry: chat %s: %w", chat, bridge.ErrChatClosed)
}

// Poll returns the chat's events at or after since, oldest first: messages
// (echoes and system messages flagged), AgentJoined, and AgentEnded from an end
// phrase or a closed queue entry. It reads the queue entry first and then the
// messages, so a chat seen closed has all of its messages in the same result.
// Messages are paged newest-first in pages of 30 with ?before= until a short
// page or one reaching before since. Messages with an ms timestamp are
// compared with since exactly; those with only created_on at second
// resolution are kept when their second is at or after since's second.
// ErrChatClosed if the chat cannot be found.
func (c *Client) Poll(ctx context.Context, chat bridge.AgentChatID, since time.Time) ([]bridge.AgentEvent, error) {
	var (
		entry QueueEntry
		err   error
	)
	if c.cfg.LastMessageHint {
		var last *message
		if entry, last, err = c.conversation(ctx, chat); err != nil {
			return nil, err
		}
		if !since.IsZero() && !entry.State.Closed() && last != nil && last.Millis && c.hints.seen(chat, *last, since) {
			return c.events(chat, nil, &entry, since), nil // nothing newer than the cursor
		}
	} else if entry, err = c.QueueEntry(ctx, chat); err != nil {
		return nil, err
	}
	msgs, err := c.messagesSince(ctx, "poll chat", chat, since)
	if err != nil {
		if httpStatus(err) == http.StatusNotFound {
			return nil, withChatClosed(err)
		}
		return nil, err
	}
	if err := c.attachFiles(ctx, "poll chat", map[bridge.AgentChatID][]message{chat: msgs}); err != nil {
		return nil, err
	}
	if c.cfg.LastMessageHint {
		c.hints.update(chat, msgs, entry.State.Closed())
	}
	return c.events(chat, msgs, &entry, since), nil
}

// lastSeen remembers, per chat, the newest message the previous Poll
// returned, so that LastMessageHint can tell "last_message is the message at
// the cursor" from "a newer message shares the cursor's millisecond".
type lastSeen struct {
	mu   sync.Mutex
	byID map[bridge.AgentChatID]string
}

// maxHints bounds the memo; it is cleared when full (the cost is one page
// read per chat).
const maxHints = 100_000

// seen reports whether last is known to be fetched: older than since, or at
// since and the very message the previous poll returned as newest.
func (h *lastSeen) seen(chat bridge.AgentChatID, last message, since time.Time) bool {
	if last.At.Before(since) {
		return true
	}
	if !last.At.Equal(since) {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.byID[chat] == last.SysID
}

func (h *lastSeen) update(chat bridge.AgentChatID, msgs []message, closed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if closed {
		delete(h.byID, chat)
		return
	}
	if len(msgs) == 0 {
		return
	}
	if h.byID == nil || len(h.byID) >= maxHints {
		h.byID = make(map[bridge.AgentChatID]string)
	}
	h.byID[chat] = msgs[len(msgs)-1].SysID
}

// conversation reads GET /api/now/connect/conversations/{group}: the queue
// entry and the last message (nil if absent or unreadable). ErrChatClosed if
// the chat cannot be found.
func (c *Client) conversation(ctx context.Context, chat bridge.AgentChatID) (QueueEntry, *message, error) {
	r, err := c.do(ctx, call{op: "conversation", method: http.MethodGet, path: conversationPath(chat), retry: true})
	if err != nil {
		if httpStatus(err) == http.StatusNotFound {
			return QueueEntry{}, nil, withChatClosed(err)
		}
		return QueueEntry{}, nil, err
	}
	e, last, err := parseConversation(r)
	if err != nil {
		return QueueEntry{}, nil, fmt.Errorf("servicenow: conversation: %w", err)
	}
	if e.Group == "" {
		e.Group = string(chat)
	}
	return e, last, nil
}

// atOrAfter compares a message time with a cursor at the message's precision.
func atOrAfter(m message, since time.Time) bool {
	if m.Millis {
		return !m.At.Before(since)
	}
	return !m.At.Before(since.Truncate(time.Second))
}

// messagesSince reads the chat's messages at or after since (see Poll),
// oldest first.
//
// Paging: the page after one whose oldest message has timestamp t is asked
// with before=t+1, so messages sharing t with the page boundary are not lost
// whether the instance treats before as exclusive or inclusive; the overlap is
// removed by sys_id. A page with nothing new steps to before=t to make progress.
func (c *Client) messagesSince(ctx context.Context, op string, chat bridge.AgentChatID, since time.Time) ([]message, error) {
	var (
		all     []message // newest first, as fetched
		seen    = map[string]bool{}
		before  string
		stalled bool
		skipped int
	)
	for page := 0; ; page++ {
		if page >= c.cfg.MaxPages {
			return nil, fmt.Errorf("servicenow: %s: chat %s has more than %d pages of messages since %s", op, chat, c.cfg.MaxPages, since.Format(time.RFC3339))
		}
		var q url.Values
		if before != "" {
			q = url.Values{"before": {before}}
		}
		r, err := c.do(ctx, call{op: op, method: http.MethodGet, path: messagesPath(chat), query: q, retry: true})
		if err != nil {
			return nil, err
		}
		msgs, sk, err := parseMessages(r)
		if err != nil {
			return nil, fmt.Errorf("servicenow: %s: %w", op, err)
		}
		skipped += sk
		fresh := 0
		for _, m := range msgs {
			if !seen[m.SysID] {
				seen[m.SysID] = true
				all = append(all, m)
				fresh++
			}
		}
		if len(msgs)+sk < pageSize || len(msgs) == 0 {
			break
		}
		oldest := msgs[0]
		for _, m := range msgs[1:] {
			if m.At.Before(oldest.At) {
				oldest = m
			}
		}
		if !atOrAfter(oldest, since) {
			break // the page reaches before since: everything newer is fetched
		}
		ms := oldest.At.UnixMilli()
		switch {
		case fresh > 0:
			before = strconv.FormatInt(ms+1, 10)
			stalled = false
		case !stalled:
			before = strconv.FormatInt(ms, 10)
			stalled = true
		default:
			return nil, fmt.Errorf("servicenow: %s: chat %s: paging with before=%s made no progress", op, chat, before)
		}
	}
	if skipped > 0 {
		c.log.Warn("servicenow messages without sys_id or time skipped", "chat_id", chat, "skipped", skipped)
	}
	slices.Reverse(all)
	out := all[:0]
	for _, m := range all {
		if atOrAfter(m, since) {
			out = append(out, m)
		}
	}
	slices.SortStableFunc(out, func(a, b message) int { return a.At.Compare(b.At) })
	return out, nil
}

// Leave ends the bridge's part in the chat (POST .../sessions/{group}/leave).
// It is idempotent: leaving a chat that is already closed or left returns nil.
// ErrChatClosed only if the chat cannot be located.
func (c *Client) Leave(ctx context.Context, dc bridge.DeskChat) error {
	chat := dc.ID
	_, err := c.do(ctx, call{op: "leave chat", method: http.MethodPost, path: leavePath(chat), body: struct{}{}, retry: true})
	if err == nil {
		c.log.Info("servicenow chat left", "chat_id", chat)
		return nil
	}
	switch httpStatus(err) {
	case http.StatusNotFound:
		return withChatClosed(err)
	case http.StatusBadRequest, http.StatusForbidden, http.StatusConflict:
		e, qerr := c.QueueEntry(ctx, chat)
		if errors.Is(qerr, bridge.ErrChatClosed) {
			return withChatClosed(err)
		}
		if qerr == nil && e.State.Closed() {
			c.log.Info("servicenow chat already closed", "chat_id", chat, "state", e.State.String())
			return nil
		}
	}
	return err
}
