package bridge

import (
	"context"
	"sync"
)

// This file hands an inbound message's delivery straight to a dispatcher
// worker. The transaction that stores an employee's or an agent's message
// enqueues its delivery and, when that item is then alone in its lane, due
// and not throttled, and a worker is free, claims it as well
// (Tx.EnqueueClaimed, the chain of outcome.go); once the transaction
// commits, the reserved worker performs it. That saves the claim
// transaction and the wake-up of Run per message. The claim is a normal one
// (token, owner, lease), so a crash or a lost lease is handled as for any
// claimed item, and an item that cannot be claimed so is left to Run.

// serveInbound lets inbound transactions reserve this dispatcher's workers
// while Run runs: calls is the parent of the calls' contexts, wg Run's group
// of workers. A relay serves at most one dispatcher so.
func (d *Dispatcher) serveInbound(calls context.Context, wg *sync.WaitGroup) {
	d.rmu.Lock()
	d.runCalls, d.runWG = calls, wg
	d.rmu.Unlock()
	d.relay.direct.CompareAndSwap(nil, d)
}

// stopInbound ends serveInbound before Run waits for its workers: no worker
// is reserved after it returns.
func (d *Dispatcher) stopInbound() {
	d.relay.direct.CompareAndSwap(d, nil)
	d.rmu.Lock()
	d.runCalls, d.runWG = nil, nil
	d.rmu.Unlock()
}

// reserve takes a free worker for an inbound transaction's item; ok false
// when none is free or Run is not running. The caller ends the reservation
// with freeWorker(wg), or by dispatching on it.
func (d *Dispatcher) reserve() (calls context.Context, wg *sync.WaitGroup, ok bool) {
	d.rmu.Lock()
	defer d.rmu.Unlock()
	if d.runWG == nil {
		return nil, nil, false
	}
	for {
		b := d.busy.Load()
		if b >= int64(d.cfg.Workers) {
			return nil, nil, false
		}
		if d.busy.CompareAndSwap(b, b+1) {
			break
		}
	}
	d.runWG.Add(1)
	return d.runCalls, d.runWG, true
}

// inbound prepares an inbound transaction: when a dispatcher serves the
// relay and has a free worker, the returned context carries a chain, so the
// first item the transaction enqueues with enqueueNext is claimed for that
// worker. Run fn's tx through chained. Call done with whether the
// transaction committed: it then dispatches the claimed item on the
// reserved worker, or frees the worker, and kicks Run unless every item the
// transaction enqueued went to the reserved worker: a kick then would cost
// a claim round (a transaction on SQLite) that finds nothing. Call inbound
// after taking the time the transaction's items are due at.
func (r *Relay) inbound(ctx context.Context) (_ context.Context, done func(committed bool)) {
	d := r.direct.Load()
	if d == nil {
		return ctx, r.kickIfCommitted
	}
	calls, wg, ok := d.reserve()
	if !ok {
		return ctx, r.kickIfCommitted
	}
	c := &chain{req: ClaimRequest{Now: r.now(), Lease: d.cfg.Lease, Owner: d.cfg.Owner}}
	return context.WithValue(ctx, chainKey{}, c), func(committed bool) {
		if committed && c.queued {
			r.wake()
		}
		if !committed || c.next == nil {
			d.freeWorker(wg)
			return
		}
		it := *c.next
		go func() {
			defer d.freeWorker(wg)
			d.dispatch(calls, it)
		}()
	}
}

// kickIfCommitted is inbound's done when no worker is reserved: whatever
// the transaction enqueued is Run's to claim.
func (r *Relay) kickIfCommitted(committed bool) {
	if committed {
		r.wake()
	}
}
