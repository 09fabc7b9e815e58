package servicenow

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/handoffhq/handoff/bridge"
)

// ellipsis marks every cut in the first message.
const ellipsis = "…"

// openMarker starts the first message of a session's chat. It lets a retried
// Open find the chat an earlier attempt created (the queue entry's
// short_description holds the start of the first message).
func openMarker(s bridge.SessionID) string {
	if s == "" {
		return ""
	}
	return markerPrefix + string(s) + "]"
}

// markerPrefix starts every session marker.
const markerPrefix = "[handoff "

// firstMessage builds the text that opens a chat: who the employee is, why the
// bot handed off, and the recent transcript, bounded to cfg.FirstMessageBytes.
// The newest turns are kept; cuts are marked with "…".
func firstMessage(cfg Config, h bridge.Handoff) string {
	const fieldChars = 200
	var head strings.Builder
	if m := openMarker(h.Session); m != "" {
		head.WriteString(clip(m, fieldChars) + " ")
	}
	head.WriteString("Chat handed over from the Teams bot.\n")
	user := clip(oneLine(h.UserName), fieldChars)
	if user == "" {
		user = "(name unknown)"
	}
	if h.UserEmail != "" {
		user += " <" + clip(oneLine(h.UserEmail), fieldChars) + ">"
	}
	head.WriteString("User: " + user + "\n")
	var ids []string
	for _, kv := range [][2]string{{"Teams user", h.UserID}, {"Entra ID", h.UserAADID}, {"Tenant", h.TenantID}} {
		if kv[1] != "" {
			ids = append(ids, kv[0]+": "+clip(oneLine(kv[1]), fieldChars))
		}
	}
	if len(ids) > 0 {
		head.WriteString(strings.Join(ids, " · ") + "\n")
	}
	reason := clip(oneLine(h.Reason), fieldChars)
	if reason == "" {
		reason = "(not given)"
	}
	head.WriteString("Reason for handoff: " + reason + "\n")

	turns := h.Transcript
	if len(turns) > cfg.TranscriptTurns {
		turns = turns[len(turns)-cfg.TranscriptTurns:]
	}
	lines := make([]string, len(turns))
	for i, t := range turns {
		lines[i] = turnLine(t, cfg.TurnChars)
	}
	limit := cfg.FirstMessageBytes
	for drop := 0; ; drop++ {
		var b strings.Builder
		b.WriteString(head.String())
		kept := lines[drop:]
		if len(h.Transcript) == 0 {
			b.WriteString("No transcript.")
		} else {
			fmt.Fprintf(&b, "Recent conversation (last %d of %d turns):", len(kept), len(h.Transcript))
			if omitted := len(h.Transcript) - len(kept); omitted > 0 {
				fmt.Fprintf(&b, "\n%s (%d earlier turns omitted)", ellipsis, omitted)
			}
			for _, l := range kept {
				b.WriteString("\n" + l)
			}
		}
		if b.Len() <= limit || len(kept) == 0 {
			return clipBytes(b.String(), limit)
		}
	}
}

// turnLine renders one transcript turn on one line.
func turnLine(t bridge.Turn, chars int) string {
	who := oneLine(t.Role)
	if who == "" {
		who = "?"
	}
	if t.Author != "" {
		who += " (" + clip(oneLine(t.Author), 60) + ")"
	}
	prefix := ""
	if !t.At.IsZero() {
		prefix = "[" + t.At.UTC().Format("15:04") + "] "
	}
	return prefix + who + ": " + clip(oneLine(t.Text), chars)
}

// oneLine collapses runs of white space and control characters into single
// spaces and trims the ends.
func oneLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }), " ")
}

// clip cuts s to at most n characters, ending a cut with "…".
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n <= 1 {
		return ellipsis
	}
	i, count := 0, 0
	for i = range s {
		if count == n-1 {
			break
		}
		count++
	}
	return s[:i] + ellipsis
}

// clipBytes cuts s to at most n bytes on a character boundary, ending a cut
// with "…".
func clipBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:max(cut, 0)] + ellipsis
}
