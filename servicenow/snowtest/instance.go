package snowtest

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Defaults used when Options leave them empty.
const (
	DefaultUser     = "handoff.bridge"
	DefaultPassword = "bridge-secret"
	DefaultUserName = "Handoff Bridge"
	// DefaultQueue is the sys_id of the default queue, "IT Support".
	DefaultQueue    = "3f5bd2c1db5a1010a4c1f2b3c4d5e6f7"
	DefaultGreeting = "Thank you for contacting support. We are looking into your question now and will be with you shortly."
	// DefaultTokenTTL is the expires_in of OAuth access tokens.
	DefaultTokenTTL = 1799 * time.Second
	// RateLimitRule is the X-RateLimit-Rule sys_id the fake reports.
	RateLimitRule = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
)

// Errors of the Go API.
var (
	ErrNoChat      = errors.New("snowtest: no such chat")
	ErrChatClosed  = errors.New("snowtest: chat is closed")
	ErrNotAccepted = errors.New("snowtest: chat is not accepted by an agent")
	ErrNotWaiting  = errors.New("snowtest: chat is not waiting")
)

// User is an instance user who can call the REST API.
type User struct {
	UserName string // user_name, what created_by shows
	Password string
	Name     string // display name, what sender_name shows
}

// OAuthClient is an OAuth application registry entry.
type OAuthClient struct {
	ID     string
	Secret string
	// User is the OAuth application user the client_credentials grant acts as
	// ("" refuses that grant).
	User string
}

// Queue is a Connect Support queue (chat_queue).
type Queue struct {
	SysID    string
	Name     string
	Question string
	// InitialAgentResponse is the greeting written as the agent when an agent
	// accepts a chat; "" writes none.
	InitialAgentResponse string
	// NotAvailable makes the queue refuse new chats (403 with a string result).
	NotAvailable bool
}

// RateLimit is a rate-limit rule applied to every user on /api/now.
type RateLimit struct {
	Limit  int           // requests per window; 0 disables the limit
	Window time.Duration // default one hour (ServiceNow's rules are per hour)
}

// Options configures an Instance.
type Options struct {
	// Users who may call the API. Default: DefaultUser / DefaultPassword.
	Users []User
	// OAuthClients registered for /oauth_token.do. Default: none.
	OAuthClients []OAuthClient
	// TokenTTL is the lifetime (expires_in) of access tokens, enforced against
	// the instance clock. Default DefaultTokenTTL.
	TokenTTL time.Duration
	// Queues of the instance. Default: one queue "IT Support" (DefaultQueue)
	// greeting with DefaultGreeting.
	Queues []Queue
	// ConnectDisabled answers every /api/now/connect request with 400
	// "Requested URI does not represent any resource", as an instance without
	// the Connect Support plugin does.
	ConnectDisabled bool
	// RateLimit limits requests per user (rejections answer 429).
	RateLimit RateLimit
	// TableACL decides which Table API rows a user may read (nil: all).
	// Unreadable rows are left out silently after paging, as the instance's
	// ACLs do: a page comes back short while X-Total-Count still counts them.
	TableACL TableACL
	// Now starts the instance clock frozen at this time. Zero: the clock
	// follows real time until SetNow freezes it.
	Now time.Time
}

// Instance is a running fake instance.
type Instance struct {
	srv  *httptest.Server
	mux  *http.ServeMux
	opts Options

	late sync.WaitGroup // requests held by CommitAfterGone faults

	mu       sync.Mutex
	frozen   bool
	fixed    time.Time     // the frozen clock
	offset   time.Duration // added to real time when not frozen
	users    map[string]User
	names    map[string]string // user name → display name (users and agents)
	clients  map[string]OAuthClient
	tokens   map[string]token // access token →
	refresh  map[string]string
	queues   []Queue
	chats    map[string]*chat
	order    []*chat    // chats in creation order
	messages []*Message // every message in creation order (the live_message table)
	seq      int
	faults   []*faultState
	counts   map[string]int
	total    int
	windows  map[string]*window
	version  uint64
	changed  chan struct{}
	out      *outbound // webhooks and VA callbacks (webhook.go, va.go)
}

type token struct {
	user   string
	expiry time.Time
}

type window struct {
	start time.Time
	count int
}

// New starts an instance on a loopback port. Close it when done.
func New(opts Options) *Instance {
	in := newInstance(opts)
	in.srv = httptest.NewServer(in)
	return in
}

func newInstance(opts Options) *Instance {
	if len(opts.Users) == 0 {
		opts.Users = []User{{UserName: DefaultUser, Password: DefaultPassword, Name: DefaultUserName}}
	}
	if len(opts.Queues) == 0 {
		opts.Queues = []Queue{{SysID: DefaultQueue, Name: "IT Support", Question: "How can we help?", InitialAgentResponse: DefaultGreeting}}
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	if opts.RateLimit.Limit > 0 && opts.RateLimit.Window <= 0 {
		opts.RateLimit.Window = time.Hour
	}
	in := &Instance{
		opts:    opts,
		users:   map[string]User{},
		names:   map[string]string{"system": "System"},
		clients: map[string]OAuthClient{},
		tokens:  map[string]token{},
		refresh: map[string]string{},
		queues:  append([]Queue(nil), opts.Queues...),
		chats:   map[string]*chat{},
		counts:  map[string]int{},
		windows: map[string]*window{},
		changed: make(chan struct{}),
		seq:     10000,
	}
	if !opts.Now.IsZero() {
		in.frozen, in.fixed = true, opts.Now
	}
	for _, u := range opts.Users {
		in.users[u.UserName] = u
		in.names[u.UserName] = u.Name
	}
	for _, c := range opts.OAuthClients {
		in.clients[c.ID] = c
	}
	in.mux = in.routes()
	return in
}

// URL is the instance's base URL, e.g. "http://127.0.0.1:41234".
func (in *Instance) URL() string { return in.srv.URL }

// Close stops outgoing deliveries and shuts the server down.
func (in *Instance) Close() {
	in.closeOutbound()
	in.srv.Close()
}

// Handler returns the instance's HTTP handler, for mounting it elsewhere.
func (in *Instance) Handler() http.Handler { return in }

// Now returns the instance clock's time.
func (in *Instance) Now() time.Time {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.now()
}

func (in *Instance) now() time.Time {
	if in.frozen {
		return in.fixed
	}
	return time.Now().Add(in.offset)
}

// SetNow freezes the instance clock at t: messages are stamped t until the
// clock is moved again.
func (in *Instance) SetNow(t time.Time) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.frozen, in.fixed = true, t
}

// Advance moves the instance clock forward by d (frozen or not).
func (in *Instance) Advance(d time.Duration) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.frozen {
		in.fixed = in.fixed.Add(d)
	} else {
		in.offset += d
	}
}

// TableACL reports whether user may read row (column values by name) of
// table through the Table API.
type TableACL func(user, table string, row map[string]string) bool

// SetTableACL replaces the Table API's ACL (nil: every row is readable).
func (in *Instance) SetTableACL(acl TableACL) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.opts.TableACL = acl
}

// SetRateLimit replaces the rate-limit rule (windows restart).
func (in *Instance) SetRateLimit(rl RateLimit) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if rl.Limit > 0 && rl.Window <= 0 {
		rl.Window = time.Hour
	}
	in.opts.RateLimit = rl
	clear(in.windows)
}

// RevokeTokens invalidates every OAuth access token (refresh tokens stay
// valid), so the next API call with one answers 401.
func (in *Instance) RevokeTokens() {
	in.mu.Lock()
	defer in.mu.Unlock()
	clear(in.tokens)
}

// Version is a counter that increases with every change of chats or messages.
func (in *Instance) Version() uint64 {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.version
}

// WaitChange blocks until Version exceeds after (or ctx ends) and returns the
// new version: a long-poll for consoles.
func (in *Instance) WaitChange(ctx context.Context, after uint64) (uint64, error) {
	for {
		in.mu.Lock()
		v, ch := in.version, in.changed
		in.mu.Unlock()
		if v > after {
			return v, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return v, ctx.Err()
		}
	}
}

// touch records a change. Callers hold in.mu.
func (in *Instance) touch() {
	in.version++
	close(in.changed)
	in.changed = make(chan struct{})
}

// newSysID returns a random 32-hex sys_id.
func newSysID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// sysIDOf derives a stable sys_id from a name (user and profile records).
func sysIDOf(kind, name string) string {
	h := sha1.Sum([]byte(kind + ":" + name))
	return hex.EncodeToString(h[:16])
}

// userNameOf turns an agent's display name into a user name:
// "Beth Anglin" → "beth.anglin".
func userNameOf(name string) string {
	return strings.Join(strings.Fields(strings.ToLower(name)), ".")
}

// displayName returns a user's display name (the user name if unknown).
// Callers hold in.mu.
func (in *Instance) displayName(user string) string {
	if n := in.names[user]; n != "" {
		return n
	}
	return user
}
