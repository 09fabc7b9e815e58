package review

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/handoffhq/handoff/bridge"
)

// The weekly digest: the week's summary as a card posted where the bot team
// already is (a Teams channel the bot is installed in), once per ISO week
// per deployment, however many replicas run it. Exactly once is a row per
// week in the store (DigestLedger), not timing: a replica posts only under
// its own claim on that row, and the row records the post.

// DigestPoster posts the digest card. In cmd it is a teams.Client posting to
// the configured channel.
type DigestPoster interface {
	// PostDigest posts card and returns an id of the post ("" when the
	// channel gave none).
	PostDigest(ctx context.Context, card bridge.Card) (string, error)
}

// DigestLedger keeps one row per ISO week. bridge/store.Store implements it.
type DigestLedger interface {
	// ClaimDigest claims week's digest for holder for ttl (by the database's
	// clock). claimed is true when holder may post now: week's digest was
	// not posted and no other holder's claim is running. sent is true when
	// it was posted already.
	ClaimDigest(ctx context.Context, week, holder string, ttl time.Duration) (claimed, sent bool, err error)
	// DigestSent records that holder posted week's digest as post.
	// bridge.ErrLeaseLost when the claim is no longer holder's.
	DigestSent(ctx context.Context, week, holder, post string) error
	// ReleaseDigest gives up holder's claim (a post that failed), so the next
	// attempt of any replica may claim the week at once.
	ReleaseDigest(ctx context.Context, week, holder string) error
}

// DefaultInboxPath is where serve mounts the review inbox.
const DefaultInboxPath = "/review"

// Defaults of DigestConfig.
const (
	DefaultDigestRetry    = 10 * time.Minute
	DefaultDigestClaimTTL = 5 * time.Minute
	digestClusters        = 3 // clusters on the card
	digestExamples        = 2 // examples per cluster on the card
	digestReasons         = 5 // reasons on the card
)

// DigestConfig configures the weekly digest.
type DigestConfig struct {
	// Schedule is when the digest of the previous ISO week is due, as
	// WeeklyConfig.Schedule (give the weekly export's, so the digest follows
	// the files). Empty means DefaultSchedule.
	Schedule string
	// Location is the zone of the schedule and of the weeks (nil: the
	// exporter's).
	Location *time.Location
	// InboxURL is the public URL of the review inbox the card links to, e.g.
	// https://bridge.example.com/review ("" : no link).
	InboxURL string
	// Holder names this replica on the ledger's rows. Required.
	Holder string
	// Retry is how soon a replica looks again while the week's digest is due
	// but not posted (another replica holds the claim, or the post failed).
	Retry time.Duration
	// ClaimTTL is how long a claim lasts; a replica that dies after
	// claiming leaves the week to the others after it.
	ClaimTTL time.Duration
	// Timeout bounds one attempt (summary and post). 0: DefaultRunTimeout.
	Timeout time.Duration
	// Clock drives the schedule (nil: the system clock).
	Clock bridge.Clock
}

// Digest posts the weekly digest. Run is its background loop.
type Digest struct {
	cfg    DigestConfig
	sched  cron.Schedule
	src    Source
	ledger DigestLedger
	poster DigestPoster
	exp    *Exporter
	log    *slog.Logger
}

// NewDigest checks cfg and returns the digest job. It returns an error if
// the schedule does not parse, the inbox URL is not an http(s) URL, Holder
// is empty or a part is nil.
func NewDigest(cfg DigestConfig, src Source, ledger DigestLedger, poster DigestPoster, exp *Exporter, logger *slog.Logger) (*Digest, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if exp == nil {
		exp = defaultExporter
	}
	switch {
	case src == nil || ledger == nil || poster == nil:
		return nil, errors.New("review: digest: a source, a ledger and a poster are required")
	case cfg.Holder == "":
		return nil, errors.New("review: digest: a holder name is required")
	case cfg.Retry < 0 || cfg.ClaimTTL < 0 || cfg.Timeout < 0:
		return nil, errors.New("review: digest: durations must be >= 0")
	}
	if cfg.InboxURL != "" {
		u, err := url.Parse(cfg.InboxURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("review: digest: inbox URL %q is not an http(s) URL", cfg.InboxURL)
		}
	}
	if cfg.Schedule == "" {
		cfg.Schedule = DefaultSchedule
	}
	sched, err := cron.ParseStandard(cfg.Schedule)
	if err != nil {
		return nil, fmt.Errorf("review: digest: schedule %q: %w", cfg.Schedule, err)
	}
	if cfg.Location == nil {
		cfg.Location = exp.loc
	}
	if cfg.Retry == 0 {
		cfg.Retry = DefaultDigestRetry
	}
	if cfg.ClaimTTL == 0 {
		cfg.ClaimTTL = DefaultDigestClaimTTL
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultRunTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = bridge.SystemClock{}
	}
	return &Digest{cfg: cfg, sched: sched, src: src, ledger: ledger, poster: poster, exp: exp, log: logger}, nil
}

// DigestCount is a label and how many handoffs had it.
type DigestCount struct {
	Label string
	Count int
}

// DigestCluster is a group of similar pre-handoff utterances.
type DigestCluster struct {
	Size      int
	LooksLike string   // the agents' topic, or the most central utterance
	Examples  []string // redacted utterances
	Intents   []string // what the bot guessed: "password_reset at 0.41 (20)"
	Suggested string   // a new intent name, when the agents' topics agree
}

// DigestSummary is a week as the digest shows it.
type DigestSummary struct {
	Week      string    // "2026-W46"
	From, To  time.Time // [Monday 00:00, next Monday 00:00)
	Total     int
	Reasons   []DigestCount // top reasons, most frequent first
	Clusters  []DigestCluster
	CSATCount int
	CSATMean  string // "4.2", "" without ratings
}

// Summary reads the handoffs of [from, to) in one streaming pass.
func (e *Exporter) Summary(ctx context.Context, src Source, from, to time.Time) (DigestSummary, error) {
	s := newReportStats(e.lowConf, e.loc, e.redact)
	if _, err := stream(ctx, src, from, to, func(r bridge.ReviewRecord) error { s.add(r); return nil }); err != nil {
		return DigestSummary{}, err
	}
	d := s.data(from, to, e.now().In(e.loc))
	sum := DigestSummary{From: from, To: to, Total: d.Total, CSATCount: d.CSATCount, CSATMean: d.CSATMean}
	for _, r := range s.reasons.top(digestReasons, s.total) {
		sum.Reasons = append(sum.Reasons, DigestCount{Label: r.Label, Count: r.Count})
	}
	for _, c := range d.Clusters[:min(digestClusters, len(d.Clusters))] {
		sum.Clusters = append(sum.Clusters, DigestCluster{Size: c.Size, LooksLike: c.LooksLike,
			Examples: c.Examples[:min(digestExamples, len(c.Examples))], Intents: c.Intents, Suggested: c.Suggested})
	}
	return sum, nil
}

// Card renders the summary: the count, the top reasons, the top clusters
// (size, examples, the bot's guess and confidence, a suggested intent name)
// and a link to the inbox filtered to the week.
func (d *Digest) Card(s DigestSummary) bridge.Card {
	c := bridge.Card{Title: fmt.Sprintf("Handoffs to a human, week %s", s.Week), Style: "accent"}
	last := s.To.Add(-time.Nanosecond).In(d.cfg.Location)
	c.Lines = append(c.Lines, fmt.Sprintf("%s to %s: **%d** %s.", s.From.In(d.cfg.Location).Format("Mon 2 Jan"),
		last.Format("Mon 2 Jan 2006"), s.Total, plural(s.Total, "handoff", "handoffs")))
	if len(s.Reasons) > 0 {
		var rs []string
		for _, r := range s.Reasons {
			rs = append(rs, fmt.Sprintf("%s %d", r.Label, r.Count))
		}
		c.Facts = append(c.Facts, bridge.Fact{Title: "Top reasons", Value: strings.Join(rs, " · ")})
	}
	if s.CSATCount > 0 {
		c.Facts = append(c.Facts, bridge.Fact{Title: "Employee rating", Value: fmt.Sprintf("%s / 5 from %d %s", s.CSATMean, s.CSATCount, plural(s.CSATCount, "rating", "ratings"))})
	}
	for i, cl := range s.Clusters {
		line := fmt.Sprintf("**%d. %d× %s**", i+1, cl.Size, escapeCardMarkdown(cl.LooksLike))
		if len(cl.Intents) > 0 {
			line += "  \nThe bot guessed " + strings.Join(cl.Intents, ", ") // intent names: no markdown inside words
		}
		if cl.Suggested != "" {
			line += "  \nSuggested new intent: **" + cl.Suggested + "**"
		}
		for _, ex := range cl.Examples {
			line += "  \n_“" + escapeCardMarkdown(ex) + "”_"
		}
		c.Lines = append(c.Lines, line)
	}
	if s.Total > 0 && len(s.Clusters) == 0 {
		c.Lines = append(c.Lines, "No utterances to group this week.")
	}
	if u := d.inboxLink(s); u != "" {
		c.Links = append(c.Links, bridge.Link{Title: "Open the review inbox", URL: u})
	}
	return c
}

// inboxLink is the inbox URL filtered to the week (dates, "to" inclusive).
func (d *Digest) inboxLink(s DigestSummary) string {
	if d.cfg.InboxURL == "" {
		return ""
	}
	q := url.Values{}
	q.Set("from", s.From.In(d.cfg.Location).Format(dateLayout))
	q.Set("to", s.To.Add(-time.Nanosecond).In(d.cfg.Location).Format(dateLayout))
	return d.cfg.InboxURL + "?" + q.Encode()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// escapeCardMarkdown keeps what employees wrote from being read as the
// card's markdown.
func escapeCardMarkdown(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`\*_[]`+"`", r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// RunOnce posts the digest of the ISO week before now unless it was posted
// already, by this replica or another. posted reports whether this call
// posted it; done whether the week needs nothing more (posted now or
// before). A claim held by another replica gives done false and no error.
func (d *Digest) RunOnce(ctx context.Context, now time.Time) (posted, done bool, err error) {
	from, to, week := PreviousISOWeek(now, d.cfg.Location)
	log := d.log.With("week", week)
	claimed, sent, err := d.ledger.ClaimDigest(ctx, week, d.cfg.Holder, d.cfg.ClaimTTL)
	switch {
	case err != nil:
		return false, false, fmt.Errorf("review: digest %s: claim: %w", week, err)
	case sent:
		log.Debug("review: digest was posted already")
		return false, true, nil
	case !claimed:
		log.Debug("review: digest is being posted by another replica")
		return false, false, nil
	}
	sum, err := d.exp.Summary(ctx, d.src, from, to)
	if err == nil {
		sum.Week = week
		var id string
		if id, err = d.poster.PostDigest(ctx, d.Card(sum)); err == nil {
			if err := d.ledger.DigestSent(ctx, week, d.cfg.Holder, id); err != nil {
				// Posted, but not recorded: another replica may post again
				// once the claim expires (the same window as any Teams send).
				log.Error("review: digest posted but not recorded", "post_id", id, "err", err)
				return true, true, nil
			}
			log.Info("review: weekly digest posted", "post_id", id, "handoffs", sum.Total)
			return true, true, nil
		}
	}
	if rerr := d.ledger.ReleaseDigest(context.WithoutCancel(ctx), week, d.cfg.Holder); rerr != nil {
		log.Warn("review: digest claim not released; it expires by itself", "err", rerr)
	}
	return false, false, fmt.Errorf("review: digest %s: %w", week, err)
}

// due is when the digest of the week before now's week is due: the first
// time the schedule fires in now's ISO week.
func (d *Digest) due(now time.Time) time.Time {
	_, monday, _ := PreviousISOWeek(now, d.cfg.Location)
	return d.sched.Next(monday.Add(-time.Second))
}

// Run posts each week's digest once it is due and returns nil when ctx
// ends. A replica that starts after the due time of its week posts the
// week's digest if no replica did; while it is due and not posted (another
// replica's claim, a failed post) it looks again every Retry.
func (d *Digest) Run(ctx context.Context) error {
	now := d.cfg.Clock.Now().In(d.cfg.Location)
	d.log.Info("review: weekly digest scheduled", "schedule", d.cfg.Schedule, "due_this_week", d.due(now))
	doneWeek := ""
	for {
		now := d.cfg.Clock.Now().In(d.cfg.Location)
		_, _, week := PreviousISOWeek(now, d.cfg.Location)
		due := d.due(now)
		if !now.Before(due) && doneWeek != week {
			done := d.attempt(ctx, now)
			if done {
				doneWeek = week
			}
		}
		var next time.Time
		switch {
		case now.Before(due):
			next = due
		case doneWeek == week:
			_, monday, _ := PreviousISOWeek(now, d.cfg.Location)
			next = d.sched.Next(monday.AddDate(0, 0, 7).Add(-time.Second))
		default:
			next = now.Add(d.cfg.Retry)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-d.cfg.Clock.After(next.Sub(now)):
		}
	}
}

// attempt is one bounded RunOnce, recovering a panic.
func (d *Digest) attempt(ctx context.Context, now time.Time) (done bool) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			d.log.Error("review: weekly digest panicked", "err", fmt.Errorf("panic: %v", p))
			done = false
		}
	}()
	_, done, err := d.RunOnce(ctx, now)
	if err != nil {
		d.log.Error("review: weekly digest failed; trying again later", "retry_in", d.cfg.Retry, "err", err)
	}
	return done
}
