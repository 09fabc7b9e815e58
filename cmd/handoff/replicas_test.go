package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge/store/storetest"
	"github.com/handoffhq/handoff/servicenow/snowtest"
	"github.com/handoffhq/handoff/teams/teamstest"
)

// replicaSet is a world whose service runs as n replicas on one PostgreSQL
// schema, all against the same fakes. Teams posts go to the replicas in
// turn, as a load balancer would spread them.
type replicaSet struct {
	w        *world
	apps     []*app
	channels []*teamstest.Channel
}

// pgSchema returns a URL of a fresh schema of the test database whose
// connections carry appName (so a test can terminate exactly its own
// backends).
func pgSchema(t *testing.T, appName string) string {
	t.Helper()
	u, err := url.Parse(storetest.Schema(t, storetest.DatabaseURL(t), "t_replicas"))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", appName)
	u.RawQuery = q.Encode()
	return u.String()
}

func newReplicaSet(t *testing.T, n int, dbURL string, extra map[string]string) *replicaSet {
	t.Helper()
	env := map[string]string{"HANDOFF_LOG_LEVEL": "warn"}
	for k, v := range extra {
		env[k] = v
	}
	w := newWorld(t, worldOpts{dbURL: dbURL, extra: env})
	rs := &replicaSet{w: w, apps: []*app{w.current()}, channels: []*teamstest.Channel{w.ch()}}
	for range n - 1 {
		a, base, _ := launch(t, w.env, nil, slog.LevelWarn)
		rs.apps = append(rs.apps, a)
		rs.channels = append(rs.channels, &teamstest.Channel{Issuer: w.issuer, AppID: e2eAppID, ServiceURL: w.conn.ServiceURL(),
			BotURL: base + "/api/messages", TenantID: e2eTenant})
	}
	return rs
}

// post delivers a message from u through replica r the way Teams does:
// retried until a 200 (the same activity id, so a retry that landed twice
// is a no-op).
func (rs *replicaSet) post(r int, u teamstest.User, text string, wait time.Duration) {
	t := rs.w.t
	t.Helper()
	ch := rs.channels[r%len(rs.channels)]
	a := ch.Message(u, text)
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if code, err := ch.Post(context.Background(), a); err == nil && code == 200 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: %q never accepted", u.Name, text)
}

// exchange runs one handoff of u through the replicas: it is handed off,
// accepted, and then n messages go each way, the user's spread over the
// replicas. It returns the ServiceNow chat and what was said each way.
func (rs *replicaSet) exchange(i int, u teamstest.User, n int, wait time.Duration) (group string, userSaid, agentSaid []string) {
	w := rs.w
	rs.post(i, u, "talk to live agent", wait)
	group = w.chatOf(u, wait)
	if err := w.sn.Accept(group, agentName); err != nil {
		w.t.Error(err)
		return
	}
	w.waitUser(u, snowtest.DefaultGreeting, wait)
	for j := 1; j <= n; j++ {
		um := fmt.Sprintf("%s q%02d", u.Name, j)
		rs.post(i+j, u, um, wait)
		userSaid = append(userSaid, um)
		am := fmt.Sprintf("a%02d for %s", j, u.Name)
		if _, err := w.sn.Say(group, agentName, am); err != nil {
			w.t.Error(err)
			return
		}
		agentSaid = append(agentSaid, am)
	}
	return group, userSaid, agentSaid
}

// delivered waits until everything said arrived, then returns how often
// each line arrived on either side.
func (rs *replicaSet) delivered(u teamstest.User, group string, userSaid, agentSaid []string, wait time.Duration) (atAgent, atUser map[string]int) {
	w := rs.w
	count := func() {
		atAgent, atUser = map[string]int{}, map[string]int{}
		for _, g := range w.agentGot(group) {
			atAgent[g]++
		}
		for _, l := range w.userLines(u) {
			atUser[l]++
		}
	}
	deadline := time.Now().Add(wait)
	for {
		count()
		missing := 0
		for _, m := range userSaid {
			if atAgent[m] == 0 {
				missing++
			}
		}
		for _, m := range agentSaid {
			if atUser[m] == 0 {
				missing++
			}
		}
		if missing == 0 {
			return atAgent, atUser
		}
		if time.Now().After(deadline) {
			w.t.Errorf("%s: %d messages never arrived (agent got %q; user saw %q)", u.Name, missing, w.agentGot(group), w.userLines(u))
			return atAgent, atUser
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// inOrder reports whether the lines of want appear in got in want's order
// (other lines may be between them).
func inOrder(got, want []string) bool {
	k := 0
	for _, g := range got {
		if k < len(want) && g == want[k] {
			k++
		}
	}
	return k == len(want)
}

// TestThreeReplicasOnPostgres: three replicas on one database, ten
// concurrent handoffs, thirty messages each way: nothing lost, nothing
// twice, in order, each ServiceNow chat opened once, and ServiceNow sees one
// replica's polling, not three.
func TestThreeReplicasOnPostgres(t *testing.T) {
	const (
		replicas = 3
		users    = 10
		msgs     = 30
		wait     = 90 * time.Second
	)
	rs := newReplicaSet(t, replicas, pgSchema(t, "ho_replicas_"+randHex(4)), nil)
	w := rs.w

	var wg sync.WaitGroup
	type result struct {
		u                   teamstest.User
		group               string
		userSaid, agentSaid []string
	}
	results := make([]result, users)
	for i := range users {
		u := teamstest.NewUser(fmt.Sprintf("Rep%02d Tester", i))
		wg.Go(func() {
			g, us, as := rs.exchange(i, u, msgs, wait)
			results[i] = result{u, g, us, as}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	lost, dup := 0, 0
	for _, r := range results {
		atAgent, atUser := rs.delivered(r.u, r.group, r.userSaid, r.agentSaid, wait)
		for _, m := range r.userSaid {
			lost += min(atAgent[m], 1) ^ 1
			dup += max(atAgent[m]-1, 0)
		}
		for _, m := range r.agentSaid {
			lost += min(atUser[m], 1) ^ 1
			dup += max(atUser[m]-1, 0)
		}
		if !inOrder(w.agentGot(r.group), r.userSaid) || !inOrder(w.userLines(r.u), r.agentSaid) {
			t.Errorf("%s: messages out of order", r.u.Name)
		}
	}
	t.Logf("%d replicas, %d handoffs, %d messages each way: %d lost, %d duplicated", replicas, users, users*msgs, lost, dup)
	if lost != 0 || dup != 0 {
		t.Fatalf("%d lost, %d duplicated; want 0 and 0", lost, dup)
	}
	opened := map[string]int{}
	for _, c := range w.sn.Chats() {
		for _, r := range results {
			if ms := w.sn.Messages(c.Group); len(ms) > 0 && strings.Contains(ms[0].Text, r.u.Name) {
				opened[r.u.Name]++
			}
		}
	}
	for _, r := range results {
		if opened[r.u.Name] != 1 {
			t.Errorf("%s: %d ServiceNow chats opened, want 1", r.u.Name, opened[r.u.Name])
		}
	}
	if n := len(w.sn.Chats()); n != users {
		t.Errorf("%d ServiceNow chats, want %d", n, users)
	}

	// Polling: with every chat live, count ServiceNow requests while the
	// replicas' pollers together finish 5 runs.
	runs := func() []int64 {
		out := make([]int64, len(rs.apps))
		for i, a := range rs.apps {
			out[i] = a.parts.poller.Stats().Runs
		}
		return out
	}
	total := func(rs []int64) (n int64) {
		for _, r := range rs {
			n += r
		}
		return n
	}
	before := runs()
	w.sn.ResetRequests()
	deadline := time.Now().Add(wait)
	for total(runs())-total(before) < 5 {
		if time.Now().After(deadline) {
			t.Fatal("the pollers did not run 5 times")
		}
		time.Sleep(20 * time.Millisecond)
	}
	after, byRoute := runs(), w.sn.Requests()
	requests := 0
	for route, c := range byRoute {
		if strings.HasPrefix(route, "GET ") {
			requests += c
		}
	}
	polling, leaders := 0, 0
	for i := range rs.apps {
		if after[i] > before[i] {
			polling++
		}
		if rs.apps[i].leads(jobPoller) {
			leaders++
		}
	}
	n := total(after) - total(before)
	t.Logf("poll runs per replica %v → %v; %d ServiceNow polls in %d runs (%d live chats per run); all requests by route: %v", before, after, requests, n, users, byRoute)
	if polling != 1 || leaders != 1 {
		t.Errorf("%d replicas polled and %d lead the poller; want 1 and 1", polling, leaders)
	}
	// One replica's cost: a per-session Connect poll reads each live chat's
	// messages and its session state, two requests per chat per run (±1 run
	// at the window's edges); three pollers would make three times that.
	const perChat = 2
	if lo, hi := (n-1)*users*perChat, (n+1)*users*perChat; int64(requests) < lo || int64(requests) > hi {
		t.Errorf("%d ServiceNow polls over %d poll runs, want %d–%d (one replica's)", requests, n, lo, hi)
	}
}

// TestPostgresConnectionsDropped terminates the test's own PostgreSQL
// backends (SQLSTATE 57P01, as a server restart would) twice a second while two
// replicas relay three handoffs: nothing is lost, and repeats stay within the
// documented window: an outward call whose completion was not recorded
// before its connection died is made again, so there are at most as many
// repeats as terminated connections (see the README).
func TestPostgresConnectionsDropped(t *testing.T) {
	const (
		users = 3
		msgs  = 20
		wait  = 120 * time.Second
	)
	appName := "ho_faults_" + randHex(4)
	dbURL := pgSchema(t, appName)
	rs := newReplicaSet(t, 2, dbURL, map[string]string{"HANDOFF_DISPATCH_MAX_ATTEMPTS": "50", "HANDOFF_DISPATCH_LEASE": "3s"})
	w := rs.w

	admin, err := sql.Open("pgx", storetest.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var kills, rounds atomic.Int64
	stop := make(chan struct{})
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			var n int64
			err := admin.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE application_name = $1 AND pid <> pg_backend_pid()`, appName).Scan(&n)
			if err == nil {
				kills.Add(n)
				rounds.Add(1)
			}
		}
	}()

	var wg sync.WaitGroup
	type result struct {
		u                   teamstest.User
		group               string
		userSaid, agentSaid []string
	}
	results := make([]result, users)
	for i := range users {
		u := teamstest.NewUser(fmt.Sprintf("Fault%02d Tester", i))
		wg.Go(func() {
			g, us, as := rs.exchange(i, u, msgs, wait)
			results[i] = result{u, g, us, as}
		})
	}
	wg.Wait()
	// Keep cutting while the backlog drains, for at least 10 rounds in all.
	for rounds.Load() < 10 {
		time.Sleep(50 * time.Millisecond)
	}
	close(stop) // the database is back for good: what is pending must arrive
	<-killed
	lost, dup := 0, 0
	for _, r := range results {
		if r.group == "" {
			continue
		}
		atAgent, atUser := rs.delivered(r.u, r.group, r.userSaid, r.agentSaid, wait)
		for _, m := range r.userSaid {
			lost += min(atAgent[m], 1) ^ 1
			dup += max(atAgent[m]-1, 0)
		}
		for _, m := range r.agentSaid {
			lost += min(atUser[m], 1) ^ 1
			dup += max(atUser[m]-1, 0)
		}
	}
	t.Logf("%d backends terminated in %d rounds; %d handoffs × %d messages each way: %d lost, %d repeated", kills.Load(), rounds.Load(), users, msgs, lost, dup)
	if kills.Load() == 0 {
		t.Fatal("no backend was terminated: the test did not inject a fault")
	}
	if lost != 0 {
		t.Errorf("%d messages lost", lost)
	}
	if int64(dup) > kills.Load() {
		t.Errorf("%d repeats from %d terminated connections; the documented window repeats at most one call per connection", dup, kills.Load())
	}
	if n := len(w.sn.Chats()); n != users {
		t.Errorf("%d ServiceNow chats, want %d", n, users)
	}
}

// TestWebhooksAcrossReplicas: two replicas on one PostgreSQL database in
// webhook-only mode, the Business Rule's webhooks spread over them in turn
// (a load balancer). Each agent message names its predecessor, which the
// other replica stored: the store says so, so no message waits for a
// targeted poll (no desk read at all), and the employee gets every message
// once, in order. Each message is said after the previous webhook was
// answered, so the predecessor is always committed (a predecessor still in
// flight on the other replica costs one targeted poll; see the README).
func TestWebhooksAcrossReplicas(t *testing.T) {
	const (
		msgs = 12
		wait = 60 * time.Second
	)
	rs := newReplicaSet(t, 2, pgSchema(t, "ho_hooks_"+randHex(4)), map[string]string{"HANDOFF_DELIVERY": "webhook"})
	w := rs.w
	var urls []string
	for _, ch := range rs.channels {
		urls = append(urls, strings.TrimSuffix(ch.BotURL, "/api/messages")+"/webhooks/servicenow")
	}
	w.sn.EnableWebhooks(snowtest.WebhookOptions{URLs: urls, Secret: e2eWebhookSecret, SkipCreatedBy: snowtest.DefaultUser})

	u := teamstest.NewUser("Hook Tester")
	rs.post(0, u, "talk to live agent", wait)
	group := w.chatOf(u, wait)
	if err := w.sn.Accept(group, agentName); err != nil {
		t.Fatal(err)
	}
	w.waitUser(u, snowtest.DefaultGreeting, wait)
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	if err := w.sn.WaitDeliveries(ctx); err != nil {
		t.Fatal(err)
	}
	w.sn.ResetRequests()
	var said []string
	for j := 1; j <= msgs; j++ {
		m := fmt.Sprintf("hook %02d", j)
		if _, err := w.sn.Say(group, agentName, m); err != nil {
			t.Fatal(err)
		}
		said = append(said, m)
		if err := w.sn.WaitDeliveries(ctx); err != nil {
			t.Fatal(err)
		}
	}
	byRoute := map[string]int{}
	for _, d := range w.sn.Deliveries() {
		if d.Status != 200 {
			t.Errorf("delivery %s answered %d (%s)", d.Key, d.Status, d.Err)
		}
	}
	_, atUser := rs.delivered(u, group, nil, said, wait)
	for _, m := range said {
		if atUser[m] != 1 {
			t.Errorf("%q reached the employee %d times, want 1", m, atUser[m])
		}
	}
	if !inOrder(w.userLines(u), said) {
		t.Errorf("out of order: %q", w.userLines(u))
	}
	reads := 0
	for route, n := range w.sn.Requests() {
		if strings.HasPrefix(route, "GET ") {
			reads += n
		}
		byRoute[route] = n
	}
	t.Logf("%d agent messages by webhook over %d replicas; ServiceNow requests meanwhile: %v", msgs, len(urls), byRoute)
	if reads != 0 {
		t.Errorf("%d desk reads (targeted polls) while webhooks alternated between replicas; want 0: a predecessor stored by the other replica is found in the store", reads)
	}
}
