package review

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

func export(t *testing.T, e *Exporter, src Source, from, to time.Time, f Format) ([]byte, int) {
	t.Helper()
	var buf bytes.Buffer
	n, err := e.Export(context.Background(), &buf, src, from, to, f)
	if err != nil {
		t.Fatalf("Export %s: %v", f, err)
	}
	return buf.Bytes(), n
}

func TestExportGolden(t *testing.T) {
	for _, f := range Formats {
		t.Run(string(f), func(t *testing.T) {
			src := &memSource{records: fixtureRecords()}
			got, n := export(t, testExporter(t, ExportConfig{}), src, weekFrom, weekTo, f)
			if n != 5 {
				t.Errorf("n = %d, want the 5 records of the week", n)
			}
			golden(t, "week"+f.Ext(), got)
			checkValid(t, f, got, 5)
		})
	}
}

func TestExportEmptyWeek(t *testing.T) {
	for _, f := range Formats {
		t.Run(string(f), func(t *testing.T) {
			src := &memSource{records: fixtureRecords()}
			from, to := weekFrom.AddDate(0, 0, 14), weekTo.AddDate(0, 0, 14)
			got, n := export(t, testExporter(t, ExportConfig{}), src, from, to, f)
			if n != 0 {
				t.Errorf("n = %d, want 0", n)
			}
			golden(t, "empty"+f.Ext(), got)
			checkValid(t, f, got, 0)
		})
	}
}

// checkValid checks that out is a valid file of format f with records rows.
func checkValid(t *testing.T, f Format, out []byte, records int) {
	t.Helper()
	switch f {
	case FormatCSV:
		rows, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
		if err != nil {
			t.Fatalf("CSV does not parse: %v", err)
		}
		if len(rows) != records+1 || !reflect.DeepEqual(rows[0], CSVHeader) {
			t.Errorf("CSV has %d rows (header %q), want a header and %d rows", len(rows), rows[0], records)
		}
	case FormatJSONL:
		sc := bufio.NewScanner(bytes.NewReader(out))
		sc.Buffer(nil, 1<<20)
		lines := 0
		for sc.Scan() {
			var r bridge.ReviewRecord
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("line %d: %v", lines+1, err)
			}
			lines++
		}
		if lines != records {
			t.Errorf("%d JSON lines, want %d", lines, records)
		}
	case FormatNLU:
		checkRasaNLU(t, out)
	case FormatHTML:
		s := string(out)
		if !strings.HasPrefix(s, "<!DOCTYPE html>") || !strings.HasSuffix(strings.TrimSpace(s), "</html>") {
			t.Error("not a whole HTML document")
		}
		if empty := strings.Contains(s, "No handoffs in this range."); empty != (records == 0) {
			t.Errorf("\"no handoffs\" shown = %v with %d records", empty, records)
		}
		// User text may mention a URL (escaped, as text); no tag may point at one.
		if m := regexp.MustCompile(`<[^>]*(https?:)?//`).FindString(s); m != "" {
			t.Errorf("HTML is not self-contained: a tag points elsewhere: %q", m)
		}
		for _, bad := range []string{"<script", "<img", "<link", "<iframe", `src="`, `href="`, "url(", "@import"} {
			if strings.Contains(s, bad) {
				t.Errorf("HTML is not self-contained: contains %q", bad)
			}
		}
	}
}

func TestExportCSV(t *testing.T) {
	src := &memSource{records: fixtureRecords()}
	out, _ := export(t, testExporter(t, ExportConfig{}), src, weekFrom, weekTo, FormatCSV)
	rows, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := func(row []string, name string) string {
		for i, h := range CSVHeader {
			if h == name {
				return row[i]
			}
		}
		t.Fatalf("no column %s", name)
		return ""
	}
	tests := []struct {
		row          int
		column, want string
	}{
		{1, "session_id", "s-001"},
		{1, "started_at", "2026-11-09T08:15:00Z"},
		{1, "wait_seconds", "95"},
		{1, "duration_seconds", "840.5"},
		{1, "runner_up_confidence", "0.021"},
		{1, "last_user_utterance", "I want to talk to a human"},
		{2, "last_user_utterance", "my card [card] was charged twice for the license"},
		{3, "queue", "'=cmd|' /C calc'!A0"},                                      // formula injection defused
		{3, "last_user_utterance", `'=HYPERLINK("http://evil.example","click")`}, // idem
		{3, "ended_at", ""}, {3, "close_reason", ""}, {3, "wait_seconds", ""},    // still open
		{4, "intent", ""}, {4, "reason", "<img src=x onerror=alert(1)>"},
	}
	for _, tt := range tests {
		if got := col(rows[tt.row], tt.column); got != tt.want {
			t.Errorf("row %d %s = %q, want %q", tt.row, tt.column, got, tt.want)
		}
	}
}

func TestCSVCell(t *testing.T) {
	for in, want := range map[string]string{
		"=1+1": "'=1+1", "+49": "'+49", "-2": "'-2", "@SUM(A1)": "'@SUM(A1)", "\t=x": "'\t=x",
		"  =x": "'  =x", "plain": "plain", "": "", "a=b": "a=b", "\xff": "\uFFFD",
	} {
		if got := csvCell(in); got != want {
			t.Errorf("csvCell(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestExportRedactsAgain(t *testing.T) {
	pii := []string{"jane.doe@contoso.com", "+49 30 1234567", "4111 1111 1111 1111"}
	for _, f := range []Format{FormatCSV, FormatJSONL, FormatNLU, FormatHTML} {
		t.Run(string(f), func(t *testing.T) {
			src := &memSource{records: fixtureRecords()}
			out, _ := export(t, testExporter(t, ExportConfig{}), src, weekFrom, weekTo, f)
			for _, p := range pii {
				if bytes.Contains(out, []byte(p)) {
					t.Errorf("%s export contains %q", f, p)
				}
			}
			// Disabled: exported as stored.
			e, err := NewExporter(ExportConfig{DisableRedaction: true}, nil)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := export(t, e, src, weekFrom, weekTo, f)
			if f != FormatCSV && !bytes.Contains(raw, []byte("jane.doe@contoso.com")) {
				t.Errorf("redaction disabled, yet the e-mail is gone")
			}
		})
	}
}

func TestExporterRedactionDisabledWarnsOnce(t *testing.T) {
	var buf bytes.Buffer
	e, err := NewExporter(ExportConfig{DisableRedaction: true}, slog.New(slog.NewTextHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		export(t, e, &memSource{records: fixtureRecords()}, weekFrom, weekTo, FormatJSONL)
	}
	if n := strings.Count(buf.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings, want 1", n)
	}
}

func TestExportDoesNotMutateSource(t *testing.T) {
	recs := fixtureRecords()
	src := &memSource{records: recs}
	for _, f := range Formats {
		export(t, testExporter(t, ExportConfig{}), src, weekFrom, weekTo, f)
	}
	if !reflect.DeepEqual(recs, fixtureRecords()) {
		t.Error("an export changed the source's records")
	}
}

func TestExportHTMLEscapes(t *testing.T) {
	out, _ := export(t, testExporter(t, ExportConfig{}), &memSource{records: fixtureRecords()}, weekFrom, weekTo, FormatHTML)
	if bytes.Contains(out, []byte("<img")) {
		t.Error("HTML contains an unescaped <img> from a reason")
	}
	if !bytes.Contains(out, []byte("&lt;img src=x onerror=alert(1)&gt;")) {
		t.Error("the escaped reason is missing")
	}
}

func TestExportHTMLAggregates(t *testing.T) {
	out, _ := export(t, testExporter(t, ExportConfig{LowConfidence: 0.9}), &memSource{records: fixtureRecords()}, weekFrom, weekTo, FormatHTML)
	for _, want := range []string{
		"<b>5</b><span>handoffs (4 ended, 1 still open)</span>",
		"<b>1m 35s</b><span>median wait for an agent (p90 3m 30s), 3 answered</span>",
		"<b>17m 00s</b><span>median duration (p90 20m 00s), ended sessions</span>", // (14m 00.5s + 20m) / 2
		"2 of 5 handoffs (40.0 %) were triggered while the bot's latest intent had a confidence below 0.9.",
		"<title>Mon 2026-11-09: 1</title>",
		"<title>Tue 2026-11-10: 2</title>",
		"<title>Sun 2026-11-15: 1</title>",
		"Ended without any agent message: 1 of 4.",
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func TestExportErrors(t *testing.T) {
	boom := errors.New("boom")
	e := testExporter(t, ExportConfig{})
	t.Run("source error", func(t *testing.T) {
		for _, f := range Formats {
			var buf bytes.Buffer
			_, err := e.Export(context.Background(), &buf, &memSource{records: fixtureRecords(), err: boom}, weekFrom, weekTo, f)
			if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "review: export "+string(f)) {
				t.Errorf("%s: error = %v, want boom wrapped with review: export", f, err)
			}
			if buf.Len() != 0 {
				t.Errorf("%s: %d bytes written on a failed export", f, buf.Len())
			}
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := e.Export(ctx, &bytes.Buffer{}, &memSource{records: fixtureRecords()}, weekFrom, weekTo, FormatCSV)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error = %v, want context.Canceled", err)
		}
	})
	t.Run("bad range", func(t *testing.T) {
		_, err := e.Export(context.Background(), &bytes.Buffer{}, &memSource{}, weekTo, weekFrom, FormatCSV)
		if err == nil || !strings.Contains(err.Error(), "before it starts") {
			t.Errorf("error = %v", err)
		}
	})
	t.Run("bad format", func(t *testing.T) {
		if _, err := e.Export(context.Background(), &bytes.Buffer{}, &memSource{}, weekFrom, weekTo, "xml"); err == nil {
			t.Error("no error for format xml")
		}
	})
}

func TestNewExporterErrors(t *testing.T) {
	for name, cfg := range map[string]ExportConfig{
		"threshold above 1":  {LowConfidence: 1.5},
		"negative threshold": {LowConfidence: -0.1},
		"negative cap":       {MaxExamples: -1},
		"bad pattern":        {ExtraPatterns: []string{"["}},
	} {
		if _, err := NewExporter(cfg, nil); err == nil || !strings.HasPrefix(err.Error(), "review: ") {
			t.Errorf("%s: error = %v", name, err)
		}
	}
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{
		"csv": FormatCSV, "CSV": FormatCSV, "jsonl": FormatJSONL, "ndjson": FormatJSONL,
		"nlu": FormatNLU, "rasa": FormatNLU, "yml": FormatNLU, "yaml": FormatNLU, " html ": FormatHTML,
	} {
		got, err := ParseFormat(in)
		if err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "xml", "json"} {
		if _, err := ParseFormat(in); err == nil {
			t.Errorf("ParseFormat(%q): no error", in)
		}
	}
	for f, ext := range map[Format]string{FormatCSV: ".csv", FormatJSONL: ".jsonl", FormatNLU: ".nlu.yml", FormatHTML: ".html"} {
		if f.Ext() != ext {
			t.Errorf("%s.Ext() = %q, want %q", f, f.Ext(), ext)
		}
	}
}

func TestExportLongRangeTimeline(t *testing.T) {
	// A year of handoffs is charted per week; ten years per month.
	for _, tt := range []struct {
		span time.Duration
		unit string
	}{
		{365 * 24 * time.Hour, "Handoffs per week"},
		{10 * 365 * 24 * time.Hour, "Handoffs per month"},
		{40 * 365 * 24 * time.Hour, "Handoffs per year"},
	} {
		src := genSource{n: 500, from: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), span: tt.span}
		out, n := export(t, testExporter(t, ExportConfig{}), src, time.Time{}, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), FormatHTML)
		if n != 500 || !bytes.Contains(out, []byte(tt.unit)) {
			t.Errorf("span %v: n = %d, %q missing", tt.span, n, tt.unit)
		}
	}
}
