package review

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/bridge/bridgetest"
)

// memLedger is an in-memory DigestLedger with the store's rules (claims do
// not expire here).
type memLedger struct {
	mu     sync.Mutex
	holder map[string]string
	sent   map[string]string
}

func newMemLedger() *memLedger {
	return &memLedger{holder: map[string]string{}, sent: map[string]string{}}
}

func (l *memLedger) ClaimDigest(ctx context.Context, week, holder string, ttl time.Duration) (bool, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.sent[week]; ok {
		return false, true, nil
	}
	if h := l.holder[week]; h != "" && h != holder {
		return false, false, nil
	}
	l.holder[week] = holder
	return true, false, nil
}

func (l *memLedger) DigestSent(ctx context.Context, week, holder, post string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder[week] != holder {
		return bridge.ErrLeaseLost
	}
	l.sent[week] = post
	return nil
}

func (l *memLedger) ReleaseDigest(ctx context.Context, week, holder string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder[week] == holder {
		delete(l.holder, week)
	}
	return nil
}

// syncSource serialises a memSource for several loops.
type syncSource struct {
	mu  sync.Mutex
	src *memSource
}

func (s *syncSource) Reviews(ctx context.Context, from, to time.Time, fn func(bridge.ReviewRecord) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.src.Reviews(ctx, from, to, fn)
}

// memPoster records the cards posted; fail makes the next posts fail.
type memPoster struct {
	mu    sync.Mutex
	cards []bridge.Card
	fail  int
}

func (p *memPoster) PostDigest(ctx context.Context, c bridge.Card) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail > 0 {
		p.fail--
		return "", errors.New("teams: 503")
	}
	p.cards = append(p.cards, c)
	return "post-1", nil
}

func (p *memPoster) posted() []bridge.Card {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]bridge.Card(nil), p.cards...)
}

func newTestDigest(t *testing.T, cfg DigestConfig, src Source, l DigestLedger, p DigestPoster) *Digest {
	t.Helper()
	if cfg.Holder == "" {
		cfg.Holder = "replica-a"
	}
	d, err := NewDigest(cfg, src, l, p, testExporter(t, ExportConfig{}), nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDigestCard renders the digest of a fixed week (the cluster corpus as
// handoffs of 2026-W46) and checks the card's content: the count, the
// top reasons, the top clusters with their size, examples, the bot's guess
// and confidence and the suggested intent, the rating, and the inbox link
// filtered to the week.
func TestDigestCard(t *testing.T) {
	src := &memSource{records: mfaWeekRecords()}
	p := &memPoster{}
	d := newTestDigest(t, DigestConfig{InboxURL: "https://bridge.example.com/review"}, src, newMemLedger(), p)
	posted, done, err := d.RunOnce(context.Background(), testNow)
	if err != nil || !posted || !done {
		t.Fatalf("RunOnce = %v, %v, %v; want posted", posted, done, err)
	}
	cards := p.posted()
	if len(cards) != 1 {
		t.Fatalf("%d cards posted, want 1", len(cards))
	}
	c := cards[0]
	got, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("card:\n%s", got) // clusters' examples may swap on float ties, so the content is checked, not golden
	all := c.Title + "\n" + strings.Join(c.Lines, "\n")
	for _, f := range c.Facts {
		all += "\n" + f.Title + ": " + f.Value
	}
	for _, want := range []string{
		"week 2026-W46",
		"Mon 9 Nov to Sun 15 Nov 2026: **72** handoffs.",
		"Top reasons: user_asked 60 · fallback 12",
		"× Reset MFA on new phone**",
		"The bot guessed password_reset at 0.41 (",
		"Suggested new intent: **reset_mfa_on_new_phone**",
		"Employee rating: 2.0 / 5 from 6 ratings",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("card lacks %q:\n%s", want, all)
		}
	}
	if len(c.Links) != 1 || c.Links[0].URL != "https://bridge.example.com/review?from=2026-11-09&to=2026-11-15" {
		t.Errorf("links = %+v, want the inbox filtered to the week", c.Links)
	}
	// Nothing of the next week is in it: a second run posts nothing.
	if posted, done, err := d.RunOnce(context.Background(), testNow.Add(time.Hour)); posted || !done || err != nil {
		t.Errorf("second RunOnce = %v, %v, %v; want nothing posted, done", posted, done, err)
	}
}

// TestDigestRunOncePerWeek runs two replicas' loops on one ledger under a
// fake clock from Monday 00:00 to the Monday after: each week's digest is
// posted once, when it is due; a failed post is tried again after Retry. A
// replica started after the due time posts a digest no replica posted
// (a restart over the due time loses nothing), and only that.
func TestDigestRunOncePerWeek(t *testing.T) {
	clock := bridgetest.NewClock(time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC))
	src := &syncSource{src: &memSource{records: mfaWeekRecords()}}
	ledger, p := newMemLedger(), &memPoster{fail: 1}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, h := range []string{"a", "b"} {
		d := newTestDigest(t, DigestConfig{Holder: h, Clock: clock, Retry: 10 * time.Minute}, src, ledger, p)
		wg.Add(1)
		go func() { defer wg.Done(); _ = d.Run(ctx) }()
	}
	defer func() { cancel(); wg.Wait() }()
	// step moves the clock to each wake-up of the loops up to to, letting
	// both park on the clock in between.
	step := func(to time.Time) {
		t.Helper()
		for {
			if err := clock.WaitFor(ctx, 2); err != nil {
				t.Fatal(err)
			}
			next := clock.Now().Add(clock.Waits()[0])
			if next.After(to) {
				clock.Set(to)
				return
			}
			clock.Set(next)
		}
	}
	step(time.Date(2026, 11, 16, 5, 59, 0, 0, time.UTC))
	if n := len(p.posted()); n != 0 {
		t.Fatalf("%d posted before the schedule (Monday 06:00)", n)
	}
	step(time.Date(2026, 11, 16, 6, 30, 0, 0, time.UTC)) // due at 06:00; the first post fails, the retry at 06:10 posts
	if n := len(p.posted()); n != 1 {
		t.Fatalf("%d posted after the first due time, want 1", n)
	}
	step(time.Date(2026, 11, 23, 7, 0, 0, 0, time.UTC))
	cards := p.posted()
	if len(cards) != 2 {
		t.Fatalf("%d posted after two due times, want 2", len(cards))
	}
	if !strings.Contains(cards[0].Title, "2026-W46") || !strings.Contains(cards[1].Title, "2026-W47") {
		t.Errorf("posted %q and %q, want weeks 46 and 47", cards[0].Title, cards[1].Title)
	}

	// Late starters: on the same ledger nothing more; on a ledger that
	// never saw week 47 posted, one catch-up post.
	for _, tc := range []struct {
		ledger *memLedger
		want   int
	}{{ledger, 0}, {newMemLedger(), 1}} {
		late, parkedBefore := &memPoster{}, len(clock.Waits())
		lctx, lcancel := context.WithCancel(ctx)
		d := newTestDigest(t, DigestConfig{Holder: "c", Clock: clock}, src, tc.ledger, late)
		done := make(chan struct{})
		go func() { defer close(done); _ = d.Run(lctx) }()
		if err := clock.WaitFor(ctx, parkedBefore+1); err != nil { // parked after its first look
			t.Fatal(err)
		}
		lcancel()
		<-done
		if n := len(late.posted()); n != tc.want {
			t.Errorf("late replica posted %d, want %d", n, tc.want)
		}
	}
}

func TestNewDigestErrors(t *testing.T) {
	src, l, p := &memSource{}, newMemLedger(), &memPoster{}
	for name, tc := range map[string]struct {
		cfg             DigestConfig
		src             Source
		ledger          DigestLedger
		poster          DigestPoster
		wantErrContains string
	}{
		"no holder":    {DigestConfig{}, src, l, p, "holder"},
		"no poster":    {DigestConfig{Holder: "a"}, src, l, nil, "poster"},
		"bad schedule": {DigestConfig{Holder: "a", Schedule: "every monday"}, src, l, p, "schedule"},
		"bad inbox":    {DigestConfig{Holder: "a", InboxURL: "ftp://x/review"}, src, l, p, "inbox URL"},
	} {
		_, err := NewDigest(tc.cfg, tc.src, tc.ledger, tc.poster, nil, nil)
		if err == nil || !strings.Contains(err.Error(), tc.wantErrContains) {
			t.Errorf("%s: err = %v, want one naming %q", name, err, tc.wantErrContains)
		}
	}
}
