package bridge

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// CSATConfig turns on the employee's rating of an agent-handled chat. When the
// chat ends after an agent joined, the employee gets a one-tap rating (five
// buttons whose payloads are "/csat 1" … "/csat 5"); "/comment <text>" adds
// an optional comment. Both are answered by the bridge, stored on the review
// record and never sent to the bot (or the agent). A rating or comment later
// than Expiry after the prompt is refused politely.
type CSATConfig struct {
	// Expiry is how long the rating stays open; 0 turns CSAT off.
	Expiry time.Duration
	// Texts; "" takes the English default.
	Prompt   string // the question above the buttons
	Thanks   string // formatted with the rating
	Comment  string // thanks for a comment
	Expired  string // the rating window has passed
	NoRating string // a rating or comment with nothing to rate
}

// DefaultCSATTexts are the English texts of CSATConfig.
var DefaultCSATTexts = CSATConfig{
	Prompt:   "How did the live agent do? Tap a rating from 1 (poor) to 5 (excellent).",
	Thanks:   "Thanks for rating the chat %d/5. To add a comment, write /comment followed by what you want to tell us.",
	Comment:  "Thanks, your comment was added to your rating.",
	Expired:  "Sorry, the time to rate that chat has passed.",
	NoRating: "There is no chat with an agent to rate right now.",
}

// Commands of the rating.
const (
	csatCommand    = "/csat"
	commentCommand = "/comment"
	csatKeyPrefix  = "csat:" // ExternalID of the rating prompt: csat:<session id>
	maxCommentLen  = 1000    // runes kept of a comment
	csatLookBack   = 50      // recent messages of the conversation searched for the prompt
)

// CSATCleaner is an optional Reviewer feature: it redacts the employee's
// comment before it is stored. Implemented by review.Recorder.
type CSATCleaner interface {
	CleanText(s string) string
}

func (c *CSATConfig) fill() {
	d := DefaultCSATTexts
	for _, p := range []struct {
		v *string
		d string
	}{{&c.Prompt, d.Prompt}, {&c.Thanks, d.Thanks}, {&c.Comment, d.Comment},
		{&c.Expired, d.Expired}, {&c.NoRating, d.NoRating}} {
		if *p.v == "" {
			*p.v = p.d
		}
	}
}

// offerCSAT queues the rating prompt when an agent-handled chat ends.
func (r *Relay) offerCSAT(ctx context.Context, tx Tx, s Session, now time.Time) error {
	if r.cfg.CSAT.Expiry <= 0 || s.LiveAt.IsZero() || s.CloseReason == ReasonUserBlocked {
		return nil
	}
	var buttons []Button
	for i := 1; i <= 5; i++ {
		buttons = append(buttons, Button{Title: strconv.Itoa(i) + " ★", Payload: csatCommand + " " + strconv.Itoa(i)})
	}
	m := Message{SessionID: s.ID, Source: SourceBridge, ExternalID: csatKeyPrefix + string(s.ID), Text: r.cfg.CSAT.Prompt,
		Buttons: buttons, SentAt: now, CreatedAt: now}
	inserted, err := tx.InsertMessage(ctx, &m)
	if err != nil || !inserted {
		return err
	}
	return tx.Enqueue(ctx, NewOutboxItem(s.ID, s.Conversation, KindUserSend, OutboxPayload{MessageID: m.ID}, now))
}

// parseCSAT reads "/csat <1-5>" and "/comment <text>"; ok is false for
// anything else.
func parseCSAT(text string) (rating int, comment string, isComment, ok bool) {
	t := strings.TrimSpace(text)
	word, rest, _ := strings.Cut(t, " ")
	switch strings.ToLower(word) {
	case csatCommand:
		n, err := strconv.Atoi(strings.TrimSpace(rest))
		if err != nil || n < 1 || n > 5 {
			return 0, "", false, true // a malformed rating is still ours, never the bot's
		}
		return n, "", false, true
	case commentCommand:
		return 0, strings.TrimSpace(rest), true, true
	}
	return 0, "", false, false
}

// csatReply handles a rating or comment from the employee: it is stored on
// the rated handoff's review record and answered by the bridge; the message
// never reaches the bot or the agent. It reports whether m was one.
func (r *Relay) csatReply(ctx context.Context, tx Tx, s Session, m Message, now time.Time) (bool, error) {
	if r.cfg.CSAT.Expiry <= 0 {
		return false, nil
	}
	rating, comment, isComment, ok := parseCSAT(m.Text)
	if !ok {
		return false, nil
	}
	reply := func(text string) error { return r.say(ctx, tx, s, fmt.Sprintf("csat-reply:%d", m.ID), text, now) }
	// The prompt of the conversation's latest agent-handled chat.
	recent, err := tx.ConversationMessages(ctx, s.Conversation, csatLookBack)
	if err != nil {
		return true, err
	}
	var prompt *Message
	for i := len(recent) - 1; i >= 0; i-- {
		if recent[i].Source == SourceBridge && strings.HasPrefix(recent[i].ExternalID, csatKeyPrefix) {
			prompt = &recent[i]
			break
		}
	}
	switch {
	case prompt == nil || rating == 0 && !isComment:
		return true, reply(r.cfg.CSAT.NoRating)
	case now.Sub(prompt.SentAt) > r.cfg.CSAT.Expiry:
		return true, reply(r.cfg.CSAT.Expired)
	}
	rec, err := tx.Review(ctx, prompt.SessionID)
	if errors.Is(err, ErrNotFound) {
		return true, reply(r.cfg.CSAT.NoRating) // nothing records reviews
	} else if err != nil {
		return true, err
	}
	if isComment {
		if rec.CSAT == nil || comment == "" {
			return true, reply(r.cfg.CSAT.NoRating)
		}
		if c, ok := r.reviewer.(CSATCleaner); ok {
			comment = c.CleanText(comment)
		}
		if utf8.RuneCountInString(comment) > maxCommentLen {
			comment = string([]rune(comment)[:maxCommentLen])
		}
		rec.CSAT.Comment = comment
		if err := tx.PutReview(ctx, rec); err != nil {
			return true, err
		}
		return true, reply(r.cfg.CSAT.Comment)
	}
	rec.CSAT = &CSAT{Rating: rating, At: now}
	if err := tx.PutReview(ctx, rec); err != nil {
		return true, err
	}
	r.log.InfoContext(ctx, "chat rated", "session_id", prompt.SessionID, "rating", rating)
	return true, reply(fmt.Sprintf(r.cfg.CSAT.Thanks, rating))
}
