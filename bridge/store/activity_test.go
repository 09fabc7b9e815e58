package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

func testRememberActivity(t *testing.T, s *Store) {
	remember := func(conv bridge.ConversationID, id string, now time.Time) bool {
		t.Helper()
		var fresh bool
		update(t, s, func(ctx context.Context, tx bridge.Tx) error {
			var err error
			fresh, err = tx.RememberActivity(ctx, conv, id, now, now.Add(time.Hour))
			return err
		})
		return fresh
	}
	steps := []struct {
		name string
		conv bridge.ConversationID
		id   string
		now  time.Time
		want bool
	}{
		{"first delivery", "a:1", "act-1", base, true},
		{"repeated delivery", "a:1", "act-1", base.Add(time.Minute), false},
		{"same id, other conversation", "a:2", "act-1", base, true},
		{"other id, same conversation", "a:1", "act-2", base, true},
		{"just before expiry", "a:1", "act-1", base.Add(time.Hour - time.Millisecond), false},
		{"after expiry: renewed", "a:1", "act-1", base.Add(time.Hour), true},
		{"repeated after renewal", "a:1", "act-1", base.Add(90 * time.Minute), false},
	}
	for _, st := range steps {
		if got := remember(st.conv, st.id, st.now); got != st.want {
			t.Fatalf("%s: fresh = %v, want %v", st.name, got, st.want)
		}
	}

	// A rolled-back transaction remembers nothing: Teams' retry gets in.
	boom := errors.New("boom")
	err := inTx(t, s, func(ctx context.Context, tx bridge.Tx) error {
		if _, err := tx.RememberActivity(ctx, "a:3", "act-9", base, base.Add(time.Hour)); err != nil {
			return err
		}
		return boom
	})
	wantErr(t, "rolled back", err, boom)
	if !remember("a:3", "act-9", base) {
		t.Fatal("an activity remembered by a rolled-back transaction counts as seen")
	}

	// Empty ids are refused.
	if err := inTx(t, s, func(ctx context.Context, tx bridge.Tx) error {
		_, err := tx.RememberActivity(ctx, "a:1", "", base, base.Add(time.Hour))
		return err
	}); err == nil {
		t.Fatal("empty activity id accepted")
	}

	// Expired records are pruned in batches by later calls.
	count := func() int64 {
		t.Helper()
		var n int64
		if err := s.db.WithContext(t.Context()).Table("activity_keys").Count(&n).Error; err != nil {
			t.Fatal(err)
		}
		return n
	}
	for i := range 45 {
		remember("a:prune", fmt.Sprintf("old-%02d", i), base)
	}
	before := count()
	later := base.Add(3 * time.Hour) // everything so far expired
	remember("a:prune", "new-1", later)
	if got, want := count(), before+1-pruneActivityBatch; got != want {
		t.Fatalf("after one call: %d records, want %d (one batch pruned, one added)", got, want)
	}
	for i := 2; count() > 10; i++ {
		if i > 20 {
			t.Fatalf("pruning does not converge: %d records left", count())
		}
		remember("a:prune", fmt.Sprintf("new-%d", i), later)
	}
	if remember("a:prune", "new-1", later.Add(time.Minute)) {
		t.Fatal("pruning removed a record that has not expired")
	}

	// Concurrent deliveries of one activity: exactly one is fresh.
	const n = 8
	var wg sync.WaitGroup
	results := make(chan bool, n)
	for range n {
		wg.Go(func() {
			var fresh bool
			err := s.Update(t.Context(), func(tx bridge.Tx) error {
				var err error
				fresh, err = tx.RememberActivity(t.Context(), "a:race", "act-r", later, later.Add(time.Hour))
				return err
			})
			if err != nil {
				t.Error(err)
			}
			results <- fresh
		})
	}
	wg.Wait()
	close(results)
	freshCount := 0
	for f := range results {
		if f {
			freshCount++
		}
	}
	if freshCount != 1 {
		t.Fatalf("%d of %d concurrent deliveries counted as new, want 1", freshCount, n)
	}
}
