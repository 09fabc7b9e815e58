package store

import (
	"context"
	"fmt"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

var _ bridge.LeaseStore = (*Store)(nil)

// nowMS is the database's clock in Unix milliseconds: leases expire by one
// clock shared by every replica, not by each replica's own.
func (s *Store) nowMS() string {
	if s.dialect == DialectPostgres {
		return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
	}
	return "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
}

// AcquireLease takes name for holder when it is free, expired or already
// holder's, until the database's now + ttl, in one statement (an upsert
// whose update applies only in those cases). See bridge.LeaseStore.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	now := s.nowMS()
	q := `INSERT INTO leases (name, holder, expires_at, term) VALUES (?, ?, ` + now + ` + ?, 1)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at,
    term = CASE WHEN leases.holder = excluded.holder THEN leases.term ELSE leases.term + 1 END
WHERE leases.holder = excluded.holder OR leases.expires_at <= ` + now + `
RETURNING holder`
	var got []string
	if err := s.db.WithContext(ctx).Raw(q, name, holder, ttl.Milliseconds()).Scan(&got).Error; err != nil {
		return false, wrap(fmt.Sprintf("acquire lease %q for %q", name, holder), err)
	}
	return len(got) == 1 && got[0] == holder, nil
}

// ReleaseLease expires holder's lease on name now.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	err := s.db.WithContext(ctx).Exec(`UPDATE leases SET expires_at = 0 WHERE name = ? AND holder = ?`, name, holder).Error
	if err != nil {
		return wrap(fmt.Sprintf("release lease %q of %q", name, holder), err)
	}
	return nil
}

// LeaseHolder returns the current holder of name and its term, "" when the
// lease is free or expired. For operators and tests.
func (s *Store) LeaseHolder(ctx context.Context, name string) (holder string, term int64, err error) {
	var rows []struct {
		Holder string
		Term   int64
	}
	q := `SELECT holder, term FROM leases WHERE name = ? AND expires_at > ` + s.nowMS()
	if err := s.db.WithContext(ctx).Raw(q, name).Scan(&rows).Error; err != nil {
		return "", 0, wrap(fmt.Sprintf("lease %q", name), err)
	}
	if len(rows) == 0 {
		return "", 0, nil
	}
	return rows[0].Holder, rows[0].Term, nil
}
