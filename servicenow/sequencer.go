package servicenow

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
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

// EventLookup tells which desk messages the bridge has stored, whichever
// replica stored them. *bridge.Relay implements it.
type EventLookup interface {
	// StoredDeskEvents returns which of ids (sys_ids) are stored for the
	// session bound to chat; an error wrapping bridge.ErrNotFound when no
	// session has that chat id.
	StoredDeskEvents(ctx context.Context, chat bridge.AgentChatID, ids []string) ([]string, error)
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
//
// Deliveries that name their predecessor (message.hasPrev) skip the window:
// see submitPointed.
type sequencer struct {
	window   time.Duration
	openWait time.Duration // how long a batch waits for its chat to be recorded
	sink     EventSink
	lookup   SessionLookup // nil: no wait for unrecorded chats
	// stored is asked whether a missing predecessor was stored (by another
	// replica, or by this one before it forgot) before the desk is read. nil:
	// only this process's memory of recent sys_ids counts.
	stored  EventLookup
	convert func(chat bridge.AgentChatID, items []seqItem) []bridge.AgentEvent
	log     *slog.Logger
	// fetch reads the chat's messages at or after since from the desk (the
	// targeted poll for a missing predecessor). nil: a held message waits one
	// window instead.
	fetch func(ctx context.Context, chat bridge.AgentChatID, since time.Time) ([]message, error)

	mu    sync.Mutex
	chats map[bridge.AgentChatID]*chatSeq
	known map[bridge.AgentChatID][]string // recent sys_ids handed to the sink, per chat
	// recorded holds chats the bridge was seen to have recorded: a chat id
	// is never recorded for another session, so once seen, later batches
	// of the chat skip waitRecorded's lookup (one read transaction per
	// webhook). Cleared when it holds maxKnownChats.
	recorded map[bridge.AgentChatID]struct{}
	seq      uint64
	closed   bool // Run's context ended: batches flush at once, nothing is held
	// polls is the context of targeted polls, cancelled by Run on stop.
	polls     context.Context
	stopPolls context.CancelFunc

	// inflight counts the window batches from their first item to their
	// commit, and the pointer requests until they are answered.
	inflight sync.WaitGroup
}

type chatSeq struct {
	pending  *batch // collecting, nil when none
	last     *batch // the newest batch handed to flush
	held     []held // pointer messages whose predecessor is missing
	fetching bool   // a targeted poll (or its window stand-in) is under way
}

// held is a message waiting for its predecessor, and the request it came in.
type held struct {
	it    seqItem
	req   *request
	asked bool // a targeted poll started after it arrived
}

// request is one submit call of pointer messages: answered when every one of
// its messages is committed.
type request struct {
	left int
	err  error
	done chan struct{}
}

type batch struct {
	items   []seqItem
	flushed bool   // handed to flush (by its timer or by Run); guarded by sequencer.mu
	prev    *batch // the chat's previous batch: committed before this one
	done    chan struct{}
	err     error
	reqs    []*request // pointer requests answered by this batch
}

// knownPerChat is how many recent sys_ids a chat remembers; maxKnownChats
// bounds the chats remembered (the map is cleared when full: the cost is one
// targeted poll per chat).
const (
	knownPerChat  = 32
	maxKnownChats = 100_000
)

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
	pointed := len(items) > 0
	for _, it := range items {
		pointed = pointed && it.msg.hasPrev && it.msg.entry == nil
	}
	if pointed {
		return q.submitPointed(ctx, chat, items)
	}
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
		if len(cs.held) > 0 {
			q.releaseLocked(chat, cs, nil, true) // closed: everything held goes
		}
	}
	if q.stopPolls != nil {
		q.stopPolls() // what they waited for is released above
	}
	q.mu.Unlock()
	for _, p := range open {
		go q.flush(p.chat, p.cs, p.b)
	}
	q.inflight.Wait()
	return nil
}

// submitPointed handles messages that name their predecessor: each is handed
// to the sink at once when its predecessors were handed before (or it has
// none); otherwise it is held and the chat is read from the desk right away,
// after which it is released in desk-time order with whatever the read found.
func (q *sequencer) submitPointed(ctx context.Context, chat bridge.AgentChatID, items []seqItem) error {
	req := &request{left: len(items), done: make(chan struct{})}
	q.mu.Lock()
	q.inflight.Add(1)
	cs := q.chats[chat]
	if q.chats == nil {
		q.chats = make(map[bridge.AgentChatID]*chatSeq)
	}
	if cs == nil {
		cs = &chatSeq{}
		q.chats[chat] = cs
	}
	for _, it := range items {
		q.seq++
		it.seq = q.seq
		cs.held = append(cs.held, held{it: it, req: req})
	}
	q.releaseLocked(chat, cs, nil, false)
	q.mu.Unlock()
	select {
	case <-req.done:
		return req.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// releaseLocked hands to commit, as one batch: extra (messages a targeted
// poll found), every held message whose predecessors are known (repeatedly,
// so a chain is released at once), and, when polled, every held message
// that was waiting for that poll (its predecessor is not on the desk or
// already stored); after Run, everything held. If messages are still
// missing a predecessor it starts a targeted poll. Callers hold q.mu.
func (q *sequencer) releaseLocked(chat bridge.AgentChatID, cs *chatSeq, extra []message, polled bool) {
	var out []seqItem
	var reqs []*request
	// The desk's copy of a message stands for it: within one millisecond the
	// desk's order (the order of extra) is the chat's order.
	fetched := make(map[string]bool, len(extra))
	for _, m := range extra {
		if !q.isKnownLocked(chat, m.SysID) {
			q.markKnownLocked(chat, m.SysID)
			q.seq++
			out = append(out, seqItem{at: m.At, seq: q.seq, msg: m})
			fetched[m.SysID] = true
		}
	}
	for progress := true; progress; {
		progress = false
		rest := cs.held[:0]
		for _, h := range cs.held {
			ready := (polled && h.asked) || q.closed
			if !ready {
				ready = true
				for p := range strings.SplitSeq(h.it.msg.prev, ",") {
					ready = ready && (p == "" || q.isKnownLocked(chat, p))
				}
			}
			if !ready {
				rest = append(rest, h)
				continue
			}
			progress = true
			q.markKnownLocked(chat, h.it.msg.SysID)
			if !fetched[h.it.msg.SysID] {
				// Released after what it waited for: within one
				// millisecond the release order is the chat's order.
				q.seq++
				h.it.seq = q.seq
				out = append(out, h.it)
			}
			reqs = append(reqs, h.req)
		}
		clear(cs.held[len(rest):])
		cs.held = rest
	}
	if len(out) > 0 {
		b := &batch{items: out, flushed: true, done: make(chan struct{}), reqs: reqs}
		b.prev, cs.last = cs.last, b
		go q.commit(chat, cs, b)
	}
	if len(cs.held) > 0 && !cs.fetching {
		cs.fetching = true
		since := cs.held[0].it.at
		for i := range cs.held {
			cs.held[i].asked = true
			if cs.held[i].it.at.Before(since) {
				since = cs.held[i].it.at
			}
		}
		if q.polls == nil {
			q.polls, q.stopPolls = context.WithCancel(context.Background())
		}
		go q.poll(q.polls, chat, cs, since)
	}
}

// poll reads the chat from the desk for a missing predecessor (or, without a
// desk, waits one window) and releases what was waiting for it. It first
// asks the store: a predecessor delivered to another replica (webhooks are
// spread over replicas) is stored there, and then no desk read is needed.
func (q *sequencer) poll(ctx context.Context, chat bridge.AgentChatID, cs *chatSeq, since time.Time) {
	if q.resolveStored(ctx, chat, cs) {
		return
	}
	var found []message
	if q.fetch != nil {
		ctx, cancel := context.WithTimeout(ctx, flushTimeout)
		// A minute before the oldest held message: its predecessor is older
		// than it, and anything older is stored by now or by the reconcile.
		msgs, err := q.fetch(ctx, chat, since.Add(-time.Minute))
		cancel()
		if err != nil {
			q.log.Warn("servicenow targeted poll for a missing predecessor failed; delivering what is held", "chat_id", chat, "err", err)
		}
		found = msgs
	} else if q.window > 0 {
		t := time.NewTimer(q.window)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	q.mu.Lock()
	cs.fetching = false
	q.releaseLocked(chat, cs, found, true)
	q.mu.Unlock()
}

// resolveStored looks the missing predecessors of chat's held messages up
// in the store and marks the stored ones known. When that leaves no held
// message waiting it releases them and reports true (no desk read needed);
// otherwise the caller reads the desk.
func (q *sequencer) resolveStored(ctx context.Context, chat bridge.AgentChatID, cs *chatSeq) bool {
	if q.stored == nil {
		return false
	}
	q.mu.Lock()
	missing := q.missingLocked(chat, cs)
	q.mu.Unlock()
	if len(missing) == 0 {
		return false
	}
	lctx, cancel := context.WithTimeout(ctx, flushTimeout)
	found, err := q.stored.StoredDeskEvents(lctx, chat, missing)
	cancel()
	if err != nil {
		if !errors.Is(err, bridge.ErrNotFound) {
			q.log.Warn("servicenow webhook: stored predecessors unknown; reading the chat from the desk", "chat_id", chat, "err", err)
		}
		return false
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, id := range found {
		q.markKnownLocked(chat, id)
	}
	if len(q.missingLocked(chat, cs)) > 0 {
		return false
	}
	cs.fetching = false
	q.releaseLocked(chat, cs, nil, false)
	return true
}

// missingLocked returns the predecessors of chat's held messages that are
// not known. Callers hold q.mu.
func (q *sequencer) missingLocked(chat bridge.AgentChatID, cs *chatSeq) []string {
	var out []string
	for _, h := range cs.held {
		for p := range strings.SplitSeq(h.it.msg.prev, ",") {
			if p != "" && !q.isKnownLocked(chat, p) && !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

func (q *sequencer) isKnownLocked(chat bridge.AgentChatID, id string) bool {
	return slices.Contains(q.known[chat], id)
}

func (q *sequencer) markKnownLocked(chat bridge.AgentChatID, id string) {
	if q.known == nil || len(q.known) >= maxKnownChats {
		q.known = make(map[bridge.AgentChatID][]string)
	}
	ids := q.known[chat]
	if slices.Contains(ids, id) {
		return
	}
	if len(ids) >= knownPerChat {
		ids = slices.Delete(ids, 0, 1)
	}
	q.known[chat] = append(ids, id)
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
	for _, it := range b.items {
		if it.msg.SysID != "" {
			q.markKnownLocked(chat, it.msg.SysID)
		}
	}
	q.mu.Unlock()
	q.commit(chat, cs, b)
}

// commit waits for the chat's previous batch and stores b through the sink.
func (q *sequencer) commit(chat bridge.AgentChatID, cs *chatSeq, b *batch) {
	items := b.items

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
	for _, r := range b.reqs {
		r.err = errors.Join(r.err, b.err)
		if r.left--; r.left == 0 {
			close(r.done)
			q.inflight.Done()
		}
	}
	if cs.last == b && cs.pending == nil && len(cs.held) == 0 && !cs.fetching {
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
	q.mu.Lock()
	_, seen := q.recorded[chat]
	q.mu.Unlock()
	if seen {
		return
	}
	deadline := time.Now().Add(q.openWait)
	for {
		_, err := q.lookup.DeskData(ctx, chat)
		if err == nil {
			q.mu.Lock()
			if q.recorded == nil || len(q.recorded) >= maxKnownChats {
				q.recorded = make(map[bridge.AgentChatID]struct{})
			}
			q.recorded[chat] = struct{}{}
			q.mu.Unlock()
			return
		}
		if !errors.Is(err, bridge.ErrNotFound) {
			return // an error the sink will meet too
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
