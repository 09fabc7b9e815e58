package bridge

import (
	"context"
	"errors"
	"reflect"
	"strings"
)

// Texts are the lines the bridge itself says to the employee (and the one
// note it leaves the agent). Every field has an English default (see
// DefaultTexts); a deployment overrides any of them per language (the
// HANDOFF_TEXTS_FILE catalogue), and the activity's locale picks the
// language. The yaml/json key of each field is the catalogue's key.
type Texts struct {
	Welcome      string `yaml:"welcome" json:"welcome"`             // on install, once per conversation
	GroupChat    string `yaml:"group_chat" json:"group_chat"`       // answer in group chats and channels
	Connecting   string `yaml:"connecting" json:"connecting"`       // the handoff started
	NotInChat    string `yaml:"not_in_chat" json:"not_in_chat"`     // /end_chat with no live chat open
	BotDown      string `yaml:"bot_down" json:"bot_down"`           // the bot could not be reached
	DeskDown     string `yaml:"desk_down" json:"desk_down"`         // the desk chat could not be opened
	UserEnded    string `yaml:"user_ended" json:"user_ended"`       // ended by the employee (/end_chat, End chat)
	UserRestart  string `yaml:"user_restart" json:"user_restart"`   // ended by /restart
	AgentClosed  string `yaml:"agent_closed" json:"agent_closed"`   // ended by the agent
	AgentLeft    string `yaml:"agent_left" json:"agent_left"`       // the agent left
	IdleTimeout  string `yaml:"idle_timeout" json:"idle_timeout"`   // nobody wrote for too long
	QueueTimeout string `yaml:"queue_timeout" json:"queue_timeout"` // no agent in time
	// DeskClosed and DeskAbandoned: the desk (not an agent) closed the chat,
	// or closed it as abandoned.
	DeskClosed    string `yaml:"desk_closed" json:"desk_closed"`
	DeskAbandoned string `yaml:"desk_abandoned" json:"desk_abandoned"`
	// RelayError is formatted with the desk chat id and the last update time.
	RelayError string `yaml:"relay_error" json:"relay_error"`
	// LeaveFailed replaces the ending line when leaving the desk chat failed.
	LeaveFailed string `yaml:"leave_failed" json:"leave_failed"`
	BotBack     string `yaml:"bot_back" json:"bot_back"`         // the bot owns the conversation again
	LateMessage string `yaml:"late_message" json:"late_message"` // a message that could not reach the agent because the chat was ending
	// Delayed is said once per session when a service asked the bridge to wait.
	Delayed string `yaml:"delayed" json:"delayed"`
	// The live status card.
	CardTitle     string `yaml:"card_title" json:"card_title"`
	CardWaiting   string `yaml:"card_waiting" json:"card_waiting"`       // waiting for an agent
	CardPosition  string `yaml:"card_position" json:"card_position"`     // %d: place in the queue (1 = next)
	CardWait      string `yaml:"card_wait" json:"card_wait"`             // %d: estimated wait in minutes
	CardConnected string `yaml:"card_connected" json:"card_connected"`   // %s: the agent's name
	CardAgent     string `yaml:"card_agent" json:"card_agent"`           // the agent, when the desk gives no name
	CardEnded     string `yaml:"card_ended" json:"card_ended"`           // the chat ended (the reason follows)
	CardEndButton string `yaml:"card_end_button" json:"card_end_button"` // the End chat button
	// AttachmentFailed: a file the employee sent could not be passed on (%s:
	// its name).
	AttachmentFailed string `yaml:"attachment_failed" json:"attachment_failed"`
	// AgentFileFailed: a file the agent sent has no link the employee can
	// open (%s: its name); the rest of the agent's message still arrives.
	AgentFileFailed string `yaml:"agent_file_failed" json:"agent_file_failed"`
	// EmployeeLeft is posted to the agent's chat when the bridge leaves it for
	// any reason but the agent's own close.
	EmployeeLeft string `yaml:"employee_left" json:"employee_left"`
	// AgentJoined (%s: the agent's name) announces the agent for a desk that
	// has no join notice of its own; AgentEdited (%s: the new text)
	// marks an agent's edited message.
	AgentJoined string `yaml:"agent_joined" json:"agent_joined"`
	AgentEdited string `yaml:"agent_edited" json:"agent_edited"`
	// The rating card after an agent-handled chat.
	CSATTitle   string `yaml:"csat_title" json:"csat_title"`
	CSATPrompt  string `yaml:"csat_prompt" json:"csat_prompt"`   // above the 1 to 5 buttons
	CSATComment string `yaml:"csat_comment" json:"csat_comment"` // placeholder of the comment field
	CSATThanks  string `yaml:"csat_thanks" json:"csat_thanks"`   // %d: the rating given
	CSATExpired string `yaml:"csat_expired" json:"csat_expired"` // the time to rate has passed
}

// DefaultTexts returns the English defaults.
func DefaultTexts() Texts {
	return Texts{
		Welcome:          "Hi! I'm the virtual assistant. Ask me anything, or say \"talk to live agent\" to reach a person.",
		GroupChat:        "I can only help in a 1:1 chat. Please message me directly.",
		Connecting:       "I'm connecting you to a live agent. Type /end_chat at any time to go back to the virtual assistant.",
		NotInChat:        "You're not in a live chat.",
		BotDown:          "Sorry, the virtual assistant is not available right now. Please try again in a few minutes.",
		DeskDown:         "Sorry, I could not reach a live agent right now. Please try again later.",
		UserEnded:        "You have ended the chat with the agent.",
		UserRestart:      "You have ended the chat with the agent. Starting over.",
		AgentClosed:      "The agent has closed the chat.",
		AgentLeft:        "The agent has left the chat.",
		IdleTimeout:      "The chat with the agent was closed after a period of inactivity.",
		QueueTimeout:     "No agent was available in time, so the request was closed.",
		DeskClosed:       "The chat was closed on the service desk's side.",
		DeskAbandoned:    "The service desk closed the chat as abandoned. If you still need help, ask for an agent again.",
		RelayError:       "Sorry, the connection to the live agent failed, so the chat was closed. Summary: support chat %s, last update %s.",
		LeaveFailed:      "The chat session is closed/could not be located. Please try reconnecting to live agent if you still need help!",
		BotBack:          "You're back with the virtual assistant. How can I help?",
		LateMessage:      "Your last message could not reach the agent because the chat was ending.",
		Delayed:          "Delivery is delayed because a service asked us to slow down. Your messages are kept and will be delivered in order.",
		CardTitle:        "Live agent chat",
		CardWaiting:      "Waiting for an agent…",
		CardPosition:     "You're number %d in the queue.",
		CardWait:         "Estimated wait: about %d min.",
		CardConnected:    "Connected to %s",
		CardAgent:        "an agent",
		CardEnded:        "Chat ended",
		CardEndButton:    "End chat",
		AttachmentFailed: "Your file %s could not be passed on to the agent. Please describe it in a message or share a link.",
		AgentFileFailed:  "The agent sent the file %s, but it cannot be shown here. Please ask the agent to share it another way.",
		EmployeeLeft:     "The employee left the chat.",
		AgentJoined:      "%s joined the chat.",
		AgentEdited:      "(edited) %s",
		CSATTitle:        "How did the live agent do?",
		CSATPrompt:       "Tap a rating from 1 (poor) to 5 (excellent). You can add a comment first.",
		CSATComment:      "Comment (optional)",
		CSATThanks:       "Thanks for rating the chat %d/5.",
		CSATExpired:      "The time to rate this chat has passed.",
	}
}

// germanTexts are the shipped German texts.
func germanTexts() Texts {
	return Texts{
		Welcome:          "Hallo! Ich bin der virtuelle Assistent. Fragen Sie mich etwas, oder schreiben Sie \"talk to live agent\", um mit einer Person zu sprechen.",
		GroupChat:        "Ich kann nur im 1:1-Chat helfen. Bitte schreiben Sie mir direkt.",
		Connecting:       "Ich verbinde Sie mit einer Mitarbeiterin oder einem Mitarbeiter. Mit /end_chat kehren Sie jederzeit zum virtuellen Assistenten zurück.",
		NotInChat:        "Sie sind in keinem Live-Chat.",
		BotDown:          "Der virtuelle Assistent ist gerade nicht erreichbar. Bitte versuchen Sie es in ein paar Minuten erneut.",
		DeskDown:         "Leider ist gerade niemand erreichbar. Bitte versuchen Sie es später erneut.",
		UserEnded:        "Sie haben den Chat beendet.",
		UserRestart:      "Sie haben den Chat beendet. Wir beginnen von vorn.",
		AgentClosed:      "Der Chat wurde vom Support beendet.",
		AgentLeft:        "Der Support hat den Chat verlassen.",
		IdleTimeout:      "Der Chat wurde nach längerer Inaktivität beendet.",
		QueueTimeout:     "Es war nicht rechtzeitig jemand verfügbar, daher wurde die Anfrage geschlossen.",
		DeskClosed:       "Der Chat wurde vom Service Desk geschlossen.",
		DeskAbandoned:    "Der Service Desk hat den Chat als abgebrochen geschlossen. Wenn Sie noch Hilfe brauchen, fragen Sie bitte erneut.",
		RelayError:       "Die Verbindung zum Support ist fehlgeschlagen, daher wurde der Chat beendet. Zusammenfassung: Support-Chat %s, letzte Aktualisierung %s.",
		LeaveFailed:      "Die Chat-Sitzung ist beendet oder wurde nicht gefunden. Bitte verbinden Sie sich erneut, wenn Sie noch Hilfe brauchen!",
		BotBack:          "Sie sind wieder beim virtuellen Assistenten. Wie kann ich helfen?",
		LateMessage:      "Ihre letzte Nachricht hat den Support nicht mehr erreicht, weil der Chat gerade endete.",
		Delayed:          "Die Zustellung verzögert sich, weil ein Dienst uns gebeten hat, langsamer zu senden. Ihre Nachrichten bleiben erhalten und kommen in der richtigen Reihenfolge an.",
		CardTitle:        "Live-Chat mit dem Support",
		CardWaiting:      "Warte auf eine Mitarbeiterin oder einen Mitarbeiter…",
		CardPosition:     "Sie sind Nummer %d in der Warteschlange.",
		CardWait:         "Geschätzte Wartezeit: etwa %d Min.",
		CardConnected:    "Verbunden mit %s",
		CardAgent:        "dem Support",
		CardEnded:        "Chat beendet",
		CardEndButton:    "Chat beenden",
		AttachmentFailed: "Ihre Datei %s konnte nicht weitergegeben werden. Bitte beschreiben Sie sie oder teilen Sie einen Link.",
		AgentFileFailed:  "Der Agent hat die Datei %s gesendet, sie kann hier aber nicht angezeigt werden. Bitten Sie den Agenten, sie auf anderem Weg zu teilen.",
		EmployeeLeft:     "Der Mitarbeiter hat den Chat verlassen.",
		AgentJoined:      "%s ist dem Chat beigetreten.",
		AgentEdited:      "(bearbeitet) %s",
		CSATTitle:        "Wie hat Ihnen der Support geholfen?",
		CSATPrompt:       "Tippen Sie auf eine Bewertung von 1 (schlecht) bis 5 (sehr gut). Vorher können Sie einen Kommentar schreiben.",
		CSATComment:      "Kommentar (optional)",
		CSATThanks:       "Danke für Ihre Bewertung: %d/5.",
		CSATExpired:      "Die Zeit für eine Bewertung dieses Chats ist abgelaufen.",
	}
}

// DefaultLocales returns the shipped translations by language tag.
func DefaultLocales() map[string]Texts { return map[string]Texts{"de": germanTexts()} }

// Fill returns t with every empty field taken from def.
func (t Texts) Fill(def Texts) Texts {
	v, d := reflect.ValueOf(&t).Elem(), reflect.ValueOf(def)
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.String && f.String() == "" {
			f.SetString(d.Field(i).String())
		}
	}
	return t
}

// TextKeys lists the catalogue keys, in field order.
func TextKeys() []string {
	typ := reflect.TypeFor[Texts]()
	keys := make([]string, 0, typ.NumField())
	for i := range typ.NumField() {
		keys = append(keys, typ.Field(i).Tag.Get("yaml"))
	}
	return keys
}

// TextsFor returns the texts for a Teams locale such as "de-DE": the exact
// tag's texts, else its language's ("de"), with every missing text in
// English.
func (r *Relay) TextsFor(locale string) Texts {
	return textsFor(r.cfg.Texts, r.cfg.Locales, locale)
}

func textsFor(en Texts, locales map[string]Texts, locale string) Texts {
	tag := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(locale), "_", "-"))
	if tag == "" {
		return en
	}
	lang, _, _ := strings.Cut(tag, "-")
	out := Texts{}
	for k, t := range locales {
		if strings.EqualFold(k, tag) {
			out = t
		}
	}
	if tag != lang {
		for k, t := range locales {
			if strings.EqualFold(k, lang) {
				out = out.Fill(t)
			}
		}
	}
	return out.Fill(en)
}

// texts returns the texts in the language of the conversation's stored
// reference (English when there is none).
func (r *Relay) texts(ctx context.Context, tx Tx, conv ConversationID) (Texts, error) {
	ref, err := tx.ConversationRef(ctx, conv)
	if errors.Is(err, ErrNotFound) {
		return r.cfg.Texts, nil
	} else if err != nil {
		return Texts{}, err
	}
	return r.TextsFor(ref.Locale), nil
}
