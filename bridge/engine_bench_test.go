//go:build unix

package bridge_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/bridge/store"
	"github.com/handoffhq/handoff/bridge/store/storetest"
)

// BenchmarkEngine pushes messages through the delivery engine alone (relay,
// store and dispatcher with its default 8 workers) with outward calls that
// return at once: no HTTP and no Teams pacing, so what it measures is the
// engine's own ceiling. One op is one message, stored by the relay and
// delivered by the dispatcher (in agent-user: AgentEvents → user.send →
// UserChannel.Send; in user-agent: UserActivity → desk.send →
// AgentDesk.Send), over engineConvs live chats written to from engineConvs
// goroutines as fast as the relay takes them. It reports msg/s from the first
// write to the last delivery, and the CPU time the process spent per message
// (less sensitive to a loaded machine than the rate). Run with
// `make bench-engine`; PostgreSQL runs too when HANDOFF_TEST_DATABASE_URL is
// set.
func BenchmarkEngine(b *testing.B) {
	for _, db := range storetest.Databases() {
		for _, dir := range []string{"agent-user", "user-agent"} {
			b.Run(db+"/"+dir, func(b *testing.B) {
				benchEngine(b, engineStore(b, db), dir)
			})
		}
	}
}

const engineConvs = 50

// countingUser and countingDesk count deliveries and return at once.
type countingUser struct {
	fakeUser
	n atomic.Int64
}

func (u *countingUser) Send(context.Context, bridge.ConversationRef, bridge.UserMessage) (string, error) {
	u.n.Add(1)
	return "id", nil
}

type countingDesk struct {
	fakeDesk
	n atomic.Int64
}

func (d *countingDesk) Send(context.Context, bridge.DeskChat, bridge.DeskMessage) error {
	d.n.Add(1)
	return nil
}

func benchEngine(b *testing.B, st *store.Store, dir string) {
	ctx := b.Context()
	user, desk := &countingUser{}, &countingDesk{}
	relay := bridge.NewRelay(st, &fakeBot{}, desk, user, nil, bridge.RelayConfig{})
	disp := bridge.NewDispatcher(relay, bridge.DispatchConfig{})
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	var running sync.WaitGroup
	running.Go(func() { _ = disp.Run(runCtx) })
	defer func() { stop(); running.Wait() }()

	// Hand every conversation off; the fake desk numbers the chats.
	convs := make([]bridge.ConversationRef, engineConvs)
	for i := range convs {
		convs[i] = bridge.ConversationRef{Conversation: bridge.ConversationID(fmt.Sprintf("engine-%d", i)),
			ServiceURL: "https://smba.example/", ConversationType: "personal", UserID: fmt.Sprintf("29:u%d", i), UserName: "Abel Tuter"}
		a := bridge.UserActivity{Kind: bridge.ActivityMessage, ID: fmt.Sprintf("open-%d", i), Text: "talk to an agent", Ref: convs[i]}
		if err := relay.UserActivity(ctx, a); err != nil {
			b.Fatal(err)
		}
	}
	chats := make([]bridge.AgentChatID, engineConvs)
	waitEngine(b, "the desk chats to open", func() bool {
		ok := true
		for i := range chats {
			if chats[i] != "" {
				continue
			}
			_ = st.View(ctx, func(tx bridge.Tx) error {
				s, err := tx.OpenSession(ctx, convs[i].Conversation)
				if err == nil && s.AgentChatID != "" {
					chats[i] = s.AgentChatID
				}
				return nil
			})
			ok = ok && chats[i] != ""
		}
		return ok
	})
	// Let the notices of the handoff drain, then count from zero.
	waitEngine(b, "the handoff notices to drain", func() bool {
		var n int
		_ = st.View(ctx, func(tx bridge.Tx) error {
			stats, err := tx.OutboxStats(ctx)
			n = stats["pending"]
			return err
		})
		return n == 0
	})
	user.n.Store(0)
	desk.n.Store(0)
	delivered := &user.n
	if dir == "user-agent" {
		delivered = &desk.n
	}

	b.ResetTimer()
	cpu0 := processCPU(b)
	start := time.Now()
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for w := range engineConvs {
		wg.Go(func() {
			for {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				var err error
				if dir == "agent-user" {
					ev := bridge.AgentEvent{Kind: bridge.AgentMessage, Chat: chats[w], ExternalID: fmt.Sprintf("m%d", n),
						Author: "Beth", Text: fmt.Sprintf("agent message %d", n), At: time.Now()}
					err = relay.AgentEvents(ctx, chats[w], []bridge.AgentEvent{ev}, true)
				} else {
					err = relay.UserActivity(ctx, bridge.UserActivity{Kind: bridge.ActivityMessage, ID: fmt.Sprintf("u%d", n),
						Text: fmt.Sprintf("user message %d", n), Ref: convs[w]})
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	waitEngine(b, "every message to be delivered", func() bool { return delivered.Load() >= int64(b.N) })
	elapsed := time.Since(start)
	cpu := processCPU(b) - cpu0
	b.StopTimer()
	rate := float64(b.N) / elapsed.Seconds()
	cpuPerMsg := float64(cpu) / float64(time.Millisecond) / float64(b.N)
	b.ReportMetric(rate, "msg/s")
	b.ReportMetric(cpuPerMsg, "cpu-ms/msg")
	b.Logf("%s %s: %d messages in %.2f s: %.0f msg/s through relay, store and dispatcher (outward calls instant, no pacing), %.2f ms CPU per message",
		st.Dialect(), dir, b.N, elapsed.Seconds(), rate, cpuPerMsg)
}

// processCPU returns the user+system CPU time this process has used (the
// bench's own writers included; on PostgreSQL the server's is not).
func processCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// waitEngine polls cond every 2 ms for up to 5 minutes.
func waitEngine(b *testing.B, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
