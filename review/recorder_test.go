package review

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

func newTestRecorder(t *testing.T, cfg RecorderConfig) *Recorder {
	t.Helper()
	if cfg.Salt == "" {
		cfg.Salt = "test-salt"
	}
	r, err := NewRecorder(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNewRecorderErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  RecorderConfig
		want string
	}{
		{"no salt", RecorderConfig{}, "salt"},
		{"negative turns", RecorderConfig{Salt: "s", LastTurns: -1}, "last turns"},
		{"bad pattern", RecorderConfig{Salt: "s", ExtraPatterns: []string{"("}}, "pattern"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewRecorder(tt.cfg, nil)
			if err == nil || !strings.HasPrefix(err.Error(), "review: ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want a review: error about %s", err, tt.want)
			}
		})
	}
}

func TestUserKey(t *testing.T) {
	r := newTestRecorder(t, RecorderConfig{Salt: "test-salt"})
	tests := []struct {
		name, aad, user, want string
	}{
		// Expected values from: printf %s "$id" | openssl dgst -sha256 -hmac test-salt
		{"aad id", "00000000-1111-2222-3333-444444444444", "29:1abc", "7359dbb2f4669daf55d3447903595c58178eac178ba9accfa1be85f85e68ac8a"},
		{"aad id is case-insensitive", " 00000000-1111-2222-3333-444444444444 ", "", "7359dbb2f4669daf55d3447903595c58178eac178ba9accfa1be85f85e68ac8a"},
		{"aad upper case", "00000000-1111-2222-3333-444444444444", "", "7359dbb2f4669daf55d3447903595c58178eac178ba9accfa1be85f85e68ac8a"},
		{"teams id fallback", "", "29:1abc", "9e25d63beffe820009e7ed3e1ad79672699fd551747237ffa1b428c8e0fb7983"},
		{"nothing", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			aad := tt.aad
			if tt.name == "aad upper case" {
				aad = strings.ToUpper(aad)
			}
			if got := r.UserKey(aad, tt.user); got != tt.want {
				t.Errorf("UserKey(%q, %q) = %s, want %s", aad, tt.user, got, tt.want)
			}
		})
	}
	other := newTestRecorder(t, RecorderConfig{Salt: "other-salt"})
	if other.UserKey("00000000-1111-2222-3333-444444444444", "") == tests[0].want {
		t.Error("the key does not depend on the salt")
	}
}

func testSession() bridge.Session {
	return bridge.Session{
		ID: "s-1", Conversation: "a:conv", State: bridge.StateQueued,
		UserID: "29:1abc", UserName: "Jane Doe", UserAADID: "00000000-1111-2222-3333-444444444444",
		UserEmail: "jane.doe@contoso.com", TenantID: "contoso", Reason: "session_reason", Queue: "session_queue",
		QueuedAt: at(9, 8, 15),
	}
}

// conversation returns n user turns, each followed by a bot reply, after a
// bot greeting.
func conversation(n int) []bridge.Turn {
	turns := []bridge.Turn{botTurn(at(9, 8, 0), "Hi, I'm the IT bot.")}
	for i := range n {
		turns = append(turns,
			userTurn(at(9, 8, i+1), "question "+string(rune('A'+i)), "intent_"+string(rune('a'+i)), 0.5),
			botTurn(at(9, 8, i+1), "answer "+string(rune('A'+i))))
	}
	return turns
}

func TestRecorderStart(t *testing.T) {
	sig := bridge.HandoffSignal{Reason: "user_asked", Queue: "it-service-desk"}
	bc := bridge.BotContext{
		LatestIntent: "request_human", Confidence: 0.97, RunnerUpIntent: "vpn_issue", RunnerUpConfidence: 0.02,
		ActiveLoop: "ticket_form", LatestAction: "action_handoff",
	}
	tests := []struct {
		name      string
		cfg       RecorderConfig
		turns     []bridge.Turn
		sig       bridge.HandoffSignal
		wantTexts []string // texts of BotTurns
	}{
		{
			name: "fewer user turns than N keeps all", cfg: RecorderConfig{LastTurns: 10}, sig: sig,
			turns:     conversation(2),
			wantTexts: []string{"Hi, I'm the IT bot.", "question A", "answer A", "question B", "answer B"},
		},
		{
			name: "last N user turns with the replies between and after", cfg: RecorderConfig{LastTurns: 2}, sig: sig,
			turns:     conversation(4),
			wantTexts: []string{"question C", "answer C", "question D", "answer D"},
		},
		{
			name: "default is 10", sig: sig, turns: conversation(12),
			wantTexts: func() []string {
				var s []string
				for _, t := range conversation(12)[5:] {
					s = append(s, t.Text)
				}
				return s
			}(),
		},
		{
			name: "agent and system turns never enter bot turns", cfg: RecorderConfig{LastTurns: 5}, sig: sig,
			turns: []bridge.Turn{
				userTurn(at(9, 8, 1), "hello", "greet", 0.9),
				{Role: "agent", Text: "agent text", At: at(9, 8, 2)},
				{Role: "System", Text: "system text", At: at(9, 8, 2)},
				{Role: "BOT", Text: "bot text", At: at(9, 8, 3)},
			},
			wantTexts: []string{"hello", "bot text"},
		},
		{
			name: "session reason and queue fill in", cfg: RecorderConfig{LastTurns: 1},
			turns: conversation(1), wantTexts: []string{"question A", "answer A"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRecorder(t, tt.cfg)
			bc := bc
			bc.Turns = tt.turns
			startAt := time.Date(2026, 11, 9, 9, 15, 0, 0, time.FixedZone("CET", 3600))
			rec := r.Start(testSession(), tt.sig, bc, startAt)

			var texts []string
			for _, tu := range rec.BotTurns {
				texts = append(texts, tu.Text)
			}
			if !reflect.DeepEqual(texts, tt.wantTexts) {
				t.Errorf("bot turns = %q, want %q", texts, tt.wantTexts)
			}
			wantReason, wantQueue := tt.sig.Reason, tt.sig.Queue
			if wantReason == "" {
				wantReason, wantQueue = "session_reason", "session_queue"
			}
			want := bridge.ReviewRecord{
				SessionID: "s-1", StartedAt: at(9, 8, 15), TenantID: "contoso",
				UserKey: "7359dbb2f4669daf55d3447903595c58178eac178ba9accfa1be85f85e68ac8a",
				Reason:  wantReason, Queue: wantQueue,
				Intent: "request_human", Confidence: 0.97, RunnerUpIntent: "vpn_issue", RunnerUpConfidence: 0.02,
				ActiveLoop: "ticket_form", TriggerAction: "action_handoff",
				BotTurns: rec.BotTurns, HumanTurns: []bridge.Turn{},
			}
			if !reflect.DeepEqual(rec, want) {
				t.Errorf("record =\n%+v\nwant\n%+v", rec, want)
			}
			if rec.StartedAt.Location() != time.UTC {
				t.Errorf("StartedAt in %v, want UTC", rec.StartedAt.Location())
			}
		})
	}
}

func TestRecorderStartRedacts(t *testing.T) {
	bc := bridge.BotContext{
		LatestIntent: "request_human", Confidence: math.NaN(), RunnerUpConfidence: math.Inf(1),
		Turns: []bridge.Turn{
			{Role: "user", Author: "Jane Doe", Text: "I'm Jane Doe, mail jane.doe@contoso.com or call +49 30 1234567", Intent: "inform", Confidence: math.NaN()},
			{Role: "bot", Author: "bot", Text: "Thanks Jane, I have 3 tickets for INC0012345"},
		},
	}
	rec := newTestRecorder(t, RecorderConfig{ExtraPatterns: []string{`INC\d{7}`}}).Start(testSession(), bridge.HandoffSignal{}, bc, at(9, 8, 15))
	want := []bridge.Turn{
		{Role: "user", Text: "I'm [name] [name], mail [email] or call [phone]", Intent: "inform", At: time.Time{}.UTC()},
		{Role: "bot", Author: "bot", Text: "Thanks [name], I have 3 tickets for [redacted]", At: time.Time{}.UTC()},
	}
	if !reflect.DeepEqual(rec.BotTurns, want) {
		t.Errorf("bot turns =\n%+v\nwant\n%+v", rec.BotTurns, want)
	}
	if rec.Confidence != 0 || rec.RunnerUpConfidence != 0 {
		t.Errorf("NaN/Inf confidences kept: %v %v", rec.Confidence, rec.RunnerUpConfidence)
	}
	if _, err := json.Marshal(rec); err != nil {
		t.Errorf("record does not encode: %v", err)
	}
}

func TestRecorderStartDoesNotAliasInput(t *testing.T) {
	turns := conversation(2)
	bc := bridge.BotContext{Turns: turns}
	rec := newTestRecorder(t, RecorderConfig{}).Start(testSession(), bridge.HandoffSignal{}, bc, at(9, 8, 15))
	rec.BotTurns[0].Text = "changed"
	if turns[0].Text == "changed" {
		t.Error("Start's record shares the bot context's turns")
	}
}

func msg(src bridge.Source, text string, sent time.Time) bridge.Message {
	return bridge.Message{SessionID: "s-1", Source: src, Text: text, SentAt: sent, Author: "Alex Agent"}
}

func TestRecorderFinish(t *testing.T) {
	queued := at(9, 8, 15)
	human := []bridge.Message{
		msg(bridge.SourceBridge, "You are being connected to an agent.", at(9, 8, 15)),
		msg(bridge.SourceUser, "hello? my number is 0171 1234567", at(9, 8, 16)),
		{SessionID: "s-1", Source: bridge.SourceAgent, System: true, Author: "System", Text: "Alex Agent has joined", SentAt: at(9, 8, 17)},
		msg(bridge.SourceAgent, "Hi Jane, I'm looking at it", at(9, 8, 18)),
		msg(bridge.SourceBridge, "An agent joined.", at(9, 8, 18)),
		msg(bridge.SourceUser, "thanks", at(9, 8, 19)),
		msg(bridge.SourceAgent, "done, please restart", at(9, 8, 25)),
		msg(bridge.SourceBot, "a bot message that slipped in", at(9, 8, 25)),
		msg(bridge.SourceUser, "/end_chat", at(9, 8, 26)),
	}
	tests := []struct {
		name                   string
		session                func(*bridge.Session)
		human                  []bridge.Message
		end                    time.Time
		wantWait, wantDuration int64
		wantUser, wantAgent    int
	}{
		{
			name: "agent answered", human: human, end: at(9, 8, 30),
			session:  func(s *bridge.Session) { s.LiveAt = at(9, 8, 17); s.CloseReason = bridge.ReasonUserEnded },
			wantWait: 120_000, wantDuration: 900_000, wantUser: 2, wantAgent: 2,
		},
		{
			name: "LiveAt unset falls back to the first agent message", human: human, end: at(9, 8, 30),
			session:  func(s *bridge.Session) { s.CloseReason = bridge.ReasonUserEnded },
			wantWait: 180_000, wantDuration: 900_000, wantUser: 2, wantAgent: 2,
		},
		{
			name: "no agent came", human: human[:2], end: at(9, 8, 45),
			session:  func(s *bridge.Session) { s.CloseReason = bridge.ReasonQueueTimeout },
			wantWait: 0, wantDuration: 1_800_000, wantUser: 1, wantAgent: 0,
		},
		{
			name: "QueuedAt unset uses the record's start; clock skew gives 0", human: nil, end: at(9, 8, 0),
			session:  func(s *bridge.Session) { s.QueuedAt = time.Time{}; s.CloseReason = bridge.ReasonRelayError },
			wantWait: 0, wantDuration: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRecorder(t, RecorderConfig{})
			s := testSession()
			s.QueuedAt = queued
			s.AgentChatID = "chat-1"
			tt.session(&s)
			start := r.Start(s, bridge.HandoffSignal{Reason: "user_asked"}, bridge.BotContext{Turns: conversation(1)}, queued)
			rec := r.Finish(start, s, tt.human, tt.end)

			if rec.WaitMillis != tt.wantWait || rec.DurationMilli != tt.wantDuration {
				t.Errorf("wait, duration = %d, %d; want %d, %d", rec.WaitMillis, rec.DurationMilli, tt.wantWait, tt.wantDuration)
			}
			if rec.UserMessages != tt.wantUser || rec.AgentMessages != tt.wantAgent {
				t.Errorf("user, agent messages = %d, %d; want %d, %d", rec.UserMessages, rec.AgentMessages, tt.wantUser, tt.wantAgent)
			}
			if rec.CloseReason != s.CloseReason || rec.AgentChatID != "chat-1" || !rec.EndedAt.Equal(tt.end) {
				t.Errorf("outcome = %q %q %v", rec.CloseReason, rec.AgentChatID, rec.EndedAt)
			}
			if !reflect.DeepEqual(rec.BotTurns, start.BotTurns) {
				t.Error("Finish changed the bot turns")
			}
		})
	}

	t.Run("human turns", func(t *testing.T) {
		r := newTestRecorder(t, RecorderConfig{})
		s := testSession()
		s.LiveAt = at(9, 8, 17)
		rec := r.Finish(r.Start(s, bridge.HandoffSignal{}, bridge.BotContext{}, queued), s, human, at(9, 8, 30))
		want := []bridge.Turn{
			{Role: "user", Text: "hello? my number is [phone]", At: at(9, 8, 16)},
			{Role: "system", Author: "System", Text: "Alex Agent has joined", At: at(9, 8, 17)},
			{Role: "agent", Author: "Alex Agent", Text: "Hi [name], I'm looking at it", At: at(9, 8, 18)},
			{Role: "user", Text: "thanks", At: at(9, 8, 19)},
			{Role: "agent", Author: "Alex Agent", Text: "done, please restart", At: at(9, 8, 25)},
			{Role: "user", Text: "/end_chat", At: at(9, 8, 26)},
		}
		if !reflect.DeepEqual(rec.HumanTurns, want) {
			t.Errorf("human turns =\n%+v\nwant\n%+v", rec.HumanTurns, want)
		}
		if len(rec.BotTurns) != 0 {
			t.Errorf("human messages leaked into bot turns: %+v", rec.BotTurns)
		}
	})
}

func TestRecorderRedactionDisabledWarnsOnce(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	r, err := NewRecorder(RecorderConfig{Salt: "s", DisableRedaction: true}, logger)
	if err != nil {
		t.Fatal(err)
	}
	bc := bridge.BotContext{Turns: []bridge.Turn{userTurn(at(9, 8, 1), "mail jane@contoso.com", "x", 1)}}
	for range 3 {
		rec := r.Start(testSession(), bridge.HandoffSignal{}, bc, at(9, 8, 15))
		if rec.BotTurns[0].Text != "mail jane@contoso.com" {
			t.Errorf("redacted although disabled: %q", rec.BotTurns[0].Text)
		}
	}
	if n := strings.Count(buf.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, buf.String())
	}
	buf.Reset()
	if _, err := NewRecorder(RecorderConfig{Salt: "s"}, logger); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Errorf("redaction on, yet logged:\n%s", buf.String())
	}
}
