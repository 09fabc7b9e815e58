package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"
)

// LeaseStore keeps named leases: at most one holder per name, until an
// expiry measured by the database's clock (so replicas with skewed clocks
// agree). Implemented by the store.
type LeaseStore interface {
	// AcquireLease takes the named lease for holder, or extends it when
	// holder already has it, until the database's now + ttl. It reports
	// whether holder holds it after the call; another holder's unexpired
	// lease is left alone (false, nil).
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	// ReleaseLease ends holder's lease on name at once, so another process
	// takes it without waiting for the expiry. It does nothing when holder
	// does not hold it.
	ReleaseLease(ctx context.Context, name, holder string) error
}

// Leadership tells a job that must run on one process per deployment (the
// poller, the timeout sweeper, the weekly review export) whether this
// process runs it now. A nil Leadership means "always": a single process.
type Leadership interface {
	// Held reports whether this process runs the job now.
	Held() bool
	// Acquired returns a channel closed when this process next takes the
	// job (a waiting job starts at once instead of at its next tick).
	Acquired() <-chan struct{}
}

// LeaderConfig configures a Leader.
type LeaderConfig struct {
	// Holder names this process in the lease table (unique per process:
	// host, pid and a random part). Required.
	Holder string
	// TTL is how long a lease lasts without renewal: a leader that dies
	// without releasing is replaced after at most TTL plus one renewal
	// period. Leases are renewed every TTL/3. Default 15 s.
	TTL time.Duration
	// Clock drives renewals (default the system clock).
	Clock Clock
	// Logger gets acquisitions and losses. Default: discard.
	Logger *slog.Logger
}

// Leader holds this process's leases on named jobs. Register jobs with Job
// before Run; Run renews every lease until its context ends and then
// releases them, so a replica that shuts down hands its jobs over at once.
type Leader struct {
	store LeaseStore
	cfg   LeaderConfig
	log   *slog.Logger

	mu   sync.Mutex
	jobs map[string]*Lease
}

// Lease is this process's view of one job's lease; it implements
// Leadership.
type Lease struct {
	name  string
	clock Clock

	mu        sync.Mutex
	heldUntil time.Time     // by the local clock; zero when not held
	acquired  chan struct{} // closed (and replaced) when the lease is taken
}

var _ Leadership = (*Lease)(nil)

// NewLeader checks cfg and returns a leader that holds nothing yet.
func NewLeader(store LeaseStore, cfg LeaderConfig) (*Leader, error) {
	if store == nil {
		return nil, errors.New("bridge: leader: a lease store is required")
	}
	if cfg.Holder == "" {
		return nil, errors.New("bridge: leader: a holder name is required")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 15 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Leader{store: store, cfg: cfg, log: cfg.Logger, jobs: map[string]*Lease{}}, nil
}

// Holder returns this process's holder name.
func (l *Leader) Holder() string { return l.cfg.Holder }

// Job returns the lease of the named job, registering it on first use.
func (l *Leader) Job(name string) *Lease {
	l.mu.Lock()
	defer l.mu.Unlock()
	if j, ok := l.jobs[name]; ok {
		return j
	}
	j := &Lease{name: name, clock: l.cfg.Clock, acquired: make(chan struct{})}
	l.jobs[name] = j
	return j
}

// Leads reports whether this process holds the named job's lease now. It is
// false for a job never registered. Metrics that every replica would report
// identically (counts read from the shared database) are exported only where
// Leads is true, so summing across replicas is right.
func (l *Leader) Leads(job string) bool {
	l.mu.Lock()
	j := l.jobs[job]
	l.mu.Unlock()
	return j != nil && j.Held()
}

// Run takes and renews the leases every TTL/3 until ctx ends, then releases
// the ones held (bounded by a few seconds) and returns nil. A failed renewal
// is logged and retried at the next period; the lease stays held locally
// until its local expiry, which is earlier than the database's.
func (l *Leader) Run(ctx context.Context) error {
	period := l.cfg.TTL / 3
	for {
		l.renew(ctx)
		select {
		case <-ctx.Done():
			l.release()
			return nil
		case <-l.cfg.Clock.After(period):
		}
	}
}

func (l *Leader) leases() []*Lease {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*Lease, 0, len(l.jobs))
	for _, j := range l.jobs {
		out = append(out, j)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].name < out[b].name })
	return out
}

// renew tries to take or extend every lease once.
func (l *Leader) renew(ctx context.Context) {
	for _, j := range l.leases() {
		// The local expiry counts from before the request, and a fifth of the
		// TTL earlier, so this process stops before the database lets
		// another one start (clock rates differ a little, never by 20 %).
		start := l.cfg.Clock.Now()
		rctx, cancel := context.WithTimeout(ctx, l.cfg.TTL/3)
		held, err := l.store.AcquireLease(rctx, j.name, l.cfg.Holder, l.cfg.TTL)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				l.log.Warn("leader lease renewal failed; retrying", "job", j.name, "held", j.Held(), "err", err)
			}
			continue
		}
		was := j.Held()
		if held {
			j.hold(start.Add(l.cfg.TTL - l.cfg.TTL/5))
		} else {
			j.drop()
		}
		switch {
		case held && !was:
			l.log.Info("leading job", "job", j.name, "holder", l.cfg.Holder)
		case !held && was:
			l.log.Warn("lost job lease to another replica", "job", j.name, "holder", l.cfg.Holder)
		}
	}
}

// release gives up every held lease so another replica takes over at once.
func (l *Leader) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, j := range l.leases() {
		if !j.Held() {
			continue
		}
		j.drop()
		if err := l.store.ReleaseLease(ctx, j.name, l.cfg.Holder); err != nil {
			l.log.Warn("releasing job lease failed; another replica takes over when it expires", "job", j.name, "err", err)
			continue
		}
		l.log.Info("released job lease", "job", j.name)
	}
}

// Held reports whether this process holds the lease now.
func (j *Lease) Held() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return !j.heldUntil.IsZero() && j.clock.Now().Before(j.heldUntil)
}

// Acquired returns a channel that is closed the next time this process
// takes the lease (not on renewals), so a waiting job starts at once.
func (j *Lease) Acquired() <-chan struct{} {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.acquired
}

// Name returns the job's name.
func (j *Lease) Name() string { return j.name }

func (j *Lease) hold(until time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.heldUntil.IsZero() || !j.clock.Now().Before(j.heldUntil) {
		close(j.acquired)
		j.acquired = make(chan struct{})
	}
	j.heldUntil = until
}

func (j *Lease) drop() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.heldUntil = time.Time{}
}

// String names the lease for logs.
func (j *Lease) String() string { return fmt.Sprintf("lease %s", j.name) }
