package slack

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

var (
	_ bridge.AgentDesk   = (*Client)(nil)
	_ bridge.DeskOutcome = (*Client)(nil)
)

// adoptWindow is how far back a retried Open looks for the parent message an
// earlier attempt may have posted (matched by the session id in its
// metadata, never by time alone).
const adoptWindow = 24 * time.Hour

// Open posts the handoff's parent message to the support channel and returns
// its thread as the chat. A retry first looks for a parent an earlier attempt
// posted (by the session id in the message metadata) and adopts it.
func (c *Client) Open(ctx context.Context, h bridge.Handoff) (bridge.DeskChat, error) {
	ch := c.cfg.Channel
	if h.Retry {
		ms, err := c.history(ctx, ch, c.now().Add(-adoptWindow))
		if err != nil {
			return bridge.DeskChat{}, fmt.Errorf("slack: look for an earlier parent message: %w", err)
		}
		for _, m := range ms {
			if m.Metadata != nil && m.Metadata.EventType == metaOpened && m.Metadata.EventPayload["session"] == string(h.Session) {
				c.log.InfoContext(ctx, "adopted the parent message of an earlier attempt", "session_id", h.Session, "ts", m.TS)
				return bridge.DeskChat{ID: ChatID(ch, m.TS)}, nil
			}
		}
	}
	fallback, blocks := parentBlocks(h, c.cfg.TranscriptTurns)
	out, err := c.post(ctx, postMessage{Channel: ch, Text: fallback, Blocks: blocks,
		Metadata: &metadata{EventType: metaOpened, EventPayload: map[string]any{"session": string(h.Session)}}})
	if err != nil {
		if errors.Is(err, bridge.ErrChatClosed) {
			// The channel itself is unusable: no retry can open a chat.
			return bridge.DeskChat{}, bridge.Permanent(err)
		}
		return bridge.DeskChat{}, err
	}
	return bridge.DeskChat{ID: ChatID(nonEmpty(out.Channel, ch), out.TS)}, nil
}

// Send posts m into the thread as the bot, prefixed with the employee's name
// (bridge notes go without). A retry first looks in the thread for the post
// of an earlier attempt (by m.Key in the message metadata).
func (c *Client) Send(ctx context.Context, chat bridge.DeskChat, m bridge.DeskMessage) error {
	ch, ts, err := SplitChatID(chat.ID)
	if err != nil {
		return err
	}
	if m.Retry {
		found, err := c.inThread(ctx, ch, ts, metaMessage, "key", m.Key)
		if err != nil {
			return fmt.Errorf("slack: look for an earlier post of %s: %w", m.Key, err)
		}
		if found {
			return nil
		}
	}
	body := toSlack(m.Text)
	if m.Author != "" {
		body = "*" + escape(m.Author) + ":* " + body
	} else {
		body = "_" + body + "_"
	}
	_, err = c.post(ctx, postMessage{Channel: ch, ThreadTS: ts, Text: body,
		Metadata: &metadata{EventType: metaMessage, EventPayload: map[string]any{"key": m.Key}}})
	return err
}

// inThread reports whether the bridge already posted a message with the
// metadata event type and payload field value into the thread.
func (c *Client) inThread(ctx context.Context, ch, ts, eventType, field, value string) (bool, error) {
	ms, err := c.replies(ctx, ch, ts)
	if err != nil {
		return false, err
	}
	for _, r := range ms {
		if r.Metadata != nil && r.Metadata.EventType == eventType && r.Metadata.EventPayload[field] == value {
			return true, nil
		}
	}
	return false, nil
}

// Leave ends the chat without a known reason.
func (c *Client) Leave(ctx context.Context, chat bridge.DeskChat) error {
	return c.LeaveWithOutcome(ctx, chat, "")
}

// LeaveWithOutcome tells the thread how the handoff ended (once, found by its
// metadata on a retry) and updates the parent message to show the outcome
// without buttons. A thread whose channel or parent is gone returns
// bridge.ErrChatClosed.
func (c *Client) LeaveWithOutcome(ctx context.Context, chat bridge.DeskChat, reason bridge.CloseReason) error {
	ch, ts, err := SplitChatID(chat.ID)
	if err != nil {
		return err
	}
	thread, err := c.replies(ctx, ch, ts)
	if err != nil {
		return fmt.Errorf("slack: read the thread to close it: %w", err)
	}
	if len(thread) == 0 || thread[0].TS != ts {
		return fmt.Errorf("%w: slack: parent message %s not found in %s", bridge.ErrChatClosed, ts, ch)
	}
	line := outcome(reason)
	posted := false
	for _, r := range thread[1:] {
		if r.Metadata != nil && r.Metadata.EventType == metaEnded {
			posted = true
		}
	}
	if !posted {
		msg := ":white_check_mark: " + line
		if employeeLeft(reason) {
			msg = ":wave: " + line + " Messages written here no longer reach them."
		}
		if _, err := c.post(ctx, postMessage{Channel: ch, ThreadTS: ts, Text: msg,
			Metadata: &metadata{EventType: metaEnded, EventPayload: map[string]any{"reason": string(reason)}}}); err != nil {
			return err
		}
	}
	parent := thread[0]
	status := "*Ended:* " + line
	if err := c.update(ctx, updateMessage{Channel: ch, TS: ts, Text: "Handoff ended: " + line, Blocks: withStatus(parent.Blocks, status)}); err != nil {
		return err
	}
	return nil
}

// parent reads the parent message of chat's thread (the first message
// conversations.replies returns).
func (c *Client) parent(ctx context.Context, chat bridge.AgentChatID) (message, error) {
	ch, ts, err := SplitChatID(chat)
	if err != nil {
		return message{}, err
	}
	var out listAnswer
	v := url.Values{"channel": {ch}, "ts": {ts}, "limit": {"1"}}
	if err := c.call(ctx, "conversations.replies", v, &out); err != nil {
		return message{}, err
	}
	if len(out.Messages) == 0 || out.Messages[0].TS != ts {
		return message{}, fmt.Errorf("%w: slack: parent message %s not found in %s", bridge.ErrChatClosed, ts, ch)
	}
	return out.Messages[0], nil
}

// markTaken updates the parent message after an agent took the handoff: the
// Take button goes, the status names the agent. Best effort: the caller logs
// a failure, and a parent that no longer offers Take (taken or ended) is left
// alone.
func (c *Client) markTaken(ctx context.Context, chat bridge.AgentChatID, parent []block, agent string) error {
	ch, ts, err := SplitChatID(chat)
	if err != nil {
		return err
	}
	if !hasAction(parent, actionTake) {
		return nil
	}
	status := "*Taken by " + escape(agent) + ".* Reply in the thread; type `#handback` there (or press Close) to hand back to the bot."
	return c.update(ctx, updateMessage{Channel: ch, TS: ts, Text: "Handoff taken by " + agent, Blocks: withStatus(parent, status, actionClose)})
}
