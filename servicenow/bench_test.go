package servicenow_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow/snowtest"
)

// BenchmarkPollRequestsPerTick measures how many ServiceNow requests one poll
// tick costs for 1, 100 and 1,000 live sessions in per-session mode (Connect
// API, per chat), per-session mode with LastMessageHint, and batch mode
// (Table API, 100 chats per request). One chat gets an agent message per
// tick. It reports requests/tick and requests/session-hour at a 3 s interval.
func BenchmarkPollRequestsPerTick(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		for _, mode := range modes {
			b.Run(fmt.Sprintf("sessions=%d/mode=%s", n, mode), func(b *testing.B) {
				in := newFake(b, snowtest.Options{Now: t0})
				c := newClient(b, in, modeConfig(mode))
				relay := &memRelay{}
				chats := make([]bridge.AgentChatID, n)
				for i := range n {
					chats[i] = openChat(b, c, fmt.Sprintf("s-%d", i))
					relay.add(fmt.Sprintf("s-%d", i), chats[i])
					if err := in.Accept(string(chats[i]), "Beth Anglin"); err != nil {
						b.Fatal(err)
					}
				}
				p := newPoller(b, mode, c, relay)
				ctx := context.Background()
				if err := p.PollOnce(ctx); err != nil {
					b.Fatal(err)
				}
				in.ResetRequests()
				ticks := 0
				for b.Loop() {
					// Some activity: one agent message per tick.
					in.Advance(3 * time.Second)
					if _, err := in.Say(string(chats[ticks%n]), "Beth Anglin", "still working on it"); err != nil {
						b.Fatal(err)
					}
					if err := p.PollOnce(ctx); err != nil {
						b.Fatal(err)
					}
					ticks++
				}
				perTick := float64(in.TotalRequests()) / float64(ticks)
				b.ReportMetric(perTick, "requests/tick")
				b.ReportMetric(perTick*float64(time.Hour/(3*time.Second))/float64(n), "requests/session-hour")
			})
		}
	}
}
