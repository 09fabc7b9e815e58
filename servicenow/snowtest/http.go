package snowtest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"

	"github.com/handoffhq/handoff/servicenow/recorded"
)

// Fault is an injected failure for requests matching Method and Path.
type Fault struct {
	Method string // "" matches every method
	Path   string // prefix of the URL path; "" matches every path
	Times  int    // how many matching requests it hits (at least 1)

	// Latency delays the request before anything else happens.
	Latency time.Duration
	// Status answers with this status and the error envelope (Message and
	// Detail, defaults by status) instead of handling the request.
	Status     int
	Message    string
	Detail     string
	RetryAfter int // seconds, sent as Retry-After when > 0
	// Drop closes the connection without an answer.
	Drop bool
	// AfterHandler lets the request take effect first and then applies
	// Status or Drop: the answer to a post that did happen is lost.
	AfterHandler bool
	// CommitAfterGone holds the request without an answer until the client
	// gives up (its timeout), then lets it take effect CommitDelay later:
	// an instance that handles a post after the caller stopped waiting.
	CommitAfterGone bool
	CommitDelay     time.Duration
}

type faultState struct {
	Fault
	left int
}

// InjectFault adds f; faults are tried in the order added.
func (in *Instance) InjectFault(f Fault) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.faults = append(in.faults, &faultState{Fault: f, left: max(f.Times, 1)})
}

// ClearFaults removes every fault not yet used up.
func (in *Instance) ClearFaults() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.faults = nil
}

// Requests returns how many requests each route got, keyed by the route
// pattern, e.g. "GET /api/now/connect/conversations/{group}/messages".
func (in *Instance) Requests() map[string]int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return maps.Clone(in.counts)
}

// TotalRequests returns the number of requests served since the last
// ResetRequests.
func (in *Instance) TotalRequests() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.total
}

// ResetRequests zeroes the request counters.
func (in *Instance) ResetRequests() {
	in.mu.Lock()
	defer in.mu.Unlock()
	clear(in.counts)
	in.total = 0
}

func (in *Instance) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth_token.do", in.handleToken)
	in.vaRoutes(mux) // va.go
	api := func(pattern string, h func(w http.ResponseWriter, r *http.Request, user string)) {
		mux.Handle(pattern, in.authenticated(h))
	}
	api("GET /api/now/connect/support/queues", in.connect(in.handleQueues))
	api("POST /api/now/connect/support/queues/{queue}/sessions", in.connect(in.handleOpen))
	api("GET /api/now/connect/support/queues/{queue}/sessions", in.connect(in.handleQueueSessions))
	api("GET /api/now/connect/support/sessions", in.connect(in.handleSessions))
	api("POST /api/now/connect/support/sessions/{group}/leave", in.connect(in.asAgent(in.handleLeave, in.handleAgentLeave)))
	api("POST /api/now/connect/support/sessions/{group}/close", in.connect(in.asAgent(in.handleLeave, in.handleAgentClose)))
	api("GET /api/now/connect/conversations/{group}", in.connect(in.handleConversation))
	api("GET /api/now/connect/conversations/{group}/messages", in.connect(in.handleMessages))
	api("POST /api/now/connect/conversations/{group}/messages", in.connect(in.asAgent(in.handlePost, in.handleAgentPost)))
	in.agentRoutes(api) // agentapi.go
	api("GET /api/now/table/{table}", in.handleTable)
	api("GET /api/now/attachment", in.handleAttachments)                  // attachments.go
	api("GET /api/now/attachment/{sys_id}/file", in.handleAttachmentFile) // attachments.go
	api("/api/now/", func(w http.ResponseWriter, r *http.Request, _ string) {
		writeError(w, http.StatusBadRequest, "Requested URI does not represent any resource", "")
	})
	return mux
}

// ServeHTTP counts the request, applies faults and routes it.
func (in *Instance) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, pattern := in.mux.Handler(r)
	if pattern == "" {
		pattern = "unmatched"
	}
	in.mu.Lock()
	in.counts[pattern]++
	in.total++
	var f *Fault
	for i, fs := range in.faults {
		if (fs.Method == "" || fs.Method == r.Method) && strings.HasPrefix(r.URL.Path, fs.Path) {
			cp := fs.Fault
			f = &cp
			if fs.left--; fs.left <= 0 {
				in.faults = append(in.faults[:i:i], in.faults[i+1:]...)
			}
			break
		}
	}
	in.mu.Unlock()

	if f == nil {
		in.mux.ServeHTTP(w, r)
		return
	}
	if f.CommitAfterGone {
		in.late.Add(1)
		defer in.late.Done()
		body, _ := io.ReadAll(r.Body)
		<-r.Context().Done()
		time.Sleep(f.CommitDelay) // the instance's own slowness, not a test synchronisation
		late := r.Clone(context.WithoutCancel(r.Context()))
		late.Body = io.NopCloser(bytes.NewReader(body))
		in.mux.ServeHTTP(httptest.NewRecorder(), late)
		return
	}
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	var rec *httptest.ResponseRecorder
	if f.AfterHandler {
		rec = httptest.NewRecorder()
		in.mux.ServeHTTP(rec, r)
	}
	switch {
	case f.Drop:
		drop(w)
	case f.Status != 0:
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(f.RetryAfter))
		}
		msg := f.Message
		if msg == "" {
			msg = http.StatusText(f.Status)
		}
		writeError(w, f.Status, msg, f.Detail)
	case rec != nil:
		maps.Copy(w.Header(), rec.Header())
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	default:
		in.mux.ServeHTTP(w, r)
	}
}

// WaitLateCommits waits until every request held by a CommitAfterGone fault
// has taken effect.
func (in *Instance) WaitLateCommits() { in.late.Wait() }

// drop closes the client's connection without answering.
func drop(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	conn.Close()
}

// authenticated checks Basic or Bearer credentials and the rate limit, then
// calls h with the user name.
func (in *Instance) authenticated(h func(w http.ResponseWriter, r *http.Request, user string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, ok := in.authenticate(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="Service-now"`)
			writeError(w, http.StatusUnauthorized, "User Not Authenticated", "Required to provide Auth information")
			return
		}
		if !in.allow(w, r, user) {
			return
		}
		h(w, r, user)
	})
}

func (in *Instance) authenticate(r *http.Request) (string, bool) {
	authz := r.Header.Get("Authorization")
	scheme, cred, _ := strings.Cut(authz, " ")
	in.mu.Lock()
	defer in.mu.Unlock()
	switch strings.ToLower(scheme) {
	case "basic":
		raw, err := base64.StdEncoding.DecodeString(cred)
		if err != nil {
			return "", false
		}
		name, pass, _ := strings.Cut(string(raw), ":")
		u, ok := in.users[name]
		return name, ok && u.Password == pass
	case "bearer":
		t, ok := in.tokens[cred]
		if !ok || !in.now().Before(t.expiry) {
			return "", false
		}
		return t.user, true
	}
	return "", false
}

// allow applies the per-user rate limit (real time, fixed windows). Every
// counted request gets the X-RateLimit headers; a rejected one gets 429 with
// Retry-After and the documented body.
func (in *Instance) allow(w http.ResponseWriter, r *http.Request, user string) bool {
	now := time.Now()
	in.mu.Lock()
	rl := in.opts.RateLimit
	if rl.Limit <= 0 {
		in.mu.Unlock()
		return true
	}
	win := in.windows[user]
	if win == nil || !now.Before(win.start.Add(rl.Window)) {
		win = &window{start: now}
		in.windows[user] = win
	}
	reset := win.start.Add(rl.Window)
	over := win.count >= rl.Limit
	if !over {
		win.count++
	}
	in.mu.Unlock()

	// The headers and the body follow the recorded 429
	// (servicenow/recorded/ratelimit_429.json).
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(rl.Limit))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(int64(math.Ceil(float64(reset.UnixMilli())/1000)), 10))
	h.Set("X-RateLimit-Rule", RateLimitRule)
	if !over {
		return true
	}
	wait := max(int(math.Ceil(reset.Sub(now).Seconds())), 1)
	h.Set("Retry-After", strconv.Itoa(wait))
	api := "REST API"
	if strings.HasPrefix(r.URL.Path, "/api/now/table/") {
		api = "Table API"
	}
	per := "hour"
	if rl.Window != time.Hour {
		per = rl.Window.String()
	}
	writeError(w, http.StatusTooManyRequests, rateLimitMessage,
		fmt.Sprintf("Rate limit of %d requests per %s for %s exceeded", rl.Limit, per, api))
	return false
}

// rateLimitMessage is the message of the recorded 429.
var rateLimitMessage = func() string {
	var b struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(recorded.Load("ratelimit_429.json").Body, &b)
	return b.Error.Message
}()

// connect guards the Connect Support endpoints of an instance without the
// plugin.
func (in *Instance) connect(h func(w http.ResponseWriter, r *http.Request, user string)) func(w http.ResponseWriter, r *http.Request, user string) {
	return func(w http.ResponseWriter, r *http.Request, user string) {
		if in.opts.ConnectDisabled {
			writeError(w, http.StatusBadRequest, "Requested URI does not represent any resource", "")
			return
		}
		h(w, r, user)
	}
}

// writeResult writes {"result": v}.
func writeResult(w http.ResponseWriter, status int, v any) {
	writeJSON(w, status, map[string]any{"result": v})
}

// writeError writes ServiceNow's error envelope; an empty detail is null.
func writeError(w http.ResponseWriter, status int, message, detail string) {
	var d any
	if detail != "" {
		d = detail
	}
	writeJSON(w, status, map[string]any{"error": map[string]any{"message": message, "detail": d}, "status": "failure"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// readJSON decodes a JSON object body; it answers 400 and returns false on
// anything else.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "Unsupported Media Type", "Content-Type "+ct+" is not supported")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "Exception while reading request", "The payload is not valid JSON.")
		return false
	}
	return true
}
