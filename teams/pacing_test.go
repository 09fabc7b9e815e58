package teams

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/teams/teamstest"
)

// simulate admits requests through lm as fast as it allows, on a virtual
// clock, and returns the admission times.
func simulate(lm *limiter, n int) []time.Time {
	now := time.Unix(0, 0)
	out := make([]time.Time, 0, n)
	for range n {
		now = now.Add(lm.wait(now))
		lm.take(now)
		out = append(out, now)
	}
	return out
}

// mostInWindow returns the most admissions within any window of length per.
func mostInWindow(at []time.Time, per time.Duration) int {
	worst, j := 0, 0
	for i := range at {
		for at[i].Sub(at[j]) >= per {
			j++
		}
		worst = max(worst, i-j+1)
	}
	return worst
}

// Every documented limit is kept (never more than N in any window of Per,
// with the jitter guard to spare) and used to at least 90% when it is the
// only limit that binds.
func TestPacingUsesNinetyPercentOfEachLimit(t *testing.T) {
	for _, l := range append(append([]Limit{}, TeamsConversationLimits...), TeamsAppLimits...) {
		t.Run(fmt.Sprintf("%d per %v", l.N, l.Per), func(t *testing.T) {
			lm := newLimiter([]Limit{l}, defaultShare, defaultGuard)
			at := simulate(lm, 5*l.N)
			if worst := mostInWindow(at, l.Per+defaultGuard); worst > l.N {
				t.Fatalf("%d requests within %v (+guard), limit %d", worst, l.Per, l.N)
			}
			span := at[len(at)-1].Sub(at[l.N-1]) // after the first window's burst
			rate := float64(len(at)-l.N) / span.Seconds()
			limit := float64(l.N) / l.Per.Seconds()
			t.Logf("sustained %.3f/s of %.3f/s (%.1f%%)", rate, limit, 100*rate/limit)
			if rate < 0.9*limit {
				t.Fatalf("sustained %.3f/s, below 90%% of %.3f/s", rate, limit)
			}
		})
	}
}

// A 429 halves the share (down to a quarter); clean requests win it back.
func TestPacingLearnsFromThrottling(t *testing.T) {
	lm := newLimiter([]Limit{{N: 40, Per: time.Second}}, 1, time.Millisecond)
	full := len(simulateFor(lm, time.Second))
	lm = newLimiter([]Limit{{N: 40, Per: time.Second}}, 1, time.Millisecond)
	lm.throttled()
	half := len(simulateFor(lm, time.Second))
	if half > full/2+1 || half < full/2-1 {
		t.Fatalf("after one 429: %d per window, want about half of %d", half, full)
	}
	for range 10 {
		lm.throttled()
	}
	if lm.scale != minScale {
		t.Fatalf("scale %v after many 429s, want the floor %v", lm.scale, minScale)
	}
	for range 100 {
		lm.succeeded()
	}
	if lm.scale != 1 {
		t.Fatalf("scale %v after 100 clean requests, want 1", lm.scale)
	}
}

func simulateFor(lm *limiter, d time.Duration) []time.Time {
	now := time.Unix(0, 0)
	var out []time.Time
	for {
		now = now.Add(lm.wait(now))
		if now.Sub(time.Unix(0, 0)) >= d {
			return out
		}
		lm.take(now)
		out = append(out, now)
	}
}

// The app limit is kept per tenant: one tenant using all of its budget does
// not delay another.
func TestPacingAppLimitPerTenant(t *testing.T) {
	p := newPacer(Pacing{App: []Limit{{N: 3, Per: time.Hour}}, Conversation: []Limit{}})
	ref := func(conv, tenant string) bridge.ConversationRef {
		return bridge.ConversationRef{Conversation: bridge.ConversationID(conv), TenantID: tenant}
	}
	for i := range 3 {
		cp := p.entry(ref(fmt.Sprint("a", i), "tenant-a"))
		if d := p.take(cp); d != 0 {
			t.Fatalf("request %d of tenant a waits %v", i, d)
		}
	}
	if d := p.take(p.entry(ref("a9", "tenant-a"))); d == 0 {
		t.Fatal("tenant a's fourth request in the window was admitted")
	}
	if d := p.take(p.entry(ref("b0", "tenant-b"))); d != 0 {
		t.Fatalf("tenant b waits %v behind tenant a", d)
	}
}

// Many conversations of one tenant, sent to as fast as the client allows,
// are let go within Teams' per-conversation and per-app-and-tenant limits
// (windows scaled by timeScale), and all of them arrive.
func TestClientTenantBurstWithinLimits(t *testing.T) {
	f := newClientFixture(t, nil)
	adm := recordAdmissions(f.client)
	const convs, each = 40, 8
	var wg sync.WaitGroup
	errs := make(chan error, convs)
	start := time.Now()
	for c := range convs {
		wg.Go(func() {
			for i := range each {
				if _, err := f.client.Send(context.Background(), f.ref(fmt.Sprint("a:t", c)), bridge.UserMessage{Text: fmt.Sprint(i)}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	total, n429 := 0, 0
	for c := range convs {
		conv := fmt.Sprint("a:t", c)
		total += len(f.conn.Messages(conv))
		n429 += f.conn.CountStatus(conv, http.StatusTooManyRequests)
	}
	if total != convs*each {
		t.Fatalf("%d delivered, want %d", total, convs*each)
	}
	for _, w := range scale(teamstest.TeamsAppLimits) {
		if worst := mostInWindow(adm.tenant(testTenant), w.Per); worst > w.N {
			t.Errorf("%d requests of the tenant let go within %v, limit %d", worst, w.Per, w.N)
		}
	}
	if got := len(adm.tenant(testTenant)); got < total {
		t.Errorf("%d admissions recorded for %d messages", got, total)
	}
	t.Logf("%d messages to one tenant in %v (scaled windows ×%d), %d answered 429", total, elapsed, timeScale, n429)
}

// A connector stricter than documented is learnt: after its 429s the client
// slows down instead of hammering it, and everything is still delivered.
func TestClientLearnsStricterConnector(t *testing.T) {
	f := newClientFixture(t, nil)
	conn := teamstest.NewConnector(teamstest.ConnectorConfig{Issuer: f.issuer,
		Limits: []teamstest.Window{{N: 2, Per: 100 * time.Millisecond}}, AppLimits: []teamstest.Window{}})
	t.Cleanup(conn.Close)
	ref := f.ref("a:strict")
	ref.ServiceURL = conn.ServiceURL()
	for i := range 30 {
		if _, err := f.client.Send(context.Background(), ref, bridge.UserMessage{Text: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	n429 := conn.CountStatus("a:strict", http.StatusTooManyRequests)
	if got := len(conn.Messages("a:strict")); got != 30 {
		t.Fatalf("%d delivered, want 30", got)
	}
	// Without learning, every send past the second of each 100 ms is refused
	// (the scaled pacing admits 7 per ~150 ms): about two thirds of them.
	if n429 > 10 {
		t.Fatalf("%d 429s for 30 messages: the client did not slow down", n429)
	}
	t.Logf("30 messages, %d 429s", n429)
}

// BenchmarkClientTenantRate measures the sustained send rate to one tenant
// over many conversations against a connector that enforces Teams' real
// (unscaled) limits: 50 per second per app and tenant, and the
// per-conversation windows. The goal is at least 45 msg/s with no 429.
func BenchmarkClientTenantRate(b *testing.B) {
	const convs, each = 100, 3
	for range b.N {
		f := newClientFixture(b, func(c *ClientConfig) { c.Pacing = Pacing{} })
		conn := teamstest.NewConnector(teamstest.ConnectorConfig{Issuer: f.issuer})
		var wg sync.WaitGroup
		start := time.Now()
		var mu sync.Mutex
		var last time.Time
		for c := range convs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ref := f.ref(fmt.Sprint("a:rate", c))
				ref.ServiceURL = conn.ServiceURL()
				for i := range each {
					if _, err := f.client.Send(context.Background(), ref, bridge.UserMessage{Text: fmt.Sprint(i)}); err != nil {
						b.Error(err)
						return
					}
				}
				mu.Lock()
				if now := time.Now(); now.After(last) {
					last = now
				}
				mu.Unlock()
			}()
		}
		wg.Wait()
		n429 := 0
		for c := range convs {
			n429 += conn.CountStatus(fmt.Sprint("a:rate", c), http.StatusTooManyRequests)
		}
		conn.Close()
		// The first window's 50 leave at once; the rest at the paced rate.
		rate := float64(convs*each-50) / last.Sub(start).Seconds()
		b.ReportMetric(rate, "msg/s")
		b.ReportMetric(float64(n429), "429s")
	}
}
