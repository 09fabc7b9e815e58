package main

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// stage orders the background loops. Loops start in stage order and stop in
// reverse, after the HTTP server stopped taking requests:
//
//	stageClients   the desk clients' own background work (ServiceNow's OAuth
//	               token renewals): stops after the last send
//	stageDispatch  the outbox dispatcher: stops after the jobs, so what the
//	               jobs and the webhook sequencer queued while stopping is
//	               still sent (or released for another replica)
//	stageLeader    the job leases: released once the jobs stopped, so another
//	               replica takes the jobs over at once
//	stageJobs      poller, timeout sweeper, weekly review export, webhook
//	               sequencer
type stage int

const (
	stageClients stage = iota
	stageDispatch
	stageLeader
	stageJobs
	stages
)

// loop is a background component with one lifecycle: run blocks until its
// context ends (returning nil) or it fails.
type loop struct {
	name  string
	stage stage
	run   func(ctx context.Context) error
}

// running is the set of started loops.
type running struct {
	cancel [stages]context.CancelFunc
	done   [stages][]loopDone
	// exited receives the name of a loop that returned before it was asked
	// to stop.
	exited chan loopExit
}

type loopDone struct {
	name string
	err  chan error
}

type loopExit struct {
	name string
	err  error
}

// startLoops starts every loop, stage by stage.
func (a *app) startLoops() *running {
	r := &running{exited: make(chan loopExit, len(a.loops))}
	for st := range stages {
		ctx, cancel := context.WithCancel(context.Background())
		r.cancel[st] = cancel
		for _, l := range a.loops {
			if l.stage != st {
				continue
			}
			errc := make(chan error, 1)
			r.done[st] = append(r.done[st], loopDone{name: l.name, err: errc})
			go func() {
				err := l.run(ctx)
				if ctx.Err() == nil {
					r.exited <- loopExit{name: l.name, err: err}
				}
				errc <- err
			}()
		}
	}
	return r
}

// shutdown stops everything in order within cfg.ShutdownTimeout in total:
// the HTTP server stops accepting and drains its requests (at most half the
// budget, then the remaining connections are closed), the loops stop stage
// by stage, and the store closes last, even when a step failed or ran out of
// time.
func (a *app) shutdown(srv *httpServer, r *running) error {
	budget := a.cfg.ShutdownTimeout
	a.log.Info("shutting down", "timeout", budget)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	var errs []error

	hctx, hcancel := context.WithTimeout(ctx, budget/2)
	if err := srv.Drain(hctx); err != nil {
		errs = append(errs, fmt.Errorf("drain http requests: %w", err))
	}
	hcancel()
	a.log.Debug("stopped", "part", "http", "took_ms", time.Since(start).Milliseconds())

	for st := stages - 1; st >= 0; st-- {
		r.cancel[st]()
		for _, d := range r.done[st] {
			select {
			case err := <-d.err:
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", d.name, err))
				}
				a.log.Debug("stopped", "part", d.name, "took_ms", time.Since(start).Milliseconds())
			case <-ctx.Done():
				errs = append(errs, fmt.Errorf("%s did not stop within HANDOFF_SHUTDOWN_TIMEOUT (%s)", d.name, budget))
			}
		}
	}

	if err := a.store.Close(); err != nil {
		errs = append(errs, err)
	}
	a.log.Info("shutdown finished", "took_ms", time.Since(start).Milliseconds())
	return errors.Join(errs...)
}
