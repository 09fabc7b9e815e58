package review

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// DefaultLastTurns is how many user turns a record keeps when
// RecorderConfig.LastTurns is zero.
const DefaultLastTurns = 10

// RecorderConfig configures a Recorder.
type RecorderConfig struct {
	// Salt is the HMAC key of the pseudonymous user keys. Required: without it
	// a key could be reversed by hashing every object id of the tenant. Use at
	// least 32 random bytes and keep it stable, or the keys of one user stop
	// matching across weeks.
	Salt string
	// LastTurns is how many of the last user turns (with the bot replies
	// between and after them) a record keeps. 0 means DefaultLastTurns.
	LastTurns int
	// DisableRedaction stores transcripts as they are. Redaction is on unless
	// this is set; NewRecorder logs a warning when it is.
	DisableRedaction bool
	// ExtraPatterns are regular expressions redacted as [redacted] on top of
	// the built-in rules (e-mail, phone, card).
	ExtraPatterns []string
	// LabelPrefix starts the agent's private labels in the desk chat
	// ("#topic …", "#bot-could-have …", "#needed-human"). "" means
	// DefaultLabelPrefix.
	LabelPrefix string
}

// Recorder builds why-handoff records. It implements bridge.Reviewer and does
// no I/O: the relay stores what it returns in its own transaction.
//
// Transcripts are redacted when the record is built (see Redactor), and the
// user's display name is replaced by [name] in them. Bot turns and human turns
// stay apart: BotTurns hold only what the user and the bot said while the bot
// owned the conversation; HumanTurns hold the human stretch.
type Recorder struct {
	salt      []byte
	lastTurns int
	redactor  *Redactor // nil: redaction disabled
	labels    labelParser
}

var _ bridge.Reviewer = (*Recorder)(nil)

// NewRecorder checks cfg and returns a Recorder. It returns an error if the
// salt is empty, LastTurns is negative or an extra pattern does not compile.
func NewRecorder(cfg RecorderConfig, logger *slog.Logger) (*Recorder, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Salt == "" {
		return nil, errors.New("review: recorder: a salt for the pseudonymous user keys is required")
	}
	if cfg.LastTurns < 0 {
		return nil, fmt.Errorf("review: recorder: last turns must be >= 0, got %d", cfg.LastTurns)
	}
	labels, err := newLabelParser(cfg.LabelPrefix)
	if err != nil {
		return nil, err
	}
	r := &Recorder{salt: []byte(cfg.Salt), lastTurns: cfg.LastTurns, labels: labels}
	if r.lastTurns == 0 {
		r.lastTurns = DefaultLastTurns
	}
	if cfg.DisableRedaction {
		logger.Warn("review: PII redaction of handoff transcripts is disabled; e-mail addresses, phone and card numbers are stored as typed")
		return r, nil
	}
	red, err := NewRedactor(cfg.ExtraPatterns...)
	if err != nil {
		return nil, err
	}
	r.redactor = red
	return r, nil
}

// UserKey returns the pseudonymous key of a user: the hex HMAC-SHA256 of the
// Entra (AAD) object id under the salt. Object ids are GUIDs, compared without
// regard to case. Without an object id it falls back to the Teams user id,
// hashed with a "teams:" prefix so the two kinds of id never collide. With
// neither it returns "".
func (r *Recorder) UserKey(aadObjectID, teamsUserID string) string {
	var id string
	switch {
	case strings.TrimSpace(aadObjectID) != "":
		id = strings.ToLower(strings.TrimSpace(aadObjectID))
	case strings.TrimSpace(teamsUserID) != "":
		id = "teams:" + strings.TrimSpace(teamsUserID)
	default:
		return ""
	}
	mac := hmac.New(sha256.New, r.salt)
	mac.Write([]byte(id))
	return hex.EncodeToString(mac.Sum(nil))
}

// Start builds the record taken when the session is handed off at at: the
// trigger (signal and tracker state), the last user turns with the bot's
// replies, the user key, the tenant and the time. The signal's reason and queue
// win over the session's; the session's fill in when the signal has none.
func (r *Recorder) Start(s bridge.Session, sig bridge.HandoffSignal, bc bridge.BotContext, at time.Time) bridge.ReviewRecord {
	rec := bridge.ReviewRecord{
		SessionID:          s.ID,
		StartedAt:          at.UTC(),
		UserKey:            r.UserKey(s.UserAADID, s.UserID),
		TenantID:           s.TenantID,
		Reason:             firstNonEmpty(sig.Reason, s.Reason),
		Queue:              firstNonEmpty(sig.Queue, s.Queue),
		Intent:             bc.LatestIntent,
		Confidence:         finite(bc.Confidence),
		RunnerUpIntent:     bc.RunnerUpIntent,
		RunnerUpConfidence: finite(bc.RunnerUpConfidence),
		ActiveLoop:         bc.ActiveLoop,
		TriggerAction:      bc.LatestAction,
		HumanTurns:         []bridge.Turn{},
	}
	clean := r.cleaner(s.UserName)
	turns := lastUserTurns(bc.Turns, r.lastTurns)
	rec.BotTurns = make([]bridge.Turn, 0, len(turns))
	for _, t := range turns {
		t.Role = strings.ToLower(strings.TrimSpace(t.Role))
		if t.Role != "user" && t.Role != "bot" {
			continue // only the bot's conversation belongs here
		}
		if t.Role == "user" {
			t.Author = "" // the user is pseudonymous
		}
		t.Text = clean(t.Text)
		t.Confidence = finite(t.Confidence)
		t.At = t.At.UTC()
		rec.BotTurns = append(rec.BotTurns, t)
	}
	return rec
}

// Finish adds the outcome of the session ending at at:
//
//   - CloseReason is the session's;
//   - WaitMillis runs from QueuedAt (or the record's start) to LiveAt, the
//     agent's first message; when LiveAt is unset it falls back to the first
//     agent message that is not a desk system message, and is 0 when no agent
//     ever wrote;
//   - DurationMilli runs from QueuedAt (or the record's start) to at;
//   - UserMessages counts the user's messages except the bridge commands
//     /end_chat and /restart; AgentMessages counts the agent's messages except
//     desk system messages ("… has joined", "… has closed the support
//     session"). Bridge notices count on neither side;
//   - HumanTurns is the human stretch (user, agent and desk system messages,
//     commands included, bridge notices and bot messages left out), redacted.
//
// Negative spans (clock skew) are recorded as 0.
func (r *Recorder) Finish(rec bridge.ReviewRecord, s bridge.Session, human []bridge.Message, at time.Time) bridge.ReviewRecord {
	rec.EndedAt = at.UTC()
	rec.CloseReason = s.CloseReason
	if s.AgentChatID != "" {
		rec.AgentChatID = s.AgentChatID
	}
	start := s.QueuedAt
	if start.IsZero() {
		start = rec.StartedAt
	}
	rec.DurationMilli = max(0, at.Sub(start).Milliseconds())

	clean := r.cleaner(s.UserName)
	firstAgent := time.Time{}
	rec.UserMessages, rec.AgentMessages = 0, 0
	rec.HumanTurns = make([]bridge.Turn, 0, len(human))
	for _, m := range human {
		t := bridge.Turn{Text: clean(m.Text), At: m.SentAt.UTC()}
		if t.At.IsZero() {
			t.At = m.CreatedAt.UTC()
		}
		switch m.Source {
		case bridge.SourceUser:
			t.Role = "user"
			if bridge.ParseCommand(m.Text) == bridge.CommandNone {
				rec.UserMessages++
			}
		case bridge.SourceAgent:
			if !m.System && r.labels.is(m.Text) {
				continue // the agent's private label is on rec.Verdict, not in the conversation
			}
			t.Author = m.Author
			if m.System {
				t.Role = "system"
			} else {
				t.Role = "agent"
				rec.AgentMessages++
				if firstAgent.IsZero() {
					firstAgent = t.At
				}
			}
		default:
			continue // bridge notices and bot messages are not the human conversation
		}
		rec.HumanTurns = append(rec.HumanTurns, t)
	}

	live := s.LiveAt
	if live.IsZero() {
		live = firstAgent
	}
	rec.WaitMillis = 0
	if !live.IsZero() {
		rec.WaitMillis = max(0, live.Sub(start).Milliseconds())
	}
	return rec
}

// cleaner returns the function applied to every transcript text: name and PII
// redaction, or nothing when redaction is disabled.
func (r *Recorder) cleaner(userName string) func(string) string {
	if r.redactor == nil {
		return func(s string) string { return s }
	}
	name := nameRedactor(userName)
	return func(s string) string {
		if name != nil {
			s = name(s)
		}
		return r.redactor.Redact(s)
	}
}

// lastUserTurns returns the suffix of turns that starts at the n-th last user
// turn: the last n user turns with the bot replies between and after them.
// With fewer than n user turns it returns all turns.
func lastUserTurns(turns []bridge.Turn, n int) []bridge.Turn {
	seen := 0
	for i := len(turns) - 1; i >= 0; i-- {
		if strings.EqualFold(strings.TrimSpace(turns[i].Role), "user") {
			seen++
			if seen == n {
				return turns[i:]
			}
		}
	}
	return turns
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// finite maps NaN and ±Inf (which JSON cannot encode) to 0.
func finite(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}
