package store

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// migrated opens a store with open and applies the schema.
func migrated(b *testing.B, open opener) *Store {
	b.Helper()
	s := open(b)
	if err := s.Migrate(b.Context()); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkClaimComplete measures outbox throughput: claim up to 50 due items
// and complete each in its own transaction, as the dispatcher does. One op is
// one item. 100 lanes (50 conversations x 2 destinations) are filled
// beforehand; since only lane heads are claimable a claim returns at most 100.
func BenchmarkClaimComplete(b *testing.B) {
	for _, db := range []struct {
		name string
		open opener
	}{{"sqlite", openSQLite}, {"postgres", openPostgres}} {
		for _, workers := range []int{1, 4} {
			b.Run(fmt.Sprintf("%s/workers=%d", db.name, workers), func(b *testing.B) {
				benchClaimComplete(b, migrated(b, db.open), workers)
			})
		}
	}
}

func benchClaimComplete(b *testing.B, s *Store, workers int) {
	ctx := b.Context()
	const convs = 50
	var sessions []bridge.Session
	for c := range convs {
		sessions = append(sessions, bridge.Session{ID: bridge.SessionID(fmt.Sprintf("s%d", c)),
			Conversation: bridge.ConversationID(fmt.Sprintf("c%d", c)), State: bridge.StateLive, CreatedAt: base})
	}
	if err := s.Update(ctx, func(tx bridge.Tx) error {
		for _, x := range sessions {
			if err := tx.CreateSession(ctx, x); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	kinds := []bridge.OutboxKind{bridge.KindUserSend, bridge.KindDeskSend}
	for start := 0; start < b.N; start += 1000 {
		var items []bridge.OutboxItem
		for i := start; i < min(start+1000, b.N); i++ {
			x := sessions[i%convs]
			items = append(items, bridge.NewOutboxItem(x.ID, x.Conversation, kinds[(i/convs)%2], bridge.OutboxPayload{MessageID: int64(i)}, base))
		}
		if err := s.Update(ctx, func(tx bridge.Tx) error { return tx.Enqueue(ctx, items...) }); err != nil {
			b.Fatal(err)
		}
	}

	b.ResetTimer()
	start := time.Now()
	var (
		done atomic.Int64
		wg   sync.WaitGroup
	)
	deadline, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	for range workers {
		wg.Go(func() {
			for done.Load() < int64(b.N) && deadline.Err() == nil {
				items, err := s.ClaimOutbox(deadline, bridge.ClaimRequest{Now: time.Now(), Limit: 50, Lease: time.Minute, Owner: "bench"})
				if err != nil {
					b.Error(err)
					return
				}
				if len(items) == 0 {
					time.Sleep(100 * time.Microsecond)
					continue
				}
				for _, it := range items {
					if err := s.Update(deadline, func(tx bridge.Tx) error { return tx.CompleteOutbox(deadline, it.ID, it.Claim) }); err != nil {
						b.Error(err)
						return
					}
					done.Add(1)
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if got := done.Load(); got != int64(b.N) {
		b.Fatalf("completed %d of %d items", got, b.N)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "items/s")
}

// BenchmarkReviews streams 100,000 review records, as the weekly export does.
// One op is one full pass. MiB-heap-growth (the most the heap grew, sampled
// while streaming, garbage included) staying near or below MiB-stored's
// fraction shows records are not accumulated.
func BenchmarkReviews(b *testing.B) {
	for _, db := range []struct {
		name string
		open opener
	}{{"sqlite", openSQLite}, {"postgres", openPostgres}} {
		b.Run(db.name, func(b *testing.B) {
			benchReviews(b, migrated(b, db.open), 100_000)
		})
	}
}

func benchReviews(b *testing.B, s *Store, n int) {
	ctx := b.Context()
	rows := make([]reviewRow, 0, 1000)
	var dataBytes int
	for i := range n {
		r := bridge.ReviewRecord{
			SessionID: bridge.SessionID(fmt.Sprintf("s%07d", i)), StartedAt: base.Add(time.Duration(i) * time.Second),
			TenantID: "tenant-1", Reason: "user_asked", Intent: "vpn_issue", Confidence: 0.41,
			BotTurns: []bridge.Turn{
				{Role: "user", Text: "my vpn does not connect", Intent: "vpn_issue", Confidence: 0.41, At: base},
				{Role: "bot", Text: "Have you tried restarting the client?", At: base},
				{Role: "user", Text: "human please", Intent: "handoff", Confidence: 0.93, At: base},
			},
			EndedAt: base.Add(time.Duration(i)*time.Second + 5*time.Minute), CloseReason: bridge.ReasonAgentClosed,
			HumanTurns: []bridge.Turn{{Role: "agent", Author: "Bo", Text: "Fixed, your certificate had expired.", At: base}},
		}
		row, err := reviewToRow(r)
		if err != nil {
			b.Fatal(err)
		}
		dataBytes += len(row.Record)
		rows = append(rows, row)
		if len(rows) == cap(rows) || i == n-1 {
			if err := s.db.WithContext(ctx).CreateInBatches(rows, 500).Error; err != nil {
				b.Fatal(err)
			}
			rows = rows[:0]
		}
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	baseline, peak := ms.HeapAlloc, ms.HeapAlloc
	for b.Loop() {
		count := 0
		if err := s.Reviews(ctx, time.Time{}, base.Add(time.Duration(n+1)*time.Second), func(bridge.ReviewRecord) error {
			count++
			if count%10_000 == 0 { // sample the live heap while streaming
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapAlloc)
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		if count != n {
			b.Fatalf("streamed %d records, want %d", count, n)
		}
	}
	b.ReportMetric(float64(dataBytes)/(1<<20), "MiB-stored")
	b.ReportMetric(float64(peak-baseline)/(1<<20), "MiB-heap-growth")
}

// BenchmarkSendCommitWindow measures the window the README states for Teams
// sends: after Teams accepted a message, the one transaction that records
// the item done (CompleteOutbox plus the receipt it queues). A crash inside
// it makes another process send the message again. One op is one commit;
// p50/p99 are reported. "empty" is the baseline in the same run: a
// transaction that writes nothing.
func BenchmarkSendCommitWindow(b *testing.B) {
	for _, db := range []struct {
		name string
		open opener
	}{{"sqlite", openSQLite}, {"postgres", openPostgres}} {
		for _, what := range []string{"empty", "complete"} {
			b.Run(db.name+"/"+what, func(b *testing.B) {
				benchSendCommit(b, migrated(b, db.open), what == "empty")
			})
		}
	}
}

func benchSendCommit(b *testing.B, s *Store, empty bool) {
	ctx := b.Context()
	x := bridge.Session{ID: "s1", Conversation: "c1", State: bridge.StateLive, CreatedAt: base}
	if err := s.Update(ctx, func(tx bridge.Tx) error { return tx.CreateSession(ctx, x) }); err != nil {
		b.Fatal(err)
	}
	took := make([]time.Duration, 0, b.N)
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		it := bridge.NewOutboxItem(x.ID, x.Conversation, bridge.KindUserSend, bridge.OutboxPayload{MessageID: int64(i)}, base)
		if err := s.Update(ctx, func(tx bridge.Tx) error { return tx.Enqueue(ctx, it) }); err != nil {
			b.Fatal(err)
		}
		got, err := s.ClaimOutbox(ctx, bridge.ClaimRequest{Now: time.Now(), Limit: 1, Lease: time.Minute, Owner: "bench"})
		if err != nil || len(got) != 1 {
			b.Fatalf("claim: %v, %d items", err, len(got))
		}
		b.StartTimer()
		start := time.Now()
		err = s.Update(ctx, func(tx bridge.Tx) error {
			if empty {
				return nil
			}
			if err := tx.Enqueue(ctx, bridge.NewOutboxItem(x.ID, x.Conversation, bridge.KindDeskReceipt, bridge.OutboxPayload{MessageID: int64(i)}, base)); err != nil {
				return err
			}
			return tx.CompleteOutbox(ctx, got[0].ID, got[0].Claim)
		})
		took = append(took, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
		if empty { // keep the lane free for the next claim
			if err := s.Update(ctx, func(tx bridge.Tx) error { return tx.CompleteOutbox(ctx, got[0].ID, got[0].Claim) }); err != nil {
				b.Fatal(err)
			}
		}
	}
	slices.Sort(took)
	if len(took) > 0 {
		b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
	}
}
