package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/handoffhq/handoff/bridge"
)

// exportReview fetches GET /review/export for the last day in format.
func exportReview(t *testing.T, w *world, format, token string) (*http.Response, string) {
	t.Helper()
	w.mu.Lock()
	base := w.base
	w.mu.Unlock()
	req, _ := http.NewRequest(http.MethodGet, base+"/review/export?last=1d&format="+format, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// checkReviewExport reads the exports over HTTP after the lifecycle test's
// conversations and checks that every handoff is there with the right reason,
// intents and outcome, and that human turns stay out of the bot turns.
func checkReviewExport(t *testing.T, w *world) {
	t.Helper()
	ctx := context.Background()
	var closed []bridge.Session
	err := w.current().store.Update(ctx, func(tx bridge.Tx) error {
		ss, err := tx.SessionsInStates(ctx, bridge.StateClosed)
		for _, s := range ss {
			if !s.QueuedAt.IsZero() {
				closed = append(closed, s)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(closed) != len(lifecycleEndings(w.desk)) {
		t.Fatalf("%d handed-off sessions closed, want %d", len(closed), len(lifecycleEndings(w.desk)))
	}

	if resp, _ := exportReview(t, w, "jsonl", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("export without a token: %d, want 401", resp.StatusCode)
	}
	resp, body := exportReview(t, w, "jsonl", "review-token")
	if resp.StatusCode != 200 {
		t.Fatalf("export: %d %s", resp.StatusCode, body)
	}
	records := map[bridge.SessionID]bridge.ReviewRecord{}
	for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
		var r bridge.ReviewRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("JSONL line %q: %v", line, err)
		}
		records[r.SessionID] = r
	}
	for _, s := range closed {
		r, ok := records[s.ID]
		if !ok {
			t.Errorf("session %s (%s) missing from the export", s.ID, s.CloseReason)
			continue
		}
		if r.Reason != "user_asked" || r.Intent != "talk_to_human" || r.Confidence <= 0 {
			t.Errorf("session %s trigger: reason %q intent %q confidence %v", s.ID, r.Reason, r.Intent, r.Confidence)
		}
		if r.CloseReason != s.CloseReason || r.AgentChatID != s.AgentChatID || r.EndedAt.IsZero() {
			t.Errorf("session %s outcome: %s/%s ended %v; want %s/%s", s.ID, r.CloseReason, r.AgentChatID, r.EndedAt, s.CloseReason, s.AgentChatID)
		}
		if r.UserMessages < 3 || r.AgentMessages < 3 || r.DurationMilli <= 0 {
			t.Errorf("session %s counts: user %d agent %d duration %d", s.ID, r.UserMessages, r.AgentMessages, r.DurationMilli)
		}
		if r.UserKey == "" || strings.Contains(r.UserKey, "Employee") {
			t.Errorf("session %s user key %q is not pseudonymous", s.ID, r.UserKey)
		}
		var botText, humanText strings.Builder
		for _, tu := range r.BotTurns {
			botText.WriteString(tu.Text + "\n")
		}
		for _, tu := range r.HumanTurns {
			humanText.WriteString(tu.Text + "\n")
		}
		if !strings.Contains(botText.String(), "reset my password") {
			t.Errorf("session %s bot turns lack the user's earlier question: %q", s.ID, botText.String())
		}
		if strings.Contains(botText.String(), "question 1") {
			t.Errorf("session %s: the human conversation leaked into the bot turns", s.ID)
		}
		if !strings.Contains(humanText.String(), "question 1") || !strings.Contains(humanText.String(), "answer 1") {
			t.Errorf("session %s human turns lack the conversation: %q", s.ID, humanText.String())
		}
	}

	resp, body = exportReview(t, w, "csv", "review-token")
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if resp.StatusCode != 200 || err != nil || len(rows) != len(closed)+1 {
		t.Fatalf("CSV export: %d, %v, %d rows for %d handoffs", resp.StatusCode, err, len(rows), len(closed))
	}
}

// checkMetrics asserts that /metrics carries the relay's series the README
// documents, with values that reflect the conversations just run.
func checkMetrics(t *testing.T, w *world) {
	t.Helper()
	w.mu.Lock()
	base := w.base
	w.mu.Unlock()
	code, body := get(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	want := []string{
		`handoff_outbox_delivered_total{kind="user.send"}`,
		`handoff_outbox_delivered_total{kind="desk.open"}`,
		`handoff_outbox_delivered_total{kind="bot.handback"}`,
		`handoff_outbox_items{status="done"}`,
		`handoff_sessions{state="bot"}`,
		`handoff_http_requests_total{route="POST /api/messages",status="200"}`,
	}
	if w.env["HANDOFF_DELIVERY"] != "webhook" {
		want = append(want, "handoff_poll_runs_total", "handoff_poll_events_total")
	}
	for _, s := range want {
		if !strings.Contains(body, s) {
			t.Errorf("/metrics lacks %s", s)
		}
	}
	if strings.Contains(body, `handoff_outbox_delivered_total{kind="user.send"} 0`) {
		t.Error("no user sends counted")
	}
}
