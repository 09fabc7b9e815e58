package migrations

import (
	"database/sql"
	"log/slog"
	"testing"
)

// TestDeskDataOutOfOrder: version 00040 is merged after higher versions were
// applied somewhere. Up applies it anyway (out of order), and it moves the
// nonce of sessions still open into desk_data in the Virtual Agent desk's
// format, so their callbacks keep being accepted after the upgrade.
func TestDeskDataOutOfOrder(t *testing.T) {
	for _, tc := range []struct {
		dialect string
		open    func(*testing.T) *sql.DB
	}{{SQLite, openSQLite}, {Postgres, openPostgres}} {
		t.Run(tc.dialect, func(t *testing.T) {
			ctx := t.Context()
			db := tc.open(t)
			p, err := newProvider(ctx, db, tc.dialect, slog.New(slog.DiscardHandler), false)
			if err != nil {
				t.Fatal(err)
			}
			for _, src := range p.ListSources() {
				if src.Version == 40 {
					continue
				}
				if _, err := p.ApplyVersion(ctx, src.Version, true); err != nil {
					t.Fatalf("apply %d: %v", src.Version, err)
				}
			}
			for _, s := range []struct{ id, state, nonce string }{{"open", "live", "abc123"}, {"closed", "closed", "def456"}, {"none", "bot", ""}} {
				if _, err := db.ExecContext(ctx, `INSERT INTO sessions (id, conversation_id, state, nonce) VALUES ($1, $2, $3, $4)`,
					s.id, "conv-"+s.id, s.state, s.nonce); err != nil {
					t.Fatal(err)
				}
			}
			if err := Up(ctx, db, tc.dialect, nil); err != nil {
				t.Fatalf("Up with 00040 missing below applied versions: %v", err)
			}
			want := map[string]string{"open": `{"nonce":"abc123"}`, "closed": "", "none": ""}
			for id, w := range want {
				var got string
				if err := db.QueryRowContext(ctx, `SELECT desk_data FROM sessions WHERE id = $1`, id).Scan(&got); err != nil {
					t.Fatal(err)
				}
				if got != w {
					t.Errorf("session %s: desk_data %q, want %q", id, got, w)
				}
			}
		})
	}
}
