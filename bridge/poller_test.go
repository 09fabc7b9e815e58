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
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
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

// TestPollerSchedule runs the cron schedule: runs happen, never overlap, a
// PollOnce waits for a running run, and Stop waits for the running run.
func TestPollerSchedule(t *testing.T) {
	var (
		running, overlaps, calls atomic.Int32
		release                  = make(chan struct{})
		started                  = make(chan struct{}, 10)
	)
	targets := pollTargets{list: func() ([]PollTarget, error) {
		if running.Add(1) > 1 {
			overlaps.Add(1)
		}
		defer running.Add(-1)
		if calls.Add(1) == 1 {
			started <- struct{}{}
			<-release // the first run is slow: several ticks pass
		}
		return nil, nil
	}}
	p := newPollerForTest(t, PollerConfig{Targets: targets, Sink: &pollSink{}, Feed: pollFeed{}, Interval: time.Second, Jitter: -1})
	p.Start()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("no scheduled run within 5 s")
	}
	once := make(chan error, 1)
	go func() { once <- p.PollOnce(context.Background()) }()
	time.Sleep(1500 * time.Millisecond) // at least one tick is skipped meanwhile
	select {
	case <-once:
		t.Fatal("PollOnce ran while a scheduled run was going")
	default:
	}
	close(release)
	if err := <-once; err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	stopped := make(chan error, 1)
	go func() { stopped <- p.Stop(context.Background()) }()
	if err := <-stopped; err != nil {
		t.Fatalf("Stop: %v", err)
	}
	n := calls.Load()
	time.Sleep(1200 * time.Millisecond)
	if calls.Load() != n {
		t.Error("a run happened after Stop")
	}
	if overlaps.Load() != 0 {
		t.Errorf("%d overlapping runs", overlaps.Load())
	}
	if st := p.Stats(); st.Runs < 3 || st.Skipped < 1 {
		t.Errorf("stats %+v, want ≥ 3 runs and ≥ 1 skipped tick", st)
	}
}

// TestPollerStopWaitsAndCancels: Stop waits for the running run; when its
// context ends first the run is cancelled.
func TestPollerStopWaitsAndCancels(t *testing.T) {
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
	p := newPollerForTest(t, PollerConfig{Targets: pollTargetsOf("a"), Sink: &pollSink{}, Feed: feed, Interval: time.Second, Jitter: -1})
	p.Start()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := p.Stop(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) < 150*time.Millisecond {
		t.Errorf("Stop = %v after %v, want the deadline after waiting", err, time.Since(start))
	}
	select {
	case <-cancelled:
	case <-time.After(2 * time.Second):
		t.Error("the running poll was not cancelled")
	}
}

// TestPollerRecoversPanic: a panic in a scheduled run is recovered by cron,
// logged through slog, and later runs still happen.
func TestPollerRecoversPanic(t *testing.T) {
	var (
		buf   bytes.Buffer
		bufMu sync.Mutex
		calls atomic.Int32
	)
	logger := slog.New(slog.NewTextHandler(pollLogWriter{&buf, &bufMu}, nil))
	targets := pollTargets{list: func() ([]PollTarget, error) {
		if calls.Add(1) == 1 {
			panic("targets exploded")
		}
		return nil, nil
	}}
	p := newPollerForTest(t, PollerConfig{Targets: targets, Sink: &pollSink{}, Feed: pollFeed{}, Interval: time.Second, Jitter: -1, Logger: logger})
	p.Start()
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if calls.Load() < 2 {
		t.Fatal("no run after the panic")
	}
	bufMu.Lock()
	defer bufMu.Unlock()
	if !strings.Contains(buf.String(), "targets exploded") || !strings.Contains(buf.String(), "level=ERROR msg=\"cron: panic\"") {
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
