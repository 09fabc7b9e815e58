package teams

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/infracloudio/msbotbuilder-go/schema"

	"github.com/handoffhq/handoff/bridge"
)

var _ bridge.UserCards = (*Client)(nil)

// SendCard posts c as an Adaptive Card and returns its activity id ("" when
// Teams answered 202 without one). Errors as Send.
func (c *Client) SendCard(ctx context.Context, ref bridge.ConversationRef, card bridge.Card) (string, error) {
	ep, err := c.endpoint(ctx, ref)
	if err != nil {
		return "", err
	}
	a := c.base(ref)
	a.Attachments = []schema.Attachment{adaptiveCardOf(card)}
	body, err := marshalActivity(a)
	if err != nil {
		return "", err
	}
	cp, release, err := c.pacer.acquire(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("teams: send card: %w", err)
	}
	defer release()
	return c.call(ctx, cp, http.MethodPost, ep, body)
}

// UpdateCard replaces the card activity id with c (Bot Connector
// PUT /v3/conversations/{id}/activities/{activityId}). It returns
// bridge.ErrCardGone when Teams no longer lets the bot change that activity
// (404, or 403 for any reason but a blocked bot, which is
// bridge.ErrUserUnreachable as for Send); other errors as Send.
func (c *Client) UpdateCard(ctx context.Context, ref bridge.ConversationRef, id string, card bridge.Card) error {
	if id == "" {
		return fmt.Errorf("teams: update card: no activity id: %w", bridge.ErrCardGone)
	}
	ep, err := c.endpoint(ctx, ref)
	if err != nil {
		return err
	}
	a := c.base(ref)
	a.ID = id
	a.Attachments = []schema.Attachment{adaptiveCardOf(card)}
	body, err := marshalActivity(a)
	if err != nil {
		return err
	}
	cp, release, err := c.pacer.acquire(ctx, ref)
	if err != nil {
		return fmt.Errorf("teams: update card: %w", err)
	}
	defer release()
	_, err = c.call(ctx, cp, http.MethodPut, ep+"/"+escapeSegment(id), body)
	var se *bridge.StatusError
	if err != nil && !errors.Is(err, bridge.ErrUserUnreachable) && errors.As(err, &se) &&
		(se.Status == http.StatusNotFound || se.Status == http.StatusForbidden) {
		return fmt.Errorf("teams: update card %s: %w: %w", id, bridge.ErrCardGone, err)
	}
	return err
}

// Adaptive Card elements, the subset the bridge uses (schema 1.4, which
// Teams renders on every client).
type (
	adaptiveCard struct {
		Type    string       `json:"type"`
		Schema  string       `json:"$schema"`
		Version string       `json:"version"`
		Body    []any        `json:"body"`
		Actions []cardAction `json:"actions,omitempty"`
	}
	textBlock struct {
		Type     string `json:"type"`
		Text     string `json:"text"`
		Wrap     bool   `json:"wrap"`
		Weight   string `json:"weight,omitempty"`
		Size     string `json:"size,omitempty"`
		Color    string `json:"color,omitempty"`
		Spacing  string `json:"spacing,omitempty"`
		IsSubtle bool   `json:"isSubtle,omitempty"`
	}
	factSet struct {
		Type  string     `json:"type"`
		Facts []cardFact `json:"facts"`
	}
	inputText struct {
		Type        string `json:"type"`
		ID          string `json:"id"`
		Placeholder string `json:"placeholder,omitempty"`
		IsMultiline bool   `json:"isMultiline,omitempty"`
		MaxLength   int    `json:"maxLength,omitempty"`
	}
	cardFact struct {
		Title string `json:"title"`
		Value string `json:"value"`
	}
	cardAction struct {
		Type  string `json:"type"`
		Title string `json:"title"`
		Data  any    `json:"data,omitempty"` // Action.Submit
		URL   string `json:"url,omitempty"`  // Action.OpenUrl
	}
)

func newAdaptiveCard() adaptiveCard {
	return adaptiveCard{Type: "AdaptiveCard", Schema: "http://adaptivecards.io/schemas/adaptive-card.json", Version: "1.4", Body: []any{}}
}

// ContentTypeAdaptiveCard is the attachment content type of Adaptive Cards.
const ContentTypeAdaptiveCard = "application/vnd.microsoft.card.adaptive"

// cardColors maps bridge.Card styles to Adaptive Card text colours.
var cardColors = map[string]string{"accent": "Accent", "good": "Good", "warning": "Warning", "attention": "Attention"}

// adaptiveCardOf renders a bridge card: a bold title, the lines, the facts,
// one submit action per button and one open-URL action per link.
func adaptiveCardOf(c bridge.Card) schema.Attachment {
	card := newAdaptiveCard()
	if c.Title != "" {
		card.Body = append(card.Body, textBlock{Type: "TextBlock", Text: c.Title, Wrap: true, Weight: "Bolder", Size: "Medium", Color: cardColors[c.Style]})
	}
	for _, l := range c.Lines {
		if strings.TrimSpace(l) != "" {
			card.Body = append(card.Body, textBlock{Type: "TextBlock", Text: l, Wrap: true, Spacing: "Small"})
		}
	}
	if len(c.Facts) > 0 {
		fs := factSet{Type: "FactSet"}
		for _, f := range c.Facts {
			fs.Facts = append(fs.Facts, cardFact(f))
		}
		card.Body = append(card.Body, fs)
	}
	if in := c.Input; in != nil {
		card.Body = append(card.Body, inputText{Type: "Input.Text", ID: in.ID, Placeholder: in.Placeholder, IsMultiline: true, MaxLength: in.MaxLength})
	}
	for _, b := range c.Buttons {
		card.Actions = append(card.Actions, submitAction(b))
	}
	for _, l := range c.Links {
		card.Actions = append(card.Actions, cardAction{Type: "Action.OpenUrl", Title: l.Title, URL: l.URL})
	}
	return schema.Attachment{ContentType: ContentTypeAdaptiveCard, Content: card}
}

// buttonCard is the card of a bot reply's quick-reply buttons.
func buttonCard(buttons []bridge.Button) schema.Attachment {
	return adaptiveCardOf(bridge.Card{Buttons: buttons})
}

// attachmentCard shows a file as a link: its name (the link) and, below,
// its type and size. The link opens in the browser; Teams needs no extra
// permission for it.
func attachmentCard(a bridge.Attachment) (schema.Attachment, error) {
	// The relay only passes on files whose link passes LinkProblem (and
	// tells the employee about the others), so this refusal is a last guard.
	if p := a.LinkProblem(); p != "" {
		return schema.Attachment{}, bridge.Permanent(fmt.Errorf("teams: attachment %q: %s", a.Label(), p))
	}
	u, err := url.Parse(a.URL)
	if err != nil {
		return schema.Attachment{}, bridge.Permanent(fmt.Errorf("teams: attachment %q: %w", a.Label(), err))
	}
	name := strings.TrimSpace(a.Name)
	if name == "" {
		name = pathBase(u.Path)
	}
	card := newAdaptiveCard()
	card.Body = append(card.Body, textBlock{Type: "TextBlock", Wrap: true, Weight: "Bolder",
		Text: "📎 [" + escapeMarkdown(name) + "](" + u.String() + ")"})
	var meta []string
	if a.ContentType != "" {
		meta = append(meta, a.ContentType)
	}
	if a.Size > 0 {
		meta = append(meta, humanSize(a.Size))
	}
	if len(meta) > 0 {
		card.Body = append(card.Body, textBlock{Type: "TextBlock", Text: strings.Join(meta, " · "), Wrap: true, IsSubtle: true, Spacing: "None"})
	}
	return schema.Attachment{ContentType: ContentTypeAdaptiveCard, Content: card}, nil
}

func pathBase(p string) string {
	if i := strings.LastIndex(p, "/"); i >= 0 {
		p = p[i+1:]
	}
	if p == "" {
		return "file"
	}
	if s, err := url.PathUnescape(p); err == nil {
		return s
	}
	return p
}

// humanSize renders n bytes as "12 KB", "3.4 MB".
func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%d KB", n>>10)
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}

func unescapeMarkdown(s string) string {
	var b strings.Builder
	esc := false
	for _, r := range s {
		if r == '\\' && !esc {
			esc = true
			continue
		}
		esc = false
		b.WriteRune(r)
	}
	return b.String()
}

// escapeMarkdown escapes the characters Teams' markdown would interpret in
// a name shown as is.
func escapeMarkdown(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`\*_[]()<>#~`+"`", r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
