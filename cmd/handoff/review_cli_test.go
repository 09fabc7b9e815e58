package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/bridge/store"
)

func seedReviews(t *testing.T, dbURL string, n int) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, dbURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Add(-time.Hour)
	err = st.Update(ctx, func(tx bridge.Tx) error {
		for i := 0; i < n; i++ {
			s := bridge.Session{ID: bridge.SessionID("s" + string(rune('a'+i))), Conversation: bridge.ConversationID("c" + string(rune('a'+i))),
				State: bridge.StateClosed, CloseReason: bridge.ReasonAgentClosed, CreatedAt: now, UpdatedAt: now, ClosedAt: now}
			if err := tx.CreateSession(ctx, s); err != nil {
				return err
			}
			r := bridge.ReviewRecord{SessionID: s.ID, StartedAt: now, Reason: "fallback", Intent: "vpn_help", Confidence: 0.31,
				BotTurns:    []bridge.Turn{{Role: "user", Text: "my vpn drops every hour, call me on +44 20 7946 0958", Intent: "vpn_help", Confidence: 0.31, At: now}},
				CloseReason: bridge.ReasonAgentClosed, EndedAt: now.Add(time.Minute)}
			if err := tx.PutReview(ctx, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestReviewExportCommand(t *testing.T) {
	dir := t.TempDir()
	db := "sqlite:" + filepath.Join(dir, "r.db")
	seedReviews(t, db, 3)
	env := mapEnv(map[string]string{"HANDOFF_DATABASE_URL": db})

	out := filepath.Join(dir, "nlu.yml")
	var stdout, stderr strings.Builder
	code := run(context.Background(), []string{"review", "export", "--last", "7d", "--format", "nlu", "--out", out}, env, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "3 handoffs") {
		t.Fatalf("progress line missing: %q", stderr.String())
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Version string `yaml:"version"`
		NLU     []struct {
			Intent   string `yaml:"intent"`
			Examples string `yaml:"examples"`
		} `yaml:"nlu"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("NLU file is not YAML: %v\n%s", err, raw)
	}
	if doc.Version != "3.1" || len(doc.NLU) != 1 || doc.NLU[0].Intent != "vpn_help" || !strings.Contains(doc.NLU[0].Examples, "- my vpn drops") {
		t.Fatalf("unexpected NLU export:\n%s", raw)
	}
	if strings.Contains(string(raw), "7946") {
		t.Fatalf("phone number not redacted:\n%s", raw)
	}

	stdout.Reset()
	stderr.Reset()
	if code := run(context.Background(), []string{"review", "export", "--from", time.Now().AddDate(0, 0, -1).Format("2006-01-02"), "--format", "csv"}, env, &stdout, &stderr); code != exitOK {
		t.Fatalf("csv to stdout: exit %d: %s", code, stderr.String())
	}
	if lines := strings.Count(stdout.String(), "\n"); lines != 4 {
		t.Fatalf("CSV has %d lines, want header + 3:\n%s", lines, stdout.String())
	}

	for _, args := range [][]string{
		{"review", "export", "--format", "csv"},                    // no range
		{"review", "export", "--last", "7d", "--format", "pdf"},    // bad format
		{"review", "export", "--last", "soon", "--format", "csv"},  // bad span
		{"review", "export", "--from", "yesterday", "--last", "x"}, // bad date
		{"review", "frobnicate"},
	} {
		stderr.Reset()
		if code := run(context.Background(), args, env, &stdout, &stderr); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, exitUsage, stderr.String())
		}
	}
}
