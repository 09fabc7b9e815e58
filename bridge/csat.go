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

// CSATConfig turns on the employee's rating of an agent-handled chat. When
// the chat ends after an agent joined, the employee gets a rating card: five
// buttons (1 to 5) and an optional comment field. A tap stores the rating
// (and the comment) on the review record and turns the card into a thank-you
// in place; after Expiry the card turns into "the time to rate has passed"
// and its buttons are gone. The card's buttons carry their own data (the
// session and the rating), so a rating is never text: it never reaches the
// bot or the agent, and a typed "/csat 5" is an ordinary message. The texts
// are in the catalogue (csat_*).
type CSATConfig struct {
	// Expiry is how long the rating stays open; 0 turns CSAT off.
	Expiry time.Duration
}

// The rating card's submit data: Button.Data of each rating button, and the
// comment field's id.
const (
	SubmitAction    = "action"       // the data key naming what a card submit is
	CSATAction      = "handoff.csat" // SubmitAction of a rating
	CSATSessionKey  = "session"      // the rated session
	CSATRatingKey   = "rating"       // "1" … "5"
	CSATCommentKey  = "csat_comment" // the comment field (Card.Input.ID)
	maxCommentLen   = 1000           // runes kept of a comment
	csatExpireBatch = 100            // rating cards expired per sweep
)

// CSAT states of a CSATPrompt.
const (
	CSATOpen     = "open"
	CSATAnswered = "answered"
	CSATExpired  = "expired"
)

// CSATPrompt is the rating card of an ended session.
type CSATPrompt struct {
	Session      SessionID
	Conversation ConversationID
	CardID       string // the channel's activity id of the card ("" until sent)
	PromptedAt   time.Time
	ExpiresAt    time.Time
	State        string // CSATOpen, CSATAnswered or CSATExpired
}

// CSATCleaner is an optional Reviewer feature: it redacts the employee's
// comment before it is stored. Implemented by review.Recorder.
type CSATCleaner interface {
	CleanText(s string) string
}

// CSATSubmit is a rating as the card sends it back.
type CSATSubmit struct {
	Session SessionID
	Rating  int
	Comment string
}

// ParseCSATSubmit reads a card submit's data. ok is false when the data is
// not a rating; err is set when it is one but malformed (no session, a
// rating outside 1 to 5).
func ParseCSATSubmit(data map[string]string) (sub CSATSubmit, ok bool, err error) {
	if data[SubmitAction] != CSATAction {
		return CSATSubmit{}, false, nil
	}
	sub.Session = SessionID(strings.TrimSpace(data[CSATSessionKey]))
	if sub.Session == "" {
		return CSATSubmit{}, true, errors.New("rating without a session")
	}
	n, err := strconv.Atoi(strings.TrimSpace(data[CSATRatingKey]))
	if err != nil || n < 1 || n > 5 {
		return CSATSubmit{}, true, fmt.Errorf("rating %q is not 1 to 5", data[CSATRatingKey])
	}
	sub.Rating = n
	sub.Comment = strings.TrimSpace(strings.ToValidUTF8(data[CSATCommentKey], ""))
	if utf8.RuneCountInString(sub.Comment) > maxCommentLen {
		sub.Comment = string([]rune(sub.Comment)[:maxCommentLen])
	}
	return sub, true, nil
}

// csatCardOf renders the rating card in its state.
func csatCardOf(t Texts, session SessionID, state string, rating int) Card {
	c := Card{Title: t.CSATTitle}
	switch state {
	case CSATAnswered:
		c.Style = "good"
		c.Lines = []string{fmt.Sprintf(t.CSATThanks, rating)}
	case CSATExpired:
		c.Lines = []string{t.CSATExpired}
	default:
		c.Lines = []string{t.CSATPrompt}
		c.Input = &CardInput{ID: CSATCommentKey, Placeholder: t.CSATComment, MaxLength: maxCommentLen}
		for i := 1; i <= 5; i++ {
			n := strconv.Itoa(i)
			c.Buttons = append(c.Buttons, Button{Title: n + " ★", Data: map[string]string{SubmitAction: CSATAction,
				CSATSessionKey: string(session), CSATRatingKey: n}})
		}
	}
	return c
}

// offerCSAT queues the rating card when an agent-handled chat ends (on
// channels that can update cards in place).
func (r *Relay) offerCSAT(ctx context.Context, tx Tx, s Session, now time.Time) error {
	if r.cfg.CSAT.Expiry <= 0 || s.LiveAt.IsZero() || s.CloseReason == ReasonUserBlocked {
		return nil
	}
	if _, ok := r.user.(UserCards); !ok {
		return nil
	}
	if _, err := tx.CSATPrompt(ctx, s.ID); err == nil {
		return nil // offered already
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	p := CSATPrompt{Session: s.ID, Conversation: s.Conversation, PromptedAt: now, ExpiresAt: now.Add(r.cfg.CSAT.Expiry), State: CSATOpen}
	if err := tx.PutCSATPrompt(ctx, p); err != nil {
		return err
	}
	return r.queueCSATCard(ctx, tx, p, 0)
}

// queueCSATCard queues the rating card as it should look in p's state.
func (r *Relay) queueCSATCard(ctx context.Context, tx Tx, p CSATPrompt, rating int) error {
	t, err := r.texts(ctx, tx, p.Conversation)
	if err != nil {
		return err
	}
	c := csatCardOf(t, p.Session, p.State, rating)
	return tx.Enqueue(ctx, NewOutboxItem(p.Session, p.Conversation, KindUserCSAT, OutboxPayload{Card: &c}, r.now()))
}

// csatCard sends the rating card, or updates the one sent before in place;
// a card the channel no longer lets the bot update is sent anew only while
// it still asks for a rating.
func (r *Relay) csatCard(ctx context.Context, it OutboxItem, p OutboxPayload) (commitFunc, error) {
	cards, ok := r.user.(UserCards)
	if !ok || p.Card == nil {
		return nil, nil
	}
	var pr CSATPrompt
	err := r.store.Update(ctx, func(tx Tx) (err error) { pr, err = tx.CSATPrompt(ctx, it.SessionID); return err })
	if err != nil {
		return nil, err
	}
	ref, err := r.ref(ctx, it.Conversation)
	if err != nil {
		return nil, err
	}
	if pr.CardID != "" {
		err := cards.UpdateCard(ctx, ref, pr.CardID, *p.Card)
		if err == nil {
			return nil, nil
		}
		if !errors.Is(err, ErrCardGone) {
			return nil, fmt.Errorf("update rating card: %w", err)
		}
		if len(p.Card.Buttons) == 0 {
			r.log.InfoContext(ctx, "rating card can no longer be updated; left as it is", "session_id", it.SessionID, "err", err)
			return nil, nil
		}
	}
	id, err := cards.SendCard(ctx, ref, *p.Card)
	if err != nil {
		return nil, fmt.Errorf("send rating card: %w", err)
	}
	return func(ctx context.Context, tx Tx, now time.Time) error {
		pr, err := tx.CSATPrompt(ctx, it.SessionID)
		if err != nil {
			return err
		}
		pr.CardID = id
		return tx.PutCSATPrompt(ctx, pr)
	}, nil
}

// cardSubmit handles a card submit that carries its own data. Only ratings
// are such submits today; anything else is logged and dropped (it is not
// text, so it goes neither to the bot nor to the agent).
func (r *Relay) cardSubmit(ctx context.Context, tx Tx, a UserActivity, now time.Time) error {
	sub, ok, err := ParseCSATSubmit(a.Submit)
	switch {
	case !ok:
		r.log.WarnContext(ctx, "card submit of an unknown kind dropped", "activity_id", a.ID, "conversation_id", a.Ref.Conversation, "action", a.Submit[SubmitAction])
		return nil
	case err != nil:
		r.log.WarnContext(ctx, "malformed rating dropped", "activity_id", a.ID, "conversation_id", a.Ref.Conversation, "err", err)
		return nil
	}
	p, err := tx.CSATPrompt(ctx, sub.Session)
	if errors.Is(err, ErrNotFound) || err == nil && p.Conversation != a.Ref.Conversation {
		r.log.WarnContext(ctx, "rating for a chat this conversation was not offered to rate dropped", "session_id", sub.Session, "conversation_id", a.Ref.Conversation)
		return nil
	} else if err != nil {
		return err
	}
	switch {
	case p.State == CSATExpired || !now.Before(p.ExpiresAt):
		if p.State != CSATExpired {
			p.State = CSATExpired
			if err := tx.PutCSATPrompt(ctx, p); err != nil {
				return err
			}
		}
		return r.queueCSATCard(ctx, tx, p, 0) // shows the card as expired (again)
	case p.State == CSATAnswered:
		return nil // a second tap on a card not yet updated: the first answer stands
	}
	rec, err := tx.Review(ctx, p.Session)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if err == nil {
		if c, ok := r.reviewer.(CSATCleaner); ok && sub.Comment != "" {
			sub.Comment = c.CleanText(sub.Comment)
		}
		rec.CSAT = &CSAT{Rating: sub.Rating, Comment: sub.Comment, At: now}
		if err := tx.PutReview(ctx, rec); err != nil {
			return err
		}
	}
	p.State = CSATAnswered
	if err := tx.PutCSATPrompt(ctx, p); err != nil {
		return err
	}
	r.log.InfoContext(ctx, "chat rated", "session_id", p.Session, "rating", sub.Rating, "comment", sub.Comment != "", "stored", err == nil)
	return r.queueCSATCard(ctx, tx, p, sub.Rating)
}

// expireCSAT turns the rating cards whose time ran out into their expired
// state and returns the soonest expiry of those still open (zero when none).
func (r *Relay) expireCSAT(ctx context.Context, tx Tx, now time.Time) (int, time.Time, error) {
	if r.cfg.CSAT.Expiry <= 0 {
		return 0, time.Time{}, nil
	}
	open, err := tx.OpenCSATPrompts(ctx, csatExpireBatch)
	if err != nil {
		return 0, time.Time{}, err
	}
	n := 0
	for _, p := range open {
		if now.Before(p.ExpiresAt) {
			return n, p.ExpiresAt, nil
		}
		p.State = CSATExpired
		if err := tx.PutCSATPrompt(ctx, p); err != nil {
			return n, time.Time{}, err
		}
		if err := r.queueCSATCard(ctx, tx, p, 0); err != nil {
			return n, time.Time{}, err
		}
		n++
	}
	if len(open) == csatExpireBatch {
		return n, now, nil // more may be due: sweep again at once
	}
	return n, time.Time{}, nil
}
