package store

import (
	"context"
	"fmt"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// ClaimDigest claims week's digest for holder until the database's now +
// ttl, in one statement: an upsert whose update applies only while the
// digest is unsent and the row is free, expired or already holder's. It
// implements review.DigestLedger.
func (s *Store) ClaimDigest(ctx context.Context, week, holder string, ttl time.Duration) (claimed, sent bool, err error) {
	now := s.nowMS()
	q := `INSERT INTO review_digests (week, holder, claimed_until) VALUES (?, ?, ` + now + ` + ?)
ON CONFLICT (week) DO UPDATE SET holder = excluded.holder, claimed_until = excluded.claimed_until
WHERE review_digests.sent_at IS NULL AND (review_digests.holder = excluded.holder OR review_digests.claimed_until <= ` + now + `)
RETURNING holder`
	var got []string
	if err := s.db.WithContext(ctx).Raw(q, week, holder, ttl.Milliseconds()).Scan(&got).Error; err != nil {
		return false, false, wrap(fmt.Sprintf("claim digest %s for %q", week, holder), err)
	}
	if len(got) == 1 && got[0] == holder {
		return true, false, nil
	}
	var n []int64
	if err := s.db.WithContext(ctx).Raw(`SELECT COUNT(*) FROM review_digests WHERE week = ? AND sent_at IS NOT NULL`, week).Scan(&n).Error; err != nil {
		return false, false, wrap(fmt.Sprintf("digest %s", week), err)
	}
	return false, len(n) == 1 && n[0] > 0, nil
}

// DigestSent records holder's post of week's digest; bridge.ErrLeaseLost
// when the row is no longer holder's unsent claim.
func (s *Store) DigestSent(ctx context.Context, week, holder, post string) error {
	res := s.db.WithContext(ctx).Exec(`UPDATE review_digests SET sent_at = `+s.nowMS()+`, post_id = ? WHERE week = ? AND holder = ? AND sent_at IS NULL`,
		post, week, holder)
	if res.Error != nil {
		return wrap(fmt.Sprintf("record digest %s", week), res.Error)
	}
	if res.RowsAffected != 1 {
		return fmt.Errorf("store: record digest %s: the claim is no longer %q's: %w", week, holder, bridge.ErrLeaseLost)
	}
	return nil
}

// ReleaseDigest expires holder's unsent claim on week now.
func (s *Store) ReleaseDigest(ctx context.Context, week, holder string) error {
	err := s.db.WithContext(ctx).Exec(`UPDATE review_digests SET claimed_until = 0 WHERE week = ? AND holder = ? AND sent_at IS NULL`, week, holder).Error
	if err != nil {
		return wrap(fmt.Sprintf("release digest %s", week), err)
	}
	return nil
}
