package servicenow

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// storedSink is the store replicas share: what any sequencer committed is
// visible to every other one through StoredDeskEvents.
type storedSink struct{ orderSink }

func (s *storedSink) StoredDeskEvents(_ context.Context, _ bridge.AgentChatID, ids []string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, id := range ids {
		if slices.Contains(s.ids, id) {
			out = append(out, id)
		}
	}
	return out, nil
}

// TestSequencerPointerAcrossReplicas: webhooks of one chat alternate between
// two replicas' sequencers over one store. A predecessor the other replica
// stored is found in the store, so no message waits for a targeted poll; a
// predecessor stored nowhere is still fetched from the desk. Each delivery
// is made after the previous one was answered, as the Business Rule's
// webhooks of a chat mostly are.
func TestSequencerPointerAcrossReplicas(t *testing.T) {
	const chat = bridge.AgentChatID("5c2a0000000000000000000000000009")
	base := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	msg := func(i int) message {
		m := message{SysID: fmt.Sprintf("m%02d", i), Group: string(chat), CreatedBy: "beth.anglin", Text: "hi",
			At: base.Add(time.Duration(i) * time.Second), Millis: true, hasPrev: true}
		if i > 0 {
			m.prev = fmt.Sprintf("m%02d", i-1)
		}
		return m
	}
	for _, tc := range []struct {
		name      string
		shared    bool // the sequencers look predecessors up in the store
		wantPolls int64
	}{
		{name: "store lookup: no targeted poll", shared: true, wantPolls: 0},
		{name: "process memory only: one targeted poll per switch of replica", shared: false, wantPolls: 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &storedSink{}
			var polls atomic.Int64
			newSeq := func() *sequencer {
				q := &sequencer{window: time.Hour, sink: sink, log: slog.New(slog.DiscardHandler),
					convert: func(chat bridge.AgentChatID, items []seqItem) []bridge.AgentEvent {
						msgs := make([]message, 0, len(items))
						for _, it := range items {
							msgs = append(msgs, it.msg)
						}
						return newClassifier("bridge", DefaultEndPhrases).events(chat, msgs, nil, time.Time{})
					},
					fetch: func(context.Context, bridge.AgentChatID, time.Time) ([]message, error) {
						polls.Add(1)
						return nil, nil // the desk has nothing the store lacks
					}}
				if tc.shared {
					q.stored = sink
				}
				return q
			}
			replicas := []*sequencer{newSeq(), newSeq()}
			var want []string
			for i := range 10 {
				m := msg(i)
				want = append(want, m.SysID)
				if err := replicas[i%2].submit(context.Background(), chat, []seqItem{{at: m.At, msg: m}}); err != nil {
					t.Fatal(err)
				}
			}
			if got := sink.got(); !slices.Equal(got, want) {
				t.Errorf("stored %q, want %q", got, want)
			}
			if n := polls.Load(); n != tc.wantPolls {
				t.Errorf("%d targeted polls, want %d", n, tc.wantPolls)
			}
		})
	}

	// A predecessor stored nowhere is still read from the desk.
	sink := &storedSink{}
	fetched := make(chan struct{}, 1)
	q := &sequencer{window: time.Hour, sink: sink, stored: sink, log: slog.New(slog.DiscardHandler),
		convert: func(chat bridge.AgentChatID, items []seqItem) []bridge.AgentEvent {
			msgs := make([]message, 0, len(items))
			for _, it := range items {
				msgs = append(msgs, it.msg)
			}
			return newClassifier("bridge", DefaultEndPhrases).events(chat, msgs, nil, time.Time{})
		},
		fetch: func(context.Context, bridge.AgentChatID, time.Time) ([]message, error) {
			fetched <- struct{}{}
			return []message{msg(0), msg(1), msg(2)}, nil
		}}
	m2 := msg(2)
	if err := q.submit(context.Background(), chat, []seqItem{{at: m2.At, msg: m2}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-fetched:
	default:
		t.Fatal("a predecessor missing from the store was not read from the desk")
	}
	if got := sink.got(); !slices.Equal(got, []string{"m00", "m01", "m02"}) {
		t.Errorf("stored %q, want [m00 m01 m02]", got)
	}
}
