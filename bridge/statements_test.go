package bridge_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/bridge/store"
	"github.com/handoffhq/handoff/bridge/store/storetest"
)

// TestStatementsPerMessage counts the statements and commits one relayed
// message costs the store, each way, through the relay and a running
// dispatcher with outward calls that return at once (as BenchmarkEngine,
// but one message at a time, so the count is the hot path's and does not
// depend on the machine's load). The bounds fail a change that adds
// statements to the hot path; lower them when a change saves some.
//
// Write commits are the commits of transactions that could write (on
// SQLite an IMMEDIATE transaction; one that changed nothing writes no WAL
// frame and syncs nothing); read-only transactions are counted among the
// transactions. Statements exclude BEGIN and COMMIT.
//
// The dispatcher's claim rounds that find nothing to claim (woken by a
// commit's kick) are counted apart, as rounds: how many run depends on how
// kicks coalesce, so on timing. Each costs one statement, and on SQLite one
// transaction; they are taken out of the other counts.
func TestStatementsPerMessage(t *testing.T) {
	type bound struct{ statements, writeCommits, transactions, emptyRounds float64 }
	tests := []struct {
		dir string
		// fromPoll: agent messages arrive by the poller (the cursor moves)
		// rather than by the webhook.
		fromPoll bool
		// Upper bounds per message, by database: the count's own plus a
		// tenth, as now and then a message is not handed to a worker at
		// once but claimed by a round (one statement more).
		bounds map[string]bound
	}{
		{dir: "agent-user", bounds: map[string]bound{
			"sqlite":   {statements: 6.1, writeCommits: 2.1, transactions: 2.1, emptyRounds: 0.5},
			"postgres": {statements: 7.1, writeCommits: 2.1, transactions: 2.1, emptyRounds: 2}}},
		{dir: "agent-user", fromPoll: true, bounds: map[string]bound{
			"sqlite":   {statements: 7.1, writeCommits: 2.1, transactions: 2.1, emptyRounds: 0.5},
			"postgres": {statements: 8.1, writeCommits: 2.1, transactions: 2.1, emptyRounds: 2}}},
		{dir: "user-agent", bounds: map[string]bound{
			"sqlite":   {statements: 9.1, writeCommits: 2.1, transactions: 2.1, emptyRounds: 0.5},
			"postgres": {statements: 10.1, writeCommits: 2.1, transactions: 2.1, emptyRounds: 2}}},
	}
	for _, db := range storetest.Databases() {
		for _, tt := range tests {
			name := db + "/" + tt.dir
			if tt.fromPoll {
				name += "/poll"
			}
			t.Run(name, func(t *testing.T) {
				got := countStatements(t, engineStore(t, db), tt.dir, tt.fromPoll)
				t.Logf("%s: per message %.2f statements, %.2f write commits, %.2f transactions (%.2f read-only); %.2f empty claim rounds",
					name, got.statements, got.writeCommits, got.transactions, got.readOnly, got.emptyRounds)
				want := tt.bounds[db]
				for _, c := range []struct {
					what      string
					got, want float64
				}{
					{"statements", got.statements, want.statements},
					{"write commits", got.writeCommits, want.writeCommits},
					{"transactions", got.transactions, want.transactions},
					{"empty claim rounds", got.emptyRounds, want.emptyRounds},
				} {
					if c.got > c.want {
						t.Errorf("%.2f %s per message, want at most %.2f", c.got, c.what, c.want)
					}
				}
			})
		}
	}
}

type perMessage struct {
	statements, writeCommits, transactions, readOnly, emptyRounds float64
}

// roundStore counts the dispatcher's claims that found nothing.
type roundStore struct {
	*store.Store
	empty atomic.Int64
}

func (s *roundStore) ClaimOutbox(ctx context.Context, req bridge.ClaimRequest) ([]bridge.OutboxItem, error) {
	items, err := s.Store.ClaimOutbox(ctx, req)
	if err == nil && len(items) == 0 {
		s.empty.Add(1)
	}
	return items, err
}

// statementMsgs is how many messages each count relays.
const statementMsgs = 60

// countStatements relays statementMsgs messages in dir over a few live
// chats, one after another, each delivered and recorded before the next,
// and returns what the store executed per message.
func countStatements(t *testing.T, st *store.Store, dir string, fromPoll bool) perMessage {
	ctx := t.Context()
	user, desk := &countingUser{}, &countingDesk{}
	rs := &roundStore{Store: st}
	relay := bridge.NewRelay(rs, &fakeBot{}, desk, user, nil, bridge.RelayConfig{})
	// No idle rounds: only the commits' kicks wake the dispatcher.
	disp := bridge.NewDispatcher(relay, bridge.DispatchConfig{Idle: time.Hour})
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	var running sync.WaitGroup
	running.Go(func() { _ = disp.Run(runCtx) })
	stopped := false
	stopRun := func() {
		if !stopped {
			stop()
			running.Wait()
			stopped = true
		}
	}
	defer stopRun()

	const convs = 3
	refs := make([]bridge.ConversationRef, convs)
	chats := make([]bridge.AgentChatID, convs)
	for i := range refs {
		refs[i] = bridge.ConversationRef{Conversation: bridge.ConversationID(fmt.Sprintf("count-%d", i)),
			ServiceURL: "https://smba.example/", ConversationType: "personal", UserID: fmt.Sprintf("29:u%d", i), UserName: "Abel Tuter"}
		a := bridge.UserActivity{Kind: bridge.ActivityMessage, ID: fmt.Sprintf("open-%d", i), Text: "talk to an agent", Ref: refs[i]}
		if err := relay.UserActivity(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the desk chats to open and the notices to drain", func() bool {
		ok := true
		_ = st.View(ctx, func(tx bridge.Tx) error {
			for i := range chats {
				if s, err := tx.OpenSession(ctx, refs[i].Conversation); err == nil {
					chats[i] = s.AgentChatID
				}
				ok = ok && chats[i] != ""
			}
			stats, err := tx.OutboxStats(ctx)
			ok = ok && stats["pending"] == 0
			return err
		})
		return ok
	})
	// Make every session live with a first agent message, so that what is
	// counted is the steady state of a conversation.
	for i, chat := range chats {
		ev := bridge.AgentEvent{Kind: bridge.AgentMessage, Chat: chat, ExternalID: fmt.Sprintf("hello-%d", i), Author: "Beth", Text: "hello", At: time.Now()}
		if err := relay.AgentEvents(ctx, chat, []bridge.AgentEvent{ev}, fromPoll); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the sessions to go live", func() bool {
		ok := true
		_ = st.View(ctx, func(tx bridge.Tx) error {
			for i := range chats {
				s, err := tx.OpenSession(ctx, refs[i].Conversation)
				ok = ok && err == nil && s.State == bridge.StateLive
			}
			stats, err := tx.OutboxStats(ctx)
			ok = ok && stats["pending"] == 0
			return err
		})
		return ok
	})

	kind := bridge.KindUserSend
	if dir == "user-agent" {
		kind = bridge.KindDeskSend
	}
	delivered := func() int64 {
		d, _, _ := disp.Stats.Snapshot()
		return d[kind]
	}
	before, base, empty := st.Counts(), delivered(), rs.empty.Load()
	for n := range statementMsgs {
		w := n % convs
		var err error
		if dir == "agent-user" {
			ev := bridge.AgentEvent{Kind: bridge.AgentMessage, Chat: chats[w], ExternalID: fmt.Sprintf("m%d", n),
				Author: "Beth", Text: fmt.Sprintf("agent message %d", n), At: time.Now()}
			err = relay.AgentEvents(ctx, chats[w], []bridge.AgentEvent{ev}, fromPoll)
		} else {
			err = relay.UserActivity(ctx, bridge.UserActivity{Kind: bridge.ActivityMessage, ID: fmt.Sprintf("u%d", n),
				Text: fmt.Sprintf("user message %d", n), Ref: refs[w]})
		}
		if err != nil {
			t.Fatal(err)
		}
		want := base + int64(n) + 1
		eventually(t, fmt.Sprintf("message %d to be delivered", n), func() bool { return delivered() >= want })
	}
	stopRun()
	c := st.Counts().Sub(before)
	rounds := rs.empty.Load() - empty
	roundTx := int64(0)
	if st.Dialect() == store.DialectSQLite {
		roundTx = rounds // a claim is a transaction on SQLite only
	}
	per := func(v int64) float64 { return float64(v) / statementMsgs }
	return perMessage{statements: per(c.Statements - rounds), writeCommits: per(c.Commits - c.ReadOnlyCommits - roundTx),
		transactions: per(c.Transactions - roundTx), readOnly: per(c.ReadOnlyCommits), emptyRounds: per(rounds)}
}

// engineStore opens a migrated store: a SQLite file, or a fresh schema in
// the PostgreSQL database of HANDOFF_TEST_DATABASE_URL.
func engineStore(tb testing.TB, db string) *store.Store {
	tb.Helper()
	ctx := tb.Context()
	u := "sqlite:" + filepath.Join(tb.TempDir(), "engine.db")
	if db == "postgres" {
		u = storetest.Schema(tb, os.Getenv(storetest.EnvDatabaseURL), "bench_engine")
	}
	st, err := store.Open(ctx, u, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	if err := st.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}
	return st
}
