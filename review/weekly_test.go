package review

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/bridge/bridgetest"
)

func TestPreviousISOWeek(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	tests := []struct {
		now      time.Time
		loc      *time.Location
		wantFrom time.Time
		want     string
	}{
		{testNow, time.UTC, weekFrom, "2026-W46"},
		{time.Date(2026, 11, 22, 23, 59, 59, 0, time.UTC), time.UTC, weekFrom, "2026-W46"}, // Sunday night
		{time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC), time.UTC, weekFrom, "2026-W46"},    // Monday midnight
		{time.Date(2027, 1, 4, 6, 0, 0, 0, time.UTC), time.UTC, time.Date(2026, 12, 28, 0, 0, 0, 0, time.UTC), "2026-W53"},
		{time.Date(2027, 1, 11, 6, 0, 0, 0, time.UTC), time.UTC, time.Date(2027, 1, 4, 0, 0, 0, 0, time.UTC), "2027-W01"},
		{time.Date(2026, 1, 5, 6, 0, 0, 0, time.UTC), time.UTC, time.Date(2025, 12, 29, 0, 0, 0, 0, time.UTC), "2026-W01"},
		// Monday 00:30 in Berlin is still Sunday in UTC: the week is Berlin's.
		{time.Date(2026, 11, 15, 23, 30, 0, 0, time.UTC), berlin, time.Date(2026, 11, 9, 0, 0, 0, 0, berlin), "2026-W46"},
		// A DST change inside the week (2026-10-25 in Berlin): 7 days, not 168 hours.
		{time.Date(2026, 10, 26, 6, 0, 0, 0, berlin), berlin, time.Date(2026, 10, 19, 0, 0, 0, 0, berlin), "2026-W43"},
	}
	for _, tt := range tests {
		from, to, name := PreviousISOWeek(tt.now, tt.loc)
		if !from.Equal(tt.wantFrom) || !to.Equal(tt.wantFrom.AddDate(0, 0, 7)) || name != tt.want {
			t.Errorf("PreviousISOWeek(%v) = %v, %v, %s; want %v, +7 days, %s", tt.now, from, to, name, tt.wantFrom, tt.want)
		}
	}
}

func newTestWeekly(t *testing.T, cfg WeeklyConfig, src *memSource, logger *slog.Logger) *Weekly {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "exports")
	}
	w, err := NewWeekly(cfg, src, src, testExporter(t, ExportConfig{}), logger)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestWeeklyRunOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "exports")
	old := bridge.ReviewRecord{SessionID: "s-old", StartedAt: testNow.AddDate(0, 0, -181), Reason: "user_asked"}
	src := &memSource{records: append(fixtureRecords(), old)}
	var logs bytes.Buffer
	w := newTestWeekly(t, WeeklyConfig{Dir: dir}, src, slog.New(slog.NewTextHandler(&logs, nil)))

	run, err := w.RunOnce(context.Background(), testNow)
	if err != nil {
		t.Fatal(err)
	}
	if run.Week != "2026-W46" || !run.From.Equal(weekFrom) || !run.To.Equal(weekTo) || run.Records != 5 {
		t.Errorf("run = %+v", run)
	}
	names := []string{"handoffs-2026-W46.csv", "handoffs-2026-W46.html", "handoffs-2026-W46.jsonl", "handoffs-2026-W46.nlu.yml"}
	checkOnly(t, dir, names...) // no temporary files left
	for _, f := range Formats {
		path := filepath.Join(dir, "handoffs-2026-W46"+f.Ext())
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		// The same bytes as the golden on-demand export of the week.
		want, err := os.ReadFile(filepath.Join("testdata", "week"+f.Ext()))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from testdata/week%s", path, f.Ext())
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
			t.Errorf("%s mode %v", path, fi.Mode().Perm())
		}
	}
	if len(run.Files) != 4 {
		t.Errorf("files = %q", run.Files)
	}

	// Retention: cutoff now - 180 days; the 181-day-old record is gone.
	wantCutoff := testNow.Add(-180 * 24 * time.Hour)
	if len(src.deleteCalls) != 1 || !src.deleteCalls[0].Equal(wantCutoff) || !run.Cutoff.Equal(wantCutoff) {
		t.Errorf("retention calls = %v, want one at %v", src.deleteCalls, wantCutoff)
	}
	if run.Deleted != 1 {
		t.Errorf("deleted = %d, want 1", run.Deleted)
	}
	for _, want := range []string{"review: weekly export written", "records=5", "review: retention applied", "deleted=1", "week=2026-W46"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, logs.String())
		}
	}
}

func TestWeeklyEmptyWeek(t *testing.T) {
	dir := t.TempDir()
	src := &memSource{records: fixtureRecords()}
	w := newTestWeekly(t, WeeklyConfig{Dir: dir, MaxAge: 30 * 24 * time.Hour}, src, nil)
	now := testNow.AddDate(0, 0, 21) // exports 2026-W49: no records
	run, err := w.RunOnce(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	if run.Week != "2026-W49" || run.Records != 0 || len(run.Files) != 4 {
		t.Errorf("run = %+v", run)
	}
	for _, f := range Formats {
		out, err := os.ReadFile(filepath.Join(dir, "handoffs-2026-W49"+f.Ext()))
		if err != nil {
			t.Fatal(err)
		}
		checkValid(t, f, out, 0)
	}
	if want := now.Add(-30 * 24 * time.Hour); len(src.deleteCalls) != 1 || !src.deleteCalls[0].Equal(want) {
		t.Errorf("retention calls = %v, want one at %v", src.deleteCalls, want)
	}
}

func TestWeeklyFailures(t *testing.T) {
	t.Run("export fails: old files kept, retention still runs", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "handoffs-2026-W46.csv")
		if err := os.WriteFile(path, []byte("previous run"), 0o640); err != nil {
			t.Fatal(err)
		}
		src := &memSource{records: fixtureRecords(), err: errors.New("db down")}
		w := newTestWeekly(t, WeeklyConfig{Dir: dir, Formats: []Format{FormatCSV, FormatNLU}}, src, nil)
		run, err := w.RunOnce(context.Background(), testNow)
		if err == nil || !strings.Contains(err.Error(), "db down") {
			t.Fatalf("error = %v", err)
		}
		checkFile(t, path, "previous run")
		checkOnly(t, dir, "handoffs-2026-W46.csv")
		if len(src.deleteCalls) != 1 || len(run.Files) != 0 {
			t.Errorf("retention calls %d, files %q", len(src.deleteCalls), run.Files)
		}
	})
	t.Run("retention fails", func(t *testing.T) {
		src := &memSource{records: fixtureRecords(), deleteErr: errors.New("locked")}
		w := newTestWeekly(t, WeeklyConfig{}, src, nil)
		run, err := w.RunOnce(context.Background(), testNow)
		if err == nil || !strings.Contains(err.Error(), "review: retention: locked") {
			t.Fatalf("error = %v", err)
		}
		if len(run.Files) != 4 {
			t.Errorf("files = %q", run.Files)
		}
	})
}

func TestNewWeeklyErrors(t *testing.T) {
	src := &memSource{}
	tests := []struct {
		name string
		cfg  WeeklyConfig
		want string
	}{
		{"no dir", WeeklyConfig{}, "directory"},
		{"bad schedule", WeeklyConfig{Dir: "x", Schedule: "every monday"}, "schedule"},
		{"six fields", WeeklyConfig{Dir: "x", Schedule: "0 0 6 * * 1"}, "schedule"},
		{"negative max age", WeeklyConfig{Dir: "x", MaxAge: -time.Hour}, "max age"},
		{"negative timeout", WeeklyConfig{Dir: "x", Timeout: -time.Hour}, "timeout"},
		{"bad format", WeeklyConfig{Dir: "x", Formats: []Format{"pdf"}}, "format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewWeekly(tt.cfg, src, src, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "review: ") {
				t.Errorf("error = %v, want one about %s", err, tt.want)
			}
		})
	}
	if _, err := NewWeekly(WeeklyConfig{Dir: "x"}, nil, src, nil, nil); err == nil {
		t.Error("no error without a source")
	}
	w, err := NewWeekly(WeeklyConfig{Dir: "x", Schedule: "CRON_TZ=Europe/Berlin 0 6 * * 1"}, src, src, nil, nil)
	if err != nil {
		t.Fatalf("CRON_TZ schedule: %v", err)
	}
	if w.cfg.MaxAge != DefaultMaxAge || w.cfg.Location != time.UTC || len(w.cfg.Formats) != 4 {
		t.Errorf("defaults not applied: %+v", w.cfg)
	}
}

func TestWeeklyDefaultSchedule(t *testing.T) {
	w := newTestWeekly(t, WeeklyConfig{}, &memSource{}, nil)
	next := w.sched.Next(time.Date(2026, 11, 12, 10, 0, 0, 0, time.UTC))
	if want := time.Date(2026, 11, 16, 6, 0, 0, 0, time.UTC); !next.Equal(want) {
		t.Errorf("next run after Thursday = %v, want Monday 06:00 %v", next, want)
	}
}

// lockedSource counts retention calls safely across goroutines and can block
// or panic in Reviews.
type lockedSource struct {
	mu      sync.Mutex
	deletes int
	block   chan struct{} // Reviews waits on it when set
	entered chan struct{} // Reviews signals it before blocking, when set
	panics  bool
}

func (s *lockedSource) Reviews(ctx context.Context, from, to time.Time, fn func(bridge.ReviewRecord) error) error {
	if s.panics {
		panic("source exploded")
	}
	if s.block != nil {
		if s.entered != nil {
			s.entered <- struct{}{}
		}
		select {
		case <-s.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (s *lockedSource) DeleteReviewsBefore(ctx context.Context, t time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deletes++
	return 0, nil
}

func (s *lockedSource) deleted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deletes
}

// runWeekly runs w and returns a func that cancels it and checks Run
// returned nil.
func runWeekly(t *testing.T, w *Weekly) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run = %v on cancel, want nil", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Run did not return within 10 s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// parked waits until the job waits on the clock and returns the wait.
func parked(t *testing.T, c *bridgetest.Clock) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitFor(ctx, 1); err != nil {
		t.Fatal("the weekly job never waited on the clock")
	}
	return c.Waits()[0]
}

// leaseFlag is a Leadership a test switches.
type leaseFlag struct{ held atomic.Bool }

func (l *leaseFlag) Held() bool                { return l.held.Load() }
func (l *leaseFlag) Acquired() <-chan struct{} { return nil }

// TestWeeklyRun steps a fake clock through the default schedule: the job
// sleeps until Monday 06:00, runs there only on the lease holder, and stops
// on cancel.
func TestWeeklyRun(t *testing.T) {
	src := &lockedSource{}
	clock := bridgetest.NewClock(time.Date(2026, 11, 12, 10, 0, 0, 0, time.UTC)) // a Thursday
	lease := &leaseFlag{}
	w, err := NewWeekly(WeeklyConfig{Dir: t.TempDir(), Clock: clock, Lease: lease}, src, src, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWeekly(t, w)
	monday := time.Date(2026, 11, 16, 6, 0, 0, 0, time.UTC)
	if got := parked(t, clock); got != monday.Sub(clock.Now()) {
		t.Fatalf("sleeps %v, want until Monday 06:00 (%v)", got, monday.Sub(clock.Now()))
	}
	clock.Set(monday) // another replica holds the lease: no run here
	parked(t, clock)
	if n := src.deleted(); n != 0 {
		t.Fatalf("a replica without the lease ran the job (%d retention passes)", n)
	}
	lease.held.Store(true)
	clock.Set(monday.AddDate(0, 0, 7))
	waitFor(t, 10*time.Second, func() bool { return src.deleted() == 1 })
	parked(t, clock)
	stop()
	clock.Set(monday.AddDate(0, 0, 14))
	if n := src.deleted(); n != 1 {
		t.Errorf("%d runs, want 1 (none after cancel)", n)
	}
}

func TestWeeklyCancelStopsARunningExport(t *testing.T) {
	src := &lockedSource{block: make(chan struct{}), entered: make(chan struct{}, 1)}
	clock := bridgetest.NewClock(time.Date(2026, 11, 12, 10, 0, 0, 0, time.UTC))
	w, err := NewWeekly(WeeklyConfig{Dir: t.TempDir(), Formats: []Format{FormatCSV}, Clock: clock}, src, src, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWeekly(t, w)
	parked(t, clock)
	clock.Advance(7 * 24 * time.Hour)
	<-src.entered // a run is now blocked in Reviews
	stop()        // cancels it: Run returns only after the run ended
	if n := src.deleted(); n != 1 {
		t.Errorf("%d retention passes, want 1 (the cancelled run still finishes)", n)
	}
}

func TestWeeklyRecoversPanics(t *testing.T) {
	src := &lockedSource{panics: true}
	var logs syncBuffer
	clock := bridgetest.NewClock(time.Date(2026, 11, 12, 10, 0, 0, 0, time.UTC))
	w, err := NewWeekly(WeeklyConfig{Dir: t.TempDir(), Clock: clock}, src, src, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	runWeekly(t, w)
	for range 2 {
		parked(t, clock)
		clock.Advance(7 * 24 * time.Hour)
	}
	parked(t, clock) // still scheduling after a panic
	if got := strings.Count(logs.String(), "source exploded"); got != 2 {
		t.Errorf("%d panics logged, want 2:\n%s", got, logs.String())
	}
}

func waitFor(t *testing.T, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// pruningSource is a memSource whose store also prunes relay data.
type pruningSource struct {
	*memSource
	before, doneBefore time.Time
	calls              int
}

func (p *pruningSource) PruneRelayData(_ context.Context, before, doneBefore time.Time) (int64, int64, int64, error) {
	p.calls++
	p.before, p.doneBefore = before, doneBefore
	return 2, 17, 40, nil
}

// TestWeeklyMessageRetention: each run prunes the relay's messages past
// MessageMaxAge and done outbox rows older than a day, and reports it; with
// no MessageMaxAge nothing is pruned.
func TestWeeklyMessageRetention(t *testing.T) {
	src := &pruningSource{memSource: &memSource{records: fixtureRecords()}}
	w, err := NewWeekly(WeeklyConfig{Dir: t.TempDir(), MessageMaxAge: 30 * 24 * time.Hour}, src, src, testExporter(t, ExportConfig{}), nil)
	if err != nil {
		t.Fatal(err)
	}
	run, err := w.RunOnce(context.Background(), testNow)
	if err != nil {
		t.Fatal(err)
	}
	if src.calls != 1 || !src.before.Equal(testNow.AddDate(0, 0, -30)) || !src.doneBefore.Equal(testNow.Add(-24*time.Hour)) {
		t.Errorf("pruned %d times, before %v, done before %v", src.calls, src.before, src.doneBefore)
	}
	if run.PrunedSessions != 2 || run.PrunedMessages != 17 || run.PrunedOutbox != 40 {
		t.Errorf("run = %+v", run)
	}
	off := &pruningSource{memSource: &memSource{records: fixtureRecords()}}
	if w, err = NewWeekly(WeeklyConfig{Dir: t.TempDir()}, off, off, testExporter(t, ExportConfig{}), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := w.RunOnce(context.Background(), testNow); err != nil || off.calls != 0 {
		t.Errorf("without MessageMaxAge: %d prunes, %v", off.calls, err)
	}
}
