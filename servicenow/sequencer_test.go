package servicenow

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// recordingSink keeps what was committed.
type recordingSink struct {
	mu  sync.Mutex
	got []bridge.AgentEvent
}

func (s *recordingSink) AgentEvents(_ context.Context, _ bridge.AgentChatID, evs []bridge.AgentEvent, _ bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, evs...)
	return nil
}

func (s *recordingSink) events() []bridge.AgentEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// TestSequencerRunCommitsOpenWindowsOnStop: a delivery still inside its
// ordering window when the sequencer stops is committed at once, and Run
// returns only after that commit (before, it waited for the window, after the
// store had closed).
func TestSequencerRunCommitsOpenWindowsOnStop(t *testing.T) {
	sink := &recordingSink{}
	q := &sequencer{window: time.Hour, sink: sink, log: slog.New(slog.DiscardHandler),
		convert: func(_ bridge.AgentChatID, items []seqItem) []bridge.AgentEvent {
			var out []bridge.AgentEvent
			for _, it := range items {
				out = append(out, it.evs...)
			}
			return out
		}}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- q.Run(ctx) }()

	// A webhook whose client gave up: the batch waits in its one-hour window.
	gone, giveUp := context.WithCancel(context.Background())
	giveUp()
	ev := bridge.AgentEvent{Kind: bridge.AgentMessage, Chat: "c1", ExternalID: "m1", Text: "hi", At: time.Unix(100, 0)}
	if err := q.submit(gone, "c1", []seqItem{{at: ev.At, evs: []bridge.AgentEvent{ev}}}); err == nil {
		t.Fatal("submit with a cancelled context returned nil")
	}
	if n := len(sink.events()); n != 0 {
		t.Fatalf("%d events committed inside the window", n)
	}
	cancel()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if got := sink.events(); len(got) != 1 || got[0].ExternalID != "m1" {
		t.Fatalf("committed %v by the time Run returned, want m1", got)
	}
	// After the stop, deliveries are committed without a window.
	ev2 := ev
	ev2.ExternalID = "m2"
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	if err := q.submit(sctx, "c1", []seqItem{{at: ev.At, evs: []bridge.AgentEvent{ev2}}}); err != nil {
		t.Fatal(err)
	}
	if n := len(sink.events()); n != 2 {
		t.Fatalf("%d events after a delivery past the stop, want 2", n)
	}
}
