package review

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/handoffhq/handoff/bridge"
)

// InboxStore is what the review inbox reads and writes. bridge/store.Store
// implements it.
type InboxStore interface {
	Cases
	// ReviewCase returns one handoff's record and annotation; ErrNotFound if
	// there is no record.
	ReviewCase(ctx context.Context, id bridge.SessionID) (bridge.ReviewCase, error)
	// Annotate replaces the annotation and appends the audit entries in one
	// transaction; ErrNotFound if the handoff has no record.
	Annotate(ctx context.Context, a bridge.Annotation, audit ...bridge.AuditEntry) error
	// ReviewAudit returns the handoff's audit log, oldest first.
	ReviewAudit(ctx context.Context, id bridge.SessionID) ([]bridge.AuditEntry, error)
}

// InboxConfig configures the review inbox.
type InboxConfig struct {
	// Token is the shared secret reviewers sign in with (HANDOFF_REVIEW_TOKEN).
	// Required.
	Token string
	// Path is where the inbox is mounted; "" means DefaultInboxPath.
	Path string
	// PageSize is how many handoffs a list page shows; 0 means 50.
	PageSize int
	// Exporter redacts texts and writes the training exports; nil means the
	// default exporter.
	Exporter *Exporter
	Logger   *slog.Logger
}

// Inbox is the review inbox: a server-rendered web page, mounted at
// /review, where the bot team lists handoffs with filters, reads the bot part
// and the human part of each apart, annotates the intent of each user
// utterance of the bot part, names the action the bot should have taken,
// marks it reviewed and adds a note. Every change is audit-logged with the
// reviewer's name and the time. The exports of reviewed annotations (Rasa NLU
// and test stories) are downloads of the inbox.
//
// Sign-in: a form takes the shared token and the reviewer's name and sets an
// HttpOnly, SameSite=Strict cookie holding the name and an HMAC of it under
// the token (so changing the token signs everybody out). Scripts may send
// "Authorization: Bearer <token>" instead (the audit then names
// "X-Review-User", or "api"). Changes are POSTs whose Origin, when sent, must
// be the inbox's own host.
type Inbox struct {
	store    InboxStore
	token    []byte
	path     string
	pageSize int
	exp      *Exporter
	log      *slog.Logger
	mux      *http.ServeMux
}

//go:embed inbox.html.tmpl
var inboxHTML string

var inboxTmpl = template.Must(template.New("inbox").Funcs(template.FuncMap{
	"conf": formatConfidence,
	"when": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"short":   func(s string) string { return truncate(s, 90) },
	"ratings": func() []string { return []string{"1", "2", "3", "4", "5"} },
}).Parse(inboxHTML))

const cookieName = "handoff_review"

// NewInbox returns the inbox. It fails without a token.
func NewInbox(store InboxStore, cfg InboxConfig) (*Inbox, error) {
	if cfg.Token == "" {
		return nil, errors.New("review: inbox: a token is required (HANDOFF_REVIEW_TOKEN)")
	}
	in := &Inbox{store: store, token: []byte(cfg.Token), path: strings.TrimSuffix(cfg.Path, "/"), pageSize: cfg.PageSize,
		exp: cfg.Exporter, log: cfg.Logger}
	if in.path == "" {
		in.path = DefaultInboxPath
	}
	if in.pageSize <= 0 {
		in.pageSize = 50
	}
	if in.exp == nil {
		in.exp = defaultExporter
	}
	if in.log == nil {
		in.log = slog.New(slog.DiscardHandler)
	}
	m := http.NewServeMux()
	m.HandleFunc("GET "+in.path, in.list)
	m.HandleFunc("POST "+in.path+"/login", in.login)
	m.HandleFunc("POST "+in.path+"/logout", in.logout)
	m.HandleFunc("GET "+in.path+"/h/{id}", in.detail)
	m.HandleFunc("POST "+in.path+"/h/{id}", in.annotate)
	m.HandleFunc("GET "+in.path+"/training/nlu.yml", in.exportNLU)
	m.HandleFunc("GET "+in.path+"/training/test_handoffs.yml", in.exportStories)
	in.mux = m
	return in, nil
}

// Patterns are the mux patterns the inbox serves (mount each on the
// service's mux with the Inbox as handler).
func (in *Inbox) Patterns() []string {
	return []string{"GET " + in.path, "POST " + in.path + "/login", "POST " + in.path + "/logout",
		"GET " + in.path + "/h/{id}", "POST " + in.path + "/h/{id}",
		"GET " + in.path + "/training/nlu.yml", "GET " + in.path + "/training/test_handoffs.yml"}
}

func (in *Inbox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'")
	in.mux.ServeHTTP(w, r)
}

// sign is the cookie's MAC of name under the token.
func (in *Inbox) sign(name string) string {
	m := hmac.New(sha256.New, in.token)
	m.Write([]byte("handoff review inbox\x00" + name))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// reviewer returns who is asking, or ok false when they are not signed in.
func (in *Inbox) reviewer(r *http.Request) (string, bool) {
	if tok, ok := bearer(r); ok {
		got, want := sha256.Sum256([]byte(tok)), sha256.Sum256(in.token)
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			return "", false
		}
		name := strings.TrimSpace(r.Header.Get("X-Review-User"))
		if !validReviewer(name) {
			name = "api"
		}
		return name, true
	}
	c, err := r.Cookie(cookieName)
	if err != nil {
		return "", false
	}
	raw, mac, ok := strings.Cut(c.Value, ".")
	if !ok {
		return "", false
	}
	nameB, err := base64.RawURLEncoding.DecodeString(raw)
	if err != nil {
		return "", false
	}
	name := string(nameB)
	if subtle.ConstantTimeCompare([]byte(mac), []byte(in.sign(name))) != 1 || !validReviewer(name) {
		return "", false
	}
	return name, true
}

func validReviewer(name string) bool {
	if name == "" || utf8.RuneCountInString(name) > 64 || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// sameOrigin refuses cross-site form posts: an Origin header, when sent, must
// name this host.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" || o == "null" && r.Header.Get("Sec-Fetch-Site") == "same-origin" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

type loginPage struct {
	Path, Error, Next string
}

func (in *Inbox) showLogin(w http.ResponseWriter, r *http.Request, status int, msg string) {
	next := r.URL.RequestURI()
	if r.Method != http.MethodGet {
		next = in.path
	}
	in.render(w, status, "login", loginPage{Path: in.path, Error: msg, Next: next})
}

func (in *Inbox) render(w http.ResponseWriter, status int, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := inboxTmpl.ExecuteTemplate(w, name, data); err != nil {
		in.log.Error("review: inbox page failed", "page", name, "err", err)
	}
}

func (in *Inbox) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		http.Error(w, "forbidden: cross-site request", http.StatusForbidden)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	name := strings.TrimSpace(r.PostForm.Get("name"))
	got, want := sha256.Sum256([]byte(r.PostForm.Get("token"))), sha256.Sum256(in.token)
	switch {
	case subtle.ConstantTimeCompare(got[:], want[:]) != 1:
		in.log.Warn("review: inbox sign-in refused: wrong token", "remote_addr", r.RemoteAddr)
		in.showLogin(w, r, http.StatusUnauthorized, "That token is not the review token (HANDOFF_REVIEW_TOKEN).")
		return
	case !validReviewer(name):
		in.showLogin(w, r, http.StatusBadRequest, "Give your name (1 to 64 characters): it is written in the audit log of every change you make.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: base64.RawURLEncoding.EncodeToString([]byte(name)) + "." + in.sign(name),
		Path: in.path, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, MaxAge: 12 * 3600})
	in.log.Info("review: inbox sign-in", "reviewer", name)
	next := r.PostForm.Get("next")
	if !strings.HasPrefix(next, in.path) || strings.HasPrefix(next, "//") {
		next = in.path
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (in *Inbox) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: in.path, MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, in.path, http.StatusSeeOther)
}

// filters are the list's query parameters, parsed and echoed back.
type filters struct {
	From, To, Reason, Intent, Below, Topic, CSAT, Reviewed string
	Page                                                   int
}

func (in *Inbox) parseFilters(q url.Values) (filters, bridge.ReviewQuery, error) {
	f := filters{From: q.Get("from"), To: q.Get("to"), Reason: q.Get("reason"), Intent: q.Get("intent"),
		Below: q.Get("below"), Topic: strings.TrimSpace(q.Get("topic")), CSAT: q.Get("csat"), Reviewed: q.Get("reviewed"), Page: 1}
	var bq bridge.ReviewQuery
	loc := in.exp.loc
	var err error
	if f.From != "" {
		if bq.From, err = parseBound("from", f.From, loc, false); err != nil {
			return f, bq, err
		}
	}
	if f.To != "" {
		if bq.To, err = parseBound("to", f.To, loc, true); err != nil {
			return f, bq, err
		}
	}
	if !bq.From.IsZero() && !bq.To.IsZero() && !bq.From.Before(bq.To) {
		return f, bq, errors.New("review: from must be before to")
	}
	bq.Reason, bq.Intent, bq.Topic = f.Reason, f.Intent, f.Topic
	if f.Below != "" {
		v, err := strconv.ParseFloat(f.Below, 64)
		if err != nil || !(v > 0 && v <= 1) { // NaN too
			return f, bq, fmt.Errorf("review: bad below %q: want a confidence in (0, 1], e.g. 0.5", f.Below)
		}
		bq.ConfidenceBelow = v
	}
	if f.CSAT != "" {
		v, err := strconv.Atoi(f.CSAT)
		if err != nil || v < 1 || v > 5 {
			return f, bq, fmt.Errorf("review: bad csat %q: want a rating from 1 to 5 (handoffs rated at most that)", f.CSAT)
		}
		bq.CSATMax = v
	}
	switch f.Reviewed {
	case "":
	case "yes", "no":
		v := f.Reviewed == "yes"
		bq.Reviewed = &v
	default:
		return f, bq, fmt.Errorf("review: bad reviewed %q: want yes or no", f.Reviewed)
	}
	if p := q.Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 100_000 {
			return f, bq, fmt.Errorf("review: bad page %q: want a page number from 1", p)
		}
		f.Page = n
	}
	bq.Newest = true
	bq.Limit = in.pageSize + 1 // one more tells whether a next page exists
	bq.Offset = (f.Page - 1) * in.pageSize
	return f, bq, nil
}

// query returns the filters as a query string, with page set to p.
func (f filters) query(p int) string {
	v := url.Values{}
	for k, s := range map[string]string{"from": f.From, "to": f.To, "reason": f.Reason, "intent": f.Intent,
		"below": f.Below, "topic": f.Topic, "csat": f.CSAT, "reviewed": f.Reviewed} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if p > 1 {
		v.Set("page", strconv.Itoa(p))
	}
	return v.Encode()
}

type listRow struct {
	ID, Started, Reason, Intent, Confidence, Topic, Outcome, Utterance string
	CSAT                                                               int
	Reviewed                                                           bool
}

type listPage struct {
	Path, Reviewer, Error string
	F                     filters
	Rows                  []listRow
	Prev, Next            string
	Export                string // query of the training downloads
}

func (in *Inbox) list(w http.ResponseWriter, r *http.Request) {
	who, ok := in.reviewer(r)
	if !ok {
		in.showLogin(w, r, http.StatusUnauthorized, "")
		return
	}
	f, q, err := in.parseFilters(r.URL.Query())
	page := listPage{Path: in.path, Reviewer: who, F: f}
	if err != nil {
		page.Error = strings.TrimPrefix(err.Error(), "review: ")
		in.render(w, http.StatusBadRequest, "list", page)
		return
	}
	err = in.store.ReviewCases(r.Context(), q, func(c bridge.ReviewCase) error {
		rec := c.Record
		row := listRow{ID: string(rec.SessionID), Started: rec.StartedAt.In(in.exp.loc).Format("2006-01-02 15:04"),
			Reason: rec.Reason, Intent: rec.Intent, Confidence: formatConfidence(rec.Confidence),
			Outcome: string(rec.CloseReason), Utterance: in.exp.redact(lastUserUtterance(rec.BotTurns)), Reviewed: c.Annotation.Reviewed}
		if row.Outcome == "" {
			row.Outcome = "open"
		}
		if rec.Verdict != nil {
			row.Topic = rec.Verdict.Topic
		}
		if rec.CSAT != nil {
			row.CSAT = rec.CSAT.Rating
		}
		page.Rows = append(page.Rows, row)
		return nil
	})
	if err != nil {
		in.log.Error("review: inbox list failed", "err", err)
		http.Error(w, "the review store failed; try again", http.StatusInternalServerError)
		return
	}
	if len(page.Rows) > in.pageSize {
		page.Rows = page.Rows[:in.pageSize]
		page.Next = f.query(f.Page + 1)
	}
	if f.Page > 1 {
		page.Prev = f.query(f.Page - 1)
		if page.Prev == "" {
			page.Prev = "page=1"
		}
	}
	ev := url.Values{}
	if f.From != "" {
		ev.Set("from", f.From)
	}
	if f.To != "" {
		ev.Set("to", f.To)
	}
	page.Export = ev.Encode()
	in.render(w, http.StatusOK, "list", page)
}

type turnView struct {
	Index                      int
	Role, Author, Text, Intent string
	Confidence                 string
	Annotated                  string
}

type detailPage struct {
	Path, Reviewer, Error, Saved string
	C                            bridge.ReviewCase
	BotPart, HumanPart           []turnView
	Audit                        []bridge.AuditEntry
	Back                         string
}

func (in *Inbox) detail(w http.ResponseWriter, r *http.Request) {
	who, ok := in.reviewer(r)
	if !ok {
		in.showLogin(w, r, http.StatusUnauthorized, "")
		return
	}
	in.showDetail(w, r, who, http.StatusOK, "", r.URL.Query().Get("saved"))
}

func (in *Inbox) showDetail(w http.ResponseWriter, r *http.Request, who string, status int, msg, saved string) {
	id := bridge.SessionID(r.PathValue("id"))
	c, err := in.store.ReviewCase(r.Context(), id)
	if errors.Is(err, bridge.ErrNotFound) {
		http.Error(w, fmt.Sprintf("no handoff %q in the review (it may have passed the retention period)", id), http.StatusNotFound)
		return
	} else if err != nil {
		in.log.Error("review: inbox case failed", "session_id", id, "err", err)
		http.Error(w, "the review store failed; try again", http.StatusInternalServerError)
		return
	}
	audit, err := in.store.ReviewAudit(r.Context(), id)
	if err != nil {
		in.log.Error("review: inbox audit failed", "session_id", id, "err", err)
		http.Error(w, "the review store failed; try again", http.StatusInternalServerError)
		return
	}
	p := detailPage{Path: in.path, Reviewer: who, Error: msg, Saved: saved, C: c, Audit: audit, Back: in.path}
	for i, t := range c.Record.BotTurns {
		v := turnView{Index: i, Role: t.Role, Author: t.Author, Text: in.exp.redact(t.Text), Intent: t.Intent, Annotated: c.Annotation.Intents[i]}
		if t.Role == "user" && t.Intent != "" {
			v.Confidence = formatConfidence(t.Confidence)
		}
		p.BotPart = append(p.BotPart, v)
	}
	for i, t := range c.Record.HumanTurns {
		p.HumanPart = append(p.HumanPart, turnView{Index: i, Role: t.Role, Author: t.Author, Text: in.exp.redact(t.Text)})
	}
	in.render(w, status, "detail", p)
}

const maxNoteRunes = 2000

// annotate stores the whole form: an intent per user turn of the bot part
// (empty clears it), the expected action, the note and the reviewed mark.
// Bad input is answered with 400 and the form again, and nothing is stored.
func (in *Inbox) annotate(w http.ResponseWriter, r *http.Request) {
	who, ok := in.reviewer(r)
	if !ok {
		in.showLogin(w, r, http.StatusUnauthorized, "Sign in again to save.")
		return
	}
	if !sameOrigin(r) {
		http.Error(w, "forbidden: cross-site request", http.StatusForbidden)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	id := bridge.SessionID(r.PathValue("id"))
	c, err := in.store.ReviewCase(r.Context(), id)
	if errors.Is(err, bridge.ErrNotFound) {
		http.Error(w, fmt.Sprintf("no handoff %q in the review", id), http.StatusNotFound)
		return
	} else if err != nil {
		in.log.Error("review: inbox case failed", "session_id", id, "err", err)
		http.Error(w, "the review store failed; try again", http.StatusInternalServerError)
		return
	}
	old := c.Annotation
	next := bridge.Annotation{SessionID: id, Intents: map[int]string{}, UpdatedBy: who, UpdatedAt: time.Now().UTC()}
	var problems []string
	for k, vs := range r.PostForm {
		idx, ok := strings.CutPrefix(k, "intent_")
		if !ok {
			continue
		}
		i, err := strconv.Atoi(idx)
		if err != nil || i < 0 || i >= len(c.Record.BotTurns) || c.Record.BotTurns[i].Role != "user" {
			problems = append(problems, fmt.Sprintf("%s is not a user turn of the bot part", k))
			continue
		}
		v := strings.TrimSpace(vs[0])
		switch {
		case v == "":
		case !ValidIntentName(v):
			problems = append(problems, fmt.Sprintf("intent %q of turn %d: use letters, digits, _ and - (one / for a retrieval intent)", v, i))
		default:
			next.Intents[i] = v
		}
	}
	next.ExpectedAction = strings.TrimSpace(r.PostForm.Get("expected_action"))
	if next.ExpectedAction != "" && !ValidActionName(next.ExpectedAction) {
		problems = append(problems, fmt.Sprintf("action %q: use letters, digits, _ and -, e.g. utter_mfa_reset", next.ExpectedAction))
	}
	next.Note = strings.TrimSpace(r.PostForm.Get("note"))
	if utf8.RuneCountInString(next.Note) > maxNoteRunes || !utf8.ValidString(next.Note) {
		problems = append(problems, fmt.Sprintf("the note must be valid text of at most %d characters", maxNoteRunes))
	}
	next.Reviewed = r.PostForm.Get("reviewed") == "on" || r.PostForm.Get("reviewed") == "true"
	if len(problems) > 0 {
		slices.Sort(problems)
		in.showDetail(w, r, who, http.StatusBadRequest, "Nothing was saved: "+strings.Join(problems, "; ")+".", "")
		return
	}
	audit := diffAudit(old, next, who)
	if len(audit) == 0 {
		http.Redirect(w, r, in.path+"/h/"+url.PathEscape(string(id))+"?saved=unchanged", http.StatusSeeOther)
		return
	}
	if len(next.Intents) == 0 {
		next.Intents = nil
	}
	if err := in.store.Annotate(r.Context(), next, audit...); err != nil {
		in.log.Error("review: annotation not stored", "session_id", id, "err", err)
		http.Error(w, "the annotation could not be stored; try again", http.StatusInternalServerError)
		return
	}
	in.log.Info("review: annotation stored", "session_id", id, "reviewer", who, "changes", len(audit))
	http.Redirect(w, r, in.path+"/h/"+url.PathEscape(string(id))+"?saved=1", http.StatusSeeOther)
}

// diffAudit lists what changed from old to next, one entry per change.
func diffAudit(old, next bridge.Annotation, who string) []bridge.AuditEntry {
	var out []bridge.AuditEntry
	add := func(action, detail string) {
		out = append(out, bridge.AuditEntry{SessionID: next.SessionID, Actor: who, Action: action, Detail: detail, At: next.UpdatedAt})
	}
	keys := slices.Sorted(maps.Keys(next.Intents))
	for k := range old.Intents {
		if _, ok := next.Intents[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range slices.Compact(keys) {
		if old.Intents[k] != next.Intents[k] {
			add("intent", fmt.Sprintf("turn %d: %q → %q", k, old.Intents[k], next.Intents[k]))
		}
	}
	if old.ExpectedAction != next.ExpectedAction {
		add("expected_action", fmt.Sprintf("%q → %q", old.ExpectedAction, next.ExpectedAction))
	}
	if old.Note != next.Note {
		add("note", fmt.Sprintf("%d → %d characters", utf8.RuneCountInString(old.Note), utf8.RuneCountInString(next.Note)))
	}
	if old.Reviewed != next.Reviewed {
		add("reviewed", strconv.FormatBool(next.Reviewed))
	}
	return out
}

func (in *Inbox) trainingOptions(w http.ResponseWriter, r *http.Request) (TrainingOptions, bool) {
	q := r.URL.Query()
	var o TrainingOptions
	var err error
	if s := q.Get("from"); s != "" {
		if o.From, err = parseBound("from", s, in.exp.loc, false); err != nil {
			badRequest(w, err)
			return o, false
		}
	}
	if s := q.Get("to"); s != "" {
		if o.To, err = parseBound("to", s, in.exp.loc, true); err != nil {
			badRequest(w, err)
			return o, false
		}
	}
	switch q.Get("all") {
	case "", "0", "false":
	case "1", "true":
		o.Unreviewed = true
	default:
		badRequest(w, fmt.Errorf("bad all %q: want 1 to include handoffs not marked reviewed", q.Get("all")))
		return o, false
	}
	return o, true
}

func (in *Inbox) download(w http.ResponseWriter, r *http.Request, name string, export func(context.Context, *countingWriter, TrainingOptions) (int, error)) {
	if _, ok := in.reviewer(r); !ok {
		w.Header().Set("WWW-Authenticate", authRealm)
		http.Error(w, "unauthorized: sign in to the review inbox or send Authorization: Bearer <token>", http.StatusUnauthorized)
		return
	}
	o, ok := in.trainingOptions(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	cw := &countingWriter{w: w}
	n, err := export(r.Context(), cw, o)
	if err != nil {
		in.log.Error("review: training export failed", "file", name, "err", err)
		if cw.n > 0 {
			panic(http.ErrAbortHandler)
		}
		w.Header().Del("Content-Disposition")
		http.Error(w, "export failed", http.StatusInternalServerError)
		return
	}
	in.log.Info("review: training export served", "file", name, "items", n, "bytes", cw.n)
}

func (in *Inbox) exportNLU(w http.ResponseWriter, r *http.Request) {
	in.download(w, r, "nlu.yml", func(ctx context.Context, cw *countingWriter, o TrainingOptions) (int, error) {
		return in.exp.ExportAnnotatedNLU(ctx, cw, in.store, o)
	})
}

func (in *Inbox) exportStories(w http.ResponseWriter, r *http.Request) {
	in.download(w, r, "test_handoffs.yml", func(ctx context.Context, cw *countingWriter, o TrainingOptions) (int, error) {
		return in.exp.ExportTestStories(ctx, cw, in.store, o)
	})
}
