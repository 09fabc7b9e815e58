package servicenow_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/servicenow"
	"github.com/handoffhq/handoff/servicenow/snowtest"
)

// tableReads counts, per chat, the chat_queue_entry reads that name it, and
// the live_message reads.
type tableReads struct {
	mu       sync.Mutex
	states   map[string]int
	messages int
	next     http.RoundTripper
}

func (tr *tableReads) RoundTrip(r *http.Request) (*http.Response, error) {
	tr.mu.Lock()
	switch r.URL.Path {
	case "/api/now/table/chat_queue_entry":
		q, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Query().Get("sysparm_query"), "groupIN"), "^")
		for _, g := range strings.Split(q, ",") {
			tr.states[g]++
		}
	case "/api/now/table/live_message":
		tr.messages++
	}
	tr.mu.Unlock()
	return tr.next.RoundTrip(r)
}

func (tr *tableReads) take() (map[string]int, int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	s, m := tr.states, tr.messages
	tr.states, tr.messages = map[string]int{}, 0
	return s, m
}

// TestPollManyReadsLiveStatesLessOften checks LiveStateEvery: a chat an agent
// works on has its queue entry read once in every LiveStateEvery polls, a
// waiting chat on every poll, the messages of all chats on every poll, and
// a live chat the desk closes without a notice still ends within
// LiveStateEvery polls.
func TestPollManyReadsLiveStatesLessOften(t *testing.T) {
	const every = 4
	in := newFake(t, snowtest.Options{Now: t0})
	reads := &tableReads{states: map[string]int{}, next: http.DefaultTransport}
	c := newClient(t, in, func(cfg *servicenow.Config) {
		cfg.LiveStateEvery = every
		cfg.HTTPClient = &http.Client{Transport: reads}
	})
	cursors := map[bridge.AgentChatID]time.Time{}
	var live, waiting []bridge.AgentChatID
	for i := range 30 {
		chat := openChat(t, c, "s-"+string(rune('a'+i)))
		cursors[chat] = in.Now()
		if i < 20 {
			if err := in.Accept(string(chat), "Beth Anglin"); err != nil {
				t.Fatal(err)
			}
			live = append(live, chat)
		} else {
			waiting = append(waiting, chat)
		}
	}
	ctx := context.Background()
	poll := func() map[bridge.AgentChatID][]bridge.AgentEvent {
		t.Helper()
		res, err := c.PollMany(ctx, cursors)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	poll()
	reads.take()
	for range every {
		poll()
	}
	states, messages := reads.take()
	if messages != every {
		t.Errorf("%d live_message reads in %d polls, want one each", messages, every)
	}
	for _, chat := range live {
		if n := states[string(chat)]; n != 1 {
			t.Errorf("live chat %s: queue entry read %d times in %d polls, want 1", chat, n, every)
		}
	}
	for _, chat := range waiting {
		if n := states[string(chat)]; n != every {
			t.Errorf("waiting chat %s: queue entry read %d times in %d polls, want %d", chat, n, every, every)
		}
	}

	closed := live[3]
	if err := in.SetState(string(closed), snowtest.ClosedComplete); err != nil {
		t.Fatal(err)
	}
	for i := range every {
		for _, ev := range poll()[closed] {
			if ev.Kind == bridge.AgentEnded {
				return
			}
		}
		t.Logf("poll %d after the close: not seen yet", i+1)
	}
	t.Errorf("a live chat closed without a notice was not ended within %d polls", every)
}
