package store

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/bridge/store/storetest"
)

func TestDigestLedgerSQLite(t *testing.T) {
	t.Parallel()
	testDigestLedger(t, openSQLite)
}

func TestDigestLedgerPostgres(t *testing.T) {
	t.Parallel()
	storetest.DatabaseURL(t)
	testDigestLedger(t, openPostgres)
}

// testDigestLedger checks the claim rules of the weekly digest's row: one
// holder at a time, a released or expired claim can be taken over, a sent
// week is never claimed again, and of many concurrent claimers exactly one
// wins.
func testDigestLedger(t *testing.T, open opener) {
	s := open(t)
	ctx := t.Context()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	claim := func(week, holder string, ttl time.Duration) (bool, bool) {
		t.Helper()
		c, sent, err := s.ClaimDigest(ctx, week, holder, ttl)
		if err != nil {
			t.Fatalf("ClaimDigest(%s, %s): %v", week, holder, err)
		}
		return c, sent
	}
	if c, _ := claim("2026-W46", "a", time.Minute); !c {
		t.Fatal("a could not claim a new week")
	}
	if c, sent := claim("2026-W46", "b", time.Minute); c || sent {
		t.Fatalf("b: claimed %v sent %v while a holds the week", c, sent)
	}
	if err := s.DigestSent(ctx, "2026-W46", "b", "x"); !errors.Is(err, bridge.ErrLeaseLost) {
		t.Fatalf("DigestSent by a non-holder: %v, want ErrLeaseLost", err)
	}
	// A release hands over at once.
	if err := s.ReleaseDigest(ctx, "2026-W46", "a"); err != nil {
		t.Fatal(err)
	}
	if c, _ := claim("2026-W46", "b", time.Minute); !c {
		t.Fatal("b could not claim a released week")
	}
	if err := s.DigestSent(ctx, "2026-W46", "a", "x"); !errors.Is(err, bridge.ErrLeaseLost) {
		t.Fatalf("DigestSent by the former holder: %v, want ErrLeaseLost", err)
	}
	if err := s.DigestSent(ctx, "2026-W46", "b", "19:x;messageid=1"); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"a", "b"} {
		if c, sent := claim("2026-W46", h, time.Minute); c || !sent {
			t.Fatalf("%s on a sent week: claimed %v sent %v, want false, true", h, c, sent)
		}
	}
	// An expired claim is taken over.
	if c, _ := claim("2026-W47", "a", time.Millisecond); !c {
		t.Fatal("a could not claim 2026-W47")
	}
	time.Sleep(20 * time.Millisecond)
	if c, _ := claim("2026-W47", "b", time.Minute); !c {
		t.Fatal("b could not take over an expired claim")
	}
	// Many at once: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _, err := s.ClaimDigest(ctx, "2026-W48", string(rune('a'+i)), time.Minute)
			if err != nil {
				t.Error(err)
			}
			if c {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d of 8 concurrent claimers won, want 1", wins)
	}
}
