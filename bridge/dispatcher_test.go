package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// These tests drive the dispatcher against the fakes of relay_test.go. They
// wait on conditions with generous deadlines, never on fixed sleeps.

// eventually polls cond every 5 ms until it holds or 30 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// run starts d.Run and returns a stop function that cancels it and waits.
func run(t *testing.T, d *bridge.Dispatcher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func (h *harness) pending() int {
	h.t.Helper()
	var n int
	err := h.st.Update(context.Background(), func(tx bridge.Tx) error {
		st, err := tx.OutboxStats(context.Background())
		n = st["pending"]
		return err
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

// activity stores a user message without dispatching.
func (h *harness) activity(conv bridge.ConversationID, text string) {
	h.t.Helper()
	h.seq++
	a := bridge.UserActivity{Kind: bridge.ActivityMessage, ID: fmt.Sprintf("act-%d", h.seq), Text: text,
		Ref: bridge.ConversationRef{Conversation: conv, ServiceURL: "https://smba.example/", ConversationType: "personal", UserID: "29:u", UserName: "Abel Tuter"}}
	if err := h.relay.UserActivity(context.Background(), a); err != nil {
		h.t.Fatal(err)
	}
}

func (d *fakeDesk) postedTo(chat bridge.AgentChatID) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.posted[chat]...)
}

func (b *fakeBot) got(conv bridge.ConversationID) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.received[conv]...)
}

func count(lines []string, s string) int {
	n := 0
	for _, l := range lines {
		if l == s {
			n++
		}
	}
	return n
}

// live brings conversation "conv" to a live desk chat "chat-1".
func (h *harness) live() {
	h.t.Helper()
	h.say("conv", "agent please")
	h.agent("chat-1", "a1", "Hi, I'm Beth", "")
	if s := h.session("conv"); s.State != bridge.StateLive {
		h.t.Fatalf("session is %s, want live", s.State)
	}
}

// TestDispatchLeaseSlowCalls (issue 11.2): one worker, a 300 ms lease and
// 250 ms calls. Claiming more than the free workers start at once let a
// waiting item's lease run out and the item be claimed and sent again.
// Every item must be sent exactly once.
func TestDispatchLeaseSlowCalls(t *testing.T) {
	h := newHarness(t)
	h.bot.hook = func(ctx context.Context, in bridge.BotInput) error {
		select {
		case <-time.After(250 * time.Millisecond): // the slow peer
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	convs := []bridge.ConversationID{"c1", "c2", "c3", "c4"}
	for _, c := range convs {
		h.activity(c, "hello "+string(c))
	}
	d := bridge.NewDispatcher(h.relay, bridge.DispatchConfig{Workers: 1, Lease: 300 * time.Millisecond, BaseBackoff: time.Millisecond})
	run(t, d)
	eventually(t, "every bot answer delivered", func() bool {
		for _, c := range convs {
			if len(h.user.lines(c)) == 0 {
				return false
			}
		}
		return h.pending() == 0
	})
	for _, c := range convs {
		if got := h.bot.got(c); len(got) != 1 {
			t.Errorf("bot got %q for %s, want the message exactly once", got, c)
		}
		if got := h.user.lines(c); len(got) != 1 {
			t.Errorf("user %s saw %q, want one answer", c, got)
		}
	}
}

// TestDispatchDeskThrottle (issue 11.1): the desk throttles for longer than
// the attempts would last (six throttled calls, MaxAttempts 2). The session
// stays live, every message reaches the agent once and in order, and the
// employee is told once that delivery is delayed.
func TestDispatchDeskThrottle(t *testing.T) {
	h := newHarness(t)
	h.live()
	var throttles atomic.Int32
	throttles.Store(6)
	h.desk.sendHook = func(ctx context.Context, text string) error {
		if throttles.Add(-1) >= 0 {
			return &bridge.ThrottledError{Destination: "desk", Until: time.Now().Add(20 * time.Millisecond), Err: errors.New("HTTP 429")}
		}
		return nil
	}
	for _, m := range []string{"one", "two", "three"} {
		h.activity("conv", m)
	}
	h.drain()
	if s := h.session("conv"); s.State != bridge.StateLive {
		t.Fatalf("session %s/%s after a long throttle, want it live", s.State, s.CloseReason)
	}
	if got := h.desk.postedTo("chat-1"); !slices.Equal(got, []string{"one", "two", "three"}) {
		t.Fatalf("agent got %q, want each message once in order", got)
	}
	if n := count(h.user.lines("conv"), bridge.DefaultTexts().Delayed); n != 1 {
		t.Fatalf("delayed notice shown %d times, want once (lines %q)", n, h.user.lines("conv"))
	}
	if n := h.disp.Stats.ThrottledCounts()[bridge.KindDeskSend]; n != 6 {
		t.Fatalf("throttled desk sends counted %d, want 6", n)
	}
}

// TestDispatchTeamsThrottle (issue 11.1): Teams throttles the agent's
// messages for longer than the attempts would last; the session stays live
// and each message reaches the employee once, in order, after the limit
// lifts. While Teams is throttled no user lane is called at all.
func TestDispatchTeamsThrottle(t *testing.T) {
	h := newHarness(t)
	h.live()
	var throttles atomic.Int32
	throttles.Store(6)
	var early atomic.Int32
	var until atomic.Int64
	h.user.hook = func(ctx context.Context, m bridge.UserMessage) error {
		if u := until.Load(); u != 0 && time.Now().UnixMilli() < u-5 {
			early.Add(1) // called while the destination asked us to wait
		}
		if throttles.Add(-1) >= 0 {
			next := time.Now().Add(20 * time.Millisecond)
			until.Store(next.UnixMilli())
			return &bridge.ThrottledError{Destination: "teams", Until: next, Err: errors.New("HTTP 429")}
		}
		return nil
	}
	before := len(h.user.lines("conv"))
	for i, m := range []string{"a", "b", "c"} {
		ev := bridge.AgentEvent{Kind: bridge.AgentMessage, Chat: "chat-1", ExternalID: fmt.Sprint("x", i), Author: "Beth", Text: m, At: time.Now()}
		if err := h.relay.AgentEvents(context.Background(), "chat-1", []bridge.AgentEvent{ev}, true); err != nil {
			t.Fatal(err)
		}
	}
	h.drain()
	if s := h.session("conv"); s.State != bridge.StateLive {
		t.Fatalf("session %s/%s after a long Teams throttle, want it live", s.State, s.CloseReason)
	}
	if got := h.user.lines("conv")[before:]; !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("employee got %q, want each agent message once in order", got)
	}
	if n := early.Load(); n != 0 {
		t.Fatalf("Teams was called %d times before the time it named", n)
	}
}

// TestDispatchCommandWhileHandoffStarts (issue 11.4): /end_chat typed while
// the bot call that starts the handoff runs ends the handoff; it is never
// posted to the agent.
func TestDispatchCommandWhileHandoffStarts(t *testing.T) {
	for _, cmd := range []string{"/end_chat", "/restart"} {
		t.Run(cmd, func(t *testing.T) {
			h := newHarness(t)
			h.activity("conv", "agent please") // the bot call that hands off...
			h.activity("conv", cmd)            // ...and the command typed meanwhile
			h.drain()
			s := h.session("conv")
			if s.State != bridge.StateClosed {
				t.Fatalf("session %s, want closed by the command", s.State)
			}
			want := map[string]bridge.CloseReason{"/end_chat": bridge.ReasonUserEnded, "/restart": bridge.ReasonUserRestarted}[cmd]
			if s.CloseReason != want {
				t.Fatalf("close reason %s, want %s", s.CloseReason, want)
			}
			for chat, posted := range h.desk.posted {
				if slices.Contains(posted, cmd) {
					t.Fatalf("the command was posted to the agent in %s: %q", chat, posted)
				}
			}
			if got := h.bot.got("conv"); slices.Contains(got, cmd) {
				t.Fatalf("the command went to the bot: %q", got)
			}
		})
	}
}

// TestDispatchEndingNoticeNotWaitingForLeave (issue 11.5): while leaving the
// desk chat hangs, the employee already has the ending notice, and the bot's
// answer to their next message comes after it.
func TestDispatchEndingNoticeNotWaitingForLeave(t *testing.T) {
	h := newHarness(t)
	h.live()
	release := make(chan struct{})
	h.desk.leaveHook = func(ctx context.Context) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	d := bridge.NewDispatcher(h.relay, bridge.DispatchConfig{Workers: 4, BaseBackoff: time.Millisecond})
	stop := run(t, d)
	h.activity("conv", "/end_chat")
	h.activity("conv", "thanks")
	texts := bridge.DefaultTexts()
	eventually(t, "the ending notice while leave hangs", func() bool {
		return slices.Contains(h.user.lines("conv"), texts.UserEnded)
	})
	eventually(t, "the bot's answer", func() bool { return slices.Contains(h.user.lines("conv"), "bot: thanks") })
	got := h.user.lines("conv")
	if end, bot := slices.Index(got, texts.UserEnded), slices.Index(got, "bot: thanks"); end > bot {
		t.Fatalf("the bot overtook the ending: %q", got)
	}
	close(release)
	eventually(t, "the session to close", func() bool {
		return h.session("conv").State == bridge.StateClosed || h.session("conv").State == bridge.StateBot
	})
	stop()
	if n := count(h.user.lines("conv"), texts.UserEnded); n != 1 {
		t.Fatalf("ending notice shown %d times: %q", n, h.user.lines("conv"))
	}
}

// TestDispatchHangingDesk (issue 11.10): a desk that answers only after the
// call timeout. The outcome is still recorded (fresh context), so retries
// wait their backoff, the failure budget ends the session and the employee
// is told; with MaxAttempts set, the desk is called exactly that often.
func TestDispatchHangingDesk(t *testing.T) {
	tests := []struct {
		name        string
		maxAttempts int
		budget      time.Duration
	}{
		{"failure budget", 0, 4 * time.Second},
		{"max attempts", 3, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.live()
			var calls atomic.Int32
			h.desk.sendHook = func(ctx context.Context, text string) error {
				calls.Add(1)
				<-ctx.Done() // hangs past the call timeout
				return fmt.Errorf("servicenow: post: %w", ctx.Err())
			}
			// The call timeout leaves the other calls (reads, the notice to
			// Teams) room on a loaded machine; only the desk hangs.
			d := bridge.NewDispatcher(h.relay, bridge.DispatchConfig{Workers: 2, CallTimeout: 3 * time.Second,
				BaseBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, FailureBudget: tt.budget, MaxAttempts: tt.maxAttempts})
			run(t, d)
			h.activity("conv", "are you there?")
			eventually(t, "the session to end", func() bool { return h.session("conv").State == bridge.StateClosed })
			s := h.session("conv")
			if s.CloseReason != bridge.ReasonRelayError {
				t.Fatalf("closed as %s, want relay_error", s.CloseReason)
			}
			eventually(t, "the employee to be told", func() bool {
				return strings.Contains(strings.Join(h.user.lines("conv"), "\n"), "Summary: support chat chat-1")
			})
			if tt.maxAttempts > 0 && int(calls.Load()) != tt.maxAttempts {
				t.Fatalf("desk called %d times, want exactly MaxAttempts %d", calls.Load(), tt.maxAttempts)
			}
		})
	}
}

// flakyStore fails the transactions that complete an outbox item while
// failCompletes is positive, as a dropped connection (SQLSTATE 57P01) would.
type flakyStore struct {
	bridge.Store
	failCompletes atomic.Int32
}

func (s *flakyStore) Update(ctx context.Context, fn func(tx bridge.Tx) error) error {
	return s.Store.Update(ctx, func(tx bridge.Tx) error { return fn(flakyTx{Tx: tx, s: s}) })
}

type flakyTx struct {
	bridge.Tx
	s *flakyStore
}

func (t flakyTx) CompleteOutbox(ctx context.Context, id int64, claim string) error {
	if t.s.failCompletes.Add(-1) >= 0 {
		return errors.New("FATAL: terminating connection due to administrator command (SQLSTATE 57P01)")
	}
	return t.Tx.CompleteOutbox(ctx, id, claim)
}

func (t flakyTx) CompleteOutboxNext(ctx context.Context, id int64, claim string) (bool, error) {
	if t.s.failCompletes.Add(-1) >= 0 {
		return false, errors.New("FATAL: terminating connection due to administrator command (SQLSTATE 57P01)")
	}
	return t.Tx.CompleteOutboxNext(ctx, id, claim)
}

// TestDispatchCommitFailureAfterTeamsSend (issue 12.4): Teams accepted the
// message, then recording that failed. The bridge retries the commit and,
// when the store stays down past those tries, remembers the send, so the
// message is never sent to Teams again by this process.
func TestDispatchCommitFailureAfterTeamsSend(t *testing.T) {
	for _, failures := range []int32{2, 9} { // within the commit's tries; past them (kept in memory)
		t.Run(fmt.Sprint(failures, " failed commits"), func(t *testing.T) {
			h := newHarness(t)
			h.live()
			fs := &flakyStore{Store: h.st}
			relay := bridge.NewRelay(fs, h.bot, h.desk, h.user, nil, bridge.RelayConfig{})
			d := bridge.NewDispatcher(relay, bridge.DispatchConfig{Workers: 2, Lease: 300 * time.Millisecond, BaseBackoff: time.Millisecond})
			fs.failCompletes.Store(failures)
			ev := bridge.AgentEvent{Kind: bridge.AgentMessage, Chat: "chat-1", ExternalID: "a-once", Author: "Beth", Text: "sent once", At: time.Now()}
			if err := relay.AgentEvents(context.Background(), "chat-1", []bridge.AgentEvent{ev}, true); err != nil {
				t.Fatal(err)
			}
			run(t, d)
			eventually(t, "the send to be recorded", func() bool { return fs.failCompletes.Load() < 0 && h.pending() == 0 })
			if n := count(h.user.lines("conv"), "sent once"); n != 1 {
				t.Fatalf("Teams got the message %d times, want once (lines %q)", n, h.user.lines("conv"))
			}
		})
	}
}

// TestDispatchTeamsAcceptsAfterTimeout (issue 12.2, Teams part): the
// connector accepts a message but answers only after the call timeout. Teams
// has no idempotency key and no way to look the message up, so the retry
// shows it a second time: the window the README states. It is one repeat
// per timed-out attempt, never a loss, and the session stays live.
func TestDispatchTeamsAcceptsAfterTimeout(t *testing.T) {
	h := newHarness(t)
	h.live()
	var slow atomic.Bool
	slow.Store(true)
	h.user.hook = func(ctx context.Context, m bridge.UserMessage) error {
		if m.Text == "slow" && slow.Swap(false) {
			h.user.mu.Lock()
			h.user.got["conv"] = append(h.user.got["conv"], m.Text) // the connector accepted it...
			h.user.mu.Unlock()
			<-ctx.Done() // ...but answers after our timeout
			return ctx.Err()
		}
		return nil
	}
	d := bridge.NewDispatcher(h.relay, bridge.DispatchConfig{Workers: 2, CallTimeout: 100 * time.Millisecond, BaseBackoff: time.Millisecond})
	run(t, d)
	ev := bridge.AgentEvent{Kind: bridge.AgentMessage, Chat: "chat-1", ExternalID: "a-slow", Author: "Beth", Text: "slow", At: time.Now()}
	if err := h.relay.AgentEvents(context.Background(), "chat-1", []bridge.AgentEvent{ev}, true); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the retry to be recorded", func() bool { return h.pending() == 0 })
	if n := count(h.user.lines("conv"), "slow"); n != 2 {
		t.Fatalf("Teams showed the message %d times, want exactly 2 (one timed-out attempt, one retry)", n)
	}
	if s := h.session("conv"); s.State != bridge.StateLive {
		t.Fatalf("session %s, want live", s.State)
	}
}

// TestDispatchRestartTakesBackOwnClaims (issue 11.11): a process that
// crashed holding a claim and restarts under the same owner dispatches the
// item at once, not after the (here one hour) lease.
func TestDispatchRestartTakesBackOwnClaims(t *testing.T) {
	h := newHarness(t)
	h.activity("conv", "hello")
	// The crashed run claimed the item and died.
	got, err := h.st.ClaimOutbox(context.Background(), bridge.ClaimRequest{Now: time.Now(), Limit: 10, Lease: time.Hour, Owner: "host-a/1"})
	if err != nil || len(got) != 1 {
		t.Fatalf("claim: %v, %d items", err, len(got))
	}
	other := bridge.NewDispatcher(h.relay, bridge.DispatchConfig{Lease: time.Hour, Owner: "host-b/1"})
	if err := other.DrainOnce(context.Background()); err != nil || len(h.bot.got("conv")) != 0 {
		t.Fatalf("another owner took a leased item: %v, bot got %q", err, h.bot.got("conv"))
	}
	d := bridge.NewDispatcher(h.relay, bridge.DispatchConfig{Lease: time.Hour, Owner: "host-a/1"})
	run(t, d)
	eventually(t, "the restarted process to send the item", func() bool { return len(h.user.lines("conv")) == 1 })
	if got := h.bot.got("conv"); len(got) != 1 {
		t.Fatalf("bot got %q, want the message once", got)
	}
}

// TestDispatchShutdownReleasesClaims (issue 11.6/11.11): on shutdown the
// dispatcher stops within StopTimeout even with a call hanging, and the
// item is released so another replica retries it at once.
func TestDispatchShutdownReleasesClaims(t *testing.T) {
	h := newHarness(t)
	h.live()
	hang := make(chan struct{})
	var calls atomic.Int32
	h.desk.sendHook = func(ctx context.Context, text string) error {
		if calls.Add(1) == 1 {
			close(hang)
			<-ctx.Done() // the first replica's call hangs until shutdown cuts it off
			return ctx.Err()
		}
		return nil
	}
	a := bridge.NewDispatcher(h.relay, bridge.DispatchConfig{Lease: time.Hour, CallTimeout: time.Hour, StopTimeout: 100 * time.Millisecond, Owner: "replica-a"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	h.activity("conv", "still there?")
	<-hang
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil after an orderly stop", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not stop within its StopTimeout")
	}
	b := bridge.NewDispatcher(h.relay, bridge.DispatchConfig{Lease: time.Hour, Owner: "replica-b"})
	if err := b.DrainOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := h.desk.postedTo("chat-1"); !slices.Contains(got, "still there?") {
		t.Fatalf("the other replica did not retry the released item at once; agent got %q", got)
	}
}

// TestDispatchDeskNoteWhileClosingNotShown: the desk's system note about the
// bridge leaving ("… left the conversation"), arriving while the session is
// closing, is kept but not shown: the employee already has the ending notice
// and is back with the bot.
func TestDispatchDeskNoteWhileClosingNotShown(t *testing.T) {
	h := newHarness(t)
	h.live()
	h.activity("conv", "/end_chat") // closing; nothing dispatched yet
	ev := bridge.AgentEvent{Kind: bridge.AgentMessage, Chat: "chat-1", ExternalID: "sys-left", Text: "Handoff Bridge left the conversation", System: true, At: time.Now()}
	if err := h.relay.AgentEvents(context.Background(), "chat-1", []bridge.AgentEvent{ev}, true); err != nil {
		t.Fatal(err)
	}
	h.drain()
	if got := h.user.lines("conv"); slices.Contains(got, ev.Text) {
		t.Fatalf("the desk's note reached the employee after the ending: %q", got)
	}
}

// claimCounter counts the outbox items each kind was handed out by
// ClaimOutbox.
type claimCounter struct {
	bridge.Store
	mu      sync.Mutex
	claimed map[bridge.OutboxKind]int
}

func (c *claimCounter) ClaimOutbox(ctx context.Context, req bridge.ClaimRequest) ([]bridge.OutboxItem, error) {
	items, err := c.Store.ClaimOutbox(ctx, req)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, it := range items {
		c.claimed[it.Kind]++
	}
	return items, err
}

// TestHandoffOpenChained: the worker that records the bot's handoff signal
// opens the desk chat next under a claim born in that transaction, so the
// open is never handed out by ClaimOutbox, and the employee's notices still
// go out. When the desk is throttled, or the open fails and is retried, it
// goes through the normal claim, and the retry is marked so the desk can look
// for a chat the failed try opened.
func TestHandoffOpenChained(t *testing.T) {
	tests := []struct {
		name        string
		throttle    bool // the desk's lanes are throttled for 50 ms when the handoff starts
		failOpen    int  // the first opens fail
		wantClaimed int  // desk opens handed out by ClaimOutbox
		wantRetry   bool
	}{
		{"chained", false, 0, 0, false},
		{"desk throttled", true, 0, 1, false},
		{"open fails once", false, 1, 1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			cc := &claimCounter{Store: h.st, claimed: map[bridge.OutboxKind]int{}}
			var opens []bridge.Handoff
			desk := &flakyOpenDesk{fakeDesk: h.desk, fail: tc.failOpen, seen: &opens}
			h.relay = bridge.NewRelay(cc, h.bot, desk, h.user, nil, bridge.RelayConfig{})
			h.disp = bridge.NewDispatcher(h.relay, bridge.DispatchConfig{MaxAttempts: 3, BaseBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
			if tc.throttle {
				err := h.st.Update(t.Context(), func(tx bridge.Tx) error {
					return tx.SetThrottle(t.Context(), bridge.LaneDesk, time.Now().Add(50*time.Millisecond))
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			h.say("conv", "talk to agent")
			if tc.throttle {
				eventually(t, "the open after the throttle", func() bool { h.drain(); return h.session("conv").AgentChatID != "" })
			}
			s := h.session("conv")
			if s.State != bridge.StateQueued || s.AgentChatID == "" {
				t.Fatalf("session %s, chat %q: want queued with a desk chat", s.State, s.AgentChatID)
			}
			cc.mu.Lock()
			got := cc.claimed[bridge.KindDeskOpen]
			cc.mu.Unlock()
			if got != tc.wantClaimed {
				t.Fatalf("ClaimOutbox handed out the desk open %d times, want %d", got, tc.wantClaimed)
			}
			if len(opens) != tc.failOpen+1 || opens[len(opens)-1].Retry != tc.wantRetry || opens[0].Retry {
				t.Fatalf("opens %+v, want %d with Retry only on a retry", opens, tc.failOpen+1)
			}
			if len(h.user.lines("conv")) == 0 {
				t.Fatal("the employee was told nothing")
			}
		})
	}
}

// flakyOpenDesk fails the first fail opens with a retryable error and
// records every open.
type flakyOpenDesk struct {
	*fakeDesk
	mu   sync.Mutex
	fail int
	seen *[]bridge.Handoff
}

func (d *flakyOpenDesk) Open(ctx context.Context, h bridge.Handoff) (bridge.DeskChat, error) {
	d.mu.Lock()
	*d.seen = append(*d.seen, h)
	fail := d.fail > 0
	d.fail--
	d.mu.Unlock()
	if fail {
		return bridge.DeskChat{}, errors.New("servicenow: HTTP 503")
	}
	return d.fakeDesk.Open(ctx, h)
}

// TestDispatchClaimsWhenWorkerFrees (issue 18, bench-relay's backlogs): an
// item that became due while every worker was busy is claimed as soon as a
// worker frees up, not at the next idle tick. The idle tick is an hour, so
// only a wake-up on the freed worker passes; each round blocks one
// conversation's bot call, queues another conversation's message behind the
// only worker, and releases the call.
func TestDispatchClaimsWhenWorkerFrees(t *testing.T) {
	tests := []struct {
		name    string
		workers int
	}{{"one worker", 1}, {"three workers", 3}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			started := make(chan bridge.ConversationID, 16)
			release := make(chan struct{})
			h.bot.hook = func(ctx context.Context, in bridge.BotInput) error {
				if !strings.HasPrefix(string(in.Conversation), "block") {
					return nil
				}
				started <- in.Conversation
				select {
				case <-release:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			d := bridge.NewDispatcher(h.relay, bridge.DispatchConfig{Workers: tc.workers, Idle: time.Hour, BaseBackoff: time.Millisecond})
			run(t, d)
			for round := range 200 {
				// Occupy every worker with a call that waits for release.
				for w := range tc.workers {
					h.activity(bridge.ConversationID(fmt.Sprintf("block-%d-%d", round, w)), "hold")
					select {
					case <-started:
					case <-time.After(10 * time.Second):
						t.Fatalf("round %d: blocking call %d never started", round, w)
					}
				}
				waiting := bridge.ConversationID(fmt.Sprintf("wait-%d", round))
				h.activity(waiting, "behind the busy workers")
				for range tc.workers {
					release <- struct{}{}
				}
				deadline := time.Now().Add(2 * time.Second) // far below the hour of Idle
				for len(h.bot.got(waiting)) == 0 {
					if time.Now().After(deadline) {
						t.Fatalf("round %d: the waiting item was not claimed after the workers freed up (it waits for the idle tick)", round)
					}
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
}

// TestInboundHandedToWorker: while Run runs, the transaction that stores an
// employee's or an agent's message claims its delivery for a free worker,
// which performs it after the commit: ClaimOutbox never hands it out. When
// the destination is throttled the delivery waits for a normal claim.
func TestInboundHandedToWorker(t *testing.T) {
	tests := []struct {
		name        string
		throttle    bridge.Lane // throttled for 500 ms before the message (long enough that a loaded machine still stores the message inside it)
		fromAgent   bool
		kind        bridge.OutboxKind
		wantClaimed int
	}{
		{"employee to agent", "", false, bridge.KindDeskSend, 0},
		{"agent to employee", "", true, bridge.KindUserSend, 0},
		{"employee to a throttled desk", bridge.LaneDesk, false, bridge.KindDeskSend, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			cc := &claimCounter{Store: h.st, claimed: map[bridge.OutboxKind]int{}}
			h.relay = bridge.NewRelay(cc, h.bot, h.desk, h.user, nil, bridge.RelayConfig{})
			h.disp = bridge.NewDispatcher(h.relay, bridge.DispatchConfig{BaseBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
			h.live()
			ctx, cancel := context.WithCancel(t.Context())
			stopped := make(chan error, 1)
			go func() { stopped <- h.disp.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-stopped })
			// Run is serving once it has delivered something.
			if err := h.relay.AgentEvents(t.Context(), "chat-1", []bridge.AgentEvent{{Kind: bridge.AgentMessage, Chat: "chat-1",
				ExternalID: "warm-up", Author: "Beth", Text: "one moment", At: time.Now()}}, false); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the warm-up delivery", func() bool { return h.pending() == 0 })
			cc.mu.Lock()
			clear(cc.claimed)
			cc.mu.Unlock()
			if tc.throttle != "" {
				if err := h.st.Update(t.Context(), func(tx bridge.Tx) error {
					return tx.SetThrottle(t.Context(), tc.throttle, time.Now().Add(500*time.Millisecond))
				}); err != nil {
					t.Fatal(err)
				}
			}
			const text = "is the printer fixed?"
			var delivered func() bool
			if tc.fromAgent {
				ev := bridge.AgentEvent{Kind: bridge.AgentMessage, Chat: "chat-1", ExternalID: "a2", Author: "Beth", Text: text, At: time.Now()}
				if err := h.relay.AgentEvents(t.Context(), "chat-1", []bridge.AgentEvent{ev}, false); err != nil {
					t.Fatal(err)
				}
				delivered = func() bool {
					return slices.ContainsFunc(h.user.lines("conv"), func(l string) bool { return strings.Contains(l, text) })
				}
			} else {
				a := bridge.UserActivity{Kind: bridge.ActivityMessage, ID: "act-inbound", Text: text,
					Ref: bridge.ConversationRef{Conversation: "conv", ServiceURL: "https://smba.example/", ConversationType: "personal", UserID: "29:u", UserName: "Abel Tuter"}}
				if err := h.relay.UserActivity(t.Context(), a); err != nil {
					t.Fatal(err)
				}
				delivered = func() bool {
					h.desk.mu.Lock()
					defer h.desk.mu.Unlock()
					return slices.Contains(h.desk.posted["chat-1"], text)
				}
			}
			eventually(t, "the delivery", delivered)
			eventually(t, "the outbox drained", func() bool { return h.pending() == 0 })
			cc.mu.Lock()
			got := cc.claimed[tc.kind]
			cc.mu.Unlock()
			if got != tc.wantClaimed {
				t.Fatalf("ClaimOutbox handed out the %s %d times, want %d", tc.kind, got, tc.wantClaimed)
			}
		})
	}
}

// panicStore panics in the next Update, as a bug in a transaction would.
type panicStore struct {
	bridge.Store
	armed atomic.Bool
}

func (p *panicStore) Update(ctx context.Context, fn func(tx bridge.Tx) error) error {
	if p.armed.Swap(false) {
		panic("bug in a transaction")
	}
	return p.Store.Update(ctx, fn)
}

// TestInboundPanicFreesWorker: a worker reserved for an inbound transaction
// is freed even when the transaction panics, so Run still stops.
func TestInboundPanicFreesWorker(t *testing.T) {
	h := newHarness(t)
	ps := &panicStore{Store: h.st}
	h.relay = bridge.NewRelay(ps, h.bot, h.desk, h.user, nil, bridge.RelayConfig{})
	h.disp = bridge.NewDispatcher(h.relay, bridge.DispatchConfig{StopTimeout: 50 * time.Millisecond})
	h.live()
	ctx, cancel := context.WithCancel(t.Context())
	stopped := make(chan error, 1)
	go func() { stopped <- h.disp.Run(ctx) }()
	if err := h.relay.AgentEvents(t.Context(), "chat-1", []bridge.AgentEvent{{Kind: bridge.AgentMessage, Chat: "chat-1",
		ExternalID: "warm-up", Author: "Beth", Text: "one moment", At: time.Now()}}, false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the warm-up delivery", func() bool { return h.pending() == 0 })
	ps.armed.Store(true)
	func() {
		defer func() { _ = recover() }()
		_ = h.relay.AgentEvents(t.Context(), "chat-1", []bridge.AgentEvent{{Kind: bridge.AgentMessage, Chat: "chat-1",
			ExternalID: "a3", Author: "Beth", Text: "and now?", At: time.Now()}}, false)
	}()
	cancel()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop: the worker reserved for the panicking transaction was never freed")
	}
}

// TestInboundKicksForItemsNotHandedOver: an inbound transaction that
// enqueues items it does not hand to the reserved worker (an ending queues
// the desk leave, the handback and notices) kicks Run, which claims them at
// once: the idle tick is an hour. One that handed its only item over does
// not kick (TestStatementsPerMessage counts the rounds).
func TestInboundKicksForItemsNotHandedOver(t *testing.T) {
	tests := []struct {
		name string
		end  func(h *harness) error
	}{
		{"employee ends", func(h *harness) error {
			return h.relay.UserActivity(t.Context(), bridge.UserActivity{Kind: bridge.ActivityMessage, ID: "act-end", Text: string(bridge.CommandEndChat),
				Ref: bridge.ConversationRef{Conversation: "conv", ServiceURL: "https://smba.example/", ConversationType: "personal", UserID: "29:u", UserName: "Abel Tuter"}})
		}},
		{"agent ends", func(h *harness) error {
			return h.relay.AgentEvents(t.Context(), "chat-1", []bridge.AgentEvent{{Kind: bridge.AgentEnded, Chat: "chat-1",
				ExternalID: "state:chat-1", At: time.Now(), System: true, EndReason: bridge.ReasonAgentClosed}}, false)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.disp = bridge.NewDispatcher(h.relay, bridge.DispatchConfig{Idle: time.Hour, BaseBackoff: time.Millisecond})
			h.live()
			run(t, h.disp)
			if err := h.relay.AgentEvents(t.Context(), "chat-1", []bridge.AgentEvent{{Kind: bridge.AgentMessage, Chat: "chat-1",
				ExternalID: "warm-up", Author: "Beth", Text: "one moment", At: time.Now()}}, false); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the warm-up delivery", func() bool { return h.pending() == 0 })
			if err := tc.end(h); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second) // far below the hour of Idle
			for {
				h.desk.mu.Lock()
				left := h.desk.left["chat-1"]
				h.desk.mu.Unlock()
				if left > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the desk leave was not claimed: the ending's commit did not kick Run")
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
}

// TestDispatchKicksForLaneSuccessor: a message queued behind its lane's item
// in flight is claimed as soon as that item is done, though nothing else
// kicks Run and the idle tick is an hour: the completion sees it waiting.
func TestDispatchKicksForLaneSuccessor(t *testing.T) {
	h := newHarness(t)
	rs := &roundStore{Store: h.st}
	h.relay = bridge.NewRelay(rs, h.bot, h.desk, h.user, nil, bridge.RelayConfig{})
	h.disp = bridge.NewDispatcher(h.relay, bridge.DispatchConfig{Idle: time.Hour, BaseBackoff: time.Millisecond})
	h.live()
	started, release := make(chan struct{}, 1), make(chan struct{})
	h.desk.sendHook = func(ctx context.Context, text string) error {
		if text != "first" {
			return nil
		}
		started <- struct{}{}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	run(t, h.disp)
	ref := bridge.ConversationRef{Conversation: "conv", ServiceURL: "https://smba.example/", ConversationType: "personal", UserID: "29:u", UserName: "Abel Tuter"}
	var empty int64
	for i, text := range []string{"first", "second"} {
		empty = rs.empty.Load()
		if err := h.relay.UserActivity(t.Context(), bridge.UserActivity{Kind: bridge.ActivityMessage, ID: fmt.Sprintf("lane-%d", i), Text: text, Ref: ref}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			select {
			case <-started:
			case <-time.After(10 * time.Second):
				t.Fatal("the first desk send never started")
			}
		}
	}
	// The second message's kick finds the lane busy; only then may the
	// first finish.
	eventually(t, "the round the second message kicked", func() bool { return rs.empty.Load() > empty })
	close(release)
	deadline := time.Now().Add(5 * time.Second) // far below the hour of Idle
	for !slices.Contains(h.desk.postedTo("chat-1"), "second") {
		if time.Now().After(deadline) {
			t.Fatal("the second message was not claimed after the first was done (it waits for the idle tick)")
		}
		time.Sleep(time.Millisecond)
	}
}
