package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/bridge/store"
	"github.com/handoffhq/handoff/bridge/store/storetest"
)

// seedOutbox stores a live and a closed session, two pending outbox items
// and one dead one; it returns the dead item's id.
func seedOutbox(t *testing.T, dbURL string) int64 {
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
		live := bridge.Session{ID: "s-live", Conversation: "c-live", State: bridge.StateLive, UserName: "Abel Tasman",
			AgentChatID: "chat-1", Reason: "user_asked", CreatedAt: now, QueuedAt: now, LiveAt: now, UpdatedAt: now}
		closed := bridge.Session{ID: "s-closed", Conversation: "c-closed", State: bridge.StateClosed, CloseReason: bridge.ReasonAgentClosed,
			CreatedAt: now, UpdatedAt: now.Add(-time.Minute), ClosedAt: now}
		for _, s := range []bridge.Session{live, closed} {
			if err := tx.CreateSession(ctx, s); err != nil {
				return err
			}
		}
		items := []bridge.OutboxItem{
			bridge.NewOutboxItem(live.ID, live.Conversation, bridge.KindDeskSend, bridge.OutboxPayload{MessageID: 1}, now),
			bridge.NewOutboxItem(live.ID, live.Conversation, bridge.KindUserSend, bridge.OutboxPayload{MessageID: 2}, now),
			bridge.NewOutboxItem(closed.ID, closed.Conversation, bridge.KindDeskLeave, bridge.OutboxPayload{}, now),
		}
		return tx.Enqueue(ctx, items...)
	})
	if err != nil {
		t.Fatal(err)
	}
	pending, err := st.OutboxItems(ctx, false, 10)
	if err != nil || len(pending) != 3 {
		t.Fatalf("pending before failing one: %d, %v", len(pending), err)
	}
	dead := pending[0].ID // the newest: desk.leave
	claimed, err := st.ClaimOutbox(ctx, bridge.ClaimRequest{Now: time.Now(), Limit: 10, Lease: time.Minute, Owner: "operate-test"})
	if err != nil {
		t.Fatal(err)
	}
	claim := ""
	for _, it := range claimed {
		if it.ID == dead {
			claim = it.Claim
		}
	}
	if err := st.Update(ctx, func(tx bridge.Tx) error {
		return tx.FailOutbox(ctx, dead, claim, "servicenow: leave: HTTP 500\nInternal error")
	}); err != nil {
		t.Fatal(err)
	}
	return dead
}

func TestOperatorCommands(t *testing.T) {
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			dbURL := "sqlite:" + filepath.Join(t.TempDir(), "ops.db")
			if name == "postgres" {
				dbURL = storetest.Schema(t, storetest.DatabaseURL(t), "t_ops")
			}
			dead := seedOutbox(t, dbURL)
			env := mapEnv(map[string]string{"HANDOFF_DATABASE_URL": dbURL})
			runCmd := func(args ...string) (int, string, string) {
				var out, errb bytes.Buffer
				code := run(context.Background(), args, env, &out, &errb)
				return code, out.String(), errb.String()
			}

			code, out, errb := runCmd("outbox", "list", "--dead")
			if code != exitOK || !strings.Contains(out, "desk.leave") || !strings.Contains(out, "HTTP 500 Internal error") ||
				strings.Contains(out, "desk.send") || !strings.Contains(out, "1 dead item(s)") {
				t.Fatalf("outbox list --dead = %d\n%s%s", code, out, errb)
			}
			code, out, _ = runCmd("outbox", "list")
			if code != exitOK || !strings.Contains(out, "desk.send") || !strings.Contains(out, "user.send") || !strings.Contains(out, "2 pending item(s)") {
				t.Fatalf("outbox list = %d\n%s", code, out)
			}

			id := strconv.FormatInt(dead, 10)
			if code, out, errb = runCmd("outbox", "retry", id); code != exitOK || !strings.Contains(out, "pending again") {
				t.Fatalf("outbox retry = %d\n%s%s", code, out, errb)
			}
			if _, out, _ = runCmd("outbox", "list", "--dead"); !strings.Contains(out, "0 dead item(s)") {
				t.Fatalf("after retry the dead list still shows it:\n%s", out)
			}
			if _, out, _ = runCmd("outbox", "list"); !strings.Contains(out, "3 pending item(s)") || !strings.Contains(out, "desk.leave") {
				t.Fatalf("after retry the item is not pending:\n%s", out)
			}
			// A pending item is not retried twice; a missing one is named.
			if code, _, errb = runCmd("outbox", "retry", id); code != exitFail || !strings.Contains(errb, "not dead") {
				t.Fatalf("retry of a pending item = %d %s", code, errb)
			}
			if code, _, errb = runCmd("outbox", "retry", "999999"); code != exitFail || !strings.Contains(errb, "no outbox item 999999") {
				t.Fatalf("retry of a missing item = %d %s", code, errb)
			}
			if code, _, _ = runCmd("outbox", "retry", "x"); code != exitUsage {
				t.Fatalf("retry x = %d, want %d", code, exitUsage)
			}

			code, out, _ = runCmd("sessions", "list")
			if code != exitOK || !strings.Contains(out, "s-live") || !strings.Contains(out, "s-closed") || !strings.Contains(out, "Abel Tasman") {
				t.Fatalf("sessions list = %d\n%s", code, out)
			}
			if strings.Index(out, "s-live") > strings.Index(out, "s-closed") {
				t.Errorf("sessions list is not most recently changed first:\n%s", out)
			}
			code, out, _ = runCmd("sessions", "list", "--state", "live")
			if code != exitOK || !strings.Contains(out, "s-live") || strings.Contains(out, "s-closed") || !strings.Contains(out, "1 session(s)") {
				t.Fatalf("sessions list --state live = %d\n%s", code, out)
			}
			if code, _, errb = runCmd("sessions", "list", "--state", "asleep"); code != exitUsage || !strings.Contains(errb, "asleep") {
				t.Fatalf("--state asleep = %d %s", code, errb)
			}
		})
	}
}

// TestOperatorCommandsNeedMigratedDatabase: against an empty database the
// commands say to run the migrations instead of failing on a missing table.
func TestOperatorCommandsNeedMigratedDatabase(t *testing.T) {
	var out, errb bytes.Buffer
	env := mapEnv(map[string]string{"HANDOFF_DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "empty.db")})
	if code := run(context.Background(), []string{"sessions", "list"}, env, &out, &errb); code != exitFail || !strings.Contains(errb.String(), "handoff migrate up") {
		t.Fatalf("sessions list on an empty database = %d %s", code, errb.String())
	}
}
