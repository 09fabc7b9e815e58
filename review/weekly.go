package review

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/handoffhq/handoff/bridge"
)

// Defaults of WeeklyConfig.
const (
	DefaultSchedule   = "0 6 * * 1" // Mondays at 06:00
	DefaultMaxAge     = 180 * 24 * time.Hour
	DefaultRunTimeout = 30 * time.Minute
)

// Retention deletes old review records. bridge.Store implements it.
type Retention interface {
	// DeleteReviewsBefore deletes the review records whose handoff started
	// before t and returns how many were deleted.
	DeleteReviewsBefore(ctx context.Context, t time.Time) (int64, error)
}

// RelayPruner deletes the relay's own data (sessions, messages, outbox rows)
// past its retention. bridge/store.Store implements it.
type RelayPruner interface {
	// PruneRelayData deletes closed sessions that closed before `before` with
	// everything they hold, messages of bot-owned sessions written before
	// it, and done outbox rows finished before doneBefore.
	PruneRelayData(ctx context.Context, before, doneBefore time.Time) (sessions, messages, outbox int64, err error)
}

// WeeklyConfig configures the weekly export job.
type WeeklyConfig struct {
	// Dir receives the files; it is created if missing. Required.
	Dir string
	// Schedule is a standard five-field cron expression, or a descriptor such
	// as "@weekly" or "@every 24h". Empty means DefaultSchedule. A "CRON_TZ=…"
	// prefix sets the schedule's zone only; weeks stay in Location.
	Schedule string
	// Location is the time zone of the schedule and of the ISO weeks. nil
	// means the exporter's location (UTC unless configured); give both the
	// same zone so the report's days match the week.
	Location *time.Location
	// MaxAge is the retention: after exporting, records whose handoff started
	// more than MaxAge ago are deleted. 0 means DefaultMaxAge.
	MaxAge time.Duration
	// MessageMaxAge is the retention of the relay's messages: each run
	// deletes chats that closed more than MessageMaxAge ago and older messages
	// of conversations the bot still owns, and prunes done outbox rows older
	// than a day, when the retention store is also a RelayPruner. 0 keeps them.
	MessageMaxAge time.Duration
	// Timeout bounds one run. 0 means DefaultRunTimeout.
	Timeout time.Duration
	// Formats to write. nil means all of Formats.
	Formats []Format
	// FileMode of the files. 0 means 0o640.
	FileMode fs.FileMode
	// Lease, when set, lets only the replica holding it run the scheduled
	// job. nil: this process always runs it.
	Lease bridge.Leadership
	// Clock drives the schedule and gives the run's "now". nil: the system
	// clock.
	Clock bridge.Clock
}

// Weekly is the weekly export job: every run writes the previous complete ISO
// week in each format into the directory — handoffs-2026-W46.csv, .jsonl,
// .nlu.yml and .html, each atomically — and then applies the retention.
type Weekly struct {
	cfg    WeeklyConfig
	sched  cron.Schedule
	src    Source
	ret    Retention
	exp    *Exporter
	logger *slog.Logger
}

// NewWeekly checks cfg and returns the job; Run runs it on its schedule. It returns an
// error if the directory is missing, the schedule does not parse, a format is
// unknown, a duration is negative or src or ret is nil. exp nil means an
// Exporter with the default configuration.
func NewWeekly(cfg WeeklyConfig, src Source, ret Retention, exp *Exporter, logger *slog.Logger) (*Weekly, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if exp == nil {
		exp = defaultExporter
	}
	switch {
	case cfg.Dir == "":
		return nil, errors.New("review: weekly: a directory for the exports is required")
	case src == nil || ret == nil:
		return nil, errors.New("review: weekly: a source and a retention store are required")
	case cfg.MaxAge < 0 || cfg.MessageMaxAge < 0:
		return nil, fmt.Errorf("review: weekly: max age must be >= 0, got %s", cfg.MaxAge)
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("review: weekly: timeout must be >= 0, got %s", cfg.Timeout)
	}
	if cfg.Schedule == "" {
		cfg.Schedule = DefaultSchedule
	}
	sched, err := cron.ParseStandard(cfg.Schedule)
	if err != nil {
		return nil, fmt.Errorf("review: weekly: schedule %q: %w", cfg.Schedule, err)
	}
	if cfg.Location == nil {
		cfg.Location = exp.loc
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultRunTimeout
	}
	if cfg.Formats == nil {
		cfg.Formats = Formats
	}
	for _, f := range cfg.Formats {
		if !f.valid() {
			return nil, fmt.Errorf("review: weekly: unknown format %q", f)
		}
	}
	if cfg.FileMode == 0 {
		cfg.FileMode = 0o640
	}
	if cfg.Clock == nil {
		cfg.Clock = bridge.SystemClock{}
	}
	return &Weekly{cfg: cfg, sched: sched, src: src, ret: ret, exp: exp, logger: logger}, nil
}

// WeeklyRun reports what one run did.
type WeeklyRun struct {
	Week     string    // ISO week exported, "2026-W46"
	From, To time.Time // its bounds, [Monday 00:00, next Monday 00:00) in the location
	Files    []string  // paths written
	Records  int       // records in the week
	Cutoff   time.Time // retention cutoff: records started before it were deleted
	Deleted  int64     // records deleted by the retention

	// What the message retention deleted (MessageMaxAge).
	PrunedSessions, PrunedMessages, PrunedOutbox int64
}

// PreviousISOWeek returns the last complete ISO week before now in loc:
// [Monday 00:00, next Monday 00:00) and its name, e.g. "2026-W46".
func PreviousISOWeek(now time.Time, loc *time.Location) (from, to time.Time, name string) {
	t := now.In(loc)
	y, m, d := t.Date()
	to = time.Date(y, m, d-(int(t.Weekday())+6)%7, 0, 0, 0, 0, loc)
	from = to.AddDate(0, 0, -7)
	year, week := from.ISOWeek()
	return from, to, fmt.Sprintf("%04d-W%02d", year, week)
}

// RunOnce exports the ISO week before now and applies the retention
// (deleting records started before now - MaxAge). A file that fails is
// reported and the others are still written; the retention runs even when an
// export failed. Files are replaced atomically, so running a week again
// rewrites it in place.
func (w *Weekly) RunOnce(ctx context.Context, now time.Time) (WeeklyRun, error) {
	from, to, week := PreviousISOWeek(now, w.cfg.Location)
	run := WeeklyRun{Week: week, From: from, To: to}
	log := w.logger.With("week", week)
	log.Info("review: weekly export started", "from", from, "to", to, "dir", w.cfg.Dir)
	var errs []error
	if err := os.MkdirAll(w.cfg.Dir, 0o750); err != nil {
		errs = append(errs, fmt.Errorf("review: weekly: %w", err))
	} else {
		for _, f := range w.cfg.Formats {
			path := filepath.Join(w.cfg.Dir, "handoffs-"+week+f.Ext())
			var n int
			err := WriteFileAtomic(path, w.cfg.FileMode, func(out io.Writer) error {
				var err error
				n, err = w.exp.Export(ctx, out, w.src, from, to, f)
				return err
			})
			if err != nil {
				log.Error("review: weekly export failed", "format", string(f), "file", path, "err", err)
				errs = append(errs, err)
				continue
			}
			run.Files = append(run.Files, path)
			run.Records = max(run.Records, n)
			log.Info("review: weekly export written", "format", string(f), "file", path, "records", n)
		}
	}

	run.Cutoff = now.Add(-w.cfg.MaxAge)
	deleted, err := w.ret.DeleteReviewsBefore(ctx, run.Cutoff)
	if err != nil {
		log.Error("review: retention failed", "cutoff", run.Cutoff, "err", err)
		errs = append(errs, fmt.Errorf("review: retention: %w", err))
	} else {
		run.Deleted = deleted
		log.Info("review: retention applied", "cutoff", run.Cutoff, "max_age", w.cfg.MaxAge, "deleted", deleted)
	}
	if p, ok := w.ret.(RelayPruner); ok && w.cfg.MessageMaxAge > 0 {
		sessions, messages, outbox, err := p.PruneRelayData(ctx, now.Add(-w.cfg.MessageMaxAge), now.Add(-24*time.Hour))
		if err != nil {
			log.Error("review: message retention failed", "err", err)
			errs = append(errs, fmt.Errorf("review: message retention: %w", err))
		} else {
			run.PrunedSessions, run.PrunedMessages, run.PrunedOutbox = sessions, messages, outbox
			log.Info("review: message retention applied", "max_age", w.cfg.MessageMaxAge, "sessions", sessions, "messages", messages, "outbox_done", outbox)
		}
	}
	log.Info("review: weekly export finished", "files", len(run.Files), "records", run.Records, "deleted", run.Deleted, "failed", len(errs))
	return run, errors.Join(errs...)
}

// Run runs the job on its schedule until ctx ends and returns nil then. Each
// run gets a context derived from ctx with the configured timeout; a panic in
// a run is logged and recovered. With a Lease set, a scheduled run happens
// only on the replica holding the lease (one export and one retention pass
// per deployment, not one per replica).
func (w *Weekly) Run(ctx context.Context) error {
	w.logger.Info("review: weekly export scheduled", "schedule", w.cfg.Schedule, "location", w.cfg.Location.String(),
		"dir", w.cfg.Dir, "next", w.sched.Next(w.cfg.Clock.Now().In(w.cfg.Location)))
	for {
		now := w.cfg.Clock.Now().In(w.cfg.Location)
		select {
		case <-ctx.Done():
			return nil
		case <-w.cfg.Clock.After(w.sched.Next(now).Sub(now)):
		}
		if w.cfg.Lease != nil && !w.cfg.Lease.Held() {
			w.logger.Debug("review: weekly export left to the replica holding the lease")
			continue
		}
		w.scheduled(ctx)
	}
}

// scheduled is one run bounded by the timeout, recovering a panic.
func (w *Weekly) scheduled(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			w.logger.Error("review: weekly export panicked", "err", fmt.Errorf("panic: %v", p))
		}
	}()
	_, _ = w.RunOnce(ctx, w.cfg.Clock.Now()) // RunOnce logs its outcome
}
