package slack

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// Sink stores desk events and queues their deliveries. *bridge.Relay
// implements it.
type Sink interface {
	AgentEvents(ctx context.Context, chat bridge.AgentChatID, events []bridge.AgentEvent, fromPoll bool) error
}

// orderer holds the events of one chat for a short window so that events
// Slack sent in parallel requests are stored together in ts order. Slack
// gives no per-thread sequence number, so a window is the only tool; it is
// bounded by the window from the first event of a batch, and every request
// is answered only after its events are stored (persist, then acknowledge).
type orderer struct {
	window time.Duration
	sink   Sink
	mu     sync.Mutex
	chats  map[bridge.AgentChatID]*batch
}

type batch struct {
	events []bridge.AgentEvent
	done   chan struct{}
	err    error
}

func newOrderer(window time.Duration, sink Sink) *orderer {
	return &orderer{window: window, sink: sink, chats: map[bridge.AgentChatID]*batch{}}
}

// deliver stores evs (with whatever else arrived for chat within the window)
// and returns the store's error.
func (o *orderer) deliver(ctx context.Context, chat bridge.AgentChatID, evs []bridge.AgentEvent) error {
	if o.window <= 0 {
		return o.sink.AgentEvents(ctx, chat, sortByTime(evs), false)
	}
	o.mu.Lock()
	b, follower := o.chats[chat]
	if !follower {
		b = &batch{done: make(chan struct{})}
		o.chats[chat] = b
	}
	b.events = append(b.events, evs...)
	o.mu.Unlock()
	if follower {
		select {
		case <-b.done:
			return b.err
		case <-ctx.Done():
			return ctx.Err() // Slack retries; the key makes the retry a no-op if the batch landed
		}
	}
	t := time.NewTimer(o.window)
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	o.mu.Lock()
	delete(o.chats, chat)
	all := b.events
	o.mu.Unlock()
	// The batch is stored even if this request was cancelled: followers wait
	// on it.
	b.err = o.sink.AgentEvents(context.WithoutCancel(ctx), chat, sortByTime(all), false)
	close(b.done)
	return b.err
}

func sortByTime(evs []bridge.AgentEvent) []bridge.AgentEvent {
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].At.Before(evs[j].At) })
	return evs
}
