package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge/bridgetest"
)

// pollFeed is a function-field AgentFeed and BatchAgentFeed.
type pollFeed struct {
	poll     func(ctx context.Context, chat AgentChatID, since time.Time) ([]AgentEvent, error)
	pollMany func(ctx context.Context, cursors map[AgentChatID]time.Time) (map[AgentChatID][]AgentEvent, error)
}

func (f pollFeed) Poll(ctx context.Context, chat AgentChatID, since time.Time) ([]AgentEvent, error) {
	return f.poll(ctx, chat, since)
}

func (f pollFeed) PollMany(ctx context.Context, cursors map[AgentChatID]time.Time) (map[AgentChatID][]AgentEvent, error) {
	return f.pollMany(ctx, cursors)
}

// pollTargets is a fixed PollTargets.
type pollTargets struct {
	list func() ([]PollTarget, error)
}

func (p pollTargets) PollTargets(context.Context) ([]PollTarget, error) { return p.list() }

func pollTargetsOf(chats ...AgentChatID) pollTargets {
	return pollTargets{list: func() ([]PollTarget, error) {
		var out []PollTarget
		for _, c := range chats {
			out = append(out, PollTarget{Session: SessionID("s-" + c), Chat: c, Cursor: time.Unix(100, 0)})
		}
		return out, nil
	}}
}

// pollSink records the events it accepts; fail lists chats it refuses.
type pollSink struct {
	mu   sync.Mutex
	got  map[AgentChatID][]AgentEvent
	fail map[AgentChatID]bool
}

func (s *pollSink) AgentEvents(_ context.Context, chat AgentChatID, events []AgentEvent, fromPoll bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !fromPoll {
		return errors.New("fromPoll not set")
	}
	if s.fail[chat] {
		return errors.New("store down")
	}
	if s.got == nil {
		s.got = map[AgentChatID][]AgentEvent{}
	}
	s.got[chat] = append(s.got[chat], events...)
	return nil
}

func (s *pollSink) events(chat AgentChatID) []AgentEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got[chat])
}

func pollMsgEvent(chat AgentChatID, id string) AgentEvent {
	return AgentEvent{Kind: AgentMessage, Chat: chat, ExternalID: id, Text: "hi", At: time.Unix(101, 0)}
}

func newPollerForTest(t *testing.T, cfg PollerConfig) *Poller {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p, err := NewPoller(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPollerPerSessionIsolatesFailures(t *testing.T) {
	feed := pollFeed{poll: func(_ context.Context, chat AgentChatID, since time.Time) ([]AgentEvent, error) {
		if !since.Equal(time.Unix(100, 0)) {
			return nil, fmt.Errorf("cursor %v not passed", since)
		}
		switch chat {
		case "broken":
			return nil, errors.New("HTTP 500")
		case "panics":
			panic("boom")
		case "gone":
			return nil, fmt.Errorf("servicenow: poll chat: %w", ErrChatClosed)
		case "quiet":
			return nil, nil
		}
		return []AgentEvent{pollMsgEvent(chat, "m1")}, nil
	}}
	sink := &pollSink{fail: map[AgentChatID]bool{"unstorable": true}}
	p := newPollerForTest(t, PollerConfig{Targets: pollTargetsOf("a", "broken", "panics", "gone", "quiet", "unstorable", "b"), Sink: sink, Feed: feed})
	err := p.PollOnce(context.Background())
	for _, want := range []string{"chat broken (session s-broken): HTTP 500", "panic: boom", "store events of chat unstorable"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("PollOnce error %v lacks %q", err, want)
		}
	}
	for _, chat := range []AgentChatID{"a", "b"} {
		if got := sink.events(chat); len(got) != 1 || got[0].ExternalID != "m1" {
			t.Errorf("chat %s: got %+v, want its message", chat, got)
		}
	}
	if got := sink.events("gone"); len(got) != 1 || got[0].Kind != AgentEnded || got[0].EndReason != ReasonAgentClosed || !got[0].At.Equal(time.Unix(100, 0)) {
		t.Errorf("vanished chat: got %+v, want one AgentEnded at the cursor", got)
	}
	if got := sink.events("quiet"); got != nil {
		t.Errorf("quiet chat: sink called with %+v", got)
	}
	st := p.Stats()
	if st.Runs != 1 || st.Polled != 7 || st.Events != 3 || st.Errors != 3 || st.LastTargets != 7 {
		t.Errorf("stats %+v", st)
	}
}

func TestPollerBatchDeliversPartialResults(t *testing.T) {
	var gotCursors map[AgentChatID]time.Time
	feed := pollFeed{pollMany: func(_ context.Context, cursors map[AgentChatID]time.Time) (map[AgentChatID][]AgentEvent, error) {
		gotCursors = cursors
		return map[AgentChatID][]AgentEvent{"a": {pollMsgEvent("a", "m1")}, "c": {pollMsgEvent("c", "m2")}}, errors.New("chunk 2: HTTP 503")
	}}
	sink := &pollSink{fail: map[AgentChatID]bool{"c": true}}
	p := newPollerForTest(t, PollerConfig{Targets: pollTargetsOf("a", "b", "c", "a"), Sink: sink, Batch: feed})
	err := p.PollOnce(context.Background())
	if err == nil || !strings.Contains(err.Error(), "batch: chunk 2: HTTP 503") || !strings.Contains(err.Error(), "store events of chat c") {
		t.Errorf("PollOnce error %v", err)
	}
	if len(gotCursors) != 3 || !gotCursors["b"].Equal(time.Unix(100, 0)) {
		t.Errorf("cursors passed %v", gotCursors)
	}
	if got := sink.events("a"); len(got) != 1 {
		t.Errorf("chat a (listed twice) got %d events, want 1", len(got))
	}
}

func TestPollerConfig(t *testing.T) {
	feed := pollFeed{}
	tests := []struct {
		name string
		cfg  PollerConfig
		want string
	}{
		{"no feed", PollerConfig{Targets: pollTargetsOf(), Sink: &pollSink{}}, "exactly one of Feed"},
		{"two feeds", PollerConfig{Targets: pollTargetsOf(), Sink: &pollSink{}, Feed: feed, Batch: feed}, "exactly one of Feed"},
		{"no sink", PollerConfig{Targets: pollTargetsOf(), Feed: feed}, "a Sink value is required"},
		{"no targets", PollerConfig{Sink: &pollSink{}, Feed: feed}, "a Targets value is required"},
	}
	for _, tc := range tests {
		if _, err := NewPoller(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestPollerConcurrencyBound(t *testing.T) {
	var running, peak atomic.Int32
	feed := pollFeed{poll: func(context.Context, AgentChatID, time.Time) ([]AgentEvent, error) {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
		running.Add(-1)
		return nil, nil
	}}
	var chats []AgentChatID
	for i := range 40 {
		chats = append(chats, AgentChatID(fmt.Sprint(i)))
	}
	p := newPollerForTest(t, PollerConfig{Targets: pollTargetsOf(chats...), Sink: &pollSink{}, Feed: feed, Concurrency: 4})
	if err := p.PollOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := peak.Load(); got > 4 || got < 2 {
		t.Errorf("peak concurrency %d, want 2..4", got)
	}
}

// fixedLease is a Leadership a test switches.
type fixedLease struct{ held atomic.Bool }

func (l *fixedLease) Held() bool { return l.held.Load() }

func (l *fixedLease) Acquired() <-chan struct{} { return nil }

// runPoller starts p.Run and returns a func that stops it and returns Run's
// error.
func runPoller(t *testing.T, p *Poller) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				err = errors.New("Run did not return within 10 s of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// TestPollerSchedule steps a fake clock: a run per Interval, none while
// another replica holds the lease, PollOnce waits for a running run, and
// Run returns nil on cancel with no run afterwards.
func TestPollerSchedule(t *testing.T) {
	var (
		running, overlaps, calls atomic.Int32
		release                  = make(chan struct{})
		ran                      = make(chan struct{}, 10)
		slow                     = make(chan struct{})
	)
	targets := pollTargets{list: func() ([]PollTarget, error) {
		if running.Add(1) > 1 {
			overlaps.Add(1)
		}
		defer running.Add(-1)
		if calls.Add(1) == 2 {
			close(slow)
			<-release // the second run is slow
		}
		ran <- struct{}{}
		return nil, nil
	}}
	clock := bridgetest.NewClock(time.Unix(1000, 0))
	lease := &fixedLease{}
	p := newPollerForTest(t, PollerConfig{Targets: targets, Sink: &pollSink{}, Feed: pollFeed{}, Interval: 3 * time.Second,
		Jitter: -1, Clock: clock, Lease: lease})
	stop := runPoller(t, p)
	ctx := t.Context()
	waitParked := func() {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := clock.WaitFor(wctx, 1); err != nil {
			t.Fatal("the poller never waited on the clock")
		}
		if w := clock.Waits(); w[0] != 3*time.Second {
			t.Fatalf("poller waits %v, want the 3 s interval", w[0])
		}
	}

	// Not the leader: ticks pass without a run.
	for range 3 {
		waitParked()
		clock.Advance(3 * time.Second)
	}
	waitParked()
	if n := calls.Load(); n != 0 {
		t.Fatalf("%d runs without the lease, want 0", n)
	}

	// Leader: one run per tick.
	lease.held.Store(true)
	clock.Advance(3 * time.Second)
	<-ran
	waitParked()
	clock.Advance(3 * time.Second) // the second run blocks
	<-slow
	once := make(chan error, 1)
	go func() { once <- p.PollOnce(context.Background()) }()
	select {
	case <-once:
		t.Fatal("PollOnce ran while a scheduled run was going")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	<-ran
	if err := <-once; err != nil {
		t.Fatal(err)
	}
	<-ran
	if err := stop(); err != nil {
		t.Fatalf("Run returned %v on cancel, want nil", err)
	}
	clock.Advance(time.Hour)
	if n := calls.Load(); n != 3 {
		t.Errorf("%d runs, want 3 (two scheduled, one PollOnce)", n)
	}
	if overlaps.Load() != 0 {
		t.Errorf("%d overlapping runs", overlaps.Load())
	}
	if st := p.Stats(); st.Runs != 3 {
		t.Errorf("stats %+v, want 3 runs", st)
	}
}

// TestPollerCancelStopsARun: cancelling Run's context cancels the run in
// progress and Run returns.
func TestPollerCancelStopsARun(t *testing.T) {
	started := make(chan struct{}, 1)
	cancelled := make(chan struct{})
	feed := pollFeed{poll: func(ctx context.Context, _ AgentChatID, _ time.Time) ([]AgentEvent, error) {
		select {
		case started <- struct{}{}:
		default:
		}
		<-ctx.Done()
		close(cancelled)
		return nil, ctx.Err()
	}}
	clock := bridgetest.NewClock(time.Unix(1000, 0))
	p := newPollerForTest(t, PollerConfig{Targets: pollTargetsOf("a"), Sink: &pollSink{}, Feed: feed, Interval: time.Second, Jitter: -1, Clock: clock})
	stop := runPoller(t, p)
	if err := clock.WaitFor(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	<-started
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cancelled:
	default:
		t.Error("Run returned before the running poll was cancelled")
	}
}

// TestPollerRecoversPanic: a panic in a scheduled run is recovered, logged
// through slog, and later runs still happen.
func TestPollerRecoversPanic(t *testing.T) {
	var (
		buf   bytes.Buffer
		bufMu sync.Mutex
		calls atomic.Int32
		ran   = make(chan struct{}, 2)
	)
	logger := slog.New(slog.NewTextHandler(pollLogWriter{&buf, &bufMu}, nil))
	targets := pollTargets{list: func() ([]PollTarget, error) {
		defer func() { ran <- struct{}{} }()
		if calls.Add(1) == 1 {
			panic("targets exploded")
		}
		return nil, nil
	}}
	clock := bridgetest.NewClock(time.Unix(1000, 0))
	p := newPollerForTest(t, PollerConfig{Targets: targets, Sink: &pollSink{}, Feed: pollFeed{}, Interval: time.Second, Jitter: -1, Logger: logger, Clock: clock})
	stop := runPoller(t, p)
	for range 2 {
		if err := clock.WaitFor(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
		<-ran
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	bufMu.Lock()
	defer bufMu.Unlock()
	if !strings.Contains(buf.String(), "targets exploded") || !strings.Contains(buf.String(), "level=ERROR msg=\"poll run panicked\"") {
		t.Errorf("panic not logged:\n%s", buf.String())
	}
}

type pollLogWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w pollLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// TestPollerLogsNoBodies: failures are logged with session and chat ids and
// never with message text.
func TestPollerLogsNoBodies(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(pollLogWriter{&buf, &mu}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	feed := pollFeed{poll: func(_ context.Context, chat AgentChatID, _ time.Time) ([]AgentEvent, error) {
		return []AgentEvent{{Kind: AgentMessage, Chat: chat, ExternalID: "x", Text: "secret text", At: time.Unix(101, 0)}}, nil
	}}
	p := newPollerForTest(t, PollerConfig{Targets: pollTargetsOf("a"), Sink: &pollSink{fail: map[AgentChatID]bool{"a": true}}, Feed: feed, Logger: logger})
	_ = p.PollOnce(context.Background())
	mu.Lock()
	defer mu.Unlock()
	out := buf.String()
	if !strings.Contains(out, "session_id=s-a") || !strings.Contains(out, "chat_id=a") || strings.Contains(out, "secret text") {
		t.Errorf("log:\n%s", out)
	}
}

// memThrottle is an in-memory DeskThrottle.
type memThrottle struct {
	mu    sync.Mutex
	until time.Time
}

func (m *memThrottle) DeskThrottledUntil(context.Context) (time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.until.After(time.Now()) {
		return m.until, nil
	}
	return time.Time{}, nil
}

func (m *memThrottle) ThrottleDesk(_ context.Context, until time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if until.After(m.until) {
		m.until = until
	}
	return nil
}

func (m *memThrottle) lift() { m.mu.Lock(); m.until = time.Time{}; m.mu.Unlock() }

// TestPollerHonoursThrottle (issue 11.1): when the desk throttles a poll, the
// rest of the run and later runs make no request until the throttle lifts,
// the throttle is recorded for the desk lanes, and it is returned but not
// counted as an error.
func TestPollerHonoursThrottle(t *testing.T) {
	for _, mode := range []string{"per-session", "batch"} {
		t.Run(mode, func(t *testing.T) {
			var (
				mu        sync.Mutex
				calls     int
				throttled = true
			)
			answer := func() error {
				mu.Lock()
				defer mu.Unlock()
				calls++
				if throttled {
					return &ThrottledError{Destination: "desk", Until: time.Now().Add(time.Hour), Err: errors.New("HTTP 429")}
				}
				return nil
			}
			feed := pollFeed{
				poll: func(context.Context, AgentChatID, time.Time) ([]AgentEvent, error) { return nil, answer() },
				pollMany: func(context.Context, map[AgentChatID]time.Time) (map[AgentChatID][]AgentEvent, error) {
					return nil, answer()
				},
			}
			th := &memThrottle{}
			cfg := PollerConfig{Targets: pollTargetsOf("c1", "c2", "c3"), Sink: &pollSink{}, Throttle: th, Concurrency: 1}
			if mode == "batch" {
				cfg.Batch = feed
			} else {
				cfg.Feed = feed
			}
			p := newPollerForTest(t, cfg)
			if err := p.PollOnce(t.Context()); err == nil {
				t.Fatal("throttled run returned nil, want the ThrottledError")
			} else if _, ok := Throttled(err); !ok {
				t.Fatalf("throttled run returned %v, want a ThrottledError", err)
			}
			if calls != 1 {
				t.Fatalf("%d requests in the throttled run, want 1 (the rest waits)", calls)
			}
			if until, _ := th.DeskThrottledUntil(t.Context()); until.IsZero() {
				t.Fatal("the throttle was not recorded")
			}
			if err := p.PollOnce(t.Context()); err != nil || calls != 1 {
				t.Fatalf("run while throttled: %v, %d requests; want none", err, calls)
			}
			mu.Lock()
			throttled = false
			mu.Unlock()
			th.lift()
			if err := p.PollOnce(t.Context()); err != nil {
				t.Fatal(err)
			}
			want := 4
			if mode == "batch" {
				want = 2
			}
			if calls != want {
				t.Fatalf("%d requests after the throttle lifted, want %d", calls, want)
			}
			if st := p.Stats(); st.Throttled == 0 || st.Errors != 0 {
				t.Fatalf("stats %+v: want throttles counted and no errors", st)
			}
		})
	}
}
