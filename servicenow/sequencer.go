package servicenow

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// EventSink stores agent events that arrived by webhook. *bridge.Relay
// implements it.
type EventSink interface {
	// AgentEvents stores the chat's events and queues their deliveries in one
	// transaction; events already stored (same ExternalID) are skipped, and
	// events for unknown or closed chats are dropped without an error.
	// fromPoll is false for webhooks, so the poll cursor stays where it is and
	// a reconciling poll still finds what a lost webhook missed. An error
	// means nothing was stored.
	AgentEvents(ctx context.Context, chat bridge.AgentChatID, events []bridge.AgentEvent, fromPoll bool) error
}

// SessionLookup finds the bridge session bound to a desk chat. *bridge.Relay
// implements it.
type SessionLookup interface {
	// DeskData returns what the desk stored with the session bound to chat
	// (bridge.DeskChat.Data, "" if nothing). It returns an error wrapping
	// bridge.ErrNotFound when no session has that chat id (yet).
	DeskData(ctx context.Context, chat bridge.AgentChatID) (string, error)
}

// sequencer holds the webhook deliveries of each chat for a short window and
// hands them to the sink together, sorted by desk time, so deliveries that
// overtook each other still reach the user in order. A request waits for the
// commit of its own batch before it is answered (persist, then acknowledge).
// Batches of one chat are committed strictly one after the other.
//
// The residual: a delivery that arrives more than one window after a later
// message of the same chat was flushed is delivered after it (it is never lost
// or doubled: the relay drops duplicates by ExternalID).
type sequencer struct {
	window   time.Duration
	openWait time.Duration // how long a batch waits for its chat to be recorded
	sink     EventSink
	lookup   SessionLookup // nil: no wait for unrecorded chats
	convert  func(chat bridge.AgentChatID, items []seqItem) []bridge.AgentEvent
	log      *slog.Logger

	mu     sync.Mutex
	chats  map[bridge.AgentChatID]*chatSeq
	seq    uint64
	closed bool // Run's context ended: batches flush at once

	// inflight counts the batches from their first item to their commit.
	inflight sync.WaitGroup
}

type chatSeq struct {
	pending *batch // collecting, nil when none
	last    *batch // the newest batch handed to flush
}

type batch struct {
	items   []seqItem
	flushed bool   // handed to flush (by its timer or by Run); guarded by sequencer.mu
	prev    *batch // the chat's previous batch: committed before this one
	done    chan struct{}
	err     error
}

// seqItem is one message (Connect) or callback (VA) of a batch.
type seqItem struct {
	at  time.Time // desk time, zero when unknown (arrival order then)
	seq uint64    // arrival order
	msg message   // Connect webhooks
	evs []bridge.AgentEvent
}

// flushTimeout bounds one batch's commit.
const flushTimeout = 15 * time.Second

// submit adds items to chat's current batch (starting one, flushed after the
// window) and waits until that batch is committed. It returns the sink's
// error, or ctx's if the caller gave up first (the batch is committed anyway).
func (q *sequencer) submit(ctx context.Context, chat bridge.AgentChatID, items []seqItem) error {
	q.mu.Lock()
	if q.chats == nil {
		q.chats = make(map[bridge.AgentChatID]*chatSeq)
	}
	cs := q.chats[chat]
	if cs == nil {
		cs = &chatSeq{}
		q.chats[chat] = cs
	}
	b := cs.pending
	now := false
	if b == nil {
		b = &batch{done: make(chan struct{})}
		cs.pending = b
		q.inflight.Add(1)
		if q.window > 0 && !q.closed {
			time.AfterFunc(q.window, func() { q.flush(chat, cs, b) })
		} else {
			now = true
		}
	}
	for i := range items {
		q.seq++
		items[i].seq = q.seq
	}
	b.items = append(b.items, items...)
	q.mu.Unlock()
	if now {
		go q.flush(chat, cs, b)
	}

	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run is the sequencer's lifecycle: when ctx ends it flushes every batch
// still inside its window at once and waits for the commits in flight, so
// what a webhook handed over is committed before the store closes. Requests
// arriving later are committed without a window. It returns nil.
func (q *sequencer) Run(ctx context.Context) error {
	<-ctx.Done()
	type pending struct {
		chat bridge.AgentChatID
		cs   *chatSeq
		b    *batch
	}
	var open []pending
	q.mu.Lock()
	q.closed = true
	for chat, cs := range q.chats {
		if cs.pending != nil {
			open = append(open, pending{chat, cs, cs.pending})
		}
	}
	q.mu.Unlock()
	for _, p := range open {
		go q.flush(p.chat, p.cs, p.b)
	}
	q.inflight.Wait()
	return nil
}

// flush detaches b, waits for the chat's previous batch, and commits b. A
// batch is flushed once: a second call (its timer after Run) does nothing.
func (q *sequencer) flush(chat bridge.AgentChatID, cs *chatSeq, b *batch) {
	q.mu.Lock()
	if b.flushed {
		q.mu.Unlock()
		return
	}
	b.flushed = true
	defer q.inflight.Done()
	if cs.pending == b {
		cs.pending = nil
	}
	b.prev, cs.last = cs.last, b
	items := b.items
	q.mu.Unlock()

	if b.prev != nil {
		<-b.prev.done
		b.prev = nil // let it be collected
	}
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	slices.SortStableFunc(items, func(x, y seqItem) int {
		if !x.at.IsZero() && !y.at.IsZero() {
			if c := x.at.Compare(y.at); c != 0 {
				return c
			}
		}
		switch {
		case x.seq < y.seq:
			return -1
		case x.seq > y.seq:
			return 1
		}
		return 0
	})
	q.waitRecorded(ctx, chat)
	evs := q.convert(chat, items)
	if len(evs) > 0 {
		b.err = q.sink.AgentEvents(ctx, chat, evs, false)
	}
	close(b.done)

	q.mu.Lock()
	if cs.last == b && cs.pending == nil {
		delete(q.chats, chat)
	}
	q.mu.Unlock()
}

// waitRecorded waits (up to openWait) until the bridge has recorded chat: a
// delivery can overtake the commit of the chat id right after a chat opened.
// After the wait the events go to the sink anyway, which drops them if the
// chat is still unknown.
func (q *sequencer) waitRecorded(ctx context.Context, chat bridge.AgentChatID) {
	if q.lookup == nil || q.openWait <= 0 {
		return
	}
	deadline := time.Now().Add(q.openWait)
	for {
		_, err := q.lookup.DeskData(ctx, chat)
		if !errors.Is(err, bridge.ErrNotFound) {
			return // found, or an error the sink will meet too
		}
		if time.Now().After(deadline) {
			q.log.DebugContext(ctx, "servicenow webhook for a chat the bridge does not know", "chat_id", chat)
			return
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
