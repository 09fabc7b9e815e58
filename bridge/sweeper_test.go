package bridge_test

import (
	"context"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/bridge/bridgetest"
)

// TestSweeperFiresAtTheDeadline: the sweeper sleeps exactly until the
// nearest queue or idle deadline, so a timeout fires on time (before, a fixed
// 30 s ticker ended sessions up to 30 s late).
func TestSweeperFiresAtTheDeadline(t *testing.T) {
	h := newHarness(t)
	clock := bridgetest.NewClock(time.Now().Truncate(time.Second))
	const queue, idle = 45 * time.Second, 10 * time.Minute
	h.relay = bridge.NewRelay(h.st, h.bot, h.desk, h.user, nil, bridge.RelayConfig{
		QueueTimeout: queue, IdleTimeout: idle, Now: clock.Now})
	h.disp = bridge.NewDispatcher(h.relay, bridge.DispatchConfig{MaxAttempts: 2, BaseBackoff: time.Millisecond})
	sw := bridge.NewSweeper(h.relay, bridge.SweeperConfig{Clock: clock})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sw.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v on cancel, want nil", err)
		}
	}()
	parkedFor := func(want time.Duration) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if err := clock.WaitFor(wctx, 1); err != nil {
			t.Fatal("the sweeper never waited on the clock")
		}
		if got := clock.Waits(); len(got) != 1 || got[0] != want {
			t.Fatalf("sweeper waits %v, want %v", got, want)
		}
	}

	// Nothing open: the earliest anything can be due is one queue timeout away.
	parkedFor(queue)
	clock.Advance(20 * time.Second)
	h.say("conv", "agent please") // queued at +20 s: due at +65 s
	clock.Advance(25 * time.Second)
	parkedFor(20 * time.Second) // woke at +45 s, nothing due, sleeps to +65 s
	clock.Advance(20*time.Second - time.Millisecond)
	if s := h.session("conv"); s.State != bridge.StateQueued {
		t.Fatalf("state %s before the deadline, want queued", s.State)
	}
	clock.Advance(time.Millisecond)
	waitState(t, h, "conv", bridge.ReasonQueueTimeout)

	// A live session: due one idle timeout after its last activity.
	parkedFor(queue)
	h.say("conv2", "agent please")
	h.agent("chat-2", "a1", "Hi", "")
	start := clock.Now()
	if s := h.session("conv2"); s.State != bridge.StateLive {
		t.Fatalf("conv2 is %s, want live", s.State)
	}
	// It wakes at least every queue timeout (a new handoff could be due
	// then), and the last sleep ends exactly at the idle deadline.
	for range 13 {
		parkedFor(queue)
		clock.Advance(queue)
	}
	parkedFor(idle - 13*queue)
	clock.Advance(idle - 13*queue - time.Millisecond)
	if s := h.session("conv2"); s.State != bridge.StateLive {
		t.Fatalf("conv2 is %s before its idle deadline, want live", s.State)
	}
	clock.Set(start.Add(idle))
	waitState(t, h, "conv2", bridge.ReasonIdleTimeout)
}

// waitState waits (generously; no timing claim) until the sweeper ended
// conv's session with reason (closing or closed).
func waitState(t *testing.T, h *harness, conv bridge.ConversationID, reason bridge.CloseReason) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := h.session(conv)
		if (s.State == bridge.StateClosing || s.State == bridge.StateClosed) && s.CloseReason == reason {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("session of %s is %s/%s, want ended by %s", conv, s.State, s.CloseReason, reason)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSweeperOnlyOnTheLeader: without the lease the sweeper ends nothing;
// once the lease is acquired it sweeps at once.
func TestSweeperOnlyOnTheLeader(t *testing.T) {
	h := newHarness(t)
	clock := bridgetest.NewClock(time.Now().Truncate(time.Second))
	h.relay = bridge.NewRelay(h.st, h.bot, h.desk, h.user, nil, bridge.RelayConfig{QueueTimeout: time.Minute, Now: clock.Now})
	h.disp = bridge.NewDispatcher(h.relay, bridge.DispatchConfig{MaxAttempts: 2, BaseBackoff: time.Millisecond})
	leases := &memLeases{}
	leader, err := bridge.NewLeader(leases, bridge.LeaderConfig{Holder: "me", TTL: 30 * time.Second, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	lease := leader.Job("sweeper")
	leases.take("sweeper", "other")
	sw := bridge.NewSweeper(h.relay, bridge.SweeperConfig{Clock: clock, Lease: lease})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = leader.Run(ctx) }()
	go func() { _ = sw.Run(ctx) }()

	h.say("conv", "agent please")
	clock.Advance(2 * time.Minute) // past the timeout, but another replica leads
	if err := clock.WaitFor(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if s := h.session("conv"); s.State != bridge.StateQueued {
		t.Fatalf("a non-leader swept: state %s", s.State)
	}
	leases.take("sweeper", "")      // the other replica's lease ends
	clock.Advance(10 * time.Second) // the leader's next renewal takes it
	waitState(t, h, "conv", bridge.ReasonQueueTimeout)
	if !leader.Leads("sweeper") || leader.Leads("poller") {
		t.Fatal("Leads does not report the held lease")
	}
}
