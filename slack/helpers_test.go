package slack

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/handoffhq/handoff/bridge"
)

// example reads a documented payload from testdata.
func example(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recordingSink stands in for the relay: it records what would be stored,
// de-duplicating by (chat, ExternalID) the way the store's unique key does.
type recordingSink struct {
	mu     sync.Mutex
	calls  int
	events []bridge.AgentEvent
	stored map[string]bool
	known  map[bridge.AgentChatID]bool // nil: every chat is known
	err    error
	fail   int // the next fail calls answer errFailing (then succeed)
}

var errFailing = errors.New("store down")

func (s *recordingSink) AgentEvents(_ context.Context, chat bridge.AgentChatID, evs []bridge.AgentEvent, _ bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.err != nil {
		return s.err
	}
	if s.fail > 0 {
		s.fail--
		return errFailing
	}
	if s.stored == nil {
		s.stored = map[string]bool{}
	}
	for _, ev := range evs {
		k := string(chat) + "|" + ev.ExternalID
		if ev.Kind == bridge.AgentMessage && s.stored[k] {
			continue
		}
		s.stored[k] = true
		s.events = append(s.events, ev)
	}
	return nil
}

func (s *recordingSink) DeskData(_ context.Context, chat bridge.AgentChatID) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.known == nil || s.known[chat] {
		return "", nil
	}
	return "", bridge.ErrNotFound
}

func (s *recordingSink) snapshot() (int, []bridge.AgentEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls, append([]bridge.AgentEvent(nil), s.events...)
}
