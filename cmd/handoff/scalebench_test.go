package main

import (
	"bufio"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/bridge/store"
	"github.com/handoffhq/handoff/bridge/store/storetest"
	"github.com/handoffhq/handoff/rasa/rasatest"
	"github.com/handoffhq/handoff/servicenow/snowtest"
	"github.com/handoffhq/handoff/teams/teamstest"
)

// BenchmarkScale measures one bridge process on PostgreSQL holding many live
// handoffs (HANDOFF_BENCH_SESSIONS, default 10,000) with nothing happening,
// for HANDOFF_BENCH_SECONDS (default 30) per delivery mode, then how fast it
// opens new handoffs. It runs in its own database (handoff_bench, created if
// missing) so that the commit count is the bridge's alone.
//
// Reported per mode (batch poll, webhook, per-session poll):
//   - cpu-%: CPU of the bridge process while idle, in % of one core
//   - rss-MB, goroutines: at the end of the idle window
//   - tick-ms: duration of the last poll run (handoff_poll_last_duration_seconds)
//   - sn-req/100chats/tick: ServiceNow requests per poll run per 100 chats
//   - commits/tick: PostgreSQL transactions committed per poll run, and
//     commits/s (the only figure for webhook mode, which does not poll)
//
// and, for batch mode, handoffs-opened/s: new employees asking for an agent
// at once (HANDOFF_BENCH_HANDOFFS, default 300) until every desk chat is open,
// with the bridge's CPU, this process's CPU (the fakes and the employees'
// client) and the database's commits per handoff until the outbox is empty
// again (the notices and cards the handoffs queued are sent).
// Run with `make bench-scale`. With HANDOFF_TEST_PPROF_ADDR=127.0.0.1:6061
// the bridge serves net/http/pprof there while it runs; with
// HANDOFF_BENCH_PROFILE_DIR as well, the handoff phase's CPU profiles of the
// bridge (its first HANDOFF_BENCH_PROFILE_SECONDS, default 10) and of this
// process are written there as bridge.pprof and fakes.pprof.
// HANDOFF_BENCH_SERVE_X=v runs the bridge with HANDOFF_X=v.
func BenchmarkScale(b *testing.B) {
	base := os.Getenv(storetest.EnvDatabaseURL)
	if base == "" {
		b.Skip("set HANDOFF_TEST_DATABASE_URL=postgres://… to run the scale benchmark")
	}
	sessions := envInt("HANDOFF_BENCH_SESSIONS", 10000)
	secs := envInt("HANDOFF_BENCH_SECONDS", 30)
	handoffs := envInt("HANDOFF_BENCH_HANDOFFS", 300)
	for _, mode := range []struct {
		name string
		env  map[string]string
	}{
		{"batch", map[string]string{"HANDOFF_DELIVERY": "poll", "HANDOFF_POLL_BATCH": "true"}},
		{"webhook", map[string]string{"HANDOFF_DELIVERY": "webhook"}},
		{"poll", map[string]string{"HANDOFF_DELIVERY": "poll"}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			for b.Loop() {
				r := runScaleBench(b, base, mode.env, sessions, time.Duration(secs)*time.Second, handoffs*boolInt(mode.name == "batch"))
				b.ReportMetric(r.cpuPct, "cpu-%")
				b.ReportMetric(r.rssMB, "rss-MB")
				b.ReportMetric(r.goroutines, "goroutines")
				b.ReportMetric(r.tickMS, "tick-ms")
				b.ReportMetric(r.snPer100, "sn-req/100chats/tick")
				b.ReportMetric(r.commitsPerTick, "commits/tick")
				b.ReportMetric(r.commitsPerSec, "commits/s")
				if r.handoffsPerSec > 0 {
					b.ReportMetric(r.handoffsPerSec, "handoffs-opened/s")
					b.ReportMetric(r.bridgeMSPerHandoff, "bridge-cpu-ms/handoff")
					b.ReportMetric(r.fakesMSPerHandoff, "fakes-cpu-ms/handoff")
					b.ReportMetric(r.commitsPerHandoff, "commits/handoff")
				}
				b.Logf("%-7s %d live chats idle %v: cpu %.1f%% of a core, rss %.0f MB, %0.f goroutines, last tick %.0f ms, "+
					"%.2f ServiceNow requests per 100 chats per tick, %.0f commits per tick (%.1f/s); %.1f handoffs opened/s",
					mode.name, sessions, time.Duration(secs)*time.Second, r.cpuPct, r.rssMB, r.goroutines, r.tickMS, r.snPer100,
					r.commitsPerTick, r.commitsPerSec, r.handoffsPerSec)
			}
		})
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func boolInt(ok bool) int {
	if ok {
		return 1
	}
	return 0
}

type scaleResult struct {
	cpuPct, rssMB, goroutines, tickMS, snPer100, commitsPerTick, commitsPerSec, handoffsPerSec float64
	// From the first request until the chats are open and the outbox is
	// empty: CPU of the bridge and of this process (the fakes and the
	// employees' client) per handoff, and database commits per handoff
	// (every commit in the database, also the poller's and the scrapes').
	bridgeMSPerHandoff, fakesMSPerHandoff, commitsPerHandoff float64
}

// selfCPU returns the user+system CPU time this process (the fakes and the
// benchmark's clients) has used so far.
func selfCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// profileHandoffs writes CPU profiles of the handoff phase into
// HANDOFF_BENCH_PROFILE_DIR when it is set: fakes.pprof for this process (the
// fakes and the clients) until stop is called, and, with
// HANDOFF_TEST_PPROF_ADDR, bridge.pprof for the bridge's first
// HANDOFF_BENCH_PROFILE_SECONDS (default 10).
func profileHandoffs(b *testing.B) (stop func()) {
	b.Helper()
	dir := os.Getenv("HANDOFF_BENCH_PROFILE_DIR")
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, "fakes.pprof"))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	if addr := os.Getenv("HANDOFF_TEST_PPROF_ADDR"); addr != "" {
		wg.Go(func() {
			resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, envInt("HANDOFF_BENCH_PROFILE_SECONDS", 10)))
			if err != nil {
				b.Errorf("bridge profile: %v", err)
				return
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, "bridge.pprof"), raw, 0o644)
			}
			if err != nil {
				b.Errorf("bridge profile: %v", err)
			}
		})
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
		wg.Wait()
	}
}

func runScaleBench(b *testing.B, baseURL string, env map[string]string, sessions int, d time.Duration, handoffs int) scaleResult {
	b.Helper()
	ctx := b.Context()
	dbURL := benchDatabase(b, baseURL)
	issuer := teamstest.NewIssuer()
	defer issuer.Close()
	issuer.AddClient(e2eAppID, e2eSecret)
	conn := teamstest.NewConnector(teamstest.ConnectorConfig{Issuer: issuer})
	defer conn.Close()
	bot := rasatest.New(rasatest.Options{Token: "rasa-token"})
	defer bot.Close()
	sn := snowtest.New(snowtest.Options{})
	defer sn.Close()

	// The desk side: sessions chats, opened as the bridge would and accepted.
	run := randHex(4)
	groups := make([]string, sessions)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= sessions {
					return
				}
				openBenchChat(b, sn, fmt.Sprintf("scale %s %d", run, i))
			}
		})
	}
	wg.Wait()
	for _, c := range sn.Chats() {
		if ms := sn.Messages(c.Group); len(ms) > 0 {
			var i int
			if _, err := fmt.Sscanf(ms[0].Text, "scale "+run+" %d", &i); err == nil {
				groups[i] = c.Group
			}
		}
	}
	for i, g := range groups {
		if g == "" {
			b.Fatalf("chat %d was not opened", i)
		}
		if err := sn.Accept(g, relayBenchAgent); err != nil {
			b.Fatal(err)
		}
	}

	// The bridge side: the same chats as live sessions, cursors at now.
	st, err := store.Open(ctx, dbURL, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for lo := 0; lo < sessions; lo += 500 {
		err := st.Update(ctx, func(tx bridge.Tx) error {
			for i := lo; i < min(lo+500, sessions); i++ {
				conv := bridge.ConversationID(fmt.Sprintf("a:scale-%s-%d", run, i))
				if err := tx.PutConversationRef(ctx, bridge.ConversationRef{Conversation: conv, ServiceURL: conn.ServiceURL(),
					ChannelID: "msteams", ConversationType: "personal", TenantID: fmt.Sprint("tenant-", i%10),
					BotID: "28:" + e2eAppID, UserID: fmt.Sprint("29:scale-", i), UserName: fmt.Sprint("Scale User ", i), Locale: "en-US",
					UpdatedAt: now}); err != nil {
					return err
				}
				id := bridge.SessionID(fmt.Sprintf("scale-%s-%d", run, i))
				if err := tx.CreateSession(ctx, bridge.Session{ID: id, Conversation: conv, State: bridge.StateLive,
					UserID: fmt.Sprint("29:scale-", i), UserName: fmt.Sprint("Scale User ", i), TenantID: fmt.Sprint("tenant-", i%10),
					AgentChatID: bridge.AgentChatID(groups[i]), Reason: "scale", CreatedAt: now, QueuedAt: now, LiveAt: now,
					UpdatedAt: now, LastAgentActivity: now}); err != nil {
					return err
				}
				if err := tx.SetCursor(ctx, id, sn.Now()); err != nil {
					return err
				}
				// The bridge stored the agent's join when it happened: a
				// live chat's first poll finds nothing new.
				for _, m := range sn.Messages(groups[i]) {
					if m.CreatedBy == snowtest.DefaultUser {
						continue // the bridge's own opening message
					}
					if _, err := tx.InsertMessage(ctx, &bridge.Message{SessionID: id, Source: bridge.SourceAgent, ExternalID: m.SysID,
						Author: m.SenderName, Text: m.Text, System: m.System(), SentAt: m.At, CreatedAt: now}); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	_ = st.Close()

	vars := benchServeEnv(b, issuer, bot.URL(), sn.URL(), map[string]string{
		"HANDOFF_TEST_AS_MAIN": "1",
		"HANDOFF_ADDR":         "127.0.0.1:0",
		"HANDOFF_DATABASE_URL": dbURL,
		"HANDOFF_LOG_LEVEL":    "info",
		// Idle means idle: the benchmark runs far shorter than these.
		"HANDOFF_IDLE_TIMEOUT":  "24h",
		"HANDOFF_QUEUE_TIMEOUT": "24h",
	})
	for k, v := range env {
		vars[k] = v
	}
	if addr := os.Getenv("HANDOFF_TEST_PPROF_ADDR"); addr != "" {
		vars["HANDOFF_TEST_PPROF_ADDR"] = addr // profile the bridge while it runs
	}
	for _, kv := range os.Environ() {
		// HANDOFF_BENCH_SERVE_X=v sets HANDOFF_X=v for the bridge, to try a setting.
		if rest, ok := strings.CutPrefix(kv, "HANDOFF_BENCH_SERVE_"); ok {
			if k, v, ok := strings.Cut(rest, "="); ok {
				vars["HANDOFF_"+k] = v
			}
		}
	}
	proc, base := startBenchProcess(b, vars, "serve")

	// Let the first runs settle, then measure the idle window. With
	// HANDOFF_BENCH_SETTLE=1 the poll modes first wait (up to 5 minutes) for
	// the first poll run to finish: it stores each seeded chat's desk rows
	// once, which is not what an idle tick costs.
	time.Sleep(2 * time.Second)
	if os.Getenv("HANDOFF_BENCH_SETTLE") == "1" && env["HANDOFF_DELIVERY"] == "poll" {
		settle := time.Now()
		waitFor(b, 5*time.Minute, func() bool { return scrapeMetric(b, base, "handoff_poll_runs_total") >= 2 })
		b.Logf("the first two poll runs took %v", time.Since(settle).Round(100*time.Millisecond))
	}
	// The poll modes' window starts and ends as a poll run finishes, so the
	// requests counted are those of whole runs: a window that cut a run in
	// two counted its requests without the run (up to one run's worth more
	// requests per run counted, ~10% at 10 runs per window).
	polled := env["HANDOFF_DELIVERY"] == "poll"
	runEnd := func() float64 {
		n := scrapeMetric(b, base, "handoff_poll_runs_total")
		if polled {
			waitFor(b, time.Minute, func() bool {
				m := scrapeMetric(b, base, "handoff_poll_runs_total")
				if m > n {
					n = m
					return true
				}
				return false
			})
		}
		return n
	}
	runs0 := runEnd()
	sn.ResetRequests()
	commits0 := dbCommits(b, baseURL)
	cpu0 := procCPU(b, proc.Process.Pid)
	start := time.Now()
	time.Sleep(d)
	wall := time.Since(start)
	// CPU and commits before runEnd's scrapes, which cost both.
	cpu := procCPU(b, proc.Process.Pid) - cpu0
	commits := dbCommits(b, baseURL) - commits0
	runs := runEnd() - runs0
	requests := sn.TotalRequests()
	r := scaleResult{
		cpuPct:        100 * cpu.Seconds() / wall.Seconds(),
		rssMB:         procRSSMB(b, proc.Process.Pid),
		goroutines:    scrapeMetric(b, base, "go_goroutines"),
		tickMS:        1000 * scrapeMetric(b, base, "handoff_poll_last_duration_seconds"),
		commitsPerSec: float64(commits) / wall.Seconds(),
	}
	if runs > 0 {
		r.snPer100 = float64(requests) / runs / (float64(sessions) / 100)
		r.commitsPerTick = float64(commits) / runs
	}

	if handoffs > 0 {
		before := sn.ChatCount()
		stopProfiles := profileHandoffs(b)
		bridgeCPU0, selfCPU0, commits0 := procCPU(b, proc.Process.Pid), selfCPU(b), dbCommits(b, baseURL)
		ch := make([]*teamstest.Channel, 10)
		for i := range ch {
			ch[i] = &teamstest.Channel{Issuer: issuer, AppID: e2eAppID, ServiceURL: conn.ServiceURL(),
				BotURL: base + "/api/messages", TenantID: fmt.Sprint("tenant-", i)}
		}
		// The Bot Connector reuses its token for the hour it is valid; a
		// token signed per request would make the benchmark measure RSA
		// signing in this process.
		auth := teamstest.Bearer(issuer.Mint(teamstest.TokenValid, e2eAppID, conn.ServiceURL()))
		var next atomic.Int64
		start := time.Now()
		for range 20 {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= handoffs {
						return
					}
					u := teamstest.NewUser(fmt.Sprintf("Scale %s New %d", run, i))
					c := ch[i%len(ch)]
					if code, err := c.PostWithAuth(ctx, c.Message(u, "talk to live agent"), auth); err != nil || code != http.StatusOK {
						b.Errorf("handoff request: %d %v", code, err)
						return
					}
				}
			})
		}
		wg.Wait()
		waitFor(b, 10*time.Minute, func() bool { return sn.ChatCount()-before >= handoffs })
		r.handoffsPerSec = float64(handoffs) / time.Since(start).Seconds()
		// The costs per handoff include what the handoffs queued besides the
		// open (the employee's notices and status cards): measured once the
		// outbox is empty.
		waitFor(b, 10*time.Minute, func() bool {
			time.Sleep(200 * time.Millisecond)
			return scrapeMetric(b, base, `handoff_outbox_items{status="pending"}`) == 0
		})
		r.bridgeMSPerHandoff = float64((procCPU(b, proc.Process.Pid) - bridgeCPU0).Milliseconds()) / float64(handoffs)
		r.fakesMSPerHandoff = float64((selfCPU(b) - selfCPU0).Milliseconds()) / float64(handoffs)
		r.commitsPerHandoff = float64(dbCommits(b, baseURL)-commits0) / float64(handoffs)
		stopProfiles()
	}
	return r
}

// benchDatabase returns the URL of a fresh schema in the handoff_bench
// database on the server of baseURL.
func benchDatabase(b *testing.B, baseURL string) string {
	b.Helper()
	u, err := url.Parse(baseURL)
	if err != nil {
		b.Fatal(err)
	}
	admin, err := sql.Open("pgx", baseURL)
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close()
	var exists bool
	if err := admin.QueryRow("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'handoff_bench')").Scan(&exists); err != nil {
		b.Fatal(err)
	}
	if !exists {
		if _, err := admin.Exec("CREATE DATABASE handoff_bench"); err != nil {
			b.Fatal(err)
		}
	}
	u.Path = "/handoff_bench"
	return storetest.Schema(b, u.String(), "bench")
}

// dbCommits returns the transactions committed in the handoff_bench database.
func dbCommits(b *testing.B, baseURL string) int64 {
	b.Helper()
	admin, err := sql.Open("pgx", baseURL)
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close()
	var n int64
	if _, err := admin.Exec("SELECT pg_stat_clear_snapshot()"); err != nil {
		b.Fatal(err)
	}
	if err := admin.QueryRow("SELECT xact_commit FROM pg_stat_database WHERE datname = 'handoff_bench'").Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

// scrapeMetric reads one unlabelled series from /metrics.
func scrapeMetric(b *testing.B, base, name string) float64 {
	b.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				b.Fatal(err)
			}
			return f
		}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return 0
}

// procRSSMB returns the resident set size of the process in MB.
func procRSSMB(b *testing.B, pid int) float64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
