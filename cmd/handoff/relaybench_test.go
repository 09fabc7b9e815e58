package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the PostgreSQL driver for the bench schema

	"github.com/handoffhq/handoff/bridge/store/storetest"
	"github.com/handoffhq/handoff/rasa/rasatest"
	"github.com/handoffhq/handoff/servicenow/snowtest"
	"github.com/handoffhq/handoff/teams/teamstest"
)

// BenchmarkRelay measures what the bridge costs on the hot path, against a
// bare forwarding proxy on the same hop in the same run (the baseline):
//
//   - agent→user: the instance's Business Rule webhook in → Bot Connector POST out;
//   - user→agent: a Teams activity in → ServiceNow message POST out.
//
// Both run as child processes (this test binary re-executed as `handoff serve`,
// or as the proxy) so that their CPU time is read from /proc apart from the
// fakes', which run in this process. The load is fixed: relayBenchConvs live
// chats spread over three tenants (so Teams' per-tenant pacing is not the
// limit), each sending one message per second in each direction, for
// HANDOFF_BENCH_SECONDS (default 10) per direction.
//
// Reported per database and target: p50/p95/p99 latency in ms (the message
// is written on one side → it is received on the other, as the fakes record
// it) and CPU ms per message of the relaying process; the bridge's ratios to
// the proxy follow in the log. Run with `make bench-relay`; set
// HANDOFF_TEST_PPROF_ADDR (host:port) to profile the bridge while it runs.
//
// The proxy verifies nothing and stores nothing: it is the floor any relay
// pays for two HTTP hops, not a design alternative.
func BenchmarkRelay(b *testing.B) {
	secs := 10
	if v, err := strconv.Atoi(os.Getenv("HANDOFF_BENCH_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	for _, db := range storetest.Databases() {
		b.Run(db, func(b *testing.B) {
			for b.Loop() {
				var res [2]relayResult
				for i, target := range []string{"proxy", "bridge"} {
					res[i] = runRelayBench(b, target, db, time.Duration(secs)*time.Second)
				}
				for _, dir := range []string{"agent-user", "user-agent"} {
					p, br := res[0].dirs[dir], res[1].dirs[dir]
					for _, x := range []struct {
						name string
						r    relayDir
					}{{"proxy", p}, {"bridge", br}} {
						b.ReportMetric(ms(x.r.p50), dir+"/"+x.name+"-p50-ms")
						b.ReportMetric(ms(x.r.p99), dir+"/"+x.name+"-p99-ms")
						b.ReportMetric(x.r.cpuPerMsg*1000, dir+"/"+x.name+"-cpu-ms/msg")
						b.ReportMetric(x.r.idlePerSec*1000, dir+"/"+x.name+"-idle-cpu-ms/s")
						b.Logf("%-6s %-10s %-6s p50 %6.2f  p95 %6.2f  p99 %7.2f ms  cpu %.3f ms/msg (%.3f without idle; idle %.1f ms/s)  (%d msgs)",
							db, dir, x.name, ms(x.r.p50), ms(x.r.p95), ms(x.r.p99), x.r.cpuPerMsg*1000, x.r.busyPerMsg*1000, x.r.idlePerSec*1000, x.r.n)
					}
					b.Logf("%-6s %-10s bridge/proxy: p50 ×%.1f, p99 ×%.1f, overhead p50 %+.2f ms, p99 %+.2f ms, cpu ×%.1f",
						db, dir, ms(br.p50)/ms(p.p50), ms(br.p99)/ms(p.p99), ms(br.p50)-ms(p.p50), ms(br.p99)-ms(p.p99),
						br.cpuPerMsg/p.cpuPerMsg)
				}
			}
		})
	}
}

const (
	relayBenchConvs = 60 // one message a second each: 60 msg/s per direction
	relayBenchAgent = "Bench Agent"
	// relayBenchIdle is how long each direction first measures the idle
	// CPU of the relaying process (chats open, nothing moving).
	relayBenchIdle = 3 * time.Second
)

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

type relayDir struct {
	p50, p95, p99 time.Duration
	cpuPerMsg     float64 // seconds
	// idlePerSec is the CPU the process spent per second with the chats
	// open and no message moving, measured just before (seconds per
	// second); busyPerMsg is cpuPerMsg less that idle share.
	idlePerSec, busyPerMsg float64
	n                      int
}

type relayResult struct{ dirs map[string]relayDir }

// relayChat is one live chat of the bench: a Teams user and its desk chat.
type relayChat struct {
	ch    *teamstest.Channel
	user  teamstest.User
	conv  string
	group string
}

func runRelayBench(b *testing.B, target, db string, d time.Duration) relayResult {
	b.Helper()
	ctx := b.Context()
	issuer := teamstest.NewIssuer()
	defer issuer.Close()
	issuer.AddClient(e2eAppID, e2eSecret)
	conn := teamstest.NewConnector(teamstest.ConnectorConfig{Issuer: issuer})
	defer conn.Close()
	sn := snowtest.New(snowtest.Options{})
	defer sn.Close()
	tenants := []string{e2eTenant, "bench-tenant-2", "bench-tenant-3"}

	chats := make([]*relayChat, relayBenchConvs)
	for i := range chats {
		u := teamstest.NewUser(fmt.Sprintf("Relay %s %s User %02d", target, db, i))
		chats[i] = &relayChat{user: u}
	}

	var proc *exec.Cmd
	var base string
	switch target {
	case "bridge":
		bot := rasatest.New(rasatest.Options{Token: "rasa-token"})
		defer bot.Close()
		dburl := "sqlite:" + filepath.Join(b.TempDir(), "relay.db")
		if db == "postgres" {
			dburl = storetest.Schema(b, os.Getenv(storetest.EnvDatabaseURL), "bench")
		}
		proc, base = startBenchProcess(b, benchServeEnv(b, issuer, bot.URL(), sn.URL(), map[string]string{
			"HANDOFF_TEST_AS_MAIN": "1",
			"HANDOFF_ADDR":         "127.0.0.1:0",
			"HANDOFF_DATABASE_URL": dburl,
			"HANDOFF_DELIVERY":     "webhook",
			"HANDOFF_LOG_LEVEL":    "info",
			// Profile the bridge while it runs: go tool pprof http://$addr/debug/pprof/profile.
			"HANDOFF_TEST_PPROF_ADDR": os.Getenv("HANDOFF_TEST_PPROF_ADDR"),
		}), "serve")
		for i, c := range chats {
			c.ch = &teamstest.Channel{Issuer: issuer, AppID: e2eAppID, ServiceURL: conn.ServiceURL(),
				BotURL: base + "/api/messages", TenantID: tenants[i%len(tenants)]}
			c.conv = c.ch.ConversationID(c.user)
			if code, err := c.ch.Post(ctx, c.ch.Message(c.user, "talk to live agent")); err != nil || code != 200 {
				b.Fatalf("handoff request: %d %v", code, err)
			}
		}
		waitFor(b, 60*time.Second, func() bool { return findGroups(sn, chats) })
	case "proxy":
		for i, c := range chats {
			c.ch = &teamstest.Channel{Issuer: issuer, AppID: e2eAppID, ServiceURL: conn.ServiceURL(), TenantID: tenants[i%len(tenants)]}
			c.conv = c.ch.ConversationID(c.user)
			openBenchChat(b, sn, "handoff for "+c.user.Name)
		}
		waitFor(b, 30*time.Second, func() bool { return findGroups(sn, chats) })
		routes := map[string]map[string]string{}
		for _, c := range chats {
			routes[c.group] = map[string]string{"conv": c.conv, "user": c.user.ID, "tenant": c.ch.TenantID}
		}
		routesFile := filepath.Join(b.TempDir(), "routes.json")
		raw, _ := json.Marshal(routes)
		if err := os.WriteFile(routesFile, raw, 0o600); err != nil {
			b.Fatal(err)
		}
		proc, base = startBenchProcess(b, map[string]string{
			"HANDOFF_TEST_AS_PROXY": "1",
			"PROXY_ROUTES":          routesFile,
			"PROXY_CONNECTOR":       conn.ServiceURL(),
			"PROXY_TOKEN_URL":       issuer.TokenURL(e2eTenant),
			"PROXY_APP_ID":          e2eAppID,
			"PROXY_APP_PASSWORD":    e2eSecret,
			"PROXY_SERVICENOW":      sn.URL(),
			"PROXY_SN_USER":         snowtest.DefaultUser,
			"PROXY_SN_PASSWORD":     snowtest.DefaultPassword,
		})
		for _, c := range chats {
			c.ch.BotURL = base + "/api/messages"
		}
	}
	sn.EnableWebhooks(snowtest.WebhookOptions{URL: base + "/webhooks/servicenow", Secret: e2eWebhookSecret,
		SkipCreatedBy: snowtest.DefaultUser})
	for _, c := range chats {
		if err := sn.Accept(c.group, relayBenchAgent); err != nil {
			b.Fatal(err)
		}
	}
	// Let the accept notices ("… has joined") drain before measuring.
	waitFor(b, 60*time.Second, func() bool {
		for _, c := range chats {
			if len(conn.Sent(c.conv)) == 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second)

	res := relayResult{dirs: map[string]relayDir{}}
	res.dirs["agent-user"] = measureRelay(b, proc, d, chats, func(c *relayChat, text string) error {
		_, err := sn.Say(c.group, relayBenchAgent, text)
		return err
	}, func(c *relayChat) map[string]time.Time {
		out := map[string]time.Time{}
		for _, s := range conn.Sent(c.conv) {
			out[shown(s)] = s.At
		}
		return out
	})
	res.dirs["user-agent"] = measureRelay(b, proc, d, chats, func(c *relayChat, text string) error {
		code, err := c.ch.Post(ctx, c.ch.Message(c.user, text))
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("POST /api/messages: %d", code)
		}
		return err
	}, func(c *relayChat) map[string]time.Time {
		out := map[string]time.Time{}
		for _, m := range sn.Messages(c.group) {
			out[m.Text] = m.At
		}
		return out
	})
	return res
}

// measureRelay sends one message a second per chat for d through send, waits
// until received reports every one, and returns latencies and the CPU time the
// relaying process spent per message.
func measureRelay(b *testing.B, proc *exec.Cmd, d time.Duration, chats []*relayChat,
	send func(*relayChat, string) error, received func(*relayChat) map[string]time.Time) relayDir {
	b.Helper()
	idle0, idleAt := procCPU(b, proc.Process.Pid), time.Now()
	time.Sleep(relayBenchIdle)
	cpu0 := procCPU(b, proc.Process.Pid)
	idlePerSec := (cpu0 - idle0).Seconds() / time.Since(idleAt).Seconds()
	var (
		mu   sync.Mutex
		sent = map[string]time.Time{}
		wg   sync.WaitGroup
	)
	run := randHex(4)
	start := time.Now()
	for i, c := range chats {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * time.Second / time.Duration(len(chats)))
			for n := 0; time.Since(start) < d; n++ {
				text := fmt.Sprintf("relay %s %d.%d", run, i, n)
				mu.Lock()
				sent[text] = time.Now()
				mu.Unlock()
				if err := send(c, text); err != nil {
					b.Error(err)
					return
				}
				time.Sleep(time.Until(start.Add(time.Duration(n+1)*time.Second + time.Duration(i)*time.Second/time.Duration(len(chats)))))
			}
		})
	}
	wg.Wait()
	var lat []time.Duration
	waitFor(b, 60*time.Second, func() bool {
		lat = lat[:0]
		for _, c := range chats {
			for text, at := range received(c) {
				if t0, ok := sent[text]; ok {
					lat = append(lat, at.Sub(t0))
				}
			}
		}
		return len(lat) >= len(sent)
	})
	cpu := procCPU(b, proc.Process.Pid) - cpu0
	busy := cpu.Seconds() - idlePerSec*time.Since(start).Seconds()
	slices.Sort(lat)
	pct := func(p int) time.Duration { return lat[min(len(lat)-1, len(lat)*p/100)] }
	return relayDir{p50: pct(50), p95: pct(95), p99: pct(99), cpuPerMsg: cpu.Seconds() / float64(len(lat)),
		idlePerSec: idlePerSec, busyPerMsg: busy / float64(len(lat)), n: len(lat)}
}

// findGroups matches each chat to the desk chat whose first message names
// its user; it reports whether all are found.
func findGroups(sn *snowtest.Instance, chats []*relayChat) bool {
	all := true
	for _, c := range chats {
		if c.group != "" {
			continue
		}
		for _, sc := range sn.Chats() {
			for _, m := range sn.Messages(sc.Group) {
				if strings.Contains(m.Text, c.user.Name) {
					c.group = sc.Group
				}
			}
		}
		all = all && c.group != ""
	}
	return all
}

// openBenchChat opens a chat as the integration user through Connect
// Support's REST API, as the bridge does.
func openBenchChat(b *testing.B, sn *snowtest.Instance, first string) {
	b.Helper()
	body, _ := json.Marshal(map[string]string{"message": first})
	req, _ := http.NewRequest(http.MethodPost, sn.URL()+"/api/now/connect/support/queues/"+snowtest.DefaultQueue+"/sessions", bytes.NewReader(body))
	req.SetBasicAuth(snowtest.DefaultUser, snowtest.DefaultPassword)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		raw, _ := io.ReadAll(resp.Body)
		b.Fatalf("open chat: %d %s", resp.StatusCode, raw)
	}
}

func randHex(n int) string {
	p := make([]byte, n)
	_, _ = rand.Read(p)
	return hex.EncodeToString(p)
}

// startBenchProcess re-executes this test binary with env (as handoff or as
// the proxy) and waits until it logs its listening address.
func startBenchProcess(b *testing.B, env map[string]string, args ...string) (*exec.Cmd, string) {
	b.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Dir = b.TempDir()
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); _ = pw.Close() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "listening" {
				found <- rec["addr"].(string)
			} else if !json.Valid(sc.Bytes()) || rec["level"] == "ERROR" {
				b.Log(sc.Text())
			}
		}
	}()
	select {
	case addr := <-found:
		return cmd, "http://" + addr
	case <-time.After(60 * time.Second):
		b.Fatal("the process did not start listening within 60 s")
		return nil, ""
	}
}

// procCPU returns the user+system CPU time the process has used so far.
func procCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) start after ')'.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks
}
