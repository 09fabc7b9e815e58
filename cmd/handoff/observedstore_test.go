package main

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/bridge/store"
)

// TestObservedStoreReadsItemsOutsideTransactions: the metrics wrapper that
// `serve` puts around the store keeps the store's one-statement item read
// (no transaction), which the relay uses for every delivery; a wrapper that
// only embeds bridge.Store hides it and every read begins a transaction.
func TestObservedStoreReadsItemsOutsideTransactions(t *testing.T) {
	ctx := t.Context()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "h.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var obs bridge.Store = observedStore{Store: st, m: newMetrics().relay}
	reader, ok := obs.(interface {
		ReadItem(ctx context.Context, session bridge.SessionID, message int64, conv bridge.ConversationID) (bridge.Session, bridge.Message, bridge.ConversationRef, error)
	})
	if !ok {
		t.Fatal("observedStore has no ReadItem: the relay would read each item in a transaction")
	}
	before := st.Counts()
	if _, _, _, err := reader.ReadItem(ctx, "no-such-session", 0, ""); err == nil {
		t.Fatal("ReadItem of a missing session: no error")
	}
	got := st.Counts().Sub(before)
	if got.Transactions != 0 || got.Statements != 1 {
		t.Errorf("ReadItem through observedStore: %+v, want 1 statement and no transaction", got)
	}
}
