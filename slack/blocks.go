package slack

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/handoffhq/handoff/bridge"
)

// escape makes text safe for Slack's mrkdwn: &, < and > are control
// characters there.
func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

var (
	linkLine = regexp.MustCompile(`^(.+?): (https?://\S+)$`)
	slackRef = regexp.MustCompile(`<([^<>|]+)(?:\|([^<>]*))?>`)
)

// toSlack renders an employee message for the thread: escaped, with the
// attachment lines the Teams side appends ("name: url") turned into links.
func toSlack(text string) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if m := linkLine.FindStringSubmatch(l); m != nil {
			lines[i] = "<" + m[2] + "|" + escape(m[1]) + ">"
			continue
		}
		lines[i] = escape(l)
	}
	return strings.Join(lines, "\n")
}

// fromSlack renders an agent's mrkdwn as plain text for the employee: links
// "<url|label>" become "label (url)", mentions and channel links keep their
// label or id, and the escapes are undone.
func fromSlack(text string) string {
	text = slackRef.ReplaceAllStringFunc(text, func(ref string) string {
		m := slackRef.FindStringSubmatch(ref)
		target, label := m[1], m[2]
		switch {
		case strings.HasPrefix(target, "@"):
			if label != "" {
				return "@" + strings.TrimPrefix(label, "@")
			}
			return target
		case strings.HasPrefix(target, "#"):
			if label != "" {
				return "#" + strings.TrimPrefix(label, "#")
			}
			return target
		case strings.HasPrefix(target, "!"):
			if label != "" {
				return label
			}
			return "@" + strings.TrimPrefix(strings.SplitN(target, "^", 2)[0], "!")
		case label != "" && label != target:
			return label + " (" + target + ")"
		}
		return target
	})
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(text)
}

func text(t string) map[string]any { return map[string]any{"type": "mrkdwn", "text": t} }

func plain(t string) map[string]any {
	return map[string]any{"type": "plain_text", "text": t, "emoji": true}
}

// Block ids of the parent message.
const (
	blockActions = "handoff_actions"
	blockStatus  = "handoff_status"
)

// maxSection is Block Kit's limit on a section's text.
const maxSection = 3000

func clip(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// parentBlocks renders a new handoff: who, why, the recent transcript, and the
// Take and Close buttons.
func parentBlocks(h bridge.Handoff, turns int) (string, []block) {
	who := escape(h.UserName)
	if who == "" {
		who = "An employee"
	}
	if h.UserEmail != "" {
		who += " <mailto:" + h.UserEmail + "|" + escape(h.UserEmail) + ">"
	}
	reason := h.Reason
	if reason == "" {
		reason = "not given"
	}
	fallback := fmt.Sprintf("Handoff: %s needs a person (reason: %s)", h.UserName, reason)
	bs := []block{
		{"type": "header", "text": plain(clip("Handoff: "+nonEmpty(h.UserName, "an employee")+" needs a person", 150))},
		{"type": "section", "fields": []any{
			text("*Employee*\n" + clip(who, 1900)),
			text("*Reason*\n" + clip(escape(reason), 1900)),
		}},
	}
	tr := h.Transcript
	if len(tr) > turns {
		tr = tr[len(tr)-turns:]
	}
	if len(tr) > 0 {
		var b strings.Builder
		b.WriteString("*Recent conversation with the bot*\n")
		for _, t := range tr {
			role := "Bot"
			if t.Role == "user" {
				role = nonEmpty(t.Author, "Employee")
			}
			fmt.Fprintf(&b, "> *%s:* %s\n", escape(role), escape(strings.ReplaceAll(t.Text, "\n", " ")))
		}
		bs = append(bs, block{"type": "section", "text": text(clip(b.String(), maxSection))})
	}
	bs = append(bs,
		block{"type": "context", "block_id": blockStatus, "elements": []any{text("Waiting for an agent. Reply in the thread to answer; type `#handback` there to hand back to the bot.")}},
		block{"type": "actions", "block_id": blockActions, "elements": []any{
			map[string]any{"type": "button", "action_id": actionTake, "text": plain("Take"), "style": "primary", "value": string(h.Session)},
			map[string]any{"type": "button", "action_id": actionClose, "text": plain("Close"), "style": "danger", "value": string(h.Session),
				"confirm": map[string]any{"title": plain("Close this handoff?"), "text": text("The employee goes back to the bot."),
					"confirm": plain("Close"), "deny": plain("Cancel")}},
		}},
	)
	return fallback, bs
}

func nonEmpty(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return s
}

// withStatus returns the parent's blocks with the status line replaced and
// the buttons reduced to keep (none when keep is empty).
func withStatus(bs []block, status string, keep ...string) []block {
	out := make([]block, 0, len(bs))
	for _, b := range bs {
		switch b["block_id"] {
		case blockStatus:
			continue
		case blockActions:
			continue
		}
		out = append(out, b)
	}
	out = append(out, block{"type": "context", "block_id": blockStatus, "elements": []any{text(status)}})
	var els []any
	for _, b := range bs {
		if b["block_id"] != blockActions {
			continue
		}
		list, _ := b["elements"].([]any)
		for _, e := range list {
			if m, ok := e.(map[string]any); ok {
				for _, k := range keep {
					if m["action_id"] == k {
						els = append(els, m)
					}
				}
			}
		}
	}
	if len(els) > 0 {
		out = append(out, block{"type": "actions", "block_id": blockActions, "elements": els})
	}
	return out
}

// hasAction reports whether the parent's blocks still offer the action.
func hasAction(bs []block, id string) bool {
	for _, b := range bs {
		list, _ := b["elements"].([]any)
		for _, e := range list {
			if m, ok := e.(map[string]any); ok && m["action_id"] == id {
				return true
			}
		}
	}
	return false
}

// outcomes are what the thread and the parent say when a handoff ends.
var outcomes = map[bridge.CloseReason]string{
	bridge.ReasonUserEnded:     "The employee ended the chat.",
	bridge.ReasonUserRestarted: "The employee ended the chat and started over with the bot.",
	bridge.ReasonUserBlocked:   "The employee left: they removed or blocked the bot.",
	bridge.ReasonAgentClosed:   "Handed back to the bot by an agent.",
	bridge.ReasonAgentLeft:     "The agent left; the employee is back with the bot.",
	bridge.ReasonIdleTimeout:   "Closed after a period of inactivity; the employee is back with the bot.",
	bridge.ReasonQueueTimeout:  "No agent took it in time; the employee is back with the bot.",
	bridge.ReasonRelayError:    "Closed because messages could not be relayed; the employee was told.",
}

func outcome(r bridge.CloseReason) string {
	if s, ok := outcomes[r]; ok {
		return s
	}
	return "The handoff has ended."
}

// employeeLeft reports whether the employee, not an agent, ended the chat:
// then the thread must hear it.
func employeeLeft(r bridge.CloseReason) bool {
	return r == bridge.ReasonUserEnded || r == bridge.ReasonUserRestarted || r == bridge.ReasonUserBlocked
}
