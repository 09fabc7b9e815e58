package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/handoffhq/handoff/bridge/store"
	"github.com/handoffhq/handoff/review"
)

func runReview(ctx context.Context, e env, args []string) int {
	if len(args) == 0 || args[0] != "export" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			fmt.Fprintln(e.stdout, "handoff review export: write why-handoff records of a time range.\n\nRun 'handoff review export -h' for its flags.")
			return exitOK
		}
		fmt.Fprintln(e.stderr, "handoff review: expects 'export'; run 'handoff review export -h'")
		return exitUsage
	}
	return runReviewExport(ctx, e, args[1:])
}

func runReviewExport(ctx context.Context, e env, args []string) int {
	fs := newFlagSet(e, "review export", "write the why-handoff records of a time range from HANDOFF_DATABASE_URL.\n\n"+
		"Examples:\n  handoff review export --last 7d --format html --out report.html\n"+
		"  handoff review export --from 2026-11-09 --to 2026-11-15 --format nlu --out nlu.yml\n\n"+
		"Dates are read in HANDOFF_REVIEW_TIMEZONE; a --to date includes that whole day.\n"+
		"Redaction follows HANDOFF_REVIEW_REDACT and HANDOFF_REVIEW_PATTERNS.", false)
	from := fs.String("from", "", "start date (YYYY-MM-DD or RFC 3339)")
	to := fs.String("to", "", "end date (YYYY-MM-DD, inclusive, or RFC 3339, exclusive); default now")
	last := fs.String("last", "", "instead of --from/--to: a span ending now, such as 7d or 36h")
	format := fs.String("format", "csv", "csv, jsonl, nlu (Rasa NLU YAML) or html")
	out := fs.String("out", "-", "output file, written atomically; - for standard output")
	if code, done := parseFlags(fs, e, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "handoff review export: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	cfg, warnings, code := loadConfig(e)
	printWarnings(e.stderr, warnings)
	if cfg == nil {
		return code
	}
	f, err := review.ParseFormat(*format)
	if err != nil {
		fmt.Fprintf(e.stderr, "handoff review export: --format: %v\n", err)
		return exitUsage
	}
	loc, _ := time.LoadLocation(cfg.ReviewTimezone)
	if *from == "" && *last == "" {
		fmt.Fprintln(e.stderr, "handoff review export: give --from (and optionally --to), or --last such as 7d")
		return exitUsage
	}
	start, end, err := review.ParseRange(*from, *to, *last, time.Now().In(loc))
	if err != nil {
		fmt.Fprintf(e.stderr, "handoff review export: %v\n", err)
		return exitUsage
	}
	log := newLogger(e.stderr, cfg.LogFormat, cfg.LogLevel)
	exp, err := review.NewExporter(review.ExportConfig{DisableRedaction: !cfg.ReviewRedact, ExtraPatterns: cfg.ReviewPatterns,
		LowConfidence: cfg.ReviewLowConfidence, Location: loc}, log)
	if err != nil {
		fmt.Fprintf(e.stderr, "handoff review export: %v\n", err)
		return exitUsage
	}
	st, err := store.Open(ctx, cfg.DatabaseURL, log)
	if err != nil {
		fmt.Fprintf(e.stderr, "handoff review export: open database %s: %v\n", redactURL(cfg.DatabaseURL), err)
		return exitFail
	}
	defer st.Close()
	if ok, reason, err := st.SchemaCurrent(ctx); err != nil || !ok {
		fmt.Fprintf(e.stderr, "handoff review export: database schema not current (%s%v); run 'handoff migrate up' first\n", reason, errOrEmpty(err))
		return exitFail
	}
	write := func(w io.Writer) error {
		n, err := exp.Export(ctx, w, st, start, end, f)
		if err == nil {
			fmt.Fprintf(e.stderr, "handoff review export: %d handoffs from %s to %s as %s\n", n,
				start.Format(time.RFC3339), end.Format(time.RFC3339), f)
		}
		return err
	}
	if *out == "-" {
		err = write(e.stdout)
	} else {
		err = review.WriteFileAtomic(*out, 0o640, write)
		if err == nil {
			fmt.Fprintf(e.stderr, "handoff review export: wrote %s\n", *out)
		}
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "handoff review export: %v\n", err)
		return exitFail
	}
	return exitOK
}

func errOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return strings.TrimSpace(err.Error())
}
