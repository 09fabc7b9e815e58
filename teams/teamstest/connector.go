package teamstest

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Window is a rate limit: at most N requests in any window of length Per.
type Window struct {
	N   int
	Per time.Duration
}

// TeamsLimits are Teams' documented limits for sending to one conversation
// (per bot and thread).
var TeamsLimits = []Window{{7, time.Second}, {8, 2 * time.Second}, {60, 30 * time.Second}}

// TeamsAppLimits is Teams' documented limit for one app in one tenant, over
// all of its conversations.
var TeamsAppLimits = []Window{{50, time.Second}}

// DefaultMaxMessageBytes is the message size Teams accepts: about 100 KB of
// payload encoded in UTF-16.
const DefaultMaxMessageBytes = 100 << 10

// ConnectorConfig configures a Connector.
type ConnectorConfig struct {
	// Issuer validates the bearer token of every request (401 otherwise).
	// Nil accepts requests without a token, like the Agents Playground.
	Issuer *Issuer
	// Limits are enforced per conversation with 429 and a Retry-After.
	// Nil means TeamsLimits; an empty, non-nil slice means none.
	Limits []Window
	// AppLimits are enforced per tenant (the activity's conversation.tenantId)
	// over all conversations, with 429 and a Retry-After. Nil means
	// TeamsAppLimits; an empty, non-nil slice means none.
	AppLimits []Window
	// MaxMessageBytes: a larger payload (UTF-16 bytes) gets 413
	// MessageSizeTooBig. Default DefaultMaxMessageBytes.
	MaxMessageBytes int
}

// Sent is one activity the Connector accepted.
type Sent struct {
	Conversation string
	ID           string // the id the Connector gave it ("" when it answered 202)
	Type         string
	Text         string
	Attachments  []SentAttachment
	// Activity is the whole request body.
	Activity json.RawMessage
	At       time.Time
}

// SentAttachment is an attachment of a Sent activity.
type SentAttachment struct {
	ContentType string          `json:"contentType"`
	ContentURL  string          `json:"contentUrl,omitempty"`
	Content     json.RawMessage `json:"content,omitempty"`
}

// Request is one request the Connector answered, accepted or not.
type Request struct {
	Conversation string
	Status       int
	Bytes        int // payload size in UTF-16 bytes
	At           time.Time
}

// Fault is an answer the Connector gives instead of accepting.
type Fault struct {
	Status     int
	Code       string // error.code of the {"error":{"code","message"}} body
	Message    string
	RetryAfter string // Retry-After header, if any
	// Body, when set, is written as the response body instead (as is).
	Body string
	// Skip lets this many matching requests through before the fault starts.
	Skip int
	// Times is how many requests get the fault; 0 means until ClearFaults.
	Times int
}

// Connector fakes the Bot Connector service of Teams (smba.trafficmanager.net).
// It serves POST {ServiceURL}v3/conversations/{id}/activities (send), PUT
// …/activities/{activityId} (update), POST …/v3/conversations for a new
// post in a channel (channel.go) and GET …/members/{userId}.
type Connector struct {
	// URL is the base URL of the server.
	URL string

	cfg ConnectorConfig
	srv *httptest.Server

	mu        sync.Mutex
	changed   chan struct{} // closed and replaced whenever sent grows
	sent      []Sent
	requests  []Request
	accepted  map[string][]time.Time // per conversation, for the limits
	tenants   map[string][]time.Time // per tenant, for the app limits
	faults    map[string][]*Fault    // per conversation; "" = any
	throttle  map[string]time.Time   // conversation → 429 until
	blocked   map[string]bool
	latency   time.Duration
	noContent bool
	nextID    int
	updates   []Sent            // accepted PUTs, in order
	members   map[string]Member // by user id
	memberLag time.Duration     // extra delay of member lookups
}

// Member is a conversation member the members API knows. Its JSON is the
// documented TeamsChannelAccount (see testdata/member.json).
type Member struct {
	ID                string `json:"id"`
	Name              string `json:"name,omitempty"`
	AADObjectID       string `json:"aadObjectId,omitempty"`
	GivenName         string `json:"givenName,omitempty"`
	Surname           string `json:"surname,omitempty"`
	Email             string `json:"email,omitempty"`
	UserPrincipalName string `json:"userPrincipalName,omitempty"`
	TenantID          string `json:"tenantId,omitempty"`
	UserRole          string `json:"userRole,omitempty"`
}

//go:embed testdata/member_not_found.json
var memberNotFound string

// AddMember makes the members API know m (in every conversation).
func (c *Connector) AddMember(m Member) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.members[m.ID] = m
}

// SetMemberLatency delays member lookups by d (on top of SetLatency).
func (c *Connector) SetMemberLatency(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.memberLag = d
}

// Updates returns the activity updates (PUT) accepted for conv ("" = all),
// in order; ID is the updated activity's id.
func (c *Connector) Updates(conv string) []Sent {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Sent
	for _, s := range c.updates {
		if conv == "" || s.Conversation == conv {
			out = append(out, s)
		}
	}
	return out
}

// NewConnector starts a Connector. Close it when done.
func NewConnector(cfg ConnectorConfig) *Connector {
	if cfg.Limits == nil {
		cfg.Limits = TeamsLimits
	}
	if cfg.AppLimits == nil {
		cfg.AppLimits = TeamsAppLimits
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	c := &Connector{
		cfg:      cfg,
		changed:  make(chan struct{}),
		accepted: map[string][]time.Time{},
		tenants:  map[string][]time.Time{},
		faults:   map[string][]*Fault{},
		throttle: map[string]time.Time{},
		blocked:  map[string]bool{},
		members:  map[string]Member{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v3/conversations/{conv}/activities", c.serveActivity)
	mux.HandleFunc("POST /teams/v3/conversations/{conv}/activities", c.serveActivity)
	mux.HandleFunc("PUT /v3/conversations/{conv}/activities/{id}", c.serveActivity)
	mux.HandleFunc("PUT /teams/v3/conversations/{conv}/activities/{id}", c.serveActivity)
	mux.HandleFunc("POST /v3/conversations", c.serveCreateConversation)
	mux.HandleFunc("POST /teams/v3/conversations", c.serveCreateConversation)
	mux.HandleFunc("GET /v3/conversations/{conv}/members/{member}", c.serveMember)
	mux.HandleFunc("GET /teams/v3/conversations/{conv}/members/{member}", c.serveMember)
	c.srv = httptest.NewServer(mux)
	c.URL = c.srv.URL
	return c
}

// Close shuts the server down.
func (c *Connector) Close() { c.srv.Close() }

// ServiceURL is the serviceUrl activities should carry: URL + "/teams/", with
// a path and a trailing slash like Teams' own.
func (c *Connector) ServiceURL() string { return c.URL + "/teams/" }

// SetLatency delays every answer by d.
func (c *Connector) SetLatency(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.latency = d
}

// SetMaxMessageBytes changes the size above which 413 MessageSizeTooBig is
// answered.
func (c *Connector) SetMaxMessageBytes(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cfg.MaxMessageBytes = n
}

// SetNoContent makes the Connector answer 202 without a body (and so without
// an activity id), as Teams sometimes does.
func (c *Connector) SetNoContent(on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.noContent = on
}

// Fail queues f for requests to conv ("" = any conversation).
func (c *Connector) Fail(conv string, f Fault) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.faults[conv] = append(c.faults[conv], &f)
}

// ClearFaults drops every queued fault, throttle and block.
func (c *Connector) ClearFaults() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.faults)
	clear(c.throttle)
	clear(c.blocked)
}

// ThrottleFor answers every request to conv ("" = any) with 429 and a
// Retry-After (whole seconds, rounded up) until d has passed.
func (c *Connector) ThrottleFor(conv string, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.throttle[conv] = time.Now().Add(d)
}

// Block makes conv answer 403 with subCode MessageWritesBlocked, as Teams
// does once the user blocked or uninstalled the bot.
func (c *Connector) Block(conv string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.blocked[conv] = true
}

// Unblock undoes Block.
func (c *Connector) Unblock(conv string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.blocked, conv)
}

// Sent returns the activities accepted for conv, in order ("" = all).
func (c *Connector) Sent(conv string) []Sent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sentLocked(conv)
}

func (c *Connector) sentLocked(conv string) []Sent {
	var out []Sent
	for _, s := range c.sent {
		if conv == "" || s.Conversation == conv {
			out = append(out, s)
		}
	}
	return out
}

// Requests returns every request answered for conv ("" = all), in order.
func (c *Connector) Requests(conv string) []Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Request
	for _, r := range c.requests {
		if conv == "" || r.Conversation == conv {
			out = append(out, r)
		}
	}
	return out
}

// CountStatus returns how many requests to conv ("" = all) got status.
func (c *Connector) CountStatus(conv string, status int) int {
	n := 0
	for _, r := range c.Requests(conv) {
		if r.Status == status {
			n++
		}
	}
	return n
}

// Messages returns the message activities accepted for conv ("" = all), in
// order: Sent without the typing indicators.
func (c *Connector) Messages(conv string) []Sent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.messagesLocked(conv)
}

func (c *Connector) messagesLocked(conv string) []Sent {
	var out []Sent
	for _, s := range c.sentLocked(conv) {
		if s.Type == "message" {
			out = append(out, s)
		}
	}
	return out
}

// WaitFor waits until at least n message activities (typing indicators are
// not counted) were accepted for conv ("" = any) and returns them, or
// returns what there is and an error after timeout.
func (c *Connector) WaitFor(conv string, n int, timeout time.Duration) ([]Sent, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		got := c.messagesLocked(conv)
		changed := c.changed
		c.mu.Unlock()
		if len(got) >= n {
			return got, nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			return got, fmt.Errorf("teamstest: %d of %d activities for conversation %q after %s", len(got), n, conv, timeout)
		}
	}
}

// Reset forgets everything recorded (not the configuration or faults).
func (c *Connector) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent, c.requests = nil, nil
	clear(c.accepted)
}

func (c *Connector) serveActivity(w http.ResponseWriter, r *http.Request) {
	conv := r.PathValue("conv")
	c.mu.Lock()
	latency := c.latency
	c.mu.Unlock()
	if latency > 0 {
		select {
		case <-time.After(latency):
		case <-r.Context().Done():
			return
		}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		return
	}
	size := utf16Bytes(body)
	status, hdr, resp := c.decide(r, conv, body, size)
	for k, v := range hdr {
		w.Header().Set(k, v)
	}
	w.Header().Set("X-Correlating-OperationId", randomString(8))
	switch resp := resp.(type) {
	case nil:
		w.WriteHeader(status)
	case rawBody:
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, string(resp))
	default:
		writeJSON(w, status, resp)
	}
}

// rawBody is an error body written as it is.
type rawBody string

// decide records the request and chooses the answer.
func (c *Connector) decide(r *http.Request, conv string, body []byte, size int) (int, map[string]string, any) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	status, hdr, resp := c.answer(r, conv, body, size, now)
	c.requests = append(c.requests, Request{Conversation: conv, Status: status, Bytes: size, At: now})
	return status, hdr, resp
}

func errorBody(code, msg string) map[string]any {
	return map[string]any{"error": map[string]any{"code": code, "message": msg}}
}

// answer picks the response; called with c.mu held.
func (c *Connector) answer(r *http.Request, conv string, body []byte, size int, now time.Time) (int, map[string]string, any) {
	if iss := c.cfg.Issuer; iss != nil {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if _, valid := iss.ValidAccessToken(tok); !ok || !valid {
			return http.StatusUnauthorized, nil, errorBody("Unauthorized", "Authorization has been denied for this request.")
		}
	}
	var act struct {
		Type        string           `json:"type"`
		Text        string           `json:"text"`
		Attachments []SentAttachment `json:"attachments"`
		Conv        struct {
			TenantID string `json:"tenantId"`
		} `json:"conversation"`
	}
	if err := json.Unmarshal(body, &act); err != nil || act.Type == "" {
		return http.StatusBadRequest, nil, errorBody("BadArgument", "Invalid activity.")
	}
	if act.Type == "message" && strings.TrimSpace(act.Text) == "" && len(act.Attachments) == 0 {
		return http.StatusBadRequest, nil, errorBody("BadArgument", "Activity must have text or attachments.")
	}
	for _, key := range []string{conv, ""} {
		if f := c.nextFault(key); f != nil {
			hdr := map[string]string{}
			if f.RetryAfter != "" {
				hdr["Retry-After"] = f.RetryAfter
			}
			if f.Body != "" {
				return f.Status, hdr, rawBody(f.Body)
			}
			return f.Status, hdr, errorBody(f.Code, f.Message)
		}
	}
	if c.blocked[conv] {
		return http.StatusForbidden, nil, map[string]any{
			"error": map[string]any{
				"code":    "MessageWritesBlocked",
				"message": "Thread is blocked from message writes.",
			},
		}
	}
	for _, key := range []string{conv, ""} {
		if until, ok := c.throttle[key]; ok && now.Before(until) {
			secs := int(math.Ceil(until.Sub(now).Seconds()))
			return http.StatusTooManyRequests, map[string]string{"Retry-After": strconv.Itoa(secs)}, errorBody("TooManyRequests", "Too many requests.")
		}
	}
	if size > c.cfg.MaxMessageBytes {
		return http.StatusRequestEntityTooLarge, nil, errorBody("MessageSizeTooBig", fmt.Sprintf("Message size %d exceeds the limit of %d.", size, c.cfg.MaxMessageBytes))
	}
	var limited bool
	var wait time.Duration
	c.accepted[conv], wait, limited = overLimit(c.accepted[conv], c.cfg.Limits, now)
	if limited {
		secs := max(1, int(math.Ceil(wait.Seconds())))
		return http.StatusTooManyRequests, map[string]string{"Retry-After": strconv.Itoa(secs)}, errorBody("TooManyRequests", "Too many requests to this conversation.")
	}
	tenant := act.Conv.TenantID
	c.tenants[tenant], wait, limited = overLimit(c.tenants[tenant], c.cfg.AppLimits, now)
	if limited {
		secs := max(1, int(math.Ceil(wait.Seconds())))
		return http.StatusTooManyRequests, map[string]string{"Retry-After": strconv.Itoa(secs)}, errorBody("TooManyRequests", "Too many requests for this app in this tenant.")
	}
	c.accepted[conv] = append(c.accepted[conv], now)
	c.tenants[tenant] = append(c.tenants[tenant], now)
	if r.Method == http.MethodPut {
		return c.update(conv, r.PathValue("id"), act.Type, act.Text, act.Attachments, body, now)
	}
	c.nextID++
	s := Sent{
		Conversation: conv,
		Type:         act.Type,
		Text:         act.Text,
		Attachments:  act.Attachments,
		Activity:     json.RawMessage(slices.Clone(body)),
		At:           now,
	}
	status, resp := http.StatusCreated, any(nil)
	if c.noContent || act.Type == "typing" {
		status, resp = http.StatusAccepted, nil
	} else {
		s.ID = fmt.Sprintf("1%012d", c.nextID)
		resp = map[string]string{"id": s.ID}
	}
	c.sent = append(c.sent, s)
	close(c.changed)
	c.changed = make(chan struct{})
	return status, nil, resp
}

// update replaces a sent activity (Update Activity): 200 with its id, or 404
// when the conversation has no activity of that id. Called with c.mu held.
func (c *Connector) update(conv, id, typ, text string, atts []SentAttachment, body []byte, now time.Time) (int, map[string]string, any) {
	for i := range c.sent {
		if c.sent[i].Conversation != conv || c.sent[i].ID != id || id == "" {
			continue
		}
		s := Sent{Conversation: conv, ID: id, Type: typ, Text: text, Attachments: atts, Activity: json.RawMessage(slices.Clone(body)), At: now}
		c.sent[i].Text, c.sent[i].Attachments, c.sent[i].Activity = text, atts, s.Activity
		c.updates = append(c.updates, s)
		close(c.changed)
		c.changed = make(chan struct{})
		return http.StatusOK, nil, map[string]string{"id": id}
	}
	return http.StatusNotFound, nil, errorBody("ActivityNotFoundInConversation", "The activity was not found in the conversation.")
}

// serveMember answers GET …/conversations/{conv}/members/{member}: the
// member's TeamsChannelAccount, or 404 (testdata/member_not_found.json).
func (c *Connector) serveMember(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	delay := c.latency + c.memberLag
	iss := c.cfg.Issuer
	m, ok := c.members[r.PathValue("member")]
	c.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	status := http.StatusOK
	defer func() {
		c.mu.Lock()
		c.requests = append(c.requests, Request{Conversation: r.PathValue("conv"), Status: status, At: time.Now()})
		c.mu.Unlock()
	}()
	if iss != nil {
		tok, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if _, valid := iss.ValidAccessToken(tok); !found || !valid {
			status = http.StatusUnauthorized
			writeJSON(w, status, errorBody("Unauthorized", "Authorization has been denied for this request."))
			return
		}
	}
	if !ok {
		status = http.StatusNotFound
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, memberNotFound)
		return
	}
	writeJSON(w, status, m)
}

func (c *Connector) nextFault(key string) *Fault {
	q := c.faults[key]
	if len(q) == 0 {
		return nil
	}
	f := q[0]
	if f.Skip > 0 {
		f.Skip--
		return nil
	}
	if f.Times > 0 {
		f.Times--
		if f.Times == 0 {
			c.faults[key] = q[1:]
		}
	}
	return f
}

// overLimit reports whether accepting one more request at now, after the
// accepted times, would break one of limits, and how long until it would
// not. It returns times without those no window can see any more.
func overLimit(times []time.Time, limits []Window, now time.Time) ([]time.Time, time.Duration, bool) {
	var longest time.Duration
	for _, w := range limits {
		longest = max(longest, w.Per)
	}
	cut := 0
	for cut < len(times) && now.Sub(times[cut]) >= longest {
		cut++
	}
	times = times[cut:]
	var wait time.Duration
	limited := false
	for _, w := range limits {
		in := 0
		for _, t := range times {
			if now.Sub(t) < w.Per {
				in++
			}
		}
		if in >= w.N {
			limited = true
			// The oldest request inside the window leaves it at t+Per.
			oldest := times[len(times)-in]
			wait = max(wait, oldest.Add(w.Per).Sub(now))
		}
	}
	return times, wait, limited
}

func utf16Bytes(b []byte) int {
	n := 0
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		b = b[size:]
		if r >= 0x10000 {
			n += 4
		} else {
			n += 2
		}
	}
	return n
}
