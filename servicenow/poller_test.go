package servicenow_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow"
	"github.com/handoffhq/handoff/servicenow/snowtest"
)

// These tests run the bridge.Poller against the client and the fake instance
// with an in-memory sink that keeps the cursor as the relay does, in both
// per-session and batch mode: nothing lost, nothing twice, in order.

// modes: per-session polling ("session"), per-session with
// Config.LastMessageHint ("hint"), and batch polling ("batch").
var modes = []string{"session", "hint", "batch"}

// modeConfig returns the client settings of a mode.
func modeConfig(mode string, more ...func(*servicenow.Config)) func(*servicenow.Config) {
	return func(cfg *servicenow.Config) {
		cfg.LastMessageHint = mode == "hint"
		for _, f := range more {
			f(cfg)
		}
	}
}

// cursorEnv is one chat, a relay holding its session, and a poller.
type cursorEnv struct {
	in    *snowtest.Instance
	c     *servicenow.Client
	relay *memRelay
	p     *bridge.Poller
	chat  bridge.AgentChatID
}

func newCursorEnv(t *testing.T, mode string) *cursorEnv {
	t.Helper()
	in := newFake(t, snowtest.Options{Now: t0})
	c := newClient(t, in, modeConfig(mode))
	e := &cursorEnv{in: in, c: c, relay: &memRelay{}}
	e.chat = openChat(t, c, "s-1")
	e.relay.add("s-1", e.chat)
	e.p = newPoller(t, mode, c, e.relay)
	return e
}

func (e *cursorEnv) poll(t *testing.T) {
	t.Helper()
	if err := e.p.PollOnce(context.Background()); err != nil {
		t.Fatalf("PollOnce: %v", err)
	}
}

func (e *cursorEnv) say(t *testing.T, texts ...string) {
	t.Helper()
	for _, s := range texts {
		if _, err := e.in.Say(string(e.chat), "Beth Anglin", s); err != nil {
			t.Fatal(err)
		}
	}
}

// check asserts that exactly the chat's non-echo messages were delivered,
// once each, in order.
func (e *cursorEnv) check(t *testing.T) memSession {
	t.Helper()
	s := e.relay.session(e.chat)
	if got, want := s.texts(), wantTexts(e.in, e.chat); !slices.Equal(got, want) {
		t.Fatalf("delivered %d messages %q,\nwant %d %q", len(got), got, len(want), want)
	}
	return s
}

func TestCursorSameInstant(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			e := newCursorEnv(t, mode)
			if err := e.in.Accept(string(e.chat), "Beth Anglin"); err != nil {
				t.Fatal(err)
			}
			e.poll(t)
			s := e.check(t)
			if !s.cursor.Equal(t0.Truncate(time.Millisecond)) && !s.cursor.Equal(t0.Truncate(time.Second)) {
				t.Fatalf("cursor %v, want %v", s.cursor, t0)
			}
			// Five agent messages in the very millisecond of the cursor.
			e.say(t, "one", "two", "three", "four", "five")
			e.poll(t)
			e.check(t)
			// Five more in the cursor's second, later milliseconds.
			for i := range 5 {
				e.in.Advance(100 * time.Millisecond)
				e.say(t, fmt.Sprintf("ms %d", i))
			}
			e.poll(t)
			e.poll(t)
			s = e.check(t)
			if len(s.delivered) != 11 {
				t.Errorf("delivered %d, want greeting + 10", len(s.delivered))
			}
		})
	}
}

func TestCursorThreePages(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			e := newCursorEnv(t, mode)
			if err := e.in.Accept(string(e.chat), "Beth Anglin"); err != nil {
				t.Fatal(err)
			}
			e.poll(t)
			for i := range 75 {
				e.in.Advance(7 * time.Millisecond)
				e.say(t, fmt.Sprintf("message %02d", i))
			}
			e.in.ResetRequests()
			e.poll(t)
			s := e.check(t)
			if len(s.delivered) != 76 {
				t.Errorf("delivered %d, want 76", len(s.delivered))
			}
			reqs := e.in.Requests()
			if mode != "batch" {
				if n := reqs["GET /api/now/connect/conversations/{group}/messages"]; n != 3 {
					t.Errorf("%d message pages read, want 3 (75 new messages, pages of 30)", n)
				}
			} else if n := reqs["GET /api/now/table/{table}"]; n != 1 && n != 2 {
				// The live chat's queue entry is read on one poll in
				// LiveStateEvery, at an offset of its own.
				t.Errorf("%d Table API reads, want 1 (messages) or 2 (and the queue entry)", n)
			}
		})
	}
}

func TestCursorEchoesNeverDelivered(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			e := newCursorEnv(t, mode)
			ctx := context.Background()
			if err := e.in.Accept(string(e.chat), "Beth Anglin"); err != nil {
				t.Fatal(err)
			}
			for i := range 3 {
				e.in.Advance(time.Second)
				if err := e.c.Send(ctx, dc(e.chat), bridge.DeskMessage{Text: fmt.Sprintf("user says %d", i)}); err != nil {
					t.Fatal(err)
				}
				e.say(t, fmt.Sprintf("agent says %d", i))
				e.poll(t)
			}
			s := e.check(t)
			for _, ev := range s.delivered {
				if strings.HasPrefix(ev.Text, "user says") || ev.Echo {
					t.Errorf("echo delivered: %+v", ev)
				}
			}
			if s.echoes != 4 { // the first message and three sends
				t.Errorf("%d echoes seen, want 4", s.echoes)
			}
		})
	}
}

func TestCursorCrashBeforeCommit(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			e := newCursorEnv(t, mode)
			if err := e.in.Accept(string(e.chat), "Beth Anglin"); err != nil {
				t.Fatal(err)
			}
			e.poll(t)
			before := e.relay.session(e.chat)
			e.in.Advance(time.Second)
			e.say(t, "a", "b", "c")
			e.relay.mu.Lock()
			e.relay.failNext = 1
			e.relay.mu.Unlock()
			if err := e.p.PollOnce(context.Background()); err == nil {
				t.Fatal("PollOnce: want the sink's error")
			}
			after := e.relay.session(e.chat)
			if !after.cursor.Equal(before.cursor) || len(after.delivered) != len(before.delivered) {
				t.Fatalf("crash advanced state: cursor %v → %v, delivered %d → %d", before.cursor, after.cursor, len(before.delivered), len(after.delivered))
			}
			e.poll(t)
			e.poll(t)
			e.check(t)
		})
	}
}

// TestCursorUninterestingRows: a chat whose new rows are only echoes and
// system messages still moves the cursor, so they are not fetched forever.
func TestCursorUninterestingRows(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			e := newCursorEnv(t, mode)
			ctx := context.Background()
			e.poll(t)
			for i := range 40 {
				e.in.Advance(1100 * time.Millisecond)
				if i%2 == 0 {
					if err := e.c.Send(ctx, dc(e.chat), bridge.DeskMessage{Text: fmt.Sprintf("still there? %d", i)}); err != nil {
						t.Fatal(err)
					}
				} else if _, err := e.in.SystemMessage(string(e.chat), "Waiting for an agent"); err != nil {
					t.Fatal(err)
				}
			}
			e.poll(t)
			msgs := e.in.Messages(string(e.chat))
			newest := msgs[len(msgs)-1].At
			s := e.relay.session(e.chat)
			if !s.cursor.Equal(newest) && !s.cursor.Equal(newest.Truncate(time.Second)) {
				t.Fatalf("cursor %v, want the newest row %v", s.cursor, newest)
			}
			e.in.ResetRequests()
			e.relay.mu.Lock()
			e.relay.sessions[0].lastBatch = 0
			e.relay.mu.Unlock()
			e.poll(t)
			s = e.relay.session(e.chat)
			if s.lastBatch > 1 {
				t.Errorf("the next poll fetched %d events again, want only the row at the cursor", s.lastBatch)
			}
			wantPages := map[string]int{"session": 1, "hint": 0, "batch": 0}[mode]
			if n := e.in.Requests()["GET /api/now/connect/conversations/{group}/messages"]; n != wantPages {
				t.Errorf("%d message pages, want %d", n, wantPages)
			}
			e.check(t)
		})
	}
}

// TestCursorRandomized interleaves agent messages, bridge messages, system
// messages, clock moves (often inside one second or millisecond) and polls,
// in several chats at once, and checks nothing is lost or duplicated.
func TestCursorRandomized(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			in := newFake(t, snowtest.Options{Now: t0})
			c := newClient(t, in, modeConfig(mode))
			relay := &memRelay{}
			var chats []bridge.AgentChatID
			for i := range 5 {
				chat := openChat(t, c, fmt.Sprintf("s-%d", i))
				relay.add(fmt.Sprintf("s-%d", i), chat)
				chats = append(chats, chat)
				if err := in.Accept(string(chat), "Agent "+string(rune('A'+i))); err != nil {
					t.Fatal(err)
				}
			}
			p := newPoller(t, mode, c, relay)
			rng := rand.New(rand.NewPCG(1, uint64(len(mode))))
			ctx := context.Background()
			for step := range 300 {
				chat := chats[rng.IntN(len(chats))]
				switch r := rng.IntN(10); {
				case r < 4:
					if _, err := in.Say(string(chat), "Agent", fmt.Sprintf("agent %d", step)); err != nil {
						t.Fatal(err)
					}
				case r < 6:
					if err := c.Send(ctx, dc(chat), bridge.DeskMessage{Text: fmt.Sprintf("user %d", step)}); err != nil {
						t.Fatal(err)
					}
				case r < 7:
					if _, err := in.SystemMessage(string(chat), fmt.Sprintf("system %d", step)); err != nil {
						t.Fatal(err)
					}
				case r < 8:
					in.Advance(time.Duration(rng.IntN(1500)) * time.Millisecond)
				default:
					if err := p.PollOnce(ctx); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := p.PollOnce(ctx); err != nil {
				t.Fatal(err)
			}
			for _, chat := range chats {
				s := relay.session(chat)
				if got, want := s.texts(), wantTexts(in, chat); !slices.Equal(got, want) {
					t.Errorf("chat %s: delivered %q\nwant %q", chat, got, want)
				}
			}
		})
	}
}

// TestCursorEnds: the chat ends by the agent's closing line, once.
func TestCursorEnds(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			e := newCursorEnv(t, mode)
			if err := e.in.Accept(string(e.chat), "Beth Anglin"); err != nil {
				t.Fatal(err)
			}
			e.poll(t)
			e.say(t, "bye")
			if err := e.in.CloseChat(string(e.chat)); err != nil {
				t.Fatal(err)
			}
			e.poll(t)
			s := e.check(t)
			if !slices.Equal(s.ended, []bridge.CloseReason{bridge.ReasonAgentClosed}) {
				t.Errorf("ended %v, want [agent_closed]", s.ended)
			}
			if s.joined == 0 {
				t.Error("no joined event")
			}
		})
	}
}

// TestRateLimitedPoll: with a per-user limit of 3 requests a second, a poll
// needing more requests is answered 429; the poll stops at once with a
// bridge.ThrottledError (no in-call waiting, no retries spent), stores
// nothing it has not fully read, and once the limit is lifted the next poll
// delivers every message exactly once.
func TestRateLimitedPoll(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			in := newFake(t, snowtest.Options{Now: t0})
			var st statusCounter
			c := newClient(t, in, modeConfig(mode, func(cfg *servicenow.Config) {
				cfg.HTTPClient = &http.Client{Transport: &st}
				cfg.BatchLimit = 20 // batch mode pages too
			}))
			relay := &memRelay{}
			chat := openChat(t, c, "s-1")
			relay.add("s-1", chat)
			if err := in.Accept(string(chat), "Beth Anglin"); err != nil {
				t.Fatal(err)
			}
			for i := range 75 {
				in.Advance(5 * time.Millisecond)
				if _, err := in.Say(string(chat), "Beth Anglin", fmt.Sprintf("m%d", i)); err != nil {
					t.Fatal(err)
				}
			}
			in.SetRateLimit(snowtest.RateLimit{Limit: 3, Window: time.Hour})
			p := newPoller(t, mode, c, relay)
			err := p.PollOnce(context.Background())
			te, ok := bridge.Throttled(err)
			if !ok {
				t.Fatalf("PollOnce: %v, want a ThrottledError", err)
			}
			if got := st.count(http.StatusTooManyRequests); got != 1 {
				t.Errorf("%d answers 429, want exactly 1 (a throttle is not retried inside the call)", got)
			}
			if d := time.Until(te.Until); d < 59*time.Minute || d > time.Hour+time.Minute {
				t.Errorf("throttled until %v (in %v), want the end of the hour window", te.Until, d)
			}
			in.SetRateLimit(snowtest.RateLimit{})
			if err := p.PollOnce(context.Background()); err != nil {
				t.Fatalf("PollOnce after the limit lifted: %v", err)
			}
			if got, want := relay.session(chat).texts(), wantTexts(in, chat); !slices.Equal(got, want) {
				t.Errorf("delivered %d messages, want %d exactly once each", len(got), len(want))
			}
		})
	}
}
