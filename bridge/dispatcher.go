package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// This file is the outbox scheduler: it claims due items for free workers,
// keeps their leases alive while the calls run, and stops in bounded time.
// What an item does is in handoff.go and close.go; how its outcome is
// recorded is in outcome.go.

// DispatchConfig tunes the outbox dispatcher. Zero values take the defaults.
type DispatchConfig struct {
	Workers int           // items dispatched at once (default 8)
	Lease   time.Duration // how long a claim lasts without a heartbeat (default 30 s)
	// FailureBudget is how long an item may keep failing (throttles not
	// counted) before it fails for good and, where that breaks the relay,
	// ends its session (default 10 min).
	FailureBudget time.Duration
	// MaxAttempts optionally caps the attempts of an item as well (0: no cap,
	// the failure budget alone decides; throttled attempts are not counted).
	MaxAttempts int
	BaseBackoff time.Duration // first retry delay, doubled per attempt (default 1 s)
	MaxBackoff  time.Duration // cap on the retry delay (default 30 s)
	Idle        time.Duration // poll interval when nothing was due (default 200 ms)
	CallTimeout time.Duration // deadline for one outward call (default 20 s)
	// CommitTimeout bounds recording one outcome (each try; default 5 s).
	CommitTimeout time.Duration
	// StopTimeout is how long Run lets the calls in flight finish after its
	// context ends; then they are cancelled, their items released for an
	// immediate retry, and Run returns (default 10 s).
	StopTimeout time.Duration
	// Owner names this process in its claims (default "hostname/pid"). A
	// process that restarts under the same owner takes its stale claims back
	// at once when Run starts. Two live processes must never share an owner.
	Owner string
}

func (c *DispatchConfig) defaults() {
	if c.Workers <= 0 {
		c.Workers = 8
	}
	if c.Lease <= 0 {
		c.Lease = 30 * time.Second
	}
	if c.FailureBudget <= 0 {
		c.FailureBudget = 10 * time.Minute
	}
	if c.MaxAttempts < 0 {
		c.MaxAttempts = 0
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
	if c.CommitTimeout <= 0 {
		c.CommitTimeout = 5 * time.Second
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = 10 * time.Second
	}
	if c.Owner == "" {
		host, _ := os.Hostname()
		c.Owner = fmt.Sprintf("%s/%d", host, os.Getpid())
	}
}

// DispatchStats counts what the dispatcher did, for metrics.
type DispatchStats struct {
	mu        sync.Mutex
	Delivered map[OutboxKind]int64
	Retried   map[OutboxKind]int64
	Failed    map[OutboxKind]int64
	Throttled map[OutboxKind]int64
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
	return copyCounts(s.Delivered), copyCounts(s.Retried), copyCounts(s.Failed)
}

// ThrottledCounts returns a copy of the throttled-attempt counters.
func (s *DispatchStats) ThrottledCounts() map[OutboxKind]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return copyCounts(s.Throttled)
}

func copyCounts(m map[OutboxKind]int64) map[OutboxKind]int64 {
	out := make(map[OutboxKind]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Dispatcher performs the outbox's outward calls with retries. Items of one
// lane run strictly one after another (the store only hands out a lane's
// oldest item); different lanes run in parallel. It claims only as many items
// as it has free workers, so every claimed item starts at once, and it
// extends an item's lease while its call runs; outcomes are fenced by the
// claim token, so a worker that lost its claim cannot record anything.
type Dispatcher struct {
	relay *Relay
	cfg   DispatchConfig
	log   *slog.Logger
	Stats DispatchStats

	busy atomic.Int64
	// starved is set while a claim round may have left due items behind for
	// want of a free worker (none was free, or the claim was full): the next
	// worker to free up then wakes Run, which would otherwise wait for a
	// kick or the idle tick with those items due (issue 18).
	starved atomic.Bool

	// uncommitted holds the consequences of calls that succeeded but whose
	// commit failed even after retries (the store was unreachable), by outbox
	// id: when this process claims the item again it commits them instead of
	// calling out a second time.
	mu          sync.Mutex
	uncommitted map[int64]commitFunc

	// The group commit of outcomes (commitGroup): the queue of outcomes to
	// commit, and whether a worker is committing them.
	gmu    sync.Mutex
	gqueue []*commitReq
	gbusy  bool

	// While Run runs: the parent of the calls' contexts and the group of
	// its workers, so a worker can be reserved for an item an inbound
	// transaction claims (inbound.go). runWG is nil when Run is not running
	// or stopping.
	rmu      sync.Mutex
	runCalls context.Context
	runWG    *sync.WaitGroup
}

// commitFunc writes the consequences of an item inside the transaction that
// records its outcome.
type commitFunc func(ctx context.Context, tx Tx, now time.Time) error

// NewDispatcher returns a dispatcher for the relay's outbox.
func NewDispatcher(r *Relay, cfg DispatchConfig) *Dispatcher {
	cfg.defaults()
	return &Dispatcher{relay: r, cfg: cfg, log: r.log, uncommitted: map[int64]commitFunc{}}
}

// Owner returns the owner id this dispatcher claims under.
func (d *Dispatcher) Owner() string { return d.cfg.Owner }

// Run first takes back the claims a previous run under the same owner left
// behind (a crash), then dispatches until ctx ends. It then stops claiming,
// lets the calls in flight finish for up to StopTimeout, cancels the rest
// (their items are released to be retried at once, by this or another
// replica) and returns nil. Stopping takes at most StopTimeout plus one
// CommitTimeout.
func (d *Dispatcher) Run(ctx context.Context) error {
	if n, err := d.relay.store.ReleaseOutboxClaims(ctx, d.cfg.Owner); err != nil {
		d.log.WarnContext(ctx, "stale outbox claims not released; they are retried when their lease ends", "owner", d.cfg.Owner, "err", err)
	} else if n > 0 {
		d.log.InfoContext(ctx, "took back stale outbox claims of an earlier run", "owner", d.cfg.Owner, "count", n)
	}
	calls, cutOff := context.WithCancel(context.WithoutCancel(ctx))
	defer cutOff()
	var wg sync.WaitGroup
	d.serveInbound(calls, &wg)
	for ctx.Err() == nil {
		_, full, err := d.round(ctx, calls, &wg)
		if err != nil && ctx.Err() == nil {
			d.log.ErrorContext(ctx, "outbox claim failed", "err", err)
		}
		// Claim again at once only when the claim was full, so more may be
		// due; otherwise everything due was taken, and new work comes with a
		// kick (a commit) or is found at the next tick. An empty claim per
		// message would cost a transaction on the hot path.
		if full && d.free() > 0 {
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
	d.stopInbound()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d.cfg.StopTimeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
	}
	n := d.busy.Load()
	cutOff()
	<-done // cancelled calls return at once; each records within CommitTimeout
	d.log.WarnContext(ctx, "dispatcher stopped with calls cut off; their items are released and retried at once", "calls", n, "stop_timeout", d.cfg.StopTimeout)
	return nil
}

// DrainOnce dispatches everything due now, one round after another, until a
// round finds nothing due. For tests and the demo's deterministic steps.
func (d *Dispatcher) DrainOnce(ctx context.Context) error {
	var wg sync.WaitGroup
	for {
		n, _, err := d.round(ctx, ctx, &wg)
		wg.Wait()
		if err != nil || n == 0 {
			return err
		}
	}
}

func (d *Dispatcher) free() int { return d.cfg.Workers - int(d.busy.Load()) }

// round claims as many due items as there are free workers and starts them;
// full reports that it got as many as it asked for (so more may be due).
// calls is the parent of the calls' contexts (it outlives ctx by StopTimeout).
//
// starved is set before the free workers are counted and a worker sets busy
// before it looks at starved, so a worker freed after the count always sees
// the flag and wakes Run: no due item waits for the idle tick because the
// kick that announced it came while every worker was busy.
func (d *Dispatcher) round(ctx, calls context.Context, wg *sync.WaitGroup) (n int, full bool, err error) {
	d.starved.Store(true)
	free := d.free()
	if free <= 0 {
		return 0, false, nil
	}
	items, err := d.relay.store.ClaimOutbox(ctx, ClaimRequest{Now: d.relay.now(), Limit: free, Lease: d.cfg.Lease, Owner: d.cfg.Owner})
	if err != nil {
		return 0, false, err
	}
	full = len(items) == free
	if !full {
		// Everything due was taken; what is enqueued later comes with a kick.
		d.starved.Store(false)
	}
	for _, it := range items {
		d.busy.Add(1)
		wg.Add(1)
		go func() {
			defer d.freeWorker(wg)
			d.dispatch(calls, it)
		}()
	}
	return len(items), full, nil
}

// freeWorker ends a worker's turn: it no longer counts as busy and, if a
// claim round went short of workers meanwhile, wakes Run.
func (d *Dispatcher) freeWorker(wg *sync.WaitGroup) {
	d.busy.Add(-1)
	if d.starved.Swap(false) {
		d.relay.wake()
	}
	wg.Done()
}

// dispatch performs it and then, one after another, the items its outcomes
// chained for this worker (enqueueNext). A chained item is claimed, so it is
// performed even while stopping: a cut-off call releases it for an
// immediate retry like any other.
func (d *Dispatcher) dispatch(parent context.Context, it OutboxItem) {
	for next := &it; next != nil; {
		next = d.dispatchOne(parent, *next)
	}
}

// dispatchOne performs one item under a heartbeat and records the outcome in
// a fresh context, so an expired call never loses its outcome. It returns
// the item the outcome chained, if any.
func (d *Dispatcher) dispatchOne(parent context.Context, it OutboxItem) *OutboxItem {
	log := d.log.With("outbox_id", it.ID, "kind", it.Kind, "session_id", it.SessionID, "attempt", it.Attempts)
	ctx, cancel := context.WithTimeout(parent, d.cfg.CallTimeout)
	defer cancel()
	stop := d.heartbeat(ctx, cancel, it, log)
	defer stop()

	if then, ok := d.takeUncommitted(it.ID); ok {
		// The call succeeded earlier in this process; only its commit failed.
		log.InfoContext(ctx, "outbox item was sent before; committing its outcome without calling again")
		return d.succeeded(parent, it, then, log)
	}
	then, err := d.perform(ctx, it)
	if err == nil {
		return d.succeeded(parent, it, then, log)
	}
	if errors.Is(err, ErrLeaseLost) {
		log.WarnContext(ctx, "outbox claim lost during the call; the new holder records the outcome", "err", err)
		return nil
	}
	d.failure(parent, it, err, log)
	return nil
}

// heartbeat extends the item's lease every Lease/3 while its call runs. When
// the claim turns out to be lost (another worker took the item after a
// stall), the call is cancelled. stop ends the heartbeat.
func (d *Dispatcher) heartbeat(ctx context.Context, cancel context.CancelFunc, it OutboxItem, log *slog.Logger) (stop func()) {
	every := d.cfg.Lease / 3
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			hctx, hcancel := context.WithTimeout(context.WithoutCancel(ctx), every)
			err := d.relay.store.ExtendOutbox(hctx, it.ID, it.Claim, d.relay.now().Add(d.cfg.Lease))
			hcancel()
			switch {
			case errors.Is(err, ErrLeaseLost) || errors.Is(err, ErrNotFound):
				log.WarnContext(ctx, "outbox claim lost; cancelling the call", "err", err)
				cancel()
				return
			case err != nil:
				log.WarnContext(ctx, "outbox lease not extended; retrying at the next beat", "err", err)
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func (d *Dispatcher) takeUncommitted(id int64) (commitFunc, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	then, ok := d.uncommitted[id]
	delete(d.uncommitted, id)
	return then, ok
}

func (d *Dispatcher) keepUncommitted(id int64, then commitFunc) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.uncommitted[id] = then
}

// perform makes the outward call of it, turning a panic into an error, and
// returns what to commit with the item's completion.
func (d *Dispatcher) perform(ctx context.Context, it OutboxItem) (then commitFunc, err error) {
	defer func() {
		if p := recover(); p != nil {
			then, err = nil, fmt.Errorf("panic: %v", p)
		}
	}()
	return d.relay.perform(ctx, it)
}
