// Package demoweb serves the pages of `handoff demo`: an employee chat page
// that plays Microsoft Teams, an agent console that plays ServiceNow's Connect
// workspace, and a review page. The pages are server-rendered HTML with a
// little vanilla JavaScript, embedded in the binary; nothing is loaded from
// the network.
//
// Every message takes the real path. The employee page posts through a
// teamstest.Channel, which signs each activity with the fake token issuer and
// sends it to the bridge's POST /api/messages; what the employee sees is what
// the bridge sent to the fake Bot Connector. The agent console calls the fake
// ServiceNow instance's HTTP API as an agent user (Basic auth): the Table API
// to read queues and transcripts, the Connect endpoints to accept, reply and
// close.
package demoweb

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/handoffhq/handoff/bridge"
	"github.com/handoffhq/handoff/review"
	"github.com/handoffhq/handoff/servicenow/snowtest"
	"github.com/handoffhq/handoff/teams/teamstest"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Bridge is what the pages read from the running bridge.
type Bridge interface {
	// Conversation returns the last messages stored for the Teams
	// conversation conv over all its sessions, oldest first, and the state of
	// its open session ("" when it has none).
	Conversation(ctx context.Context, conv string) ([]bridge.Message, bridge.State, error)
	// Reviews calls fn for each why-handoff record that started in [from, to),
	// oldest first.
	Reviews(ctx context.Context, from, to time.Time, fn func(bridge.ReviewRecord) error) error
	// Export writes the review records of [from, to) to w in format.
	Export(ctx context.Context, w io.Writer, from, to time.Time, format review.Format) (int, error)
}

// Agent is a ServiceNow agent the console can act as.
type Agent struct {
	Name     string // display name, e.g. "Beth Anglin"
	User     string // user name, e.g. "beth.anglin"
	Password string
}

// Info describes the running demo on the start page.
type Info struct {
	BridgeURL string
	DeskURL   string
	Delivery  string
	Bot       string
	Database  string
	// ReviewInbox is the bridge's review inbox and ReviewToken the token to
	// sign in with ("" when the inbox is off).
	ReviewInbox string
	ReviewToken string
	// SlackURL is the simulated Slack channel's page when the agents work in
	// Slack (demo --desk slack); the ServiceNow console is not linked then.
	SlackURL string
}

// Config configures a Server.
type Config struct {
	Channel   *teamstest.Channel   // posts the employees' activities to the bridge
	Connector *teamstest.Connector // records what the bridge sent to Teams
	Desk      *snowtest.Instance   // the fake instance the agents work in
	Queue     string               // sys_id of the queue agents accept from
	Agents    []Agent              // the first is the console's default
	Bridge    Bridge
	Info      Info
	// Employees are suggested on the start page; the first is the default of
	// the employee page.
	Employees []string
	// PollWait bounds one long-poll. Default 25s.
	PollWait time.Duration
	// HTTPClient calls the fake instance. Default: a client with a 10s timeout.
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// Server serves the demo pages.
type Server struct {
	cfg  Config
	log  *slog.Logger
	tmpl *template.Template
	desk *deskClient

	mu        sync.Mutex
	employees map[string]*employee
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Channel == nil || cfg.Connector == nil:
		return nil, errors.New("demoweb: Channel and Connector are required")
	case cfg.Desk == nil || cfg.Queue == "":
		return nil, errors.New("demoweb: Desk and Queue are required")
	case len(cfg.Agents) == 0:
		return nil, errors.New("demoweb: at least one agent is required")
	case cfg.Bridge == nil:
		return nil, errors.New("demoweb: Bridge is required")
	}
	if len(cfg.Employees) == 0 {
		cfg.Employees = []string{"Megan Bowen", "Alex Wilber"}
	}
	if cfg.PollWait <= 0 {
		cfg.PollWait = 25 * time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	tmpl, err := template.New("").Funcs(template.FuncMap{
		"clock": func(t time.Time) string { return t.Local().Format("15:04") },
	}).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("demoweb: parse templates: %w", err)
	}
	return &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		tmpl:      tmpl,
		desk:      &deskClient{base: cfg.Desk.URL(), hc: cfg.HTTPClient},
		employees: map[string]*employee{},
	}, nil
}

// Handler returns the demo's routes, protected against cross-origin posts.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", s.handleIndex)
	mux.HandleFunc("GET /employee", s.handleEmployee)
	mux.HandleFunc("GET /employee/api/poll", s.handleEmployeePoll)
	mux.HandleFunc("POST /employee/api/send", s.handleEmployeeSend)
	mux.HandleFunc("POST /employee/api/typing", s.handleEmployeeTyping)
	mux.HandleFunc("GET /agent", s.handleAgent)
	mux.HandleFunc("GET /agent/api/state", s.handleAgentState)
	mux.HandleFunc("POST /agent/api/accept", s.handleAgentAccept)
	mux.HandleFunc("POST /agent/api/typing", s.handleAgentTyping)
	mux.HandleFunc("POST /agent/api/say", s.handleAgentSay)
	mux.HandleFunc("POST /agent/api/close", s.handleAgentClose)
	mux.HandleFunc("GET /review", s.handleReview)
	mux.HandleFunc("GET /review/report", s.handleReviewReport)
	mux.HandleFunc("GET /review/export", s.handleReviewExport)
	return securityHeaders(http.NewCrossOriginProtection().Handler(mux))
}

// pageCSP allows only the demo's own scripts and styles.
const pageCSP = "default-src 'self'; img-src 'self' data: http: https:; style-src 'self'; script-src 'self'; " +
	"connect-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'self'"

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", pageCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// index is the start page's data.
type index struct {
	Info      Info
	Employees []string
	Agents    []Agent
}

func (s *Server) handleIndex(w http.ResponseWriter, r *http.Request) {
	s.render(w, "index.html", index{Info: s.cfg.Info, Employees: s.cfg.Employees, Agents: s.cfg.Agents})
}

// render executes a page template into a buffer first, so that a template
// error becomes a 500 rather than half a page.
func (s *Server) render(w http.ResponseWriter, name string, data any) {
	var b strings.Builder
	if err := s.tmpl.ExecuteTemplate(&b, name, data); err != nil {
		s.log.Error("render page", "page", name, "err", err)
		http.Error(w, "cannot render the page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, b.String())
}

// writeJSON answers v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// fail answers an API error as {"error": msg}.
func fail(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// readForm reads a request body that is either JSON (from the pages'
// scripts) or a form (from the pages without JavaScript) into v's fields,
// which are all strings or ints tagged with their form name.
func readForm(r *http.Request, v any) (isJSON bool, err error) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" {
		dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
		if err := dec.Decode(v); err != nil {
			return true, fmt.Errorf("invalid JSON body: %w", err)
		}
		return true, nil
	}
	r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return false, fmt.Errorf("invalid form: %w", err)
	}
	m := map[string]any{}
	for k := range r.PostForm {
		m[k] = r.PostForm.Get(k)
	}
	b, _ := json.Marshal(m)
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("invalid form: %w", err)
	}
	return false, nil
}
