package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/bridge/store"
)

// TestSharedGaugesOnlyOnLeader: the gauges read from the shared database
// (every replica would report the same numbers) are exported only by the
// replica that leads, so sum() across replicas is right; what a replica did
// itself is exported by every replica.
func TestSharedGaugesOnlyOnLeader(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "m.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	shared := []string{"handoff_sessions", "handoff_outbox_items", "handoff_outbox_oldest_pending_age_seconds"}
	for _, leads := range []bool{true, false} {
		reg := prometheus.NewRegistry()
		reg.MustRegister(&bridgeCollector{store: st, disp: &bridge.Dispatcher{}, oldest: st.OldestPendingOutbox, now: time.Now,
			leads: func() bool { return leads }})
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, mf := range mfs {
			got[mf.GetName()] = true
		}
		for _, name := range shared {
			if got[name] != leads {
				t.Errorf("leads=%v: %s exported=%v", leads, name, got[name])
			}
		}
		if !got["handoff_outbox_delivered_total"] {
			t.Errorf("leads=%v: the replica's own counters are missing", leads)
		}
	}
}
