package demoweb

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/review"
)

// reviewDays is the range the review page covers.
const reviewDays = 7

// reviewRange returns the last reviewDays days up to a minute from now.
func reviewRange() (from, to time.Time) {
	to = time.Now().Add(time.Minute)
	return to.AddDate(0, 0, -reviewDays), to
}

// reviewRow is one handoff in the review page's table.
type reviewRow struct {
	Started    time.Time
	Reason     string
	Intent     string
	Confidence string
	Outcome    string
	Wait       string
	Duration   string
	Users      int
	Agents     int
}

// reviewPage is the review page's data.
type reviewPage struct {
	Inbox   string // the review inbox with the handoffs, "" when off
	Token   string
	Days    int
	Rows    []reviewRow
	Error   string
	Formats []reviewFormat
}

type reviewFormat struct {
	Name, Format, What string
}

func (s *Server) handleReview(w http.ResponseWriter, r *http.Request) {
	from, to := reviewRange()
	p := reviewPage{Inbox: s.cfg.Info.ReviewInbox, Token: s.cfg.Info.ReviewToken, Days: reviewDays, Formats: []reviewFormat{
		{"CSV", "csv", "one row per handoff, for spreadsheets"},
		{"JSONL", "jsonl", "one full record per line, for pipelines"},
		{"Rasa NLU", "nlu", "the user utterances before each handoff, as training data to annotate"},
	}}
	err := s.cfg.Bridge.Reviews(r.Context(), from, to, func(rec bridge.ReviewRecord) error {
		row := reviewRow{Started: rec.StartedAt, Reason: rec.Reason, Intent: rec.Intent, Outcome: string(rec.CloseReason),
			Users: rec.UserMessages, Agents: rec.AgentMessages}
		if rec.Intent != "" {
			row.Confidence = fmt.Sprintf("%.2f", rec.Confidence)
		}
		if row.Outcome == "" {
			row.Outcome = "open"
		}
		if rec.WaitMillis > 0 {
			row.Wait = seconds(rec.WaitMillis)
		}
		if !rec.EndedAt.IsZero() {
			row.Duration = seconds(rec.DurationMilli)
		}
		p.Rows = append(p.Rows, row)
		return nil
	})
	if err != nil {
		p.Error = err.Error()
	}
	// Newest first.
	for i, j := 0, len(p.Rows)-1; i < j; i, j = i+1, j-1 {
		p.Rows[i], p.Rows[j] = p.Rows[j], p.Rows[i]
	}
	s.render(w, "review.html", p)
}

func seconds(ms int64) string {
	d := time.Duration(ms) * time.Millisecond
	if d < time.Minute {
		return fmt.Sprintf("%.0f s", d.Seconds())
	}
	return d.Round(time.Second).String()
}

// export renders the review records of the last days in format.
func (s *Server) export(ctx context.Context, format review.Format) ([]byte, error) {
	from, to := reviewRange()
	var b bytes.Buffer
	if _, err := s.cfg.Bridge.Export(ctx, &b, from, to, format); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// handleReviewReport shows the HTML report. It is self-contained (inline CSS
// and SVG, no script), so it gets its own, stricter policy.
func (s *Server) handleReviewReport(w http.ResponseWriter, r *http.Request) {
	b, err := s.export(r.Context(), review.FormatHTML)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'")
	h.Set("Content-Type", review.FormatHTML.ContentType())
	h.Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

// handleReviewExport downloads the records as ?format=csv|jsonl|nlu|html.
func (s *Server) handleReviewExport(w http.ResponseWriter, r *http.Request) {
	f, err := review.ParseFormat(r.FormValue("format"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b, err := s.export(r.Context(), f)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.ContentType())
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="handoff-review-%s%s"`, time.Now().Format("2006-01-02"), f.Ext()))
	h.Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}
