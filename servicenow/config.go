package servicenow

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/handoffhq/handoff/bridge"
)

// Config configures a Client. The zero values of the optional fields select the
// defaults documented on each field.
type Config struct {
	// InstanceURL is the instance's base URL, e.g. "https://acme.service-now.com".
	InstanceURL string

	// Username and Password are the integration user's credentials: used for
	// Basic auth, or as the resource owner for the OAuth password grant.
	Username string
	Password string
	// OAuth selects OAuth 2.0 bearer tokens instead of Basic auth when set.
	OAuth *OAuth

	// Queue is the sys_id of the default Connect Support queue (chat_queue).
	Queue string
	// BridgeUser is the user name the instance shows as created_by on the
	// bridge's own messages; messages created by it are echoes. Default:
	// Username. Required with the client_credentials grant, whose OAuth
	// application user differs from Username.
	BridgeUser string
	// EndPhrases are the texts (matched case-insensitively anywhere in a
	// non-echo message) that end the chat. Default: DefaultEndPhrases.
	EndPhrases []EndPhrase

	// Timeout bounds each HTTP attempt. Default 30 s.
	Timeout time.Duration
	// MaxRetries is how many times a retryable request is repeated after its
	// first attempt. 0 selects the default (4); a negative value disables retries.
	MaxRetries int
	// RetryWaitMin and RetryWaitMax bound the capped exponential backoff with
	// jitter between retries. Defaults 500 ms and 30 s.
	RetryWaitMin time.Duration
	RetryWaitMax time.Duration
	// CommitWait bounds how long a message post that got no answer (a
	// timeout) is given to show up in the chat before it is posted again: the
	// instance may still commit it after the bridge stopped waiting. The chat
	// is read again with growing pauses meanwhile. Default 10 s.
	CommitWait time.Duration

	// TranscriptTurns, TurnChars and FirstMessageBytes bound the first message
	// of a chat: at most TranscriptTurns recent turns (default 12), each cut to
	// TurnChars characters (default 400), the whole message at most
	// FirstMessageBytes bytes (default 4000).
	TranscriptTurns   int
	TurnChars         int
	FirstMessageBytes int

	// BatchChats is how many chats one Table API request of PollMany covers
	// (default and maximum 100, which keeps URLs short). BatchLimit is its
	// sysparm_limit (default 500); a chunk returning that many rows is paged
	// with sysparm_offset.
	BatchChats int
	BatchLimit int
	// LiveStateEvery is how often PollMany reads the queue entry of a chat an
	// agent is working on: every LiveStateEvery-th poll (default 10), spread
	// over the polls by chat. Chats waiting in the queue, or whose state is
	// not known yet, are read on every poll. A live chat's end is also seen in
	// its messages (the desk's end notice), so only an end without a notice
	// waits up to LiveStateEvery polls. 1 reads every state on every poll.
	LiveStateEvery int
	// MaxPages bounds the pages of 30 one Poll reads (default 200).
	MaxPages int
	// LastMessageHint makes Poll read GET /api/now/connect/conversations/{group}
	// (the queue entry and last_message in one request) and skip the message
	// pages while the chat is open and last_message is not newer than the
	// cursor: a quiet chat then costs one request per poll instead of two.
	// When last_message is at the cursor's very millisecond, the pages are
	// skipped only if it is the newest message this client returned for the
	// chat last time (remembered in memory; after a restart the first poll
	// reads the pages). It relies on last_message following every message,
	// which is inferred from the Connect UI's code, not documented; verify it
	// on the instance before enabling this.
	LastMessageHint bool

	// Logger receives the client's logs (message bodies are never logged above
	// debug). Default: a logger that discards everything.
	Logger *slog.Logger
	// HTTPClient is the transport (copied; its Timeout defaults to Timeout).
	// Default: a pooled client from go-cleanhttp.
	HTTPClient *http.Client
	// Now is the clock used for token expiry and echo windows. Default time.Now.
	Now func() time.Time
}

// OAuth configures OAuth 2.0 tokens from the instance's token endpoint.
type OAuth struct {
	// GrantType is "password" (Config.Username/Password are the resource owner)
	// or "client_credentials" (Washington DC or later, acting as the OAuth
	// application user).
	GrantType    string
	ClientID     string
	ClientSecret string
	// TokenURL defaults to InstanceURL + "/oauth_token.do".
	TokenURL string
	// RefreshBefore renews a token this long before it expires. Default 60 s.
	RefreshBefore time.Duration
}

// OAuth grant types.
const (
	GrantPassword          = "password"
	GrantClientCredentials = "client_credentials"
)

// EndPhrase is a message text that ends a chat, and the reason it gives.
type EndPhrase struct {
	Text   string
	Reason bridge.CloseReason
}

// DefaultEndPhrases are the Connect Support texts (KB0598883) that end a chat.
var DefaultEndPhrases = []EndPhrase{
	{Text: "has closed the support session", Reason: bridge.ReasonAgentClosed},
	{Text: "has left the support session", Reason: bridge.ReasonAgentLeft},
}

// pageSize is the size of a full page of the Connect messages API.
const pageSize = 30

// maxBatchChats keeps one Table API URL well below common 8 KB limits
// (100 sys_ids of 32 characters plus separators, URL-encoded).
const maxBatchChats = 100

func (cfg Config) withDefaults() (Config, error) {
	var errs []error
	cfg.InstanceURL, cfg.OAuth, errs = checkTransport(cfg.InstanceURL, cfg.Username, cfg.Password, cfg.OAuth, false)
	if cfg.Queue == "" {
		errs = append(errs, errors.New("a Queue (the default queue's sys_id) is required"))
	}
	if cfg.OAuth != nil && cfg.OAuth.GrantType == GrantClientCredentials && cfg.BridgeUser == "" {
		errs = append(errs, errors.New("BridgeUser is required with the OAuth client_credentials grant"))
	}
	if cfg.BridgeUser == "" {
		cfg.BridgeUser = cfg.Username
	}
	if cfg.EndPhrases == nil {
		cfg.EndPhrases = DefaultEndPhrases
	}
	for _, p := range cfg.EndPhrases {
		if strings.TrimSpace(p.Text) == "" || !p.Reason.Valid() {
			errs = append(errs, fmt.Errorf("EndPhrases: %q → %q needs a text and a valid close reason", p.Text, p.Reason))
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.Timeout, 30*time.Second)
	def(&cfg.RetryWaitMin, 500*time.Millisecond)
	def(&cfg.RetryWaitMax, 30*time.Second)
	def(&cfg.CommitWait, 10*time.Second)
	cfg.RetryWaitMax = max(cfg.RetryWaitMax, cfg.RetryWaitMin)
	cfg.MaxRetries = retriesDefault(cfg.MaxRetries)
	defInt := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	defInt(&cfg.TranscriptTurns, 12)
	defInt(&cfg.TurnChars, 400)
	defInt(&cfg.FirstMessageBytes, 4000)
	defInt(&cfg.BatchChats, maxBatchChats)
	defInt(&cfg.BatchLimit, 500)
	defInt(&cfg.LiveStateEvery, 10)
	defInt(&cfg.MaxPages, 200)
	if cfg.BatchChats > maxBatchChats {
		cfg.BatchChats = maxBatchChats
	}
	if cfg.FirstMessageBytes < 200 {
		errs = append(errs, fmt.Errorf("FirstMessageBytes %d: want at least 200", cfg.FirstMessageBytes))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, fmt.Errorf("servicenow: config: %w", err)
	}
	return cfg, nil
}

// transport returns the transport settings of cfg.
func (cfg Config) transport() transportConfig {
	return transportConfig{InstanceURL: cfg.InstanceURL, Username: cfg.Username, Password: cfg.Password, OAuth: cfg.OAuth,
		Timeout: cfg.Timeout, MaxRetries: cfg.MaxRetries, RetryWaitMin: cfg.RetryWaitMin, RetryWaitMax: cfg.RetryWaitMax,
		Logger: cfg.Logger, HTTPClient: cfg.HTTPClient, Now: cfg.Now}
}

// retriesDefault maps MaxRetries: 0 selects 4, a negative value none.
func retriesDefault(n int) int {
	switch {
	case n == 0:
		return 4
	case n < 0:
		return 0
	}
	return n
}

// checkTransport validates the instance URL and credentials shared by both
// desks and fills the OAuth defaults. allowNone accepts no credentials at all
// (the Virtual Agent API may rely on message auth alone).
func checkTransport(instance, user, password string, o *OAuth, allowNone bool) (string, *OAuth, []error) {
	var errs []error
	if instance == "" {
		errs = append(errs, errors.New("an InstanceURL is required"))
	} else if u, err := url.Parse(instance); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		errs = append(errs, fmt.Errorf("InstanceURL %q is not an http(s) URL", instance))
	}
	instance = strings.TrimRight(instance, "/")
	if o == nil {
		if !(allowNone && user == "" && password == "") && (user == "" || password == "") {
			errs = append(errs, errors.New("a Username and Password are required for Basic auth"))
		}
		return instance, nil, errs
	}
	oc := *o
	switch oc.GrantType {
	case GrantPassword:
		if user == "" || password == "" {
			errs = append(errs, errors.New("a Username and Password are required for the OAuth password grant"))
		}
	case GrantClientCredentials:
	default:
		errs = append(errs, fmt.Errorf("OAuth.GrantType %q: want %q or %q", oc.GrantType, GrantPassword, GrantClientCredentials))
	}
	if oc.ClientID == "" || oc.ClientSecret == "" {
		errs = append(errs, errors.New("OAuth.ClientID and OAuth.ClientSecret are required"))
	}
	if oc.TokenURL == "" {
		oc.TokenURL = instance + "/oauth_token.do"
	}
	if oc.RefreshBefore <= 0 {
		oc.RefreshBefore = 60 * time.Second
	}
	return instance, &oc, errs
}
