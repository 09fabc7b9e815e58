package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// PollTargets lists the chats to poll. Implemented by the relay.
type PollTargets interface {
	// PollTargets returns every queued or live session that has a desk chat,
	// with its cursor. An error skips the run.
	PollTargets(ctx context.Context) ([]PollTarget, error)
}

// AgentEventSink takes polled events. Implemented by the relay.
type AgentEventSink interface {
	// AgentEvents stores the chat's events, oldest first and never empty, in
	// one transaction: messages under their unique (session, source,
	// ExternalID) key, so events fetched again are no-ops; the session's
	// cursor moved to the largest At of all events, echoes and system messages
	// included (never backwards); and the deliveries queued. Events with Echo
	// set are never delivered. fromPoll is true when the events come from the
	// poller (false for webhooks). On error nothing is stored and the cursor
	// stays, so the next poll fetches the same events again. Calls for
	// different chats may run concurrently.
	AgentEvents(ctx context.Context, chat AgentChatID, events []AgentEvent, fromPoll bool) error
}

// CursorSink is an optional extension of AgentEventSink: it moves the
// cursors of many sessions at once, for chats whose only new events are
// echoes of the bridge's own posts (nothing to store or deliver, only the
// cursor to move past them). Implemented by the relay.
type CursorSink interface {
	// AdvanceCursors moves each session's cursor forward to its time (never
	// backwards) in one transaction. On error no cursor moves.
	AdvanceCursors(ctx context.Context, cursors map[SessionID]time.Time) error
}

// EventTriage is an optional extension of AgentEventSink for batch mode: it
// tells, with a few reads for all chats of a run, which chats' events would
// change nothing but the cursor, so that their cursors move together
// (CursorSink) instead of one transaction per chat. Implemented by the relay.
type EventTriage interface {
	// Settled returns the chats whose events AgentEvents would store nothing
	// for apart from the cursor. A chat once settled stays settled.
	Settled(ctx context.Context, events map[AgentChatID][]AgentEvent) (map[AgentChatID]bool, error)
}

// DeskThrottle is where the poller learns and records that the desk asked
// the bridge to wait; shared with the dispatcher's desk lanes (and, through
// the store, with every replica). Implemented by the relay.
type DeskThrottle interface {
	// DeskThrottledUntil returns until when the desk is throttled; zero when
	// it is not.
	DeskThrottledUntil(ctx context.Context) (time.Time, error)
	// ThrottleDesk records that the desk asked us to wait until until.
	ThrottleDesk(ctx context.Context, until time.Time) error
}

// The relay is the poller's targets, sink and throttle. (PollTarget, the chat
// and cursor of one queued or live session, is declared in relay.go.)
var (
	_ PollTargets    = (*Relay)(nil)
	_ AgentEventSink = (*Relay)(nil)
	_ CursorSink     = (*Relay)(nil)
	_ EventTriage    = (*Relay)(nil)
	_ DeskThrottle   = (*Relay)(nil)
)

// PollerConfig configures a Poller. Exactly one of Feed and Batch is set.
type PollerConfig struct {
	Targets PollTargets
	Sink    AgentEventSink
	// Feed selects per-session mode: one Poll per target per run.
	Feed AgentFeed
	// Batch selects batch mode: one PollMany over all targets per run.
	Batch BatchAgentFeed
	// Throttle, when set, makes runs skip while the desk is throttled, and
	// records a *ThrottledError a poll returns so that the rest of the run,
	// later runs and the desk's outbox lanes all wait.
	Throttle DeskThrottle

	// Interval between runs. Default 3 s.
	Interval time.Duration
	// Jitter spreads the pause between runs over Interval × (1 ± Jitter/2)
	// (Jitter at most 1), so restarts do not poll in lockstep. Default 0.2;
	// negative disables it.
	Jitter float64
	// Timeout bounds one run. Default 10 × Interval, at least 30 s.
	Timeout time.Duration
	// Concurrency is how many chats are polled (per-session mode) or handed to
	// the sink at once. Default 8.
	Concurrency int
	// Lease, when set, makes Run poll only while this process holds it
	// (one poller per deployment). Nil: always poll.
	Lease Leadership
	// Clock drives the schedule (default the system clock).
	Clock Clock
	// Logger receives the poller's logs: session and chat ids, never message
	// text. Default: discard.
	Logger *slog.Logger
}

// PollerStats are the poller's counters since it was made.
type PollerStats struct {
	Runs         int64         // runs finished (scheduled and PollOnce)
	Skipped      int64         // scheduled runs skipped because a PollOnce was still going
	Throttled    int64         // runs skipped and polls not made because the desk asked us to wait
	Polled       int64         // chats polled
	Events       int64         // events handed to the sink and accepted
	Errors       int64         // failed target listings, polls, batch reads and sink calls
	LastTargets  int           // chats in the last run
	LastRun      time.Time     // start of the last run
	LastDuration time.Duration // duration of the last run
}

// Poller fetches agent events every Interval and hands them to the sink.
// Runs never overlap; an error for one chat does not stop the others. With a
// Lease set, a replica polls only while it holds the lease, so a deployment
// spends one replica's ServiceNow requests, not one per replica.
type Poller struct {
	cfg PollerConfig
	log *slog.Logger

	slot chan struct{} // holds a token while a run is going

	runs, skipped, polled, events, errs, throttled atomic.Int64

	mu           sync.Mutex // guards the last-run fields
	lastTargets  int
	lastRun      time.Time
	lastDuration time.Duration

	// known holds, per chat, the ExternalIDs of the events the sink has
	// accepted in this process, with the desk time of messages (zero for
	// states). The desk returns the
	// rows of a chat's cursor second and its current state on every poll;
	// events the sink already accepted are no-ops there (messages are
	// unique by ExternalID, a join or queue place is kept under its id), so
	// they are not handed over again and an idle run writes nothing. The
	// sink stays idempotent on its own: this only saves transactions, and a
	// restarted process hands each chat's events over once more.
	knownMu sync.Mutex
	known   map[AgentChatID]map[string]time.Time
}

// NewPoller checks cfg and returns a poller; Run starts its schedule.
func NewPoller(cfg PollerConfig) (*Poller, error) {
	var bad []error
	if cfg.Targets == nil {
		bad = append(bad, errors.New("a Targets value is required"))
	}
	if cfg.Sink == nil {
		bad = append(bad, errors.New("a Sink value is required"))
	}
	if (cfg.Feed == nil) == (cfg.Batch == nil) {
		bad = append(bad, errors.New("exactly one of Feed (per-session mode) and Batch (batch mode) is required"))
	}
	if err := errors.Join(bad...); err != nil {
		return nil, fmt.Errorf("bridge: poller config: %w", err)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 3 * time.Second
	}
	if cfg.Jitter == 0 {
		cfg.Jitter = 0.2
	}
	cfg.Jitter = min(max(cfg.Jitter, 0), 1)
	if cfg.Timeout <= 0 {
		cfg.Timeout = max(10*cfg.Interval, 30*time.Second)
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 8
	}
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Poller{cfg: cfg, log: cfg.Logger, slot: make(chan struct{}, 1), known: make(map[AgentChatID]map[string]time.Time)}, nil
}

// Run polls every Interval (spread by Jitter) until ctx ends, skipping runs
// while another replica holds the lease. A run in progress when ctx ends is
// cancelled: what it stored is committed, what it did not is fetched again by
// the next poller (the cursor moves only with the stored events). Run returns
// nil once ctx ends.
func (p *Poller) Run(ctx context.Context) error {
	p.log.Info("poller started", "interval", p.cfg.Interval, "mode", p.mode())
	defer p.log.Info("poller stopped")
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.cfg.Clock.After(p.wait()):
		}
		if p.cfg.Lease != nil && !p.cfg.Lease.Held() {
			continue
		}
		p.scheduled(ctx)
	}
}

// wait is the pause before the next run: Interval ± Jitter/2.
func (p *Poller) wait() time.Duration {
	if p.cfg.Jitter <= 0 {
		return p.cfg.Interval
	}
	f := 1 + p.cfg.Jitter*(rand.Float64()-0.5)
	return time.Duration(f * float64(p.cfg.Interval))
}

// PollOnce runs one poll now, waiting for a running one to finish first, and
// returns the joined errors of the run (each chat's failure included). It
// ignores the lease.
func (p *Poller) PollOnce(ctx context.Context) error {
	select {
	case p.slot <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("bridge: poll: %w", ctx.Err())
	}
	defer func() { <-p.slot }()
	return p.run(ctx)
}

// Stats returns the counters.
func (p *Poller) Stats() PollerStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PollerStats{
		Runs: p.runs.Load(), Skipped: p.skipped.Load(), Throttled: p.throttled.Load(), Polled: p.polled.Load(), Events: p.events.Load(), Errors: p.errs.Load(),
		LastTargets: p.lastTargets, LastRun: p.lastRun, LastDuration: p.lastDuration,
	}
}

func (p *Poller) mode() string {
	if p.cfg.Batch != nil {
		return "batch"
	}
	return "per-session"
}

// scheduled is one scheduled run bounded by Timeout, skipped while a
// PollOnce is going. A panic is recovered and logged.
func (p *Poller) scheduled(ctx context.Context) {
	select {
	case p.slot <- struct{}{}:
	default:
		p.skipped.Add(1)
		p.log.Debug("poll skipped: previous run still going")
		return
	}
	defer func() { <-p.slot }()
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	err := func() (err error) {
		defer recoverInto(&err)
		return p.run(ctx)
	}()
	switch {
	case errors.Is(err, errPanic):
		p.errs.Add(1)
		p.log.Error("poll run panicked", "err", err)
	case err != nil && ctx.Err() == nil:
		p.log.Warn("poll run had errors", "error_count", countErrors(err))
	}
}

// run is one poll over all targets. Callers hold the slot.
func (p *Poller) run(ctx context.Context) error {
	start := time.Now()
	defer func() { p.runs.Add(1) }()
	if p.cfg.Throttle != nil {
		until, err := p.cfg.Throttle.DeskThrottledUntil(ctx)
		if err != nil {
			p.log.Warn("desk throttle unknown; polling anyway", "err", err)
		} else if until.After(start) {
			p.throttled.Add(1)
			p.log.Debug("poll skipped: the desk asked us to wait", "until", until)
			return nil
		}
	}
	targets, err := p.cfg.Targets.PollTargets(ctx)
	if err != nil {
		p.errs.Add(1)
		p.log.Warn("poll targets failed", "err", err)
		return fmt.Errorf("bridge: poll: targets: %w", err)
	}
	p.forgetOthers(targets)
	moves := newCursorMoves()
	if p.cfg.Batch != nil {
		err = p.runBatch(ctx, targets, moves)
	} else {
		err = p.runEach(ctx, targets, moves)
	}
	err = errors.Join(err, p.advance(ctx, moves))
	d := time.Since(start)
	p.mu.Lock()
	p.lastTargets, p.lastRun, p.lastDuration = len(targets), start, d
	p.mu.Unlock()
	p.log.Debug("poll run done", "mode", p.mode(), "targets", len(targets), "duration", d)
	return err
}

// runEach polls every target with its own Poll call.
func (p *Poller) runEach(ctx context.Context, targets []PollTarget, moves *cursorMoves) error {
	var waiting atomic.Bool // the desk throttled us during this run
	return p.each(ctx, targets, func(ctx context.Context, t PollTarget) error {
		if waiting.Load() {
			p.throttled.Add(1)
			return nil // polled again in a run after the throttle
		}
		p.polled.Add(1)
		events, err := p.cfg.Feed.Poll(ctx, t.Chat, t.Cursor)
		if p.throttledBy(ctx, err) {
			waiting.Store(true)
			return err // reported, but not counted as an error
		}
		switch {
		case errors.Is(err, ErrChatClosed):
			// The desk no longer knows the chat: end the session instead of
			// polling it forever.
			p.log.Warn("poll: desk chat not found; ending session", "session_id", t.Session, "chat_id", t.Chat, "err", err)
			events = []AgentEvent{{Kind: AgentEnded, Chat: t.Chat, ExternalID: "gone:" + string(t.Chat), At: t.Cursor, System: true, EndReason: ReasonAgentClosed}}
		case err != nil:
			p.errs.Add(1)
			p.log.Warn("poll chat failed", "session_id", t.Session, "chat_id", t.Chat, "err", err)
			return fmt.Errorf("bridge: poll: chat %s (session %s): %w", t.Chat, t.Session, err)
		}
		return p.deliver(ctx, t, events, moves)
	})
}

// runBatch polls all targets with one PollMany call and delivers per chat.
func (p *Poller) runBatch(ctx context.Context, targets []PollTarget, moves *cursorMoves) error {
	if len(targets) == 0 {
		return nil
	}
	cursors := make(map[AgentChatID]time.Time, len(targets))
	uniq := targets[:0:0]
	for _, t := range targets {
		if _, dup := cursors[t.Chat]; !dup {
			cursors[t.Chat] = t.Cursor
			uniq = append(uniq, t)
		}
	}
	p.polled.Add(int64(len(cursors)))
	var errs []error
	res, err := p.pollMany(ctx, cursors)
	if p.throttledBy(ctx, err) {
		// Partial results are delivered; the rest waits for the throttle.
		errs = append(errs, err)
		err = nil
	}
	if err != nil {
		// Partial results are still delivered: the failed chats keep their
		// cursors and are fetched again next run.
		p.errs.Add(1)
		p.log.Warn("batch poll failed", "chats", len(cursors), "err", err)
		errs = append(errs, fmt.Errorf("bridge: poll: batch: %w", err))
	}
	var due []PollTarget
	fresh := make(map[AgentChatID][]AgentEvent)
	for _, t := range uniq {
		if evs := p.unknown(t.Chat, res[t.Chat]); len(evs) > 0 {
			due = append(due, t)
			fresh[t.Chat] = evs
		}
	}
	settled := p.settled(ctx, fresh)
	errs = append(errs, p.each(ctx, due, func(ctx context.Context, t PollTarget) error {
		if settled[t.Chat] {
			moves.add(t, fresh[t.Chat])
			return nil
		}
		return p.deliver(ctx, t, fresh[t.Chat], moves)
	}))
	return errors.Join(errs...)
}

// settled asks the sink which chats' events change nothing but the cursor
// (none when it cannot tell).
func (p *Poller) settled(ctx context.Context, events map[AgentChatID][]AgentEvent) map[AgentChatID]bool {
	tr, ok := p.cfg.Sink.(EventTriage)
	if _, bulk := p.cfg.Sink.(CursorSink); !ok || !bulk || len(events) == 0 {
		return nil
	}
	settled, err := tr.Settled(ctx, events)
	if err != nil {
		p.log.Warn("telling settled chats apart failed; storing each chat's events", "chats", len(events), "err", err)
		return nil
	}
	return settled
}

// throttledBy reports whether err is the desk asking us to wait, and if so
// records the throttle so that later runs and the desk lanes wait too.
func (p *Poller) throttledBy(ctx context.Context, err error) bool {
	t, ok := Throttled(err)
	if !ok {
		return false
	}
	p.throttled.Add(1)
	p.log.Warn("desk throttled polling", "until", t.Until, "err", err)
	if p.cfg.Throttle != nil {
		if err := p.cfg.Throttle.ThrottleDesk(ctx, t.Until); err != nil {
			p.log.Warn("desk throttle not recorded", "err", err)
		}
	}
	return true
}

// pollMany calls the batch feed, turning a panic into an error.
func (p *Poller) pollMany(ctx context.Context, cursors map[AgentChatID]time.Time) (res map[AgentChatID][]AgentEvent, err error) {
	defer recoverInto(&err)
	return p.cfg.Batch.PollMany(ctx, cursors)
}

// deliver hands one chat's new events to the sink. Events the sink already
// accepted are left out; when only echoes are left and the sink can move
// cursors in bulk, the chat's cursor move joins moves instead of costing a
// transaction of its own.
func (p *Poller) deliver(ctx context.Context, t PollTarget, events []AgentEvent, moves *cursorMoves) error {
	events = p.unknown(t.Chat, events) // no-op when the caller filtered them
	if len(events) == 0 {
		return nil
	}
	if _, ok := p.cfg.Sink.(CursorSink); ok && allEchoes(events) {
		moves.add(t, events)
		return nil
	}
	if err := p.cfg.Sink.AgentEvents(ctx, t.Chat, events, true); err != nil {
		p.errs.Add(1)
		p.log.Warn("storing agent events failed", "session_id", t.Session, "chat_id", t.Chat, "events", len(events), "err", err)
		return fmt.Errorf("bridge: poll: store events of chat %s (session %s): %w", t.Chat, t.Session, err)
	}
	p.events.Add(int64(len(events)))
	p.accepted(t, events)
	return nil
}

// advance moves the cursors of the echo-only chats of a run with one sink
// call.
func (p *Poller) advance(ctx context.Context, moves *cursorMoves) error {
	if len(moves.cursors) > 0 {
		if err := p.cfg.Sink.(CursorSink).AdvanceCursors(ctx, moves.cursors); err != nil {
			p.errs.Add(1)
			p.log.Warn("moving cursors failed", "sessions", len(moves.cursors), "err", err)
			return fmt.Errorf("bridge: poll: move the cursors of %d sessions: %w", len(moves.cursors), err)
		}
	}
	for _, m := range moves.chats {
		p.events.Add(int64(len(m.events)))
		p.accepted(m.target, m.events)
	}
	return nil
}

// unknown returns the events the sink has not accepted in this process.
func (p *Poller) unknown(chat AgentChatID, events []AgentEvent) []AgentEvent {
	p.knownMu.Lock()
	defer p.knownMu.Unlock()
	known := p.known[chat]
	if len(known) == 0 {
		return events
	}
	var out []AgentEvent
	for _, ev := range events {
		if _, ok := known[ev.ExternalID]; !ok || ev.ExternalID == "" {
			out = append(out, ev)
		}
	}
	return out
}

// accepted remembers the events the sink accepted for t's chat, and forgets
// those older than the chat's new cursor second (the desk returns rows from
// the cursor's second on).
func (p *Poller) accepted(t PollTarget, events []AgentEvent) {
	p.knownMu.Lock()
	defer p.knownMu.Unlock()
	known := p.known[t.Chat]
	if known == nil {
		known = make(map[string]time.Time, len(events))
		p.known[t.Chat] = known
	}
	cursor := t.Cursor
	for _, ev := range events {
		if ev.ExternalID != "" {
			// A message comes back only while it is in the cursor's second;
			// a state (joined, queue place, ended) comes back at every poll
			// with the cursor's time, so it is kept (zero: never forgotten).
			at := time.Time{}
			if ev.Kind == AgentMessage {
				at = ev.At
			}
			known[ev.ExternalID] = at
		}
		if ev.At.After(cursor) {
			cursor = ev.At
		}
	}
	floor := cursor.Truncate(time.Second)
	for id, at := range known {
		if !at.IsZero() && at.Before(floor) {
			delete(known, id)
		}
	}
}

// forgetOthers drops what is known about chats that are no longer targets.
func (p *Poller) forgetOthers(targets []PollTarget) {
	p.knownMu.Lock()
	defer p.knownMu.Unlock()
	if len(p.known) == 0 {
		return
	}
	keep := make(map[AgentChatID]bool, len(targets))
	for _, t := range targets {
		keep[t.Chat] = true
	}
	for chat := range p.known {
		if !keep[chat] {
			delete(p.known, chat)
		}
	}
}

func allEchoes(events []AgentEvent) bool {
	for _, ev := range events {
		if !ev.Echo {
			return false
		}
	}
	return true
}

// cursorMoves collects, during one run, the cursor moves of chats whose only
// new events are echoes.
type cursorMoves struct {
	mu      sync.Mutex
	cursors map[SessionID]time.Time
	chats   []cursorMove
}

type cursorMove struct {
	target PollTarget
	events []AgentEvent
}

func newCursorMoves() *cursorMoves {
	return &cursorMoves{cursors: make(map[SessionID]time.Time)}
}

// add records that t's cursor moves to the newest of events (when that is
// ahead of it).
func (m *cursorMoves) add(t PollTarget, events []AgentEvent) {
	newest := t.Cursor
	for _, ev := range events {
		if ev.At.After(newest) {
			newest = ev.At
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if newest.After(t.Cursor) && newest.After(m.cursors[t.Session]) {
		m.cursors[t.Session] = newest
	}
	m.chats = append(m.chats, cursorMove{t, events})
}

// each runs fn for every target, Concurrency at a time, recovering panics,
// and returns the joined errors. Targets not started before ctx ends count as
// one error.
func (p *Poller) each(ctx context.Context, targets []PollTarget, fn func(context.Context, PollTarget) error) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, p.cfg.Concurrency)
	)
	for _, t := range targets {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return errors.Join(append(errs, fmt.Errorf("bridge: poll: %w", ctx.Err()))...)
		}
		wg.Go(func() {
			defer func() { <-sem }()
			err := func() (err error) {
				defer recoverInto(&err)
				return fn(ctx, t)
			}()
			if err != nil {
				if errors.Is(err, errPanic) {
					p.errs.Add(1)
					p.log.Error("poll panicked", "session_id", t.Session, "chat_id", t.Chat, "err", err)
				}
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

var errPanic = errors.New("panic")

// recoverInto turns a panic into an error wrapping errPanic, with the stack.
func recoverInto(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("bridge: poll: %w: %v\n%s", errPanic, r, debug.Stack())
	}
}

// countErrors counts the leaves of a joined error.
func countErrors(err error) int {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		n := 0
		for _, e := range j.Unwrap() {
			n += countErrors(e)
		}
		return n
	}
	if err == nil {
		return 0
	}
	return 1
}
