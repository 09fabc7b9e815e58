package bridge

import (
	"context"
	"log/slog"
	"time"
)

// SweeperConfig configures a Sweeper.
type SweeperConfig struct {
	// Lease, when set, makes the sweeper work only while this process holds
	// it (one sweeper per deployment). Nil: always.
	Lease Leadership
	// Clock drives the timer (default the system clock). The relay's Now
	// should read the same clock.
	Clock Clock
	// RetryAfter is the pause after a failed sweep (default 5 s).
	RetryAfter time.Duration
	// Logger gets the sweeps that ended sessions and the failures.
	Logger *slog.Logger
}

// Sweeper is the timer of the queue and idle timeouts: it sleeps until the
// nearest session deadline (or, with no session open, one shortest timeout,
// the earliest a new session can be due), ends what is due, and sleeps
// again. A timeout therefore fires on time, not at the next tick of a fixed
// period.
type Sweeper struct {
	relay *Relay
	cfg   SweeperConfig
	log   *slog.Logger
}

// NewSweeper returns the relay's timeout sweeper.
func NewSweeper(r *Relay, cfg SweeperConfig) *Sweeper {
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = r.log
	}
	return &Sweeper{relay: r, cfg: cfg, log: cfg.Logger}
}

// Run sweeps at each deadline until ctx ends and returns nil then. With both
// timeouts disabled it only waits for ctx.
func (s *Sweeper) Run(ctx context.Context) error {
	horizon := s.relay.shortestTimeout()
	if horizon <= 0 {
		<-ctx.Done()
		return nil
	}
	for {
		var (
			wait     <-chan time.Time
			acquired <-chan struct{}
		)
		if s.cfg.Lease != nil && !s.cfg.Lease.Held() {
			acquired = s.cfg.Lease.Acquired()
			wait = s.cfg.Clock.After(horizon) // re-check even without a signal
		} else {
			wait = s.cfg.Clock.After(s.once(ctx, horizon))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wait:
		case <-acquired:
		}
	}
}

// once sweeps and returns how long to sleep before the next sweep.
func (s *Sweeper) once(ctx context.Context, horizon time.Duration) time.Duration {
	n, next, err := s.relay.sweep(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("timeout sweep failed; retrying", "err", err, "retry_in", s.cfg.RetryAfter)
		}
		return s.cfg.RetryAfter
	}
	if n > 0 {
		s.log.Info("timed-out handoffs ended", "count", n)
	}
	wait := horizon
	if !next.IsZero() {
		wait = min(wait, next.Sub(s.relay.now()))
	}
	return max(wait, 0)
}
