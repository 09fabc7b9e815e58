package review

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// Source streams review records. bridge.Store implements it.
type Source interface {
	// Reviews calls fn once per record whose handoff started in [from, to),
	// oldest first, without loading all of them. An error from fn stops the
	// stream and is returned unchanged.
	Reviews(ctx context.Context, from, to time.Time, fn func(bridge.ReviewRecord) error) error
}

// Defaults of ExportConfig.
const (
	DefaultLowConfidence        = 0.5
	DefaultMaxIntents           = 500
	DefaultMaxExamplesPerIntent = 200
	DefaultMaxExamples          = 20_000
	DefaultMaxUtteranceRunes    = 300
)

// ExportConfig configures an Exporter. The zero value is usable: redaction on,
// UTC, the default thresholds and caps.
type ExportConfig struct {
	// DisableRedaction exports transcripts as stored. Redaction is on unless
	// this is set (records are redacted when recorded; exports redact again so
	// that records stored before a rule existed are covered too). NewExporter
	// logs a warning when it is set.
	DisableRedaction bool
	// ExtraPatterns are regular expressions redacted as [redacted].
	ExtraPatterns []string

	// LowConfidence is the HTML report's threshold: a handoff whose trigger
	// intent had a confidence below it counts as a low-confidence trigger.
	// 0 means DefaultLowConfidence.
	LowConfidence float64
	// Location is the time zone of the HTML report's days and of the dates
	// ParseRange reads in Handler. nil means UTC.
	Location *time.Location
	// Now is the clock (the report's "generated" line, Handler's last=).
	// nil means time.Now.
	Now func() time.Time

	// The NLU export keeps at most MaxExamples utterances in all, at most
	// MaxExamplesPerIntent per intent and at most MaxIntents intents; it skips
	// utterances longer than MaxUtteranceRunes. Everything beyond is counted
	// in the file's header comment. These caps bound the export's memory
	// whatever the range (the defaults keep it under about 25 MiB in the worst
	// case). 0 means the default.
	MaxIntents           int
	MaxExamplesPerIntent int
	MaxExamples          int
	MaxUtteranceRunes    int
}

// Exporter writes review records in the export formats. It is safe for
// concurrent use.
type Exporter struct {
	redactor *Redactor // nil: redaction disabled
	lowConf  float64
	loc      *time.Location
	now      func() time.Time
	nluCaps  nluCaps
	logger   *slog.Logger
}

// NewExporter checks cfg and returns an Exporter. It returns an error if an
// extra pattern does not compile or a threshold or cap is out of range.
func NewExporter(cfg ExportConfig, logger *slog.Logger) (*Exporter, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	e := &Exporter{
		lowConf: cfg.LowConfidence,
		loc:     cfg.Location,
		now:     cfg.Now,
		logger:  logger,
		nluCaps: nluCaps{
			intents:   cfg.MaxIntents,
			perIntent: cfg.MaxExamplesPerIntent,
			total:     cfg.MaxExamples,
			runes:     cfg.MaxUtteranceRunes,
		},
	}
	if e.lowConf < 0 || e.lowConf > 1 || math.IsNaN(e.lowConf) {
		return nil, fmt.Errorf("review: exporter: low-confidence threshold must be in [0, 1], got %v", cfg.LowConfidence)
	}
	if e.lowConf == 0 {
		e.lowConf = DefaultLowConfidence
	}
	for _, c := range []struct {
		name string
		v    *int
		def  int
	}{
		{"max intents", &e.nluCaps.intents, DefaultMaxIntents},
		{"max examples per intent", &e.nluCaps.perIntent, DefaultMaxExamplesPerIntent},
		{"max examples", &e.nluCaps.total, DefaultMaxExamples},
		{"max utterance runes", &e.nluCaps.runes, DefaultMaxUtteranceRunes},
	} {
		if *c.v < 0 {
			return nil, fmt.Errorf("review: exporter: %s must be >= 0, got %d", c.name, *c.v)
		}
		if *c.v == 0 {
			*c.v = c.def
		}
	}
	if e.loc == nil {
		e.loc = time.UTC
	}
	if e.now == nil {
		e.now = time.Now
	}
	if cfg.DisableRedaction {
		logger.Warn("review: PII redaction of exports is disabled; exported transcripts are written as stored")
		return e, nil
	}
	red, err := NewRedactor(cfg.ExtraPatterns...)
	if err != nil {
		return nil, err
	}
	e.redactor = red
	return e, nil
}

// defaultExporter backs the package-level Export.
var defaultExporter = func() *Exporter {
	e, err := NewExporter(ExportConfig{}, nil)
	if err != nil {
		panic(err) // the zero config is valid
	}
	return e
}()

// Export writes the records of [from, to) from src to w in format, using an
// Exporter with the default configuration (redaction on, UTC). See
// Exporter.Export.
func Export(ctx context.Context, w io.Writer, src Source, from, to time.Time, format Format) (n int, err error) {
	return defaultExporter.Export(ctx, w, src, from, to, format)
}

// Export streams the records whose handoff started in [from, to) from src and
// writes them to w in format. It returns how many records it read. An empty
// range still produces a valid file: a CSV header, an empty JSONL file, an NLU
// file with "nlu: []", an HTML page saying there were no handoffs.
//
//   - CSV: a header (CSVHeader) and one row per handoff. Times are RFC 3339 in
//     UTC; confidences are rounded to 4 decimals; wait_seconds and
//     duration_seconds have millisecond precision; ended_at and the outcome
//     counts are empty while a session is open. last_user_utterance is the
//     last user turn of the bot stretch, redacted. A cell starting with
//     = + - @ (a spreadsheet formula) gets a leading apostrophe.
//   - JSONL: one bridge.ReviewRecord per line, turn texts redacted again, null
//     turn lists written as [].
//   - NLU: Rasa training data (version "3.1") of the user utterances of the
//     bot turns — never the human turns — grouped under their predicted
//     intent, de-duplicated, sanitised and capped (see ExportConfig); a
//     header comment gives the range and what was skipped.
//   - HTML: a self-contained report (inline CSS and SVG, no script, no
//     external asset, all data escaped): handoffs per day (per week, month or
//     year for long ranges), top reasons, top intents before the handoff, the
//     share of low-confidence triggers, median and p90 wait and duration, and
//     how sessions ended.
//
// CSV and JSONL are written while the records stream by; NLU and HTML collect
// bounded aggregates first and write when the stream ends. On a source error
// nothing is written for NLU and HTML, and at most what was flushed before
// the error for CSV and JSONL (nothing for a small export).
func (e *Exporter) Export(ctx context.Context, w io.Writer, src Source, from, to time.Time, format Format) (n int, err error) {
	if !format.valid() {
		return 0, fmt.Errorf("review: export: unknown format %q", format)
	}
	if to.Before(from) {
		return 0, fmt.Errorf("review: export %s: range ends (%s) before it starts (%s)", format,
			to.Format(time.RFC3339), from.Format(time.RFC3339))
	}
	switch format {
	case FormatCSV:
		n, err = e.exportCSV(ctx, w, src, from, to)
	case FormatJSONL:
		n, err = e.exportJSONL(ctx, w, src, from, to)
	case FormatNLU:
		n, err = e.exportNLU(ctx, w, src, from, to)
	case FormatHTML:
		n, err = e.exportHTML(ctx, w, src, from, to)
	}
	if err != nil {
		return n, fmt.Errorf("review: export %s: %w", format, err)
	}
	return n, nil
}

// stream runs src.Reviews, counting the records and checking ctx between them.
func stream(ctx context.Context, src Source, from, to time.Time, fn func(bridge.ReviewRecord) error) (int, error) {
	n := 0
	err := src.Reviews(ctx, from, to, func(r bridge.ReviewRecord) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		n++
		return fn(r)
	})
	if err == nil {
		err = ctx.Err()
	}
	return n, err
}

func (e *Exporter) redact(s string) string {
	if e.redactor == nil {
		return s
	}
	return e.redactor.Redact(s)
}

// CSVHeader is the CSV export's header row; the columns keep this order.
var CSVHeader = []string{
	"session_id", "started_at", "ended_at", "tenant", "user_key",
	"reason", "queue", "intent", "confidence", "runner_up_intent", "runner_up_confidence",
	"active_loop", "trigger_action",
	"close_reason", "wait_seconds", "duration_seconds", "user_messages", "agent_messages",
	"agent_chat_id", "last_user_utterance",
}

// exportCSV writes one row per record. Times are RFC 3339 in UTC; wait and
// duration are seconds with millisecond precision; the outcome columns are
// empty for a session that has not ended. Cells that a spreadsheet would run as
// a formula get a leading apostrophe.
func (e *Exporter) exportCSV(ctx context.Context, w io.Writer, src Source, from, to time.Time) (int, error) {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return 0, err
	}
	row := make([]string, len(CSVHeader))
	n, err := stream(ctx, src, from, to, func(r bridge.ReviewRecord) error {
		ended := !r.EndedAt.IsZero()
		row = row[:0]
		row = append(row,
			string(r.SessionID),
			r.StartedAt.UTC().Format(time.RFC3339),
			ifEnded(ended, r.EndedAt.UTC().Format(time.RFC3339)),
			r.TenantID,
			r.UserKey,
			r.Reason,
			r.Queue,
			r.Intent,
			formatConfidence(r.Confidence),
			r.RunnerUpIntent,
			formatConfidence(r.RunnerUpConfidence),
			r.ActiveLoop,
			r.TriggerAction,
			string(r.CloseReason),
			ifEnded(ended, formatSeconds(r.WaitMillis)),
			ifEnded(ended, formatSeconds(r.DurationMilli)),
			ifEnded(ended, strconv.Itoa(r.UserMessages)),
			ifEnded(ended, strconv.Itoa(r.AgentMessages)),
			string(r.AgentChatID),
			e.redact(lastUserUtterance(r.BotTurns)),
		)
		for i := range row {
			row[i] = csvCell(row[i])
		}
		return cw.Write(row)
	})
	if err != nil {
		return n, err // unflushed: a failed export writes as little as it can
	}
	cw.Flush()
	return n, cw.Error()
}

func ifEnded(ended bool, s string) string {
	if !ended {
		return ""
	}
	return s
}

// csvCell defuses formula injection: a cell whose first non-blank character
// is = + - @ (or a tab or carriage return) gets a leading apostrophe, which
// spreadsheets show as text. Invalid UTF-8 is replaced.
func csvCell(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	t := strings.TrimLeft(s, " ")
	if t != "" && strings.IndexByte("=+-@\t\r", t[0]) >= 0 {
		return "'" + s
	}
	return s
}

// formatConfidence rounds to 4 decimals and drops trailing zeros.
func formatConfidence(f float64) string {
	f = finite(f)
	return strconv.FormatFloat(math.Round(f*1e4)/1e4, 'f', -1, 64)
}

func formatSeconds(ms int64) string {
	return strconv.FormatFloat(float64(ms)/1000, 'f', -1, 64)
}

// lastUserUtterance returns the text of the last user turn.
func lastUserUtterance(turns []bridge.Turn) string {
	for i := len(turns) - 1; i >= 0; i-- {
		if turns[i].Role == "user" {
			return turns[i].Text
		}
	}
	return ""
}

// exportJSONL writes one record per line (the JSON form of
// bridge.ReviewRecord), with transcripts redacted again and null turn lists
// written as [].
func (e *Exporter) exportJSONL(ctx context.Context, w io.Writer, src Source, from, to time.Time) (int, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	n, err := stream(ctx, src, from, to, func(r bridge.ReviewRecord) error {
		r.Confidence = finite(r.Confidence)
		r.RunnerUpConfidence = finite(r.RunnerUpConfidence)
		r.BotTurns = e.redactTurns(r.BotTurns)
		r.HumanTurns = e.redactTurns(r.HumanTurns)
		return enc.Encode(r)
	})
	if err != nil {
		return n, err
	}
	return n, bw.Flush()
}

// redactTurns returns turns redacted (never nil). The source's slice is never
// written: it is copied on the first turn that changes, and returned as is
// when nothing does (the common case: records are redacted when recorded).
func (e *Exporter) redactTurns(turns []bridge.Turn) []bridge.Turn {
	if turns == nil {
		return []bridge.Turn{}
	}
	out := turns
	for i, t := range turns {
		text, conf := e.redact(t.Text), finite(t.Confidence)
		if text == t.Text && conf == t.Confidence {
			continue
		}
		if &out[0] == &turns[0] {
			out = slices.Clone(turns)
		}
		out[i].Text, out[i].Confidence = text, conf
	}
	return out
}
