package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

func TestZZProbeSteady(t *testing.T) {
	s := openPostgres(t)
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const convs, per = 1000, 20
	var ss []bridge.Session
	for c := range convs {
		ss = append(ss, bridge.Session{ID: bridge.SessionID(fmt.Sprint("s", c)), Conversation: bridge.ConversationID(fmt.Sprint("c", c)), State: bridge.StateLive})
	}
	createSessions(t, s, ss...)
	kinds := []bridge.OutboxKind{bridge.KindUserSend, bridge.KindDeskSend}
	var items []bridge.OutboxItem
	for i := range convs * per {
		x := ss[i%convs]
		items = append(items, bridge.NewOutboxItem(x.ID, x.Conversation, kinds[(i/convs)%2], bridge.OutboxPayload{}, base))
	}
	update(t, s, func(ctx context.Context, tx bridge.Tx) error { return tx.Enqueue(ctx, items...) })
	done := 0
	for round := 0; done < len(items); round++ {
		if round == 2 {
			var lines []string
			q := "EXPLAIN ANALYZE " + claimSQL(s.dialect)
			s.db.Raw(q, time.Now().UnixMilli(), time.Now().UnixMilli(), 50).Find(&lines)
			for _, l := range lines {
				t.Log(l)
			}
		}
		t0 := time.Now()
		got, err := s.ClaimOutbox(ctx, time.Now(), 50, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		for _, it := range got {
			update(t, s, func(ctx context.Context, tx bridge.Tx) error { return tx.CompleteOutbox(ctx, it.ID) })
		}
		done += len(got)
		t.Logf("round %d: claimed %d in %v, completed in %v", round, len(got), t1.Sub(t0), time.Since(t1))
		if round > 3 {
			break
		}
	}
}
