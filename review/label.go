package review

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/handoffhq/handoff/bridge"
)

// DefaultLabelPrefix starts the agent's private labels: "#topic …".
const DefaultLabelPrefix = "#"

// The label keywords an agent can write after the prefix.
const (
	LabelTopic        = "topic"          // #topic <what the case was>
	LabelBotCouldHave = "bot-could-have" // #bot-could-have <intent>
	LabelNeededHuman  = "needed-human"   // #needed-human
)

// maxTopicRunes caps a topic label; longer ones are cut.
const maxTopicRunes = 80

// labelParser reads "#topic reset MFA on new phone #needed-human" style
// messages. A message is a label message when its first word is the prefix
// followed by a known keyword; it may hold several labels.
type labelParser struct{ prefix string }

func newLabelParser(prefix string) (labelParser, error) {
	if prefix == "" {
		prefix = DefaultLabelPrefix
	}
	if strings.IndexFunc(prefix, unicode.IsSpace) >= 0 || utf8.RuneCountInString(prefix) > 8 {
		return labelParser{}, fmt.Errorf("review: label prefix %q must be 1 to 8 characters without spaces, e.g. \"#\"", prefix)
	}
	return labelParser{prefix: prefix}, nil
}

// keyword returns the label keyword of word ("#topic" → "topic"), or "".
func (p labelParser) keyword(word string) string {
	k, ok := strings.CutPrefix(word, p.prefix)
	if !ok {
		return ""
	}
	switch k = strings.ToLower(k); k {
	case LabelTopic, LabelBotCouldHave, LabelNeededHuman:
		return k
	}
	return ""
}

// is reports whether text is a label message.
func (p labelParser) is(text string) bool {
	words := strings.Fields(text)
	return p.prefix != "" && len(words) > 0 && p.keyword(words[0]) != ""
}

// label is one parsed label: its keyword and its argument.
type label struct{ keyword, arg string }

// parse splits a label message into its labels; ok is false when text is not
// one.
func (p labelParser) parse(text string) (labels []label, ok bool) {
	if !p.is(text) {
		return nil, false
	}
	for _, w := range strings.Fields(text) {
		if k := p.keyword(w); k != "" {
			labels = append(labels, label{keyword: k})
			continue
		}
		l := &labels[len(labels)-1]
		l.arg = strings.TrimSpace(l.arg + " " + w)
	}
	return labels, true
}

var _ bridge.AgentLabels = (*Recorder)(nil)

// Label implements bridge.AgentLabels: a desk message whose first word is
// the label prefix and a keyword sets the agent's verdict on the record
// (topic redacted and capped at 80 characters, intent names sanitised like
// the NLU export's) and returns the acknowledgment the agent gets. A label
// without its argument is answered with its usage and changes nothing. The
// message is never shown to the employee either way.
func (r *Recorder) Label(rec bridge.ReviewRecord, found bool, text, agent string, at time.Time) (bridge.ReviewRecord, string, bool) {
	labels, ok := r.labels.parse(text)
	if !ok {
		return rec, "", false
	}
	const tag = "[handoff, not shown to the employee] "
	v := bridge.Verdict{}
	if rec.Verdict != nil {
		v = *rec.Verdict
	}
	var done, problems []string
	for _, l := range labels {
		switch l.keyword {
		case LabelTopic:
			topic := truncate(r.cleaner("")(l.arg), maxTopicRunes)
			if topic == "" {
				problems = append(problems, "write "+r.labels.prefix+LabelTopic+" <what the case was>")
				continue
			}
			v.Topic = topic
			done = append(done, fmt.Sprintf("topic %q", topic))
		case LabelBotCouldHave:
			if l.arg == "" {
				problems = append(problems, "write "+r.labels.prefix+LabelBotCouldHave+" <intent name>")
				continue
			}
			v.BotCouldHave = sanitizeIntent(l.arg)
			done = append(done, "the bot could have handled it as "+v.BotCouldHave)
		case LabelNeededHuman:
			v.NeededHuman = true
			done = append(done, "it needed a human")
		}
	}
	if !found {
		return rec, tag + "There is no review record for this chat, so the label was not stored.", true
	}
	if len(done) == 0 {
		return rec, tag + "Label not recorded: " + strings.Join(problems, "; ") + ".", true
	}
	v.Agent, v.At = agent, at.UTC()
	rec.Verdict = &v
	ack := tag + "Recorded for the bot team: " + strings.Join(done, ", ") + "."
	if len(problems) > 0 {
		ack += " Not recorded: " + strings.Join(problems, "; ") + "."
	}
	return rec, ack, true
}

var _ bridge.CSATCleaner = (*Recorder)(nil)

// CleanText implements bridge.CSATCleaner: the employee's rating comment is
// redacted like the transcripts.
func (r *Recorder) CleanText(s string) string { return r.cleaner("")(s) }
