package review

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The fixed clock of the tests: Monday 2026-11-16 06:00 UTC, when the weekly
// job exports ISO week 2026-W46 (Monday 2026-11-09 to Monday 2026-11-16).
var (
	testNow  = time.Date(2026, 11, 16, 6, 0, 0, 0, time.UTC)
	weekFrom = time.Date(2026, 11, 9, 0, 0, 0, 0, time.UTC)
	weekTo   = time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC)
)

// memSource is an in-memory Source (and Retention) over a slice.
type memSource struct {
	records []bridge.ReviewRecord
	err     error // returned after streaming the records in range
	calls   int

	deleteCalls []time.Time
	deleteErr   error
}

func (m *memSource) Reviews(ctx context.Context, from, to time.Time, fn func(bridge.ReviewRecord) error) error {
	m.calls++
	recs := slices.Clone(m.records)
	slices.SortStableFunc(recs, func(a, b bridge.ReviewRecord) int { return a.StartedAt.Compare(b.StartedAt) })
	for _, r := range recs {
		if r.StartedAt.Before(from) || !r.StartedAt.Before(to) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return m.err
}

func (m *memSource) DeleteReviewsBefore(ctx context.Context, t time.Time) (int64, error) {
	m.deleteCalls = append(m.deleteCalls, t)
	if m.deleteErr != nil {
		return 0, m.deleteErr
	}
	var n int64
	m.records = slices.DeleteFunc(m.records, func(r bridge.ReviewRecord) bool {
		if r.StartedAt.Before(t) {
			n++
			return true
		}
		return false
	})
	return n, nil
}

func at(day, hour, minute int) time.Time {
	return time.Date(2026, 11, day, hour, minute, 0, 0, time.UTC)
}

func userTurn(t time.Time, text, intent string, conf float64) bridge.Turn {
	return bridge.Turn{Role: "user", Text: text, Intent: intent, Confidence: conf, At: t}
}

func botTurn(t time.Time, text string) bridge.Turn {
	return bridge.Turn{Role: "bot", Text: text, At: t}
}

// fixtureRecords are the records of the golden files: ISO week 2026-W46 plus
// one record on each side of it. They hold raw PII on purpose (as a store
// written before redaction existed would) so that the exports' own redaction
// shows in the golden files.
func fixtureRecords() []bridge.ReviewRecord {
	return []bridge.ReviewRecord{
		{ // the Sunday before the week: never exported with it
			SessionID: "s-000", StartedAt: time.Date(2026, 11, 8, 23, 59, 59, 0, time.UTC), UserKey: "k0", TenantID: "t1",
			Reason: "user_asked", Intent: "request_human", Confidence: 0.99,
			BotTurns: []bridge.Turn{userTurn(at(8, 23, 59), "outside the week", "request_human", 0.99)},
		},
		{
			SessionID: "s-001", StartedAt: at(9, 8, 15), UserKey: "3f1c9a", TenantID: "contoso",
			Reason: "user_asked", Queue: "it-service-desk",
			Intent: "request_human", Confidence: 0.97, RunnerUpIntent: "vpn_issue", RunnerUpConfidence: 0.021,
			TriggerAction: "action_handoff",
			BotTurns: []bridge.Turn{
				userTurn(at(9, 8, 10), "My VPN keeps dropping every 10 minutes since the update to version 5.2.1", "vpn_issue", 0.62),
				botTurn(at(9, 8, 10), "Have you tried restarting the VPN client?"),
				userTurn(at(9, 8, 12), "yes, 3 times already. Ticket INC0012345 is still open", "affirm", 0.55),
				botTurn(at(9, 8, 12), "Sorry to hear that. Anything else I can try?"),
				userTurn(at(9, 8, 14), "I want to talk to a human", "request_human", 0.97),
				botTurn(at(9, 8, 15), "Let me connect you with an agent."),
			},
			EndedAt: at(9, 8, 29), CloseReason: bridge.ReasonAgentClosed,
			WaitMillis: 95_000, DurationMilli: 840_500, UserMessages: 4, AgentMessages: 5,
			AgentChatID: "9d5f0c1e2b",
			HumanTurns: []bridge.Turn{
				{Role: "system", Author: "System", Text: "Alex Agent has joined", At: at(9, 8, 16)},
				{Role: "agent", Author: "Alex Agent", Text: "Hi, I can see INC0012345. Which client version?", At: at(9, 8, 17)},
				{Role: "user", Text: "HUMAN-ONLY: 5.2.1 on Windows 11, room 1204", At: at(9, 8, 18)},
			},
		},
		{
			SessionID: "s-002", StartedAt: at(10, 13, 2), UserKey: "77aa01", TenantID: "contoso",
			Reason: "fallback", Intent: "nlu_fallback", Confidence: 0.31,
			RunnerUpIntent: "password_reset", RunnerUpConfidence: 0.28,
			ActiveLoop: "password_reset_form", TriggerAction: "action_default_fallback",
			BotTurns: []bridge.Turn{
				userTurn(at(10, 13, 0), "I locked myself out, my email is jane.doe@contoso.com\nand you can call me at +49 30 1234567", "password_reset", 0.48),
				botTurn(at(10, 13, 1), "Sorry, I didn't get that."),
				userTurn(at(10, 13, 2), "my card 4111 1111 1111 1111 was charged twice for the license", "nlu_fallback", 0.31),
			},
			EndedAt: at(10, 13, 12), CloseReason: bridge.ReasonQueueTimeout,
			WaitMillis: 0, DurationMilli: 600_000, UserMessages: 1, AgentMessages: 0,
			HumanTurns: []bridge.Turn{{Role: "user", Text: "HUMAN-ONLY: hello?", At: at(10, 13, 5)}},
		},
		{ // still open, with text meant to break the formats
			SessionID: "s-003", StartedAt: at(10, 17, 45), UserKey: "c0ffee", TenantID: "fabrikam",
			Reason: "out_of_scope", Queue: "=cmd|' /C calc'!A0", Intent: "out_of_scope", Confidence: 0.44,
			BotTurns: []bridge.Turn{
				userTurn(at(10, 17, 40), "- starts with a dash: and a colon # and a hash", "out_of_scope", 0.44),
				userTurn(at(10, 17, 41), "see [the form](link) and {\"json\": true}\r\nsecond line\u2028third", "out_of_scope", 0.40),
				userTurn(at(10, 17, 44), "=HYPERLINK(\"http://evil.example\",\"click\")", "out_of_scope", 0.44),
			},
		},
		{
			SessionID: "s-004", StartedAt: at(12, 9, 0), UserKey: "77aa01", TenantID: "contoso",
			Reason: "<img src=x onerror=alert(1)>", Confidence: 1,
			TriggerAction: "action_handoff",
			BotTurns: []bridge.Turn{
				userTurn(at(12, 8, 58), "/request_human", "", 1),
				userTurn(at(12, 8, 59), "i want to TALK to a   human", "", 0),
			},
			EndedAt: at(12, 9, 20), CloseReason: bridge.ReasonUserEnded,
			WaitMillis: 30_000, DurationMilli: 1_200_000, UserMessages: 6, AgentMessages: 7, AgentChatID: "77e1",
		},
		{
			SessionID: "s-005", StartedAt: at(15, 23, 30), UserKey: "3f1c9a", TenantID: "contoso",
			Reason: "user_asked", Queue: "it-service-desk", Intent: "request_human", Confidence: 0.93,
			RunnerUpIntent: "greet", RunnerUpConfidence: 0.01, TriggerAction: "action_handoff",
			BotTurns: []bridge.Turn{
				userTurn(at(15, 23, 28), "Outlook crashes with error 0x800CCC0E since 14.11.2026 at 09:30", "email_issue", 0.71),
				botTurn(at(15, 23, 29), "Try starting Outlook in safe mode."),
				userTurn(at(15, 23, 30), "agent please", "request_human", 0.93),
			},
			EndedAt: at(15, 23, 50), CloseReason: bridge.ReasonAgentLeft,
			WaitMillis: 210_000, DurationMilli: 1_200_000, UserMessages: 3, AgentMessages: 2, AgentChatID: "aa55",
		},
		{ // the Monday after the week
			SessionID: "s-006", StartedAt: weekTo, UserKey: "k6", TenantID: "t1",
			Reason: "user_asked", Intent: "request_human", Confidence: 0.99,
			BotTurns: []bridge.Turn{userTurn(weekTo, "outside the week too", "request_human", 0.99)},
		},
	}
}

func testExporter(t testing.TB, cfg ExportConfig) *Exporter {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return testNow }
	}
	e, err := NewExporter(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// golden compares got with testdata/name, or rewrites the file with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./review -run %s -update to create it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := range max(len(gl), len(wl)) {
			g, w := lineAt(gl, i), lineAt(wl, i)
			if g != w {
				t.Fatalf("%s differs at line %d:\n got: %q\nwant: %q\n(run with -update if the change is intended)", path, i+1, g, w)
			}
		}
	}
}

func lineAt(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "<EOF>"
}

// genSource generates n records on the fly, spread over [from, from+span):
// nothing is held in memory, so a benchmark measures the exporter alone. To
// keep the generator's own cost small next to the exporter's, texts come from
// precomputed pools and one record's turn slices are reused for the next
// record (the exporters never keep a record after fn returns).
type genSource struct {
	n    int
	from time.Time
	span time.Duration
}

var genIntents = []string{"vpn_issue", "password_reset", "request_human", "nlu_fallback", "printer_issue",
	"email_issue", "laptop_issue", "software_request", "out_of_scope", "access_request"}

var genReasons = []string{"user_asked", "fallback", "out_of_scope", "two_stage_fallback", "policy"}

const genPool = 4096

// genTexts are the pools of user texts: plain numbers, ticket numbers, PII.
var genTexts = func() (t [4][genPool]string) {
	for i := range genPool {
		intent := genIntents[i%len(genIntents)]
		t[0][i] = fmt.Sprintf("my %s problem number %d started after the update to version 10.2.%d", intent, i%500, i%7)
		t[1][i] = fmt.Sprintf("I have %d open tickets, the last one is INC%07d", i%9, i)
		t[2][i] = fmt.Sprintf("you can reach me at user%d@contoso.com or call +49 30 %07d", i, 1234567+i)
		t[3][i] = fmt.Sprintf("please let me talk to a human about case %d", i)
	}
	return t
}()

var (
	genSessionIDs = func() (ids [genPool]bridge.SessionID) {
		for i := range ids {
			ids[i] = bridge.SessionID(fmt.Sprintf("s-%07d", i))
		}
		return ids
	}()
	genKeys = func() (keys [genPool]string) {
		for i := range keys {
			keys[i] = fmt.Sprintf("%064x", i*7919)
		}
		return keys
	}()
)

func (g genSource) Reviews(ctx context.Context, from, to time.Time, fn func(bridge.ReviewRecord) error) error {
	step := g.span / time.Duration(max(g.n, 1))
	var bot, human []bridge.Turn
	for i := range g.n {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		start := g.from.Add(time.Duration(i) * step)
		if start.Before(from) || !start.Before(to) {
			continue
		}
		r := genRecordInto(i, start, bot[:0], human[:0])
		bot, human = r.BotTurns, r.HumanTurns
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// genRecord is a realistic record: 10 user turns with bot replies (a quarter
// of them with an e-mail address and a phone number), 8 human turns.
func genRecord(i int, start time.Time) bridge.ReviewRecord {
	return genRecordInto(i, start, nil, nil)
}

func genRecordInto(i int, start time.Time, bot, human []bridge.Turn) bridge.ReviewRecord {
	intent := genIntents[i%len(genIntents)]
	r := bridge.ReviewRecord{
		SessionID: genSessionIDs[i%genPool], StartedAt: start, UserKey: genKeys[i%genPool], TenantID: "contoso",
		Reason: genReasons[i%len(genReasons)], Queue: "it-service-desk",
		Intent: intent, Confidence: float64(i%100) / 100, RunnerUpIntent: genIntents[(i+3)%len(genIntents)],
		RunnerUpConfidence: float64(i%37) / 100, TriggerAction: "action_handoff",
	}
	if i%3 == 0 {
		r.ActiveLoop = "ticket_form"
	}
	for k := range 10 {
		t := start.Add(time.Duration(k-10) * time.Minute)
		bot = append(bot,
			bridge.Turn{Role: "user", Text: genTexts[k%4][(i+k)%genPool], Intent: genIntents[(i+k)%len(genIntents)], Confidence: 0.5, At: t},
			bridge.Turn{Role: "bot", Text: "Sorry, I did not understand that. Could you rephrase?", At: t.Add(time.Second)})
	}
	r.BotTurns = bot
	r.EndedAt = start.Add(time.Duration(5+i%40) * time.Minute)
	r.CloseReason = bridge.CloseReasons[i%len(bridge.CloseReasons)]
	r.WaitMillis = int64(i%300) * 1000
	r.DurationMilli = r.EndedAt.Sub(start).Milliseconds()
	r.UserMessages, r.AgentMessages = 4, 4
	r.AgentChatID = bridge.AgentChatID(genKeys[(i+1)%genPool][:32])
	for k := range 8 {
		role := "user"
		if k%2 == 1 {
			role = "agent"
		}
		human = append(human, bridge.Turn{Role: role, Text: "Thanks, I reset the VPN profile; please try again in 5 minutes.", At: start.Add(time.Duration(k) * time.Minute)})
	}
	r.HumanTurns = human
	return r
}
