package slack

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// convert turns an event callback into the desk events of one thread. Events
// the bridge does not act on give no events and no error: top-level channel
// messages, messages of any bot (the bridge's own posts included), deletions,
// and changes that are not an edit of the text (Slack also sends
// message_changed when it unfurls a link).
//
// The de-duplication key of each event is Slack's own id of what happened,
// identical in every retry of the event: the message ts for a reply, the
// message ts and the edit's ts for an edit, the parent's ts for the one
// "joined" line per thread.
func (h *Handler) convert(ctx context.Context, env envelope) (bridge.AgentChatID, []bridge.AgentEvent, error) {
	var ev messageEvent
	if len(env.Event) == 0 {
		return "", nil, fmt.Errorf("event_callback %s without an event", clip(env.EventID, 40))
	}
	if err := json.Unmarshal(env.Event, &ev); err != nil {
		return "", nil, fmt.Errorf("event of %s is not a JSON object: %w", clip(env.EventID, 40), err)
	}
	if ev.Type != "message" || ev.Channel != h.desk.Channel() {
		return "", nil, nil
	}
	m, edit := ev.message, false
	switch ev.Subtype {
	case "", "thread_broadcast", "file_share":
	case "message_changed":
		if ev.Message == nil || ev.Message.Edited == nil {
			return "", nil, nil // an unfurl or another change that is not an edit
		}
		m, edit = *ev.Message, true
	case "message_deleted":
		// The employee has already seen it; Teams messages are not recalled.
		h.log.InfoContext(ctx, "an agent deleted a slack message; the employee keeps what they saw", "channel", ev.Channel, "ts", ev.DeletedTS)
		return "", nil, nil
	default:
		return "", nil, nil
	}
	if m.BotID != "" || m.Subtype == "bot_message" || m.User == "" {
		return "", nil, nil // the bridge's own posts, or another app's
	}
	if m.ThreadTS == "" || m.ThreadTS == m.TS {
		return "", nil, nil // not a reply in a thread
	}
	at, err := parseTS(m.TS)
	if err != nil {
		return "", nil, err
	}
	chat := ChatID(ev.Channel, m.ThreadTS)
	txt := fromSlack(m.Text)
	if isHandback(txt) && !edit {
		return chat, []bridge.AgentEvent{{Kind: bridge.AgentEnded, Chat: chat, ExternalID: m.TS, Author: m.User, At: at,
			EndReason: bridge.ReasonAgentClosed}}, nil
	}
	key := m.TS
	if edit {
		if at, err = parseTS(m.Edited.TS); err != nil {
			return "", nil, err
		}
		key = "edit:" + m.TS + ":" + m.Edited.TS
	}
	name := h.desk.DisplayName(ctx, m.User)
	return chat, []bridge.AgentEvent{
		joinedLine(chat, name, at.Add(-time.Nanosecond)),
		{Kind: bridge.AgentMessage, Chat: chat, ExternalID: key, Author: name, Text: txt, Edited: edit, At: at, Attachments: agentFiles(m.Files)},
	}, nil
}

// agentFiles are the files of an agent's reply as links for the employee:
// the file's permalink (else url_private), name (else title), mimetype and
// size. Both links open only for someone signed in to the workspace (and
// url_private only with a token), so the employee sees what the file is and
// can ask for it another way.
func agentFiles(fs []file) []bridge.Attachment {
	var out []bridge.Attachment
	for _, f := range fs {
		link := f.Permalink
		if link == "" {
			link = f.URLPrivate
		}
		if link == "" {
			continue
		}
		name := f.Name
		if name == "" {
			name = f.Title
		}
		out = append(out, bridge.Attachment{Name: name, ContentType: f.Mimetype, URL: link, Size: max(f.Size, 0)})
	}
	return out
}

// joinedLine is the one notice per thread that tells the employee who took
// the chat, whether by the Take button or by replying first; its key is the
// thread, so whichever comes first is the one stored. Slack has no join
// notice of its own, so the bridge writes it in the employee's language
// (Joined; Text is the English fallback).
func joinedLine(chat bridge.AgentChatID, name string, at time.Time) bridge.AgentEvent {
	_, ts, _ := SplitChatID(chat)
	return bridge.AgentEvent{Kind: bridge.AgentMessage, Chat: chat, ExternalID: "joined:" + ts, Author: name,
		Text: name + " joined the chat.", At: at, System: true, Joined: true}
}

// isHandback recognises the agent's "hand back to the bot" command. Slack
// treats a message starting with "/" as a slash command, so "#handback" is
// the form that works in every client; "/handback" is accepted where a
// client sends it as text (e.g. with a leading space).
func isHandback(text string) bool {
	t := strings.ToLower(strings.TrimSpace(text))
	for _, c := range []string{"#handback", "/handback"} {
		if t == c || strings.HasPrefix(t, c+" ") {
			return true
		}
	}
	return false
}
