package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// testReviewInbox checks the inbox's filters, annotations with their audit
// log, and that retention takes annotations and audit with the record.
func testReviewInbox(t *testing.T, s *Store) {
	ctx := t.Context()
	recs := []bridge.ReviewRecord{
		{SessionID: "a", Reason: "fallback", Intent: "vpn_issue", Confidence: 0.3, Verdict: &bridge.Verdict{Topic: "VPN profile"}},
		{SessionID: "b", Reason: "user_asked", Intent: "password_reset", Confidence: 0.9, CSAT: &bridge.CSAT{Rating: 2}},
		{SessionID: "c", Reason: "fallback", Intent: "password_reset", Confidence: 0.45, CSAT: &bridge.CSAT{Rating: 5}},
		{SessionID: "d", Reason: "user_asked", Intent: "vpn_issue", Confidence: 0.7},
	}
	update(t, s, func(ctx context.Context, tx bridge.Tx) error {
		for i := range recs {
			recs[i].StartedAt = base.Add(time.Duration(i) * time.Hour)
			recs[i].BotTurns = []bridge.Turn{{Role: "user", Text: fmt.Sprintf("utterance %d", i), At: base}}
			if err := tx.PutReview(ctx, recs[i]); err != nil {
				return err
			}
		}
		return nil
	})
	yes, no := true, false
	at := base.Add(48 * time.Hour)
	err := s.Annotate(ctx, bridge.Annotation{SessionID: "c", Reviewed: true, Intents: map[int]string{0: "mfa_reset"},
		ExpectedAction: "utter_mfa_reset", Note: "new phone", UpdatedBy: "rita", UpdatedAt: at},
		bridge.AuditEntry{Actor: "rita", Action: "intent", Detail: "turn 0: mfa_reset", At: at},
		bridge.AuditEntry{Actor: "rita", Action: "reviewed", Detail: "true", At: at})
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, "Annotate without a record", s.Annotate(ctx, bridge.Annotation{SessionID: "zz"}), bridge.ErrNotFound)

	list := func(q bridge.ReviewQuery) []bridge.SessionID {
		t.Helper()
		var ids []bridge.SessionID
		if err := s.ReviewCases(ctx, q, func(c bridge.ReviewCase) error {
			ids = append(ids, c.Record.SessionID)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	for _, tc := range []struct {
		name string
		q    bridge.ReviewQuery
		want []bridge.SessionID
	}{
		{"all", bridge.ReviewQuery{}, []bridge.SessionID{"a", "b", "c", "d"}},
		{"newest first", bridge.ReviewQuery{Newest: true, Limit: 2}, []bridge.SessionID{"d", "c"}},
		{"page", bridge.ReviewQuery{Offset: 1, Limit: 2}, []bridge.SessionID{"b", "c"}},
		{"dates", bridge.ReviewQuery{From: base.Add(time.Hour), To: base.Add(3 * time.Hour)}, []bridge.SessionID{"b", "c"}},
		{"reason", bridge.ReviewQuery{Reason: "fallback"}, []bridge.SessionID{"a", "c"}},
		{"intent", bridge.ReviewQuery{Intent: "vpn_issue"}, []bridge.SessionID{"a", "d"}},
		{"confidence below", bridge.ReviewQuery{ConfidenceBelow: 0.5}, []bridge.SessionID{"a", "c"}},
		{"topic any case", bridge.ReviewQuery{Topic: "vpn profile"}, []bridge.SessionID{"a"}},
		{"csat at most 3", bridge.ReviewQuery{CSATMax: 3}, []bridge.SessionID{"b"}},
		{"reviewed", bridge.ReviewQuery{Reviewed: &yes}, []bridge.SessionID{"c"}},
		{"not reviewed", bridge.ReviewQuery{Reviewed: &no}, []bridge.SessionID{"a", "b", "d"}},
		{"combined", bridge.ReviewQuery{Intent: "password_reset", ConfidenceBelow: 0.5, Reviewed: &yes}, []bridge.SessionID{"c"}},
	} {
		mustEqual(t, "ReviewCases "+tc.name, list(tc.q), tc.want)
	}

	c, err := s.ReviewCase(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "annotation", c.Annotation, bridge.Annotation{SessionID: "c", Reviewed: true, Intents: map[int]string{0: "mfa_reset"},
		ExpectedAction: "utter_mfa_reset", Note: "new phone", UpdatedBy: "rita", UpdatedAt: at})
	var streamed bridge.Annotation
	_ = s.ReviewCases(ctx, bridge.ReviewQuery{Reviewed: &yes}, func(c bridge.ReviewCase) error { streamed = c.Annotation; return nil })
	mustEqual(t, "streamed annotation", streamed, c.Annotation)
	if c, err := s.ReviewCase(ctx, "a"); err != nil || c.Annotation.Reviewed || c.Record.Verdict.Topic != "VPN profile" {
		t.Fatalf("unannotated case: %+v, %v", c, err)
	}
	if _, err := s.ReviewCase(ctx, "zz"); !errors.Is(err, bridge.ErrNotFound) {
		t.Fatalf("ReviewCase of an unknown handoff: %v", err)
	}
	audit, err := s.ReviewAudit(ctx, "c")
	if err != nil || len(audit) != 2 || audit[0].Actor != "rita" || audit[0].Action != "intent" || !audit[1].At.Equal(at) {
		t.Fatalf("audit = %+v, %v", audit, err)
	}

	// Replacing the record (the outcome arrives) keeps the annotation and
	// refreshes the filter columns.
	recs[2].CSAT = &bridge.CSAT{Rating: 1}
	update(t, s, func(ctx context.Context, tx bridge.Tx) error { return tx.PutReview(ctx, recs[2]) })
	mustEqual(t, "csat after replace", list(bridge.ReviewQuery{CSATMax: 1, Reviewed: &yes}), []bridge.SessionID{"c"})

	if n, err := s.DeleteReviewsBefore(ctx, base.Add(3*time.Hour)); err != nil || n != 3 {
		t.Fatalf("DeleteReviewsBefore = %d, %v", n, err)
	}
	if audit, err := s.ReviewAudit(ctx, "c"); err != nil || len(audit) != 0 {
		t.Fatalf("audit after retention = %+v, %v", audit, err)
	}
	var left int64
	if err := s.db.Model(&annotationRow{}).Count(&left).Error; err != nil || left != 0 {
		t.Fatalf("annotations after retention: %d, %v", left, err)
	}
}
