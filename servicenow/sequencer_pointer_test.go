package servicenow

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// orderSink records the agent messages handed to it, in commit order.
type orderSink struct {
	mu  sync.Mutex
	ids []string
}

func (s *orderSink) AgentEvents(_ context.Context, _ bridge.AgentChatID, evs []bridge.AgentEvent, _ bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range evs {
		if e.Kind == bridge.AgentMessage && !slices.Contains(s.ids, e.ExternalID) { // the relay drops duplicates by id
			s.ids = append(s.ids, e.ExternalID)
		}
	}
	return nil
}

func (s *orderSink) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ids)
}

// TestSequencerPointer: deliveries that name their predecessor ("previous")
// are stored at once when the predecessor is known, held while it is
// missing, released the moment it arrives or the targeted poll finds it, and
// always stored in chat order; deliveries without the pointer keep the
// window. No step waits on time: each waits on a submit's return or on the
// targeted poll being asked.
func TestSequencerPointer(t *testing.T) {
	const chat = bridge.AgentChatID("5c2a0000000000000000000000000001")
	base := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	msg := func(id string, sec int, prev ...string) message {
		m := message{SysID: id, Group: string(chat), CreatedBy: "beth.anglin", Text: id, At: base.Add(time.Duration(sec) * time.Second), Millis: true}
		if prev != nil {
			m.hasPrev = true
			if prev[0] != "-" {
				m.prev = prev[0]
			}
		}
		return m
	}
	first := func(id string, sec int) message { return msg(id, sec, "-") }
	type step struct {
		m       message
		held    bool // the submit does not return until a later step (or the poll) releases it
		polled  bool // this step makes the sequencer ask the desk for the chat
		release bool // the desk answers the pending targeted poll now
		frees   bool // this message releases the held ones
	}
	tests := []struct {
		name  string
		desk  []message // what the targeted poll finds
		steps []step
		want  []string
		polls int
	}{
		{name: "in order: each delivered at once, no poll",
			steps: []step{{m: first("a", 1)}, {m: msg("b", 2, "a")}, {m: msg("c", 3, "b")}},
			want:  []string{"a", "b", "c"}},
		{name: "successor first: held until its predecessor arrives",
			steps: []step{{m: first("a", 1)}, {m: msg("c", 3, "b"), held: true, polled: true}, {m: msg("b", 2, "a"), frees: true}, {release: true}},
			want:  []string{"a", "b", "c"}, polls: 1},
		{name: "a chain arriving backwards is released at once when its head arrives",
			steps: []step{{m: msg("c", 3, "b"), held: true, polled: true}, {m: msg("b", 2, "a"), held: true}, {m: first("a", 1), frees: true}, {release: true}},
			want:  []string{"a", "b", "c"}, polls: 1},
		{name: "lost predecessor: fetched by the targeted poll",
			desk:  []message{msg("a", 1), msg("b", 2), msg("c", 3)},
			steps: []step{{m: first("a", 1)}, {m: msg("c", 3, "b"), held: true, polled: true}, {release: true}},
			want:  []string{"a", "b", "c"}, polls: 1},
		{name: "predecessor the desk no longer has: delivered after the poll",
			steps: []step{{m: msg("c", 3, "b"), held: true, polled: true}, {release: true}},
			want:  []string{"c"}, polls: 1},
		{name: "a second of several predecessors: waits for all",
			steps: []step{{m: first("a", 1)}, {m: msg("d", 3, "b,c"), held: true, polled: true}, {m: msg("c", 2, "a")}, {m: msg("b", 2, "a"), frees: true}, {release: true}},
			want:  []string{"a", "c", "b", "d"}, polls: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sink := &orderSink{}
			asked := make(chan time.Time, 10)
			answer := make(chan struct{})
			q := &sequencer{window: time.Hour, sink: sink, log: slog.New(slog.DiscardHandler),
				convert: func(chat bridge.AgentChatID, items []seqItem) []bridge.AgentEvent {
					msgs := make([]message, 0, len(items))
					for _, it := range items {
						msgs = append(msgs, it.msg)
					}
					return newClassifier("bridge", DefaultEndPhrases).events(chat, msgs, nil, time.Time{})
				},
				fetch: func(ctx context.Context, _ bridge.AgentChatID, since time.Time) ([]message, error) {
					asked <- since
					select {
					case <-answer:
					case <-ctx.Done():
						return nil, ctx.Err()
					}
					return tc.desk, nil
				}}
			var pending []chan error
			polls := 0
			for i, s := range tc.steps {
				if s.release {
					close(answer)
					for _, p := range pending {
						if err := waitErr(t, p); err != nil {
							t.Fatalf("held submit: %v", err)
						}
					}
					pending = nil
					continue
				}
				done := make(chan error, 1)
				go func() { done <- q.submit(context.Background(), chat, []seqItem{{at: s.m.At, msg: s.m}}) }()
				if s.polled {
					select {
					case since := <-asked:
						polls++
						if want := s.m.At.Add(-time.Minute); !since.Equal(want) {
							t.Errorf("targeted poll since %v, want a minute before the held message (%v)", since, want)
						}
					case <-time.After(30 * time.Second):
						t.Fatalf("step %d: the missing predecessor of %s was not asked for", i, s.m.SysID)
					}
				}
				if s.held {
					pending = append(pending, done)
					continue
				}
				if err := waitErr(t, done); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				// Everything this step released is committed once it returns.
				if s.frees {
					for _, p := range pending {
						if err := waitErr(t, p); err != nil {
							t.Fatalf("released submit: %v", err)
						}
					}
					pending = nil
				}
			}
			if got := sink.got(); !slices.Equal(got, tc.want) {
				t.Errorf("stored %q, want %q", got, tc.want)
			}
			if polls != tc.polls {
				t.Errorf("%d targeted polls, want %d", polls, tc.polls)
			}
		})
	}
}

// TestSequencerNoPointer: a payload without "previous" (an older rule) is
// held for the window and sorted by desk time; it never asks the desk.
func TestSequencerNoPointer(t *testing.T) {
	const chat = bridge.AgentChatID("5c2a0000000000000000000000000002")
	base := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	sink := &orderSink{}
	q := &sequencer{window: 2 * time.Second, sink: sink, log: slog.New(slog.DiscardHandler),
		convert: func(chat bridge.AgentChatID, items []seqItem) []bridge.AgentEvent {
			msgs := make([]message, 0, len(items))
			for _, it := range items {
				msgs = append(msgs, it.msg)
			}
			return newClassifier("bridge", DefaultEndPhrases).events(chat, msgs, nil, time.Time{})
		},
		fetch: func(context.Context, bridge.AgentChatID, time.Time) ([]message, error) {
			return nil, errors.New("a payload without the pointer must not poll")
		}}
	b := message{SysID: "b", Group: string(chat), CreatedBy: "beth.anglin", At: base.Add(2 * time.Second), Millis: true}
	a := message{SysID: "a", Group: string(chat), CreatedBy: "beth.anglin", At: base.Add(time.Second), Millis: true}
	first := make(chan error, 1)
	go func() { first <- q.submit(context.Background(), chat, []seqItem{{at: b.At, msg: b}}) }()
	// The later message arrived first and is held; the earlier one comes
	// while it is (a 2 s window: ample even on a loaded machine).
	for held := false; !held; {
		q.mu.Lock()
		cs := q.chats[chat]
		held = cs != nil && cs.pending != nil && len(cs.pending.items) == 1
		q.mu.Unlock()
		if !held {
			runtime.Gosched()
		}
	}
	if err := q.submit(context.Background(), chat, []seqItem{{at: a.At, msg: a}}); err != nil {
		t.Fatal(err)
	}
	if err := waitErr(t, first); err != nil {
		t.Fatal(err)
	}
	if got := sink.got(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("stored %q, want [a b] (sorted within the window)", got)
	}
}

// TestSequencerPointerStop: on stop, a message held for its predecessor is
// committed at once (Run waits for it) and the targeted poll is cancelled.
func TestSequencerPointerStop(t *testing.T) {
	const chat = bridge.AgentChatID("5c2a0000000000000000000000000003")
	sink := &orderSink{}
	asked := make(chan struct{})
	cancelled := make(chan struct{})
	q := &sequencer{window: time.Hour, sink: sink, log: slog.New(slog.DiscardHandler),
		convert: func(chat bridge.AgentChatID, items []seqItem) []bridge.AgentEvent {
			msgs := make([]message, 0, len(items))
			for _, it := range items {
				msgs = append(msgs, it.msg)
			}
			return newClassifier("bridge", DefaultEndPhrases).events(chat, msgs, nil, time.Time{})
		},
		fetch: func(ctx context.Context, _ bridge.AgentChatID, _ time.Time) ([]message, error) {
			close(asked)
			<-ctx.Done()
			close(cancelled)
			return nil, ctx.Err()
		}}
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- q.Run(ctx) }()
	m := message{SysID: "c", Group: string(chat), CreatedBy: "beth.anglin", At: time.Now(), Millis: true, prev: "b", hasPrev: true}
	done := make(chan error, 1)
	go func() { done <- q.submit(context.Background(), chat, []seqItem{{at: m.At, msg: m}}) }()
	select {
	case <-asked:
	case <-time.After(30 * time.Second):
		t.Fatal("the missing predecessor was not asked for")
	}
	stop()
	if err := waitErr(t, ran); err != nil {
		t.Fatal(err)
	}
	if got := sink.got(); !slices.Equal(got, []string{"c"}) {
		t.Errorf("after Run returned: stored %q, want [c]", got)
	}
	if err := waitErr(t, done); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cancelled:
	case <-time.After(30 * time.Second):
		t.Fatal("the targeted poll was not cancelled on stop")
	}
}

func waitErr(t *testing.T, c chan error) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("a submit did not return")
		return nil
	}
}
