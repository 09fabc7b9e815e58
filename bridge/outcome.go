package bridge

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"
)

// This file records the outcome of a dispatched outbox item: done (with its
// consequences), throttled, retried after a failure, or failed for good. Every
// record is fenced by the item's claim token and written in a fresh context
// bounded by CommitTimeout, never with the call's own (possibly expired)
// context.

// commitTries is how often an outcome is written before giving up; the tries
// are spaced by commitPause, doubled each time.
const (
	commitTries = 4
	commitPause = 100 * time.Millisecond
)

// commit runs fn in one transaction in a fresh context, trying again when the
// store fails (a dropped connection, a restarted database). It stops at once
// on ErrLeaseLost or ErrNotFound: retrying cannot change those. Outcomes
// recorded at the same time share one transaction when the store's writes
// are serial anyway (group commit, see commitGroup). Once committed, it
// kicks Run.
func (d *Dispatcher) commit(parent context.Context, fn commitFunc) error {
	err := d.record(parent, fn)
	if err == nil {
		d.relay.wake()
	}
	return err
}

// record is commit without the kick.
func (d *Dispatcher) record(parent context.Context, fn commitFunc) error {
	var err error
	pause := commitPause
	group := d.relay.store.SerialWrites()
	for try := 1; ; try++ {
		if group {
			err = d.commitGroup(parent, fn)
		} else {
			err = d.commitOne(parent, fn)
		}
		if err == nil || errors.Is(err, ErrLeaseLost) || errors.Is(err, ErrNotFound) || try == commitTries {
			break
		}
		d.log.WarnContext(parent, "outbox outcome not committed; trying again", "try", try, "err", err)
		time.Sleep(pause)
		pause *= 2
	}
	return err
}

// maxGroup bounds the outcomes committed in one transaction.
const maxGroup = 64

// commitReq is one outcome waiting in the group commit: done receives its
// result, or lead when its sender is to commit the queue.
type commitReq struct {
	fn   commitFunc
	done chan commitResult
}

type commitResult struct {
	err  error
	lead bool
}

// commitGroup commits fn together with the outcomes other workers record at
// the same time, in one transaction: one commit (one fsync on SQLite) for
// all of them instead of one each. The first caller leads: it commits what
// is queued, then hands the lead to the oldest request queued meanwhile, so
// no worker stays busy committing for others. It returns only after fn's
// work is committed (or failed), as a transaction of its own would.
//
// When a function of the group fails, the group's transaction is rolled
// back and each of its functions runs again in a transaction of its own, so
// one item's error (a lost claim) never fails another's outcome. The
// functions are pure writes of what the calls returned, safe to run again,
// as commit's retries already do.
func (d *Dispatcher) commitGroup(parent context.Context, fn commitFunc) error {
	req := &commitReq{fn: fn, done: make(chan commitResult, 1)}
	d.gmu.Lock()
	d.gqueue = append(d.gqueue, req)
	lead := !d.gbusy
	d.gbusy = true
	d.gmu.Unlock()
	if !lead {
		if r := <-req.done; !r.lead {
			return r.err
		}
	}
	d.gmu.Lock()
	n := min(len(d.gqueue), maxGroup)
	batch := append([]*commitReq(nil), d.gqueue[:n]...)
	d.gqueue = append(d.gqueue[:0], d.gqueue[n:]...)
	d.gmu.Unlock()

	d.commitBatch(parent, batch)

	d.gmu.Lock()
	if len(d.gqueue) > 0 {
		d.gqueue[0].done <- commitResult{lead: true}
	} else {
		d.gbusy = false
	}
	d.gmu.Unlock()
	return (<-req.done).err
}

// commitBatch commits the functions of batch in one transaction and tells
// each its result; see commitGroup.
func (d *Dispatcher) commitBatch(parent context.Context, batch []*commitReq) {
	if len(batch) == 1 {
		batch[0].done <- commitResult{err: d.commitOne(parent, batch[0].fn)}
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), d.cfg.CommitTimeout)
	defer cancel()
	fnFailed := false
	err := d.relay.store.Update(ctx, func(tx Tx) error {
		now := d.relay.now()
		for _, r := range batch {
			if err := r.fn(ctx, tx, now); err != nil {
				fnFailed = true
				return err
			}
		}
		return nil
	})
	if err == nil || !fnFailed {
		for _, r := range batch {
			r.done <- commitResult{err: err}
		}
		return
	}
	for _, r := range batch {
		r.done <- commitResult{err: d.commitOne(parent, r.fn)}
	}
}

// commitOne commits fn in a transaction of its own in a fresh context.
func (d *Dispatcher) commitOne(parent context.Context, fn commitFunc) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), d.cfg.CommitTimeout)
	defer cancel()
	return d.relay.store.Update(ctx, func(tx Tx) error { return fn(ctx, tx, d.relay.now()) })
}

// succeeded commits the item as done together with then. When only the
// commit fails (the call itself succeeded), the consequences are kept in
// memory so that this process never calls out again for the item; see the
// README's "nothing lost, nothing twice". It returns the item then enqueued
// and claimed for this worker (enqueueNext), if any, to dispatch next.
//
// It kicks Run only when Run may find something to claim: then enqueued an
// item it did not chain to this worker, or a later item of the lane waits
// behind the one done. On a store whose writes are not serial (PostgreSQL)
// it always kicks: a transaction that enqueued to the lane and saw this item
// still pending may commit after this one looked.
func (d *Dispatcher) succeeded(parent context.Context, it OutboxItem, then commitFunc, log *slog.Logger) (next *OutboxItem) {
	c := &chain{}
	waiting := false
	err := d.record(parent, func(ctx context.Context, tx Tx, now time.Time) error {
		c.req, c.next, c.queued = ClaimRequest{Now: now, Lease: d.cfg.Lease, Owner: d.cfg.Owner}, nil, false // each try anew
		if then != nil {
			cctx := context.WithValue(ctx, chainKey{}, c)
			if err := then(cctx, chained(cctx, tx), now); err != nil {
				return err
			}
		}
		var err error
		waiting, err = tx.CompleteOutboxNext(ctx, it.ID, it.Claim)
		return err
	})
	switch {
	case err == nil:
		if c.queued || waiting || !d.relay.store.SerialWrites() {
			d.relay.wake()
		}
		d.Stats.add(&d.Stats.Delivered, it.Kind)
		log.DebugContext(parent, "outbox item done")
		return c.next
	case errors.Is(err, ErrLeaseLost):
		log.WarnContext(parent, "outbox item done, but its claim was taken over; the new holder may repeat the call", "err", err)
	default:
		d.keepUncommitted(it.ID, then)
		log.ErrorContext(parent, "outbox item done but not recorded; it is recorded without calling again when its lease ends", "err", err)
	}
	return nil
}

// chainKey is the context key of the *chain a dispatcher's commit carries.
type chainKey struct{}

// chain lets an item's consequences claim one item they enqueue for the
// worker that committed them, which dispatches it right after the commit:
// no claim transaction, no wait for a kick or the next round. The claim is
// a normal one (a fresh token, this owner, the lease), so a crash or a lost
// lease is handled as for any claimed item.
type chain struct {
	req  ClaimRequest
	next *OutboxItem
	// queued: the transaction enqueued an item the chain did not claim
	// (seen through chained), so Run is to be kicked after the commit.
	queued bool
}

// chained returns tx under the chain ctx carries, if any, so that the
// chain learns of every item tx enqueues (chain.queued).
func chained(ctx context.Context, tx Tx) Tx {
	if c, _ := ctx.Value(chainKey{}).(*chain); c != nil {
		return chainTx{Tx: tx, c: c}
	}
	return tx
}

// chainTx is a Tx that notes in its chain the items enqueued but not
// claimed for the chain's worker.
type chainTx struct {
	Tx
	c *chain
}

func (t chainTx) Enqueue(ctx context.Context, items ...OutboxItem) error {
	if len(items) > 0 {
		t.c.queued = true
	}
	return t.Tx.Enqueue(ctx, items...)
}

func (t chainTx) EnqueueClaimed(ctx context.Context, it OutboxItem, req ClaimRequest) (OutboxItem, bool, error) {
	got, claimed, err := t.Tx.EnqueueClaimed(ctx, it, req)
	if !claimed {
		t.c.queued = true
	}
	return got, claimed, err
}

// enqueueNext enqueues it and, when ctx carries a chain (tx records a
// dispatched item's outcome, or stores an inbound message with a worker
// reserved: inbound.go) and nothing was chained yet, claims it for that
// worker if it is alone in its lane (Tx.EnqueueClaimed). Used for the step
// a finished step makes urgent (the desk open after the bot asked for a
// handoff) and for the delivery of an inbound message.
func enqueueNext(ctx context.Context, tx Tx, it OutboxItem) error {
	c, _ := ctx.Value(chainKey{}).(*chain)
	if c == nil || c.next != nil {
		return tx.Enqueue(ctx, it)
	}
	got, claimed, err := tx.EnqueueClaimed(ctx, it, c.req)
	if err != nil {
		return err
	}
	if claimed {
		c.next = &got
	}
	return nil
}

// failure records a failed call: a throttle reschedules without spending an
// attempt and backs off the whole destination; any other failure is retried
// after a backoff until the failure budget is spent, then the item fails for
// good.
func (d *Dispatcher) failure(parent context.Context, it OutboxItem, cause error, log *slog.Logger) {
	now := d.relay.now()
	if t, ok := Throttled(cause); ok && !IsPermanent(cause) {
		d.throttled(parent, it, t, now, log)
		return
	}
	since := it.FailingSince
	if since.IsZero() {
		since = now
	}
	final := IsPermanent(cause) || now.Sub(since) >= d.cfg.FailureBudget ||
		(d.cfg.MaxAttempts > 0 && it.Attempts >= d.cfg.MaxAttempts)
	if parent.Err() != nil {
		// Shutdown cut the call off: release the item for an immediate retry
		// (counted as an attempt, since the call may have reached the peer).
		final = false
	}
	if !final {
		next := now.Add(d.backoff(it.Attempts))
		if parent.Err() != nil {
			next = now
		}
		log.WarnContext(parent, "outbox item failed, will retry", "err", cause, "failing_for", now.Sub(since), "next", next)
		d.Stats.add(&d.Stats.Retried, it.Kind)
		err := d.commit(parent, func(ctx context.Context, tx Tx, _ time.Time) error {
			return tx.RetryOutbox(ctx, it.ID, it.Claim, OutboxRetry{Next: next, LastErr: truncate(cause.Error(), 1000), FailingSince: since})
		})
		if err != nil {
			log.ErrorContext(parent, "outbox retry not recorded; the item is retried when its lease ends", "err", err)
		}
		return
	}
	log.ErrorContext(parent, "outbox item failed for good", "err", cause, "failing_for", now.Sub(since))
	d.Stats.add(&d.Stats.Failed, it.Kind)
	if err := d.commit(parent, d.relay.failed(parent, it, cause)); err != nil {
		log.ErrorContext(parent, "recording the failure failed; the item is retried when its lease ends", "err", err)
	}
}

// throttled reschedules the item for when the destination said, gives the
// attempt back, backs off every lane of the same kind until then (shared
// through the store, so other workers and replicas honour it), and tells the
// employee once per session that delivery is delayed.
func (d *Dispatcher) throttled(parent context.Context, it OutboxItem, t *ThrottledError, now time.Time, log *slog.Logger) {
	until := t.Until
	if !until.After(now) {
		until = now.Add(d.cfg.BaseBackoff)
	}
	log.WarnContext(parent, "destination throttled us; the lane waits without spending an attempt", "destination", t.Destination, "until", until, "err", t.Err)
	d.Stats.add(&d.Stats.Throttled, it.Kind)
	err := d.commit(parent, func(ctx context.Context, tx Tx, now time.Time) error {
		err := tx.RetryOutbox(ctx, it.ID, it.Claim, OutboxRetry{Next: until, LastErr: truncate(t.Error(), 1000), Throttled: true})
		if err != nil {
			return err
		}
		if err := tx.SetThrottle(ctx, it.Lane, until); err != nil {
			return err
		}
		if it.Lane == LaneUser {
			return nil // the notice would wait behind the same throttle
		}
		s, err := tx.Session(ctx, it.SessionID)
		if err != nil || s.State == StateClosing || s.State == StateClosed {
			return err // nobody waits for a closing session's calls
		}
		return d.relay.sayT(ctx, tx, s, "delayed:"+string(s.ID), func(t Texts) string { return t.Delayed }, now)
	})
	if err != nil {
		log.ErrorContext(parent, "throttle not recorded; the item is retried when its lease ends", "err", err)
	}
}

// backoff is the retry delay after attempt n: BaseBackoff doubled per
// attempt, capped at MaxBackoff, with jitter in [b/2, b].
func (d *Dispatcher) backoff(n int) time.Duration {
	b := d.cfg.BaseBackoff << min(max(n-1, 0), 20)
	if b > d.cfg.MaxBackoff || b <= 0 {
		b = d.cfg.MaxBackoff
	}
	return b/2 + rand.N(b/2+1)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
