package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
)

// DispatchConfig tunes the outbox dispatcher. Zero values take the defaults.
type DispatchConfig struct {
	Workers     int           // items dispatched at once (default 8)
	Batch       int           // items claimed per round (default 2×Workers)
	Lease       time.Duration // how long a claimed item is ours (default 30 s)
	MaxAttempts int           // attempts before an item fails for good (default 6)
	BaseBackoff time.Duration // first retry delay, doubled per attempt (default 1 s)
	MaxBackoff  time.Duration // cap on the retry delay (default 30 s)
	Idle        time.Duration // poll interval when nothing was due (default 200 ms)
	CallTimeout time.Duration // deadline for one outward call (default 20 s)
}

func (c *DispatchConfig) defaults() {
	if c.Workers <= 0 {
		c.Workers = 8
	}
	if c.Batch <= 0 {
		c.Batch = 2 * c.Workers
	}
	if c.Lease <= 0 {
		c.Lease = 30 * time.Second
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 6
	}
	if c.BaseBackoff <= 0 {
		c.BaseBackoff = time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.Idle <= 0 {
		c.Idle = 200 * time.Millisecond
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = 20 * time.Second
	}
}

// DispatchStats counts what the dispatcher did, for metrics.
type DispatchStats struct {
	mu        sync.Mutex
	Delivered map[OutboxKind]int64
	Retried   map[OutboxKind]int64
	Failed    map[OutboxKind]int64
}

func (s *DispatchStats) add(m *map[OutboxKind]int64, k OutboxKind) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if *m == nil {
		*m = map[OutboxKind]int64{}
	}
	(*m)[k]++
}

// Snapshot returns copies of the counters.
func (s *DispatchStats) Snapshot() (delivered, retried, failed map[OutboxKind]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := func(m map[OutboxKind]int64) map[OutboxKind]int64 {
		out := make(map[OutboxKind]int64, len(m))
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	return cp(s.Delivered), cp(s.Retried), cp(s.Failed)
}

// Dispatcher performs the outbox's outward calls with retries. Items of one
// lane run strictly one after another (the store only hands out a lane's
// oldest item); different lanes run in parallel.
type Dispatcher struct {
	relay *Relay
	cfg   DispatchConfig
	log   *slog.Logger
	Stats DispatchStats
}

// NewDispatcher returns a dispatcher for the relay's outbox.
func NewDispatcher(r *Relay, cfg DispatchConfig) *Dispatcher {
	cfg.defaults()
	return &Dispatcher{relay: r, cfg: cfg, log: r.log}
}

// Run dispatches until ctx is cancelled, then waits for the calls in flight to
// finish (each is bounded by CallTimeout) and returns.
func (d *Dispatcher) Run(ctx context.Context) {
	sem := make(chan struct{}, d.cfg.Workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		n, err := d.round(ctx, sem, &wg)
		if err != nil && ctx.Err() == nil {
			d.log.ErrorContext(ctx, "outbox claim failed", "err", err)
		}
		if n > 0 {
			continue
		}
		t := time.NewTimer(d.cfg.Idle)
		select {
		case <-ctx.Done():
		case <-d.relay.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// DrainOnce dispatches everything due now, one round after another, until a
// round finds nothing due. For tests and the demo's deterministic steps.
func (d *Dispatcher) DrainOnce(ctx context.Context) error {
	sem := make(chan struct{}, d.cfg.Workers)
	var wg sync.WaitGroup
	for {
		n, err := d.round(ctx, sem, &wg)
		wg.Wait()
		if err != nil || n == 0 {
			return err
		}
	}
}

func (d *Dispatcher) round(ctx context.Context, sem chan struct{}, wg *sync.WaitGroup) (int, error) {
	items, err := d.relay.store.ClaimOutbox(ctx, d.relay.now(), d.cfg.Batch, d.cfg.Lease)
	if err != nil {
		return 0, err
	}
	for _, it := range items {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			// The call runs to completion even when ctx is cancelled (shutdown),
			// bounded by CallTimeout, so a delivered message is recorded as such.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.CallTimeout)
			defer cancel()
			d.dispatch(cctx, it)
		}()
	}
	return len(items), nil
}

// dispatch performs one item and records the outcome.
func (d *Dispatcher) dispatch(ctx context.Context, it OutboxItem) {
	log := d.log.With("outbox_id", it.ID, "kind", it.Kind, "session_id", it.SessionID, "attempt", it.Attempts)
	defer func() {
		if p := recover(); p != nil {
			log.ErrorContext(ctx, "outbox item panicked", "panic", fmt.Sprint(p))
			d.retry(ctx, it, fmt.Errorf("panic: %v", p))
		}
	}()
	err := d.perform(ctx, it)
	if err == nil {
		d.Stats.add(&d.Stats.Delivered, it.Kind)
		log.DebugContext(ctx, "outbox item done")
		return
	}
	final := IsPermanent(err) || it.Attempts >= d.cfg.MaxAttempts
	if !final {
		log.WarnContext(ctx, "outbox item failed, will retry", "err", err)
		d.retry(ctx, it, err)
		return
	}
	log.ErrorContext(ctx, "outbox item failed for good", "err", err)
	d.Stats.add(&d.Stats.Failed, it.Kind)
	if ferr := d.relay.failed(ctx, it, err); ferr != nil {
		log.ErrorContext(ctx, "recording the failure failed, will retry", "err", ferr)
		d.retry(ctx, it, ferr)
	}
}

func (d *Dispatcher) retry(ctx context.Context, it OutboxItem, cause error) {
	d.Stats.add(&d.Stats.Retried, it.Kind)
	backoff := d.cfg.BaseBackoff << min(max(it.Attempts-1, 0), 20)
	if backoff > d.cfg.MaxBackoff || backoff <= 0 {
		backoff = d.cfg.MaxBackoff
	}
	backoff = backoff/2 + rand.N(backoff/2+1) // jitter: [b/2, b]
	next := d.relay.now().Add(backoff)
	err := d.relay.store.Update(ctx, func(tx Tx) error { return tx.RetryOutbox(ctx, it.ID, next, truncate(cause.Error(), 1000)) })
	if err != nil {
		d.log.ErrorContext(ctx, "outbox retry not recorded; the lease will expire", "outbox_id", it.ID, "err", err)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// perform makes the outward call of it and commits its consequences together
// with the item's completion.
func (d *Dispatcher) perform(ctx context.Context, it OutboxItem) error {
	r := d.relay
	p, err := it.DecodePayload()
	if err != nil {
		return Permanent(fmt.Errorf("decode payload: %w", err))
	}
	switch it.Kind {
	case KindBotSend:
		return r.botSend(ctx, it, p)
	case KindDeskOpen:
		return r.deskOpen(ctx, it)
	case KindDeskSend:
		return r.deskSend(ctx, it, p)
	case KindDeskLeave:
		return r.deskLeave(ctx, it, p, nil)
	case KindDeskNote:
		return r.deskNote(ctx, it, p)
	case KindBotHandback:
		if err := r.bot.Handback(ctx, it.Conversation, Handback{Reason: p.Reason, Restart: p.Restart}); err != nil {
			return fmt.Errorf("bot handback: %w", err)
		}
		return r.complete(ctx, it, nil)
	case KindUserSend:
		return r.userSend(ctx, it, p)
	case KindUserCard:
		return r.userCard(ctx, it, p)
	case KindUserTyping:
		ref, err := r.ref(ctx, it.Conversation)
		if err == nil {
			err = r.user.Typing(ctx, ref)
		}
		if err != nil {
			r.log.DebugContext(ctx, "typing indicator not shown", "session_id", it.SessionID, "err", err)
		}
		return r.complete(ctx, it, nil) // typing is best effort
	case KindDeskTyping:
		if t, ok := r.desk.(DeskTyping); ok {
			s, err := r.session(ctx, it.SessionID)
			if err == nil && s.State == StateLive {
				if err := t.Typing(ctx, s.DeskChat()); err != nil {
					r.log.DebugContext(ctx, "desk typing not shown", "session_id", it.SessionID, "err", err)
				}
			}
		}
		return r.complete(ctx, it, nil)
	case KindDeskReceipt:
		rc, ok := r.desk.(DeskReceipts)
		if !ok {
			return r.complete(ctx, it, nil)
		}
		s, err := r.session(ctx, it.SessionID)
		if err != nil {
			return err
		}
		m, err := r.message(ctx, p.MessageID)
		if err != nil {
			return err
		}
		if err := rc.Delivered(ctx, s.DeskChat(), m.ExternalID); err != nil {
			return fmt.Errorf("desk receipt: %w", err)
		}
		return r.complete(ctx, it, nil)
	}
	return Permanent(fmt.Errorf("unknown outbox kind %q", it.Kind))
}

// complete marks it done and runs then in the same transaction.
func (r *Relay) complete(ctx context.Context, it OutboxItem, then func(tx Tx, now time.Time) error) error {
	now := r.now()
	err := r.store.Update(ctx, func(tx Tx) error {
		if then != nil {
			if err := then(tx, now); err != nil {
				return err
			}
		}
		return tx.CompleteOutbox(ctx, it.ID)
	})
	if err == nil {
		r.wake()
	}
	return err
}

func (r *Relay) session(ctx context.Context, id SessionID) (s Session, err error) {
	err = r.store.Update(ctx, func(tx Tx) error { s, err = tx.Session(ctx, id); return err })
	return s, err
}

func (r *Relay) message(ctx context.Context, id int64) (m Message, err error) {
	err = r.store.Update(ctx, func(tx Tx) error { m, err = tx.Message(ctx, id); return err })
	return m, err
}

// load reads what an outbox item acts on in one transaction: its session,
// the message of its payload and, when withRef, the conversation reference.
func (r *Relay) load(ctx context.Context, it OutboxItem, p OutboxPayload, withRef bool) (s Session, m Message, ref ConversationRef, err error) {
	err = r.store.Update(ctx, func(tx Tx) error {
		var err error
		if s, err = tx.Session(ctx, it.SessionID); err != nil {
			return err
		}
		if m, err = tx.Message(ctx, p.MessageID); err != nil {
			return err
		}
		if withRef {
			ref, err = tx.ConversationRef(ctx, it.Conversation)
		}
		return err
	})
	return s, m, ref, err
}

func (r *Relay) ref(ctx context.Context, conv ConversationID) (ref ConversationRef, err error) {
	err = r.store.Update(ctx, func(tx Tx) error { ref, err = tx.ConversationRef(ctx, conv); return err })
	return ref, err
}

// botSend relays a user message to the bot, or on to the desk if a handoff
// started since it was queued.
func (r *Relay) botSend(ctx context.Context, it OutboxItem, p OutboxPayload) error {
	s, m, ref, err := r.load(ctx, it, p, true)
	if err != nil {
		return err
	}
	if s.HumanOwned() {
		// A handoff started after this message was queued: it belongs to the agent.
		return r.complete(ctx, it, func(tx Tx, now time.Time) error {
			return tx.Enqueue(ctx, NewOutboxItem(s.ID, s.Conversation, KindDeskSend, OutboxPayload{MessageID: m.ID}, now))
		})
	}
	in := BotInput{Conversation: it.Conversation, Text: m.Text, Metadata: map[string]any{
		"teams": map[string]any{"user_id": ref.UserID, "user_name": ref.UserName, "aad_object_id": ref.UserAADID,
			"tenant_id": ref.TenantID, "locale": ref.Locale, "email": s.UserEmail},
	}, Key: m.ExternalID, Retry: it.Attempts > 1}
	replies, err := r.bot.Send(ctx, in)
	if err != nil {
		return fmt.Errorf("bot send: %w", err)
	}
	r.observe(DirBot, m.CreatedAt)
	var (
		sig *HandoffSignal
		bc  BotContext
	)
	for _, rp := range replies {
		if rp.Handoff != nil && sig == nil {
			sig = rp.Handoff
		}
	}
	if sig != nil && s.State == StateBot {
		if bc, err = r.bot.Context(ctx, it.Conversation); err != nil {
			r.log.WarnContext(ctx, "bot context unavailable; the review record will lack intents", "session_id", s.ID, "err", err)
		}
	}
	return r.complete(ctx, it, func(tx Tx, now time.Time) error {
		s, err := tx.Session(ctx, it.SessionID)
		if err != nil {
			return err
		}
		for i, rp := range replies {
			bm := Message{SessionID: s.ID, Source: SourceBot, ExternalID: fmt.Sprintf("%d/%d", m.ID, i),
				Text: rp.Text, Buttons: rp.Buttons, ImageURL: rp.ImageURL, SentAt: now, CreatedAt: now}
			if !bm.Deliverable() {
				continue
			}
			inserted, err := tx.InsertMessage(ctx, &bm)
			if err != nil {
				return err
			}
			if inserted {
				if err := tx.Enqueue(ctx, NewOutboxItem(s.ID, s.Conversation, KindUserSend, OutboxPayload{MessageID: bm.ID}, now)); err != nil {
					return err
				}
			}
		}
		if sig == nil || s.State != StateBot {
			return nil
		}
		return r.startHandoff(ctx, tx, s, *sig, bc, now)
	})
}

func (r *Relay) startHandoff(ctx context.Context, tx Tx, s Session, sig HandoffSignal, bc BotContext, now time.Time) error {
	next, err := Transition(s.State, EventHandoff, "")
	if err != nil {
		return nil
	}
	prev := s.State
	s.State, s.Reason, s.Queue, s.QueuedAt, s.UpdatedAt = next, sig.Reason, sig.Queue, now, now
	if err := tx.UpdateSession(ctx, s, prev); err != nil {
		return err
	}
	r.log.InfoContext(ctx, "handoff started", "session_id", s.ID, "conversation_id", s.Conversation, "reason", sig.Reason)
	if r.reviewer != nil {
		if err := tx.PutReview(ctx, r.reviewer.Start(s, sig, bc, now)); err != nil {
			return err
		}
	}
	if err := r.sayT(ctx, tx, s, "connecting:"+string(s.ID), func(t Texts) string { return t.Connecting }, now); err != nil {
		return err
	}
	if err := r.queueCard(ctx, tx, s, cardState{phase: phaseWaiting}, now); err != nil {
		return err
	}
	return tx.Enqueue(ctx, NewOutboxItem(s.ID, s.Conversation, KindDeskOpen, OutboxPayload{}, now))
}

// deskOpen opens the agent chat with the user's identity, the reason and the
// recent transcript.
func (r *Relay) deskOpen(ctx context.Context, it OutboxItem) error {
	var (
		s  Session
		ms []Message
	)
	err := r.store.Update(ctx, func(tx Tx) error {
		var err error
		if s, err = tx.Session(ctx, it.SessionID); err != nil {
			return err
		}
		ms, err = tx.ConversationMessages(ctx, s.Conversation, 4*r.cfg.TranscriptTurns)
		return err
	})
	if err != nil {
		return err
	}
	if s.State != StateQueued || s.AgentChatID != "" {
		return r.complete(ctx, it, nil) // ended before the chat opened, or already open
	}
	h := Handoff{Session: s.ID, Conversation: s.Conversation, UserName: s.UserName, UserEmail: r.userEmail(ctx, s),
		UserID: s.UserID, UserAADID: s.UserAADID, TenantID: s.TenantID, Reason: s.Reason, Queue: s.Queue,
		Transcript: transcript(ms, r.cfg.TranscriptTurns), Retry: it.Attempts > 1}
	chat, err := r.desk.Open(ctx, h)
	if err != nil {
		return fmt.Errorf("desk open: %w", err)
	}
	return r.complete(ctx, it, func(tx Tx, now time.Time) error {
		s, err := tx.Session(ctx, it.SessionID)
		if err != nil {
			return err
		}
		prev := s.State
		s.AgentChatID, s.DeskData, s.UpdatedAt = chat.ID, chat.Data, now
		if err := tx.UpdateSession(ctx, s, prev); err != nil {
			return err
		}
		r.log.InfoContext(ctx, "desk chat opened", "session_id", s.ID, "chat_id", chat.ID)
		if prev != StateQueued && prev != StateLive {
			// The session ended while the chat was opening: leave it now.
			return tx.Enqueue(ctx, NewOutboxItem(s.ID, s.Conversation, KindDeskLeave, OutboxPayload{Reason: s.CloseReason}, now))
		}
		return nil
	})
}

// transcript turns the last user and bot messages into turns for the agent.
func transcript(ms []Message, turns int) []Turn {
	var out []Turn
	for _, m := range ms {
		role := ""
		switch m.Source {
		case SourceUser:
			role = "user"
		case SourceBot:
			role = "bot"
		default:
			continue
		}
		if strings.TrimSpace(m.Text) == "" {
			continue
		}
		out = append(out, Turn{Role: role, Author: m.Author, Text: m.Text, At: m.SentAt})
	}
	if len(out) > turns {
		out = out[len(out)-turns:]
	}
	return out
}

func (r *Relay) deskSend(ctx context.Context, it OutboxItem, p OutboxPayload) error {
	s, m, _, err := r.load(ctx, it, p, false)
	if err != nil {
		return err
	}
	if !s.HumanOwned() || s.AgentChatID == "" {
		// The chat ended (or never opened) before this message could go out.
		return r.complete(ctx, it, func(tx Tx, now time.Time) error {
			return r.sayT(ctx, tx, s, fmt.Sprintf("late:%d", m.ID), func(t Texts) string { return t.LateMessage }, now)
		})
	}
	dm := DeskMessage{Key: fmt.Sprintf("%s/%d", s.ID, m.ID), Text: m.Text, Author: m.Author, Retry: it.Attempts > 1, FirstTry: it.CreatedAt,
		Confirmed: s.DeskPosts}
	if err := r.desk.Send(ctx, s.DeskChat(), dm); err != nil {
		return fmt.Errorf("desk send: %w", err)
	}
	r.observe(DirUserToAgent, m.CreatedAt)
	return r.complete(ctx, it, func(tx Tx, now time.Time) error { return deskPosted(ctx, tx, it.SessionID, now) })
}

// deskPosted counts a message the desk confirmed (DeskMessage.Confirmed),
// whatever state the session has reached meanwhile.
func deskPosted(ctx context.Context, tx Tx, id SessionID, now time.Time) error {
	s, err := tx.Session(ctx, id)
	if err != nil {
		return err
	}
	prev := s.State
	s.DeskPosts++
	s.UpdatedAt = now
	return tx.UpdateSession(ctx, s, prev)
}

// deskLeave leaves the desk chat and then finishes closing: it tells the user
// how the chat ended, hands back to the bot (queued already), records the
// review outcome and closes the session. leaveErr is set when leaving failed
// for good.
func (r *Relay) deskLeave(ctx context.Context, it OutboxItem, p OutboxPayload, leaveErr error) error {
	s, err := r.session(ctx, it.SessionID)
	if err != nil {
		return err
	}
	if leaveErr == nil && s.AgentChatID != "" && s.State == StateClosing {
		if err := r.leaveDesk(ctx, s); err != nil {
			return fmt.Errorf("desk leave: %w", err)
		}
	}
	return r.complete(ctx, it, func(tx Tx, now time.Time) error {
		s, err := tx.Session(ctx, it.SessionID)
		if err != nil {
			return err
		}
		if s.State != StateClosing {
			return nil // finished already (a duplicate leave item)
		}
		if err := r.finish(ctx, tx, s, leaveErr, now); err != nil {
			return err
		}
		return nil
	})
}

// leaveDesk leaves the session's desk chat, telling a desk that can show it
// why the chat ended.
func (r *Relay) leaveDesk(ctx context.Context, s Session) error {
	if o, ok := r.desk.(DeskOutcome); ok {
		return o.LeaveWithOutcome(ctx, s.DeskChat(), s.CloseReason)
	}
	return r.desk.Leave(ctx, s.DeskChat())
}

// finish closes a closing session: ending notice, bot-back notice, review
// outcome, state closed.
func (r *Relay) finish(ctx context.Context, tx Tx, s Session, leaveErr error, now time.Time) error {
	t, err := r.texts(ctx, tx, s.Conversation)
	if err != nil {
		return err
	}
	var line string
	switch s.CloseReason {
	case ReasonUserEnded:
		line = t.UserEnded
	case ReasonUserRestarted:
		line = t.UserRestart
	case ReasonAgentClosed:
		line = t.AgentClosed
	case ReasonAgentLeft:
		line = t.AgentLeft
	case ReasonIdleTimeout:
		line = t.IdleTimeout
	case ReasonQueueTimeout:
		line = t.QueueTimeout
	case ReasonDeskClosed:
		line = t.DeskClosed
	case ReasonDeskAbandoned:
		line = t.DeskAbandoned
	case ReasonRelayError:
		if s.AgentChatID == "" {
			line = t.DeskDown
		} else {
			last := s.LastAgentActivity
			if last.IsZero() {
				last = s.UpdatedAt
			}
			line = fmt.Sprintf(t.RelayError, s.AgentChatID, last.UTC().Format("2006-01-02 15:04:05 UTC"))
		}
	}
	if leaveErr != nil && s.AgentChatID != "" {
		line = t.LeaveFailed
	}
	if s.CloseReason != ReasonUserBlocked {
		if err := r.queueCard(ctx, tx, s, cardState{phase: phaseEnded, ending: line}, now); err != nil {
			return err
		}
		if err := r.say(ctx, tx, s, "end:"+string(s.ID), line, now); err != nil {
			return err
		}
		if err := r.offerCSAT(ctx, tx, s, now); err != nil { // before "back", so the rating follows the chat it rates
			return err
		}
		if err := r.say(ctx, tx, s, "back:"+string(s.ID), t.BotBack, now); err != nil {
			return err
		}
	}
	if r.reviewer != nil {
		rec, err := tx.Review(ctx, s.ID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err == nil {
			human, err := tx.Messages(ctx, s.ID, 0)
			if err != nil {
				return err
			}
			human = humanSegment(human, s.QueuedAt)
			if err := tx.PutReview(ctx, r.reviewer.Finish(rec, s, human, now)); err != nil {
				return err
			}
		}
	}
	next, err := Transition(s.State, EventFinished, "")
	if err != nil {
		return err
	}
	prev := s.State
	s.State, s.ClosedAt, s.UpdatedAt = next, now, now
	r.log.InfoContext(ctx, "handoff closed", "session_id", s.ID, "reason", s.CloseReason, "leave_failed", leaveErr != nil)
	return tx.UpdateSession(ctx, s, prev)
}

// humanSegment keeps the user and agent messages written after the handoff.
func humanSegment(ms []Message, from time.Time) []Message {
	out := ms[:0:0]
	for _, m := range ms {
		if (m.Source == SourceUser || m.Source == SourceAgent) && !m.CreatedAt.Before(from) {
			out = append(out, m)
		}
	}
	return out
}

func (r *Relay) userSend(ctx context.Context, it OutboxItem, p OutboxPayload) error {
	_, m, ref, err := r.load(ctx, it, p, true)
	if err != nil {
		return err
	}
	um := UserMessage{Text: m.Text, Buttons: m.Buttons, ImageURL: m.ImageURL, Notice: m.Source == SourceBridge, Attachments: m.Attachments}
	if m.Source == SourceAgent && !m.System {
		um.Author = m.Author
	}
	if _, err := r.user.Send(ctx, ref, um); err != nil {
		return fmt.Errorf("user send: %w", err)
	}
	r.observeUserSend(m)
	return r.complete(ctx, it, func(tx Tx, now time.Time) error {
		if m.Source != SourceAgent {
			return nil
		}
		if _, ok := r.desk.(DeskReceipts); !ok {
			return nil
		}
		return tx.Enqueue(ctx, NewOutboxItem(it.SessionID, it.Conversation, KindDeskReceipt, OutboxPayload{MessageID: m.ID}, now))
	})
}

// failed handles an item that failed for good: it is marked dead, and where
// the failure breaks the relay the session ends cleanly.
func (r *Relay) failed(ctx context.Context, it OutboxItem, cause error) error {
	p, _ := it.DecodePayload()
	msg := truncate(cause.Error(), 1000)
	if it.Kind == KindDeskLeave {
		// Leaving failed: finish closing anyway and tell the user the chat
		// could not be located.
		if err := r.deskLeave(ctx, it, p, cause); err != nil {
			return err
		}
		return nil
	}
	now := r.now()
	err := r.store.Update(ctx, func(tx Tx) error {
		if err := tx.FailOutbox(ctx, it.ID, msg); err != nil {
			return err
		}
		s, err := tx.Session(ctx, it.SessionID)
		if err != nil {
			return err
		}
		switch it.Kind {
		case KindBotSend:
			return r.sayT(ctx, tx, s, fmt.Sprintf("botdown:%d", p.MessageID), func(t Texts) string { return t.BotDown }, now)
		case KindDeskOpen, KindDeskSend:
			return r.end(ctx, tx, s, ReasonRelayError, now)
		case KindUserCard:
			if errors.Is(cause, ErrUserUnreachable) {
				return r.end(ctx, tx, s, ReasonUserBlocked, now)
			}
			return nil // the notices carry the same news
		case KindUserSend:
			if errors.Is(cause, ErrUserUnreachable) {
				return r.end(ctx, tx, s, ReasonUserBlocked, now)
			}
			return r.end(ctx, tx, s, ReasonRelayError, now)
		}
		return nil // handback, typing, receipts: logged and kept dead for inspection
	})
	if err == nil {
		r.wake()
	}
	return err
}
