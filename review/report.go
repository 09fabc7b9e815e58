package review

import (
	"cmp"
	"context"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/handoffhq/handoff/bridge"
)

// Bounds of the HTML report's aggregates. The report is computed in one pass
// over the records with memory that does not grow with their number beyond
// these bounds:
//
//   - each label counter (reasons, intents, close reasons) keeps at most
//     maxLabels distinct labels; later new labels count as "(other)";
//   - waits and durations are kept exactly up to maxSamples each (8 MiB);
//     beyond, a uniform reservoir sample of that size is kept, so medians of
//     larger ranges are estimates (exact for anything up to a million
//     handoffs);
//   - handoffs are counted per calendar day, one map entry per day that has any.
const (
	maxLabels  = 10_000
	maxSamples = 1 << 20
	topN       = 10
)

//go:embed report.html.tmpl
var reportHTML string

var reportTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"f1": func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
	"bars": func(rows []barRow, height int, label string) hbars {
		return hbars{Rows: rows, Height: height, Label: label}
	},
}).Parse(reportHTML))

// reportStats accumulates the HTML report in one streaming pass.
type reportStats struct {
	lowConf   float64
	total     int
	ended     int
	answered  int // ended sessions in which an agent wrote
	low       int // trigger confidence below lowConf
	days      map[int64]int
	reasons   *labelCounter
	intents   *labelCounter
	closes    *labelCounter
	waits     *sampler
	durations *sampler
	loc       *time.Location

	redact    func(string) string
	byReason  *caseLists
	byIntent  *caseLists
	docs      []clusterDoc // what users asked, for clustering (the first maxClusterDocs)
	docsSeen  int
	csatN     int
	csatSum   int
	labelledN int // handoffs with an agent topic label
}

func newReportStats(lowConf float64, loc *time.Location, redact func(string) string) *reportStats {
	return &reportStats{
		redact:    redact,
		byReason:  newCaseLists(),
		byIntent:  newCaseLists(),
		lowConf:   lowConf,
		loc:       loc,
		days:      map[int64]int{},
		reasons:   newLabelCounter(),
		intents:   newLabelCounter(),
		closes:    newLabelCounter(),
		waits:     newSampler(1),
		durations: newSampler(2),
	}
}

func (s *reportStats) add(r bridge.ReviewRecord) {
	s.total++
	s.days[civilDay(r.StartedAt.In(s.loc))]++
	s.reasons.add(orNone(r.Reason))
	s.intents.add(orNone(r.Intent))
	if finite(r.Confidence) < s.lowConf {
		s.low++
	}
	s.addCase(r)
	if r.EndedAt.IsZero() {
		s.closes.add("(still open)")
		return
	}
	s.ended++
	s.closes.add(orNone(string(r.CloseReason)))
	s.durations.add(r.DurationMilli)
	if r.WaitMillis > 0 || r.AgentMessages > 0 {
		s.answered++
		s.waits.add(r.WaitMillis)
	}
}

// addCase files r in the case lists and the clustering sample.
func (s *reportStats) addCase(r bridge.ReviewRecord) {
	topic := ""
	if r.Verdict != nil {
		topic = r.Verdict.Topic
		if topic != "" {
			s.labelledN++
		}
	}
	if r.CSAT != nil && r.CSAT.Rating > 0 {
		s.csatN++
		s.csatSum += r.CSAT.Rating
	}
	var utts []string
	row := func() caseRow {
		c := caseRow{Started: r.StartedAt.In(s.loc).Format("Mon 02 15:04"), Intent: orNone(r.Intent),
			Confidence: formatConfidence(r.Confidence), Topic: topic, Outcome: orNone(string(r.CloseReason))}
		if r.EndedAt.IsZero() {
			c.Outcome = "(still open)"
		}
		if r.CSAT != nil {
			c.CSAT = r.CSAT.Rating
		}
		if utts == nil {
			utts = lastUtterances(r.BotTurns, utterancesOfCase)
		}
		for _, u := range utts {
			c.Utterances = append(c.Utterances, truncate(s.redact(u), 200))
		}
		return c
	}
	s.byReason.add(orNone(r.Reason), row)
	s.byIntent.add(orNone(r.Intent), row)
	s.docsSeen++
	if len(s.docs) < maxClusterDocs {
		if utts == nil {
			utts = lastUtterances(r.BotTurns, utterancesOfCase)
		}
		if u := telling(utts); u != "" {
			s.docs = append(s.docs, clusterDoc{text: truncate(s.redact(u), 200), intent: r.Intent,
				confidence: finite(r.Confidence), topic: topic})
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// civilDay numbers the calendar day of t (in t's location) from 1970-01-01.
func civilDay(t time.Time) int64 {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
}

func dayTime(day int64) time.Time { return time.Unix(day*86400, 0).UTC() }

// labelCounter counts labels, keeping at most maxLabels distinct ones.
type labelCounter struct{ counts map[string]int }

func newLabelCounter() *labelCounter { return &labelCounter{counts: map[string]int{}} }

func (c *labelCounter) add(label string) {
	if _, ok := c.counts[label]; !ok && len(c.counts) >= maxLabels {
		label = "(other)"
	}
	c.counts[label]++
}

// top returns the n most frequent labels (ties by name), the rest summed into
// a last "(all others)" row.
func (c *labelCounter) top(n, total int) []barRow {
	type kv struct {
		k string
		v int
	}
	all := make([]kv, 0, len(c.counts))
	for k, v := range c.counts {
		all = append(all, kv{k, v})
	}
	slices.SortFunc(all, func(a, b kv) int { return cmp.Or(cmp.Compare(b.v, a.v), cmp.Compare(a.k, b.k)) })
	var rows []barRow
	rest := 0
	for i, e := range all {
		if i < n {
			rows = append(rows, barRow{Label: e.k, Count: e.v})
		} else {
			rest += e.v
		}
	}
	if rest > 0 {
		rows = append(rows, barRow{Label: "(all others)", Count: rest})
	}
	return layoutBars(rows, total)
}

// sampler keeps int64 samples exactly up to maxSamples, then as a uniform
// reservoir (Algorithm R) with a fixed seed, so reports are reproducible.
type sampler struct {
	vals []int64
	seen int
	rng  *rand.Rand
}

func newSampler(seed uint64) *sampler {
	return &sampler{rng: rand.New(rand.NewPCG(seed, 0x68616e646f6666))}
}

func (s *sampler) add(v int64) {
	s.seen++
	if len(s.vals) < maxSamples {
		s.vals = append(s.vals, v)
		return
	}
	if j := s.rng.IntN(s.seen); j < maxSamples {
		s.vals[j] = v
	}
}

// quantile returns the q-quantile (0.5: the median, the mean of the two middle
// values for an even count). It sorts the samples in place.
func (s *sampler) quantile(q float64) int64 {
	if len(s.vals) == 0 {
		return 0
	}
	slices.Sort(s.vals)
	if q == 0.5 && len(s.vals)%2 == 0 {
		i := len(s.vals) / 2
		return (s.vals[i-1] + s.vals[i]) / 2
	}
	i := int(q*float64(len(s.vals)-1) + 0.5)
	return s.vals[i]
}

// hbars is a horizontal bar chart for the "hbars" template.
type hbars struct {
	Rows   []barRow
	Height int
	Label  string
}

// barRow is one horizontal bar of a top list, laid out for the SVG.
type barRow struct {
	Label   string
	Title   string // full label for the tooltip
	Count   int
	Percent float64
	TextY   int
	RectY   int
	Width   float64
	TextX   float64
}

const (
	hbarLeft  = 250 // x where bars start
	hbarMax   = 360 // width of the longest bar
	hbarRowH  = 24
	labelRune = 36
)

func layoutBars(rows []barRow, total int) []barRow {
	maxCount := 1
	for _, r := range rows {
		maxCount = max(maxCount, r.Count)
	}
	for i := range rows {
		r := &rows[i]
		r.Title = r.Label
		r.Label = truncate(r.Label, labelRune)
		if total > 0 {
			r.Percent = 100 * float64(r.Count) / float64(total)
		}
		r.TextY = i*hbarRowH + 16
		r.RectY = i*hbarRowH + 4
		r.Width = float64(hbarMax) * float64(r.Count) / float64(maxCount)
		r.TextX = hbarLeft + r.Width + 6
	}
	return rows
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// column is one bar of the handoffs-over-time chart.
type column struct {
	Label     string // axis label ("" when skipped for room)
	Title     string // tooltip
	Count     int
	X, Y      float64
	W, H      float64
	CX        float64 // centre, for the texts
	CountY    float64
	ShowCount bool
}

const (
	colLeft   = 40
	colTop    = 16
	colWidth  = 660
	colHeight = 170
)

// timeline turns the per-day counts into columns: daily for up to 92 days,
// weekly (ISO weeks) up to two years, monthly up to ten years, yearly beyond.
// A range of up to 92 days is shown whole, empty days included; a longer one
// from its first to its last day with handoffs.
func (s *reportStats) timeline(from, to time.Time) (cols []column, unit string) {
	first, last := civilDay(from.In(s.loc)), civilDay(to.Add(-time.Nanosecond).In(s.loc))
	if last-first+1 > 92 {
		first, last = 0, 0
		i := 0
		for d := range s.days {
			if i == 0 || d < first {
				first = d
			}
			if i == 0 || d > last {
				last = d
			}
			i++
		}
		if i == 0 {
			return nil, "day"
		}
	}
	if last < first {
		last = first
	}
	span := last - first + 1
	type bucket struct {
		key   int64
		label string
		title string
	}
	var keyOf func(day int64) bucket
	switch {
	case span <= 92:
		unit = "day"
		keyOf = func(day int64) bucket {
			t := dayTime(day)
			return bucket{day, t.Format("Mon 02"), t.Format("Mon 2006-01-02")}
		}
	case span <= 2*366:
		unit = "week"
		keyOf = func(day int64) bucket {
			t := dayTime(day)
			monday := day - int64((int(t.Weekday())+6)%7)
			y, w := t.ISOWeek()
			return bucket{monday, fmt.Sprintf("W%02d", w), fmt.Sprintf("%d-W%02d", y, w)}
		}
	case span <= 10*366:
		unit = "month"
		keyOf = func(day int64) bucket {
			t := dayTime(day)
			return bucket{int64(t.Year())*12 + int64(t.Month()), t.Format("Jan 06"), t.Format("January 2006")}
		}
	default:
		unit = "year"
		keyOf = func(day int64) bucket {
			t := dayTime(day)
			return bucket{int64(t.Year()), t.Format("2006"), t.Format("2006")}
		}
	}
	// Walk the buckets of [first, last] in order; days are cheap to step over
	// (at most ten years of them before switching to years, which step by 365).
	var buckets []bucket
	var counts []int
	step := int64(1)
	if unit == "year" {
		step = 28 // bucket keys change at most once per step
	}
	for d := first; d <= last; d += step {
		b := keyOf(d)
		if len(buckets) == 0 || buckets[len(buckets)-1].key != b.key {
			buckets = append(buckets, b)
			counts = append(counts, 0)
		}
	}
	if k := keyOf(last); buckets[len(buckets)-1].key != k.key {
		buckets = append(buckets, k)
		counts = append(counts, 0)
	}
	index := make(map[int64]int, len(buckets))
	for i, b := range buckets {
		index[b.key] = i
	}
	for d, n := range s.days {
		if i, ok := index[keyOf(d).key]; ok {
			counts[i] += n
		}
	}
	maxCount := 1
	for _, n := range counts {
		maxCount = max(maxCount, n)
	}
	slot := float64(colWidth) / float64(len(buckets))
	every := (len(buckets) + 15) / 16 // at most 16 axis labels
	for i, b := range buckets {
		h := float64(colHeight) * float64(counts[i]) / float64(maxCount)
		c := column{
			Title:     fmt.Sprintf("%s: %d", b.title, counts[i]),
			Count:     counts[i],
			X:         colLeft + float64(i)*slot + slot*0.1,
			W:         slot * 0.8,
			H:         h,
			Y:         colTop + colHeight - h,
			CountY:    colTop + colHeight - h - 4,
			CX:        colLeft + float64(i)*slot + slot/2,
			ShowCount: len(buckets) <= 31 && counts[i] > 0,
		}
		if i%every == 0 {
			c.Label = b.label
		}
		cols = append(cols, c)
	}
	return cols, unit
}

// reportData is what report.html.tmpl renders.
type reportData struct {
	From, To, Generated string
	Total, Ended, Open  int
	Unit                string
	Columns             []column
	MaxCount            int
	ChartHeight         int
	Reasons, Intents    []barRow
	Closes              []barRow
	ReasonsH, IntentsH  int
	ClosesH             int
	Threshold           float64
	Low, NotLow         int
	LowPercent          float64
	LowWidth            float64
	OkX, OkWidth        float64
	Answered, NoAgent   int
	MedianWait, P90Wait string
	MedianDur, P90Dur   string
	Estimated           bool

	Clusters         []clusterRow
	Clustered, Asked int // utterances clustered, handoffs with an utterance
	ByReason         []caseGroup
	ByIntent         []caseGroup
	CasesPerGroup    int
	CSATCount        int
	CSATMean         string
	Labelled         int
}

func (e *Exporter) exportHTML(ctx context.Context, w io.Writer, src Source, from, to time.Time) (int, error) {
	s := newReportStats(e.lowConf, e.loc, e.redact)
	n, err := stream(ctx, src, from, to, func(r bridge.ReviewRecord) error {
		s.add(r)
		return nil
	})
	if err != nil {
		return n, err
	}
	return n, reportTmpl.Execute(w, s.data(from, to, e.now().In(e.loc)))
}

func (s *reportStats) data(from, to, now time.Time) reportData {
	const layout = "Mon 2006-01-02 15:04 MST"
	d := reportData{
		From:      from.In(s.loc).Format(layout),
		To:        to.In(s.loc).Format(layout),
		Generated: now.Format(layout),
		Total:     s.total,
		Ended:     s.ended,
		Open:      s.total - s.ended,
		Threshold: s.lowConf,
		Low:       s.low,
		Answered:  s.answered,
		NoAgent:   s.ended - s.answered,
		Estimated: s.waits.seen > len(s.waits.vals) || s.durations.seen > len(s.durations.vals),
	}
	if s.total == 0 {
		return d
	}
	d.Columns, d.Unit = s.timeline(from, to)
	for _, c := range d.Columns {
		d.MaxCount = max(d.MaxCount, c.Count)
	}
	d.Clusters, d.Clustered, d.Asked = describeClusters(s.docs), len(s.docs), s.docsSeen
	d.ByReason, d.ByIntent, d.CasesPerGroup = s.byReason.top(topN), s.byIntent.top(topN), casesPerGroup
	d.CSATCount, d.Labelled = s.csatN, s.labelledN
	if s.csatN > 0 {
		d.CSATMean = strconv.FormatFloat(float64(s.csatSum)/float64(s.csatN), 'f', 1, 64)
	}
	d.Reasons = s.reasons.top(topN, s.total)
	d.Intents = s.intents.top(topN, s.total)
	d.Closes = s.closes.top(topN, s.total)
	d.ReasonsH = len(d.Reasons)*hbarRowH + 4
	d.IntentsH = len(d.Intents)*hbarRowH + 4
	d.ClosesH = len(d.Closes)*hbarRowH + 4
	d.LowPercent = 100 * float64(s.low) / float64(s.total)
	d.NotLow = s.total - s.low
	d.LowWidth = 660 * float64(s.low) / float64(s.total)
	d.OkX = 30 + d.LowWidth
	d.OkWidth = 660 - d.LowWidth
	if len(s.waits.vals) > 0 {
		d.MedianWait = humanDuration(s.waits.quantile(0.5))
		d.P90Wait = humanDuration(s.waits.quantile(0.9))
	}
	if len(s.durations.vals) > 0 {
		d.MedianDur = humanDuration(s.durations.quantile(0.5))
		d.P90Dur = humanDuration(s.durations.quantile(0.9))
	}
	return d
}

// humanDuration writes milliseconds as "45s", "3m 05s" or "2h 03m".
func humanDuration(ms int64) string {
	sec := (ms + 500) / 1000
	switch {
	case sec < 60:
		return fmt.Sprintf("%ds", sec)
	case sec < 3600:
		return fmt.Sprintf("%dm %02ds", sec/60, sec%60)
	default:
		return fmt.Sprintf("%dh %02dm", sec/3600, (sec%3600)/60)
	}
}
