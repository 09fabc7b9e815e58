package servicenow_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow"
	"github.com/handoffhq/handoff/servicenow/snowtest"
)

// t0 is the frozen start of the fake instance's clock in most tests.
var t0 = time.Date(2024, 5, 2, 14, 3, 11, 123_000_000, time.UTC)

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("HANDOFF_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newFake starts a fake instance that is closed with the test.
func newFake(t testing.TB, opts snowtest.Options) *snowtest.Instance {
	t.Helper()
	in := snowtest.New(opts)
	t.Cleanup(in.Close)
	return in
}

// newClient returns a Basic-auth client for the fake's default user, with
// short retry waits; mod adjusts the config.
func newClient(t testing.TB, in *snowtest.Instance, mod func(*servicenow.Config)) *servicenow.Client {
	t.Helper()
	cfg := servicenow.Config{
		InstanceURL:  in.URL(),
		Username:     snowtest.DefaultUser,
		Password:     snowtest.DefaultPassword,
		Queue:        snowtest.DefaultQueue,
		RetryWaitMin: time.Millisecond,
		RetryWaitMax: 20 * time.Millisecond,
		Timeout:      5 * time.Second,
		CommitWait:   50 * time.Millisecond, // tests of slow commits set their own
		Logger:       testLogger(t),
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := servicenow.New(cfg)
	if err != nil {
		t.Fatalf("servicenow.New: %v", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { _ = c.Run(ctx); close(ran) }()
	t.Cleanup(func() { stop(); <-ran }) // before the fakes close: no token fetch outlives the test
	return c
}

// openChat opens a chat for session through the client.
func openChat(t testing.TB, c *servicenow.Client, session string) bridge.AgentChatID {
	t.Helper()
	oc, err := c.Open(context.Background(), bridge.Handoff{Session: bridge.SessionID(session), UserName: "Abel Tuter",
		UserEmail: "abel.tuter@example.com", TenantID: "tenant-1", Reason: "user_asked"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return oc.ID
}

// dc is the desk chat of a chat id (the Connect desk keeps no desk data).
func dc(id bridge.AgentChatID) bridge.DeskChat { return bridge.DeskChat{ID: id} }

func must[T any](t testing.TB) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// memRelay is an in-memory PollTargets and AgentEventSink that behaves as the
// spec says: it de-duplicates by ExternalID, moves the cursor to the newest
// event of every accepted call (echoes included), never backwards, and
// commits nothing when it fails.
type memRelay struct {
	mu       sync.Mutex
	sessions []*memSession
	failNext int // fail this many AgentEvents calls
	calls    int
}

type memSession struct {
	id        bridge.SessionID
	chat      bridge.AgentChatID
	cursor    time.Time
	seen      map[string]bool
	delivered []bridge.AgentEvent // agent and system messages, not echoes
	echoes    int
	joined    int
	ended     []bridge.CloseReason
	lastBatch int // events in the last accepted call
	deskData  string
}

// DeskData makes memRelay a servicenow.SessionLookup.
func (m *memRelay) DeskData(_ context.Context, chat bridge.AgentChatID) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.sessions {
		if s.chat == chat {
			return s.deskData, nil
		}
	}
	return "", fmt.Errorf("chat %s: %w", chat, bridge.ErrNotFound)
}

func (m *memRelay) add(session string, chat bridge.AgentChatID) *memSession {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &memSession{id: bridge.SessionID(session), chat: chat, seen: map[string]bool{}}
	m.sessions = append(m.sessions, s)
	return s
}

func (m *memRelay) PollTargets(context.Context) ([]bridge.PollTarget, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []bridge.PollTarget
	for _, s := range m.sessions {
		if len(s.ended) == 0 {
			out = append(out, bridge.PollTarget{Session: s.id, Chat: s.chat, Cursor: s.cursor})
		}
	}
	return out, nil
}

func (m *memRelay) AgentEvents(_ context.Context, chat bridge.AgentChatID, events []bridge.AgentEvent, fromPoll bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.failNext > 0 {
		m.failNext--
		return errors.New("crash between fetch and commit")
	}
	i := slices.IndexFunc(m.sessions, func(s *memSession) bool { return s.chat == chat })
	if i < 0 {
		return fmt.Errorf("unknown chat %s", chat)
	}
	s := m.sessions[i]
	if !slices.IsSortedFunc(events, func(a, b bridge.AgentEvent) int { return a.At.Compare(b.At) }) {
		return fmt.Errorf("events of %s not oldest first", chat)
	}
	for _, ev := range events {
		if fromPoll && ev.At.After(s.cursor) {
			s.cursor = ev.At
		}
		if s.seen[ev.ExternalID] {
			continue
		}
		switch ev.Kind {
		case bridge.AgentMessage:
			s.seen[ev.ExternalID] = true
			if ev.Echo {
				s.echoes++
			} else {
				s.delivered = append(s.delivered, ev)
			}
		case bridge.AgentJoined:
			s.joined++ // not recorded as seen: the relay ignores repeats by state
		case bridge.AgentEnded:
			s.seen[ev.ExternalID] = true
			s.ended = append(s.ended, ev.EndReason)
		}
	}
	// Rows fetched: the queue-position event is derived from the queue entry
	// at every poll (the relay shows each place once), not a fetched row.
	s.lastBatch = 0
	for _, ev := range events {
		if ev.Kind != bridge.AgentWaiting || ev.QueuePosition == 0 {
			s.lastBatch++
		}
	}
	return nil
}

func (m *memRelay) session(chat bridge.AgentChatID) memSession {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.sessions {
		if s.chat == chat {
			cp := *s
			cp.delivered = slices.Clone(s.delivered)
			cp.ended = slices.Clone(s.ended)
			return cp
		}
	}
	return memSession{}
}

// texts returns the delivered texts.
func (s memSession) texts() []string {
	out := make([]string, len(s.delivered))
	for i, ev := range s.delivered {
		out[i] = ev.Text
	}
	return out
}

// wantTexts returns the texts of the chat's non-echo messages on the fake, in
// order: what must be delivered.
func wantTexts(in *snowtest.Instance, chat bridge.AgentChatID) []string {
	var out []string
	for _, m := range in.Messages(string(chat)) {
		if m.CreatedBy != snowtest.DefaultUser {
			out = append(out, m.Text)
		}
	}
	return out
}

// newPoller builds a poller in batch mode for "batch", else per-session mode.
func newPoller(t testing.TB, mode string, c *servicenow.Client, r *memRelay) *bridge.Poller {
	t.Helper()
	cfg := bridge.PollerConfig{Targets: r, Sink: r, Logger: testLogger(t), Concurrency: 16}
	if mode == "batch" {
		cfg.Batch = c
	} else {
		cfg.Feed = c
	}
	p, err := bridge.NewPoller(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// statusCounter is a transport that counts answers by status.
type statusCounter struct {
	mu     sync.Mutex
	counts map[int]int
}

func (s *statusCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil {
		s.mu.Lock()
		if s.counts == nil {
			s.counts = map[int]int{}
		}
		s.counts[resp.StatusCode]++
		s.mu.Unlock()
	}
	return resp, err
}

func (s *statusCounter) count(status int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[status]
}
