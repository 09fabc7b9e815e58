package store

import (
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge/store/storetest"
)

func TestLeaseSQLite(t *testing.T) {
	t.Parallel()
	testLease(t, openSQLite)
}

func TestLeasePostgres(t *testing.T) {
	t.Parallel()
	storetest.DatabaseURL(t)
	testLease(t, openPostgres)
}

func testLease(t *testing.T, open opener) {
	s := open(t)
	ctx := t.Context()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	acquire := func(name, holder string, ttl time.Duration) bool {
		t.Helper()
		ok, err := s.AcquireLease(ctx, name, holder, ttl)
		if err != nil {
			t.Fatalf("AcquireLease(%s, %s): %v", name, holder, err)
		}
		return ok
	}
	if !acquire("poller", "a", time.Minute) {
		t.Fatal("a could not take a free lease")
	}
	if acquire("poller", "b", time.Minute) {
		t.Fatal("b took a's unexpired lease")
	}
	if !acquire("poller", "a", time.Minute) {
		t.Fatal("a could not renew its own lease")
	}
	if !acquire("sweeper", "b", time.Minute) {
		t.Fatal("leases of different jobs are not independent")
	}
	if h, term, err := s.LeaseHolder(ctx, "poller"); err != nil || h != "a" || term != 1 {
		t.Fatalf("LeaseHolder(poller) = %q, %d, %v; want a, term 1", h, term, err)
	}
	// Release hands over at once.
	if err := s.ReleaseLease(ctx, "poller", "b"); err != nil {
		t.Fatal(err)
	}
	if acquire("poller", "b", time.Minute) {
		t.Fatal("a release by a non-holder freed the lease")
	}
	if err := s.ReleaseLease(ctx, "poller", "a"); err != nil {
		t.Fatal(err)
	}
	if h, _, _ := s.LeaseHolder(ctx, "poller"); h != "" {
		t.Fatalf("released lease still held by %q", h)
	}
	if !acquire("poller", "b", time.Minute) {
		t.Fatal("b could not take a released lease")
	}
	if _, term, _ := s.LeaseHolder(ctx, "poller"); term != 2 {
		t.Fatalf("term after a change of holder = %d, want 2", term)
	}
	// Expiry by the database's clock.
	if !acquire("weekly", "a", 200*time.Millisecond) {
		t.Fatal("a could not take the weekly lease")
	}
	deadline := time.Now().Add(30 * time.Second)
	for !acquire("weekly", "b", time.Minute) {
		if time.Now().After(deadline) {
			t.Fatal("b never took the expired lease")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Racing takers: exactly one wins.
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
	)
	for i := range 8 {
		wg.Go(func() {
			ok, err := s.AcquireLease(ctx, "race", string(rune('a'+i)), time.Minute)
			if err != nil {
				t.Errorf("racer %d: %v", i, err)
			}
			if ok {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d racers took the same lease, want 1", wins)
	}
}
