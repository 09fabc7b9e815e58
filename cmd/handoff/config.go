package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/handoffhq/handoff/teams"
)

// Config is every setting of the service, parsed once from HANDOFF_*
// environment variables and validated before anything starts.
type Config struct {
	Addr            string
	MetricsAddr     string
	DatabaseURL     string
	LogFormat       string
	LogLevel        slog.Level
	MaxBody         int64
	ShutdownTimeout time.Duration

	TeamsAppID          string
	TeamsAppPassword    string
	TeamsTenantID       string
	TeamsMultiTenant    bool
	TeamsTokenURL       string
	TeamsOpenIDURL      string
	TeamsIssuer         string
	TeamsAllowedHosts   []string
	TeamsAnonymousDev   bool
	TeamsRateConvPerSec float64
	TeamsRateAppPerSec  float64
	RasaURL             string
	RasaToken           string
	RasaTimeout         time.Duration
	RasaSlotActive      string
	RasaSlotOutcome     string
	Desk                string
	SNURL               string
	SNAuth              string
	SNUser              string
	SNPassword          string
	SNClientID          string
	SNClientSecret      string
	SNQueue             string
	SNEndPhrases        []string
	SNTimeout           time.Duration
	SNCommitWait        time.Duration
	Delivery            string
	PollInterval        time.Duration
	PollBatch           bool
	ReconcileInterval   time.Duration
	WebhookSecret       string
	WebhookUser         string
	WebhookPassword     string
	WebhookOrderWindow  time.Duration
	VAToken             string
	VASecret            string
	VACallbackHeader    string
	VACallbackSecret    string
	SlackToken          string
	SlackSigningSecret  string
	SlackMode           string
	SlackAppToken       string
	SlackChannel        string
	SlackAPIURL         string
	SlackOrderWindow    time.Duration
	TranscriptTurns     int
	TextsFile           string
	Texts               textCatalogue // read from TextsFile
	QueueTimeout        time.Duration
	IdleTimeout         time.Duration
	DispatchWorkers     int
	DispatchMaxAttempts int
	DispatchBackoff     time.Duration
	DispatchLease       time.Duration
	LeaderLease         time.Duration
	RelayFailureBudget  time.Duration
	SNMaxRetries        int
	ReviewSalt          string
	ReviewToken         string
	ReviewDir           string
	ReviewSchedule      string
	ReviewRetention     time.Duration
	ReviewRedact        bool
	ReviewPatterns      []string
	ReviewLastTurns     int
	ReviewLowConfidence float64
	ReviewTimezone      string
	ReviewLabelPrefix   string
	PublicURL           string
	ReviewTeamsChannel  string
	ReviewTeamsService  string
	ReviewTeamsTenant   string
	CSATExpiry          time.Duration
	MessageRetention    time.Duration
}

// setting describes one environment variable: its name, default, what it
// expects, and how it is stored into Config.
type setting struct {
	Name    string
	Default string
	Group   string
	Help    string
	Secret  bool
	set     func(c *Config, v string) error
}

func str(p func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *p(c) = v; return nil }
}

func oneOf(p func(*Config) *string, allowed ...string) func(*Config, string) error {
	return func(c *Config, v string) error {
		v = strings.ToLower(strings.TrimSpace(v))
		for _, a := range allowed {
			if v == a {
				*p(c) = v
				return nil
			}
		}
		return fmt.Errorf("expects one of %s", strings.Join(allowed, ", "))
	}
}

func dur(p func(*Config) *time.Duration, lo time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d < lo {
			return fmt.Errorf("expects a duration ≥ %s such as 3s, 5m or 2h", lo)
		}
		*p(c) = d
		return nil
	}
}

func days(p func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		v = strings.TrimSpace(v)
		if n, ok := strings.CutSuffix(v, "d"); ok {
			d, err := strconv.Atoi(n)
			if err != nil || d < 1 {
				return errors.New("expects a positive number of days such as 180d, or a duration such as 4320h")
			}
			*p(c) = time.Duration(d) * 24 * time.Hour
			return nil
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return errors.New("expects a positive number of days such as 180d, or a duration such as 4320h")
		}
		*p(c) = d
		return nil
	}
}

func integer(p func(*Config) *int, lo, hi int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("expects an integer from %d to %d", lo, hi)
		}
		*p(c) = n
		return nil
	}
}

func float(p func(*Config) *float64, lo, hi float64) func(*Config, string) error {
	return func(c *Config, v string) error {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || f < lo || f > hi {
			return fmt.Errorf("expects a number from %g to %g", lo, hi)
		}
		*p(c) = f
		return nil
	}
}

func boolean(p func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return errors.New("expects true or false")
		}
		*p(c) = b
		return nil
	}
}

func list(p func(*Config) *[]string) func(*Config, string) error {
	return func(c *Config, v string) error {
		var out []string
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		*p(c) = out
		return nil
	}
}

func httpURL(p func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		if v == "" {
			*p(c) = ""
			return nil
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("expects an http(s) URL such as https://example.com")
		}
		*p(c) = strings.TrimRight(v, "/")
		return nil
	}
}

// settings is the single source of truth for configuration: parsing, `help`
// output and the README table all come from it.
var settings = []setting{
	{Name: "HANDOFF_ADDR", Default: ":8080", Group: "Server", Help: "listen address (host:port)", set: str(func(c *Config) *string { return &c.Addr })},
	{Name: "HANDOFF_PUBLIC_URL", Group: "Server", Help: "public base URL of this service (e.g. https://handoff.example.com), for links people open: the review inbox in the weekly Teams digest", set: httpURL(func(c *Config) *string { return &c.PublicURL })},
	{Name: "HANDOFF_METRICS_ADDR", Group: "Server", Help: "serve /metrics on this separate address (host:port, e.g. :9090) instead of HANDOFF_ADDR, so metrics are not public with the bot endpoint", set: func(c *Config, v string) error {
		if _, _, err := net.SplitHostPort(strings.TrimSpace(v)); err != nil {
			return errors.New("expects host:port such as :9090 or 127.0.0.1:9090")
		}
		c.MetricsAddr = strings.TrimSpace(v)
		return nil
	}},
	{Name: "HANDOFF_DATABASE_URL", Default: "sqlite:handoff.db", Group: "Server", Help: "sqlite:<file> (embedded default) or postgres://user:pass@host:5432/db", Secret: true, set: func(c *Config, v string) error {
		if !strings.HasPrefix(v, "sqlite:") && !strings.HasPrefix(v, "postgres://") && !strings.HasPrefix(v, "postgresql://") {
			return errors.New("expects sqlite:<file> or postgres://user:pass@host:5432/db")
		}
		c.DatabaseURL = v
		return nil
	}},
	{Name: "HANDOFF_LOG_FORMAT", Default: "json", Group: "Server", Help: "json or text", set: oneOf(func(c *Config) *string { return &c.LogFormat }, "json", "text")},
	{Name: "HANDOFF_LOG_LEVEL", Default: "info", Group: "Server", Help: "debug, info, warn or error (message bodies are logged at debug only)", set: func(c *Config, v string) error {
		return c.LogLevel.UnmarshalText([]byte(strings.TrimSpace(v)))
	}},
	{Name: "HANDOFF_MAX_BODY", Default: "1048576", Group: "Server", Help: "largest accepted request body in bytes", set: func(c *Config, v string) error {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 1024 {
			return errors.New("expects a number of bytes ≥ 1024")
		}
		c.MaxBody = n
		return nil
	}},
	{Name: "HANDOFF_SHUTDOWN_TIMEOUT", Default: "20s", Group: "Server", Help: "how long SIGTERM waits for in-flight requests and deliveries", set: dur(func(c *Config) *time.Duration { return &c.ShutdownTimeout }, time.Second)},

	{Name: "HANDOFF_TEAMS_APP_ID", Group: "Teams", Help: "the bot's Microsoft App ID (required to serve Teams)", set: str(func(c *Config) *string { return &c.TeamsAppID })},
	{Name: "HANDOFF_TEAMS_APP_PASSWORD", Group: "Teams", Help: "the bot's client secret", Secret: true, set: str(func(c *Config) *string { return &c.TeamsAppPassword })},
	{Name: "HANDOFF_TEAMS_TENANT_ID", Group: "Teams", Help: "the Entra tenant of a single-tenant bot (required unless multi-tenant)", set: str(func(c *Config) *string { return &c.TeamsTenantID })},
	{Name: "HANDOFF_TEAMS_MULTI_TENANT", Default: "false", Group: "Teams", Help: "true for a (legacy) multi-tenant bot registration", set: boolean(func(c *Config) *bool { return &c.TeamsMultiTenant })},
	{Name: "HANDOFF_TEAMS_TOKEN_URL", Group: "Teams", Help: "override the outbound token URL (default https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token)", set: httpURL(func(c *Config) *string { return &c.TeamsTokenURL })},
	{Name: "HANDOFF_TEAMS_OPENID_METADATA_URL", Default: "https://login.botframework.com/v1/.well-known/openidconfiguration", Group: "Teams", Help: "where inbound token keys are found", set: httpURL(func(c *Config) *string { return &c.TeamsOpenIDURL })},
	{Name: "HANDOFF_TEAMS_ISSUER", Default: "https://api.botframework.com", Group: "Teams", Help: "expected issuer of inbound tokens", set: str(func(c *Config) *string { return &c.TeamsIssuer })},
	{Name: "HANDOFF_TEAMS_ALLOWED_SERVICE_HOSTS", Group: "Teams", Help: "extra serviceUrl hosts the bot token may be sent to (comma-separated; Teams' public and government hosts are always allowed)", set: list(func(c *Config) *[]string { return &c.TeamsAllowedHosts })},
	{Name: "HANDOFF_TEAMS_ANONYMOUS_DEV", Default: "false", Group: "Teams", Help: "accept activities without a token (local test clients only; refused unless HANDOFF_ADDR is loopback)", set: boolean(func(c *Config) *bool { return &c.TeamsAnonymousDev })},

	{Name: "HANDOFF_RASA_URL", Group: "Rasa", Help: "Rasa server base URL, e.g. http://rasa:5005 (required to serve)", set: httpURL(func(c *Config) *string { return &c.RasaURL })},
	{Name: "HANDOFF_RASA_TOKEN", Group: "Rasa", Help: "Rasa's --auth-token, sent as ?token=", Secret: true, set: str(func(c *Config) *string { return &c.RasaToken })},
	{Name: "HANDOFF_RASA_TIMEOUT", Default: "18s", Group: "Rasa", Help: "timeout of one Rasa call: Rasa answers only after its whole action chain, so keep it above your slowest custom actions and below two thirds of HANDOFF_DISPATCH_LEASE", set: dur(func(c *Config) *time.Duration { return &c.RasaTimeout }, 100*time.Millisecond)},
	{Name: "HANDOFF_RASA_SLOT_HANDOFF_ACTIVE", Default: "handoff_active", Group: "Rasa", Help: "slot set to false on handback", set: str(func(c *Config) *string { return &c.RasaSlotActive })},
	{Name: "HANDOFF_RASA_SLOT_OUTCOME", Default: "handoff_outcome", Group: "Rasa", Help: "slot set to the close reason on handback", set: str(func(c *Config) *string { return &c.RasaSlotOutcome })},

	{Name: "HANDOFF_DESK", Default: "connect", Group: "ServiceNow", Help: "connect (Connect Support REST), va (Virtual Agent Bot Integration API) or slack (a thread per handoff in a Slack channel, see HANDOFF_SLACK_*)", set: oneOf(func(c *Config) *string { return &c.Desk }, "connect", "va", "slack")},
	{Name: "HANDOFF_SERVICENOW_URL", Group: "ServiceNow", Help: "instance URL, e.g. https://acme.service-now.com (required to serve)", set: httpURL(func(c *Config) *string { return &c.SNURL })},
	{Name: "HANDOFF_SERVICENOW_AUTH", Default: "basic", Group: "ServiceNow", Help: "basic, oauth-password or oauth-client", set: oneOf(func(c *Config) *string { return &c.SNAuth }, "basic", "oauth-password", "oauth-client")},
	{Name: "HANDOFF_SERVICENOW_USER", Group: "ServiceNow", Help: "integration user name (also how the bridge recognises its own echoed messages)", set: str(func(c *Config) *string { return &c.SNUser })},
	{Name: "HANDOFF_SERVICENOW_PASSWORD", Group: "ServiceNow", Help: "integration user password", Secret: true, set: str(func(c *Config) *string { return &c.SNPassword })},
	{Name: "HANDOFF_SERVICENOW_CLIENT_ID", Group: "ServiceNow", Help: "OAuth client id (oauth-* auth)", set: str(func(c *Config) *string { return &c.SNClientID })},
	{Name: "HANDOFF_SERVICENOW_CLIENT_SECRET", Group: "ServiceNow", Help: "OAuth client secret (oauth-* auth)", Secret: true, set: str(func(c *Config) *string { return &c.SNClientSecret })},
	{Name: "HANDOFF_SERVICENOW_QUEUE", Group: "ServiceNow", Help: "sys_id of the Connect Support queue chats open in (connect desk)", set: str(func(c *Config) *string { return &c.SNQueue })},
	{Name: "HANDOFF_SERVICENOW_END_PHRASES", Default: "has closed the support session=agent_closed,has left the support session=agent_left", Group: "ServiceNow", Help: "comma-separated text=reason entries (reason agent_closed or agent_left) that end a chat; localise them if your instance does", set: list(func(c *Config) *[]string { return &c.SNEndPhrases })},
	{Name: "HANDOFF_SERVICENOW_TIMEOUT", Default: "15s", Group: "ServiceNow", Help: "timeout of one ServiceNow request", set: dur(func(c *Config) *time.Duration { return &c.SNTimeout }, 100*time.Millisecond)},
	{Name: "HANDOFF_SERVICENOW_COMMIT_WAIT", Default: "10s", Group: "ServiceNow", Help: "Connect desk: how long a message post that timed out is given to appear in the chat before it is posted again", set: dur(func(c *Config) *time.Duration { return &c.SNCommitWait }, 100*time.Millisecond)},
	{Name: "HANDOFF_SERVICENOW_MAX_RETRIES", Default: "4", Group: "ServiceNow", Help: "retries of a safe request inside one call (GETs, leave, detected-duplicate posts)", set: integer(func(c *Config) *int { return &c.SNMaxRetries }, 0, 20)},
	{Name: "HANDOFF_DELIVERY", Default: "poll", Group: "Delivery", Help: "how agent messages arrive: poll, webhook (POST /webhooks/servicenow, or /webhooks/servicenow/va for the va desk) or hybrid (webhook plus a slow reconciling poll); the va desk needs webhook", set: oneOf(func(c *Config) *string { return &c.Delivery }, "poll", "webhook", "hybrid")},
	{Name: "HANDOFF_POLL_INTERVAL", Default: "3s", Group: "Delivery", Help: "poll interval (poll mode); ServiceNow limits requests per user per hour", set: dur(func(c *Config) *time.Duration { return &c.PollInterval }, 500*time.Millisecond)},
	{Name: "HANDOFF_POLL_BATCH", Default: "false", Group: "Delivery", Help: "poll all chats with one Table API query per 100 chats instead of one request per chat", set: boolean(func(c *Config) *bool { return &c.PollBatch })},
	{Name: "HANDOFF_RECONCILE_INTERVAL", Default: "60s", Group: "Delivery", Help: "reconciling poll interval in hybrid mode: bounds the extra delay of a message whose webhook was lost", set: dur(func(c *Config) *time.Duration { return &c.ReconcileInterval }, time.Second)},
	{Name: "HANDOFF_WEBHOOK_SECRET", Group: "Delivery", Help: "HMAC-SHA256 secret the Business Rule signs webhooks with (headers X-Handoff-Timestamp and X-Handoff-Signature over \"<timestamp>.<body>\"; 5 minute window)", Secret: true, set: str(func(c *Config) *string { return &c.WebhookSecret })},
	{Name: "HANDOFF_WEBHOOK_USER", Group: "Delivery", Help: "Basic-auth user the Business Rule sends (alternative to the HMAC secret)", set: str(func(c *Config) *string { return &c.WebhookUser })},
	{Name: "HANDOFF_WEBHOOK_PASSWORD", Group: "Delivery", Help: "Basic-auth password for webhooks", Secret: true, set: str(func(c *Config) *string { return &c.WebhookPassword })},
	{Name: "HANDOFF_WEBHOOK_ORDER_WINDOW", Default: "400ms", Group: "Delivery", Help: "webhooks without a \"previous\" pointer (older Business Rules): how long those of one chat are held so deliveries that overtook each other reach the user in order (0s: no holding; keep it well under 1s); webhooks with it are stored at once or after a targeted poll", set: dur(func(c *Config) *time.Duration { return &c.WebhookOrderWindow }, 0)},
	{Name: "HANDOFF_VA_TOKEN", Group: "Delivery", Help: "VA desk: static message-auth token sent to ServiceNow", Secret: true, set: str(func(c *Config) *string { return &c.VAToken })},
	{Name: "HANDOFF_VA_SECRET", Group: "Delivery", Help: "VA desk: secret for the x-b2b-signature HMAC-SHA1 (instead of the token)", Secret: true, set: str(func(c *Config) *string { return &c.VASecret })},
	{Name: "HANDOFF_VA_CALLBACK_HEADER", Default: "X-Handoff-Secret", Group: "Delivery", Help: "VA desk: custom header the outbound configuration sends with every callback to /webhooks/servicenow/va", set: str(func(c *Config) *string { return &c.VACallbackHeader })},
	{Name: "HANDOFF_VA_CALLBACK_SECRET", Group: "Delivery", Help: "VA desk: value of that header (callbacks must also echo the session nonce in clientVariables)", Secret: true, set: str(func(c *Config) *string { return &c.VACallbackSecret })},

	{Name: "HANDOFF_SLACK_BOT_TOKEN", Group: "Slack", Help: "slack desk: the app's bot token (xoxb-…; OAuth & Permissions page)", Secret: true, set: str(func(c *Config) *string { return &c.SlackToken })},
	{Name: "HANDOFF_SLACK_SIGNING_SECRET", Group: "Slack", Help: "slack desk: the app's signing secret (Basic Information page); requests to /webhooks/slack and /webhooks/slack/interactive must carry its v0 signature, at most 5 minutes old", Secret: true, set: str(func(c *Config) *string { return &c.SlackSigningSecret })},
	{Name: "HANDOFF_SLACK_MODE", Default: "events", Group: "Slack", Help: "slack desk: how Slack reaches the bridge: events (the Events API and interactivity POST to /webhooks/slack and /webhooks/slack/interactive, which must be reachable from Slack) or socket (Socket Mode: the bridge opens a WebSocket to Slack and needs no public URL; needs HANDOFF_SLACK_APP_TOKEN)", set: oneOf(func(c *Config) *string { return &c.SlackMode }, "events", "socket")},
	{Name: "HANDOFF_SLACK_APP_TOKEN", Group: "Slack", Help: "slack desk, socket mode: the app-level token (xapp-…; Basic Information → App-Level Tokens, scope connections:write)", Secret: true, set: str(func(c *Config) *string { return &c.SlackAppToken })},
	{Name: "HANDOFF_SLACK_CHANNEL", Group: "Slack", Help: "slack desk: id of the support channel handoffs are posted to (C…; the app must be invited)", set: func(c *Config, v string) error {
		v = strings.TrimSpace(v)
		if !slackChannelID.MatchString(v) {
			return errors.New("expects a channel id such as C0123ABCD (channel details → About), not its name")
		}
		c.SlackChannel = v
		return nil
	}},
	{Name: "HANDOFF_SLACK_API_URL", Default: "https://slack.com/api/", Group: "Slack", Help: "slack desk: Web API base URL (tests point it at a fake)", set: httpURL(func(c *Config) *string { return &c.SlackAPIURL })},
	{Name: "HANDOFF_SLACK_ORDER_WINDOW", Default: "300ms", Group: "Slack", Help: "slack desk: how long events of one thread are held so replies Slack delivered in parallel are stored in ts order (0s: no holding); every request is still answered well inside Slack's 3 s", set: dur(func(c *Config) *time.Duration { return &c.SlackOrderWindow }, 0)},

	{Name: "HANDOFF_TEXTS_FILE", Group: "Relay", Help: "YAML or JSON file (by its .json extension) of the texts the bridge says, by language tag and key, e.g. de: {not_in_chat: …}; the Teams locale picks the language, missing texts fall back to the shipped ones (English and German); keys and placeholders are checked at start", set: func(c *Config, v string) error {
		cat, err := loadTexts(strings.TrimSpace(v))
		if err != nil {
			return err
		}
		c.TextsFile, c.Texts = v, cat
		return nil
	}},
	{Name: "HANDOFF_TRANSCRIPT_TURNS", Default: "10", Group: "Relay", Help: "recent turns shown to the agent when a chat opens", set: integer(func(c *Config) *int { return &c.TranscriptTurns }, 0, 100)},
	{Name: "HANDOFF_QUEUE_TIMEOUT", Default: "15m", Group: "Relay", Help: "end a handoff no agent accepted within this (0s: never)", set: dur(func(c *Config) *time.Duration { return &c.QueueTimeout }, 0)},
	{Name: "HANDOFF_IDLE_TIMEOUT", Default: "30m", Group: "Relay", Help: "end a live chat nobody wrote in for this long (0s: never)", set: dur(func(c *Config) *time.Duration { return &c.IdleTimeout }, 0)},
	{Name: "HANDOFF_DISPATCH_WORKERS", Default: "8", Group: "Relay", Help: "outward calls made in parallel (each conversation stays in order)", set: integer(func(c *Config) *int { return &c.DispatchWorkers }, 1, 256)},
	{Name: "HANDOFF_DISPATCH_MAX_ATTEMPTS", Default: "0", Group: "Relay", Help: "optional cap on the failed attempts of one outward call (0: none, HANDOFF_RELAY_FAILURE_BUDGET decides; throttled attempts never count)", set: integer(func(c *Config) *int { return &c.DispatchMaxAttempts }, 0, 1000)},
	{Name: "HANDOFF_RELAY_FAILURE_BUDGET", Default: "10m", Group: "Relay", Help: "how long an outward call may keep failing before it fails for good and, where that breaks the relay, ends the session and tells the employee; time a service asked us to wait (429, Retry-After) never counts", set: dur(func(c *Config) *time.Duration { return &c.RelayFailureBudget }, time.Second)},

	{Name: "HANDOFF_DISPATCH_LEASE", Default: "30s", Group: "Relay", Help: "how long a claimed outward call belongs to one worker without a heartbeat (a running call extends it every third of it); after a crash another replica retries it once the lease ends, a restarted process at once; a call may take two thirds of it", set: dur(func(c *Config) *time.Duration { return &c.DispatchLease }, time.Second)},
	{Name: "HANDOFF_LEADER_LEASE", Default: "15s", Group: "Relay", Help: "lease of the jobs that run on one replica (poller, timeout sweeper, weekly review export): renewed every third of it; when the replica holding it dies another takes over within it (at once on a clean shutdown)", set: dur(func(c *Config) *time.Duration { return &c.LeaderLease }, time.Second)},
	{Name: "HANDOFF_DISPATCH_BACKOFF", Default: "1s", Group: "Relay", Help: "first retry delay of a failed outward call (doubles per attempt, capped at 30s)", set: dur(func(c *Config) *time.Duration { return &c.DispatchBackoff }, time.Millisecond)},

	{Name: "HANDOFF_REVIEW_SALT", Group: "Review", Help: "secret salt of the pseudonymous user key (required to serve; keep it stable)", Secret: true, set: str(func(c *Config) *string { return &c.ReviewSalt })},
	{Name: "HANDOFF_REVIEW_TOKEN", Group: "Review", Help: "token of the review inbox (/review, sign-in form) and bearer token of GET /review/export and the training downloads (all disabled when empty)", Secret: true, set: str(func(c *Config) *string { return &c.ReviewToken })},
	{Name: "HANDOFF_REVIEW_DIR", Default: "review-exports", Group: "Review", Help: "directory the weekly job writes its files to", set: str(func(c *Config) *string { return &c.ReviewDir })},
	{Name: "HANDOFF_REVIEW_SCHEDULE", Default: "0 6 * * 1", Group: "Review", Help: "cron schedule of the weekly export (default Monday 06:00)", set: str(func(c *Config) *string { return &c.ReviewSchedule })},
	{Name: "HANDOFF_REVIEW_TIMEZONE", Default: "UTC", Group: "Review", Help: "time zone of the schedule and of ISO weeks", set: func(c *Config, v string) error {
		if _, err := time.LoadLocation(v); err != nil {
			return errors.New("expects an IANA time zone such as UTC or Europe/Berlin")
		}
		c.ReviewTimezone = v
		return nil
	}},
	{Name: "HANDOFF_REVIEW_RETENTION", Default: "180d", Group: "Review", Help: "review records older than this are deleted by the weekly job", set: days(func(c *Config) *time.Duration { return &c.ReviewRetention })},
	{Name: "HANDOFF_REVIEW_REDACT", Default: "true", Group: "Review", Help: "redact e-mail addresses, phone and card numbers in review records and exports", set: boolean(func(c *Config) *bool { return &c.ReviewRedact })},
	{Name: "HANDOFF_REVIEW_PATTERNS", Group: "Review", Help: "extra regular expressions to redact (comma-separated)", set: func(c *Config, v string) error {
		if err := list(func(c *Config) *[]string { return &c.ReviewPatterns })(c, v); err != nil {
			return err
		}
		for _, p := range c.ReviewPatterns {
			if _, err := regexp.Compile(p); err != nil {
				return fmt.Errorf("expects comma-separated regular expressions; %q: %v", p, err)
			}
		}
		return nil
	}},
	{Name: "HANDOFF_REVIEW_LAST_TURNS", Default: "10", Group: "Review", Help: "user turns kept per why-handoff record", set: integer(func(c *Config) *int { return &c.ReviewLastTurns }, 1, 100)},
	{Name: "HANDOFF_MESSAGE_RETENTION", Default: "30d", Group: "Review", Help: "the weekly job deletes chats that closed longer ago than this (messages, names, e-mail), older messages of conversations the bot still owns, and done outbox rows older than a day", set: days(func(c *Config) *time.Duration { return &c.MessageRetention })},
	{Name: "HANDOFF_CSAT_EXPIRY", Default: "24h", Group: "Review", Help: "after a chat an agent joined, the employee gets a rating card (1 to 5, optional comment) that stays open this long, then shows it expired; the rating is stored on the review record, never sent to Rasa (0s: no rating)", set: dur(func(c *Config) *time.Duration { return &c.CSATExpiry }, 0)},
	{Name: "HANDOFF_REVIEW_LABEL_PREFIX", Default: "#", Group: "Review", Help: "prefix of the agent's private labels in the desk chat (#topic <name>, #bot-could-have <intent>, #needed-human): stored on the review record, never shown to the employee", set: func(c *Config, v string) error {
		if strings.TrimSpace(v) != v || v == "" || len([]rune(v)) > 8 {
			return errors.New("expects 1 to 8 characters without spaces, such as #")
		}
		c.ReviewLabelPrefix = v
		return nil
	}},
	{Name: "HANDOFF_REVIEW_TEAMS_CHANNEL", Group: "Review", Help: "post the weekly digest (handoff count, top reasons, top clusters, link to the inbox) as a card to this Teams channel the bot is installed in: its conversation id 19:…@thread.tacv2; once per ISO week at HANDOFF_REVIEW_SCHEDULE, however many replicas run (empty: no digest)", set: func(c *Config, v string) error {
		v = strings.TrimSpace(v)
		if v != "" {
			if err := teams.CheckChannelID(v); err != nil {
				return errors.New("expects a channel's conversation id such as 19:abc…@thread.tacv2")
			}
		}
		c.ReviewTeamsChannel = v
		return nil
	}},
	{Name: "HANDOFF_REVIEW_TEAMS_SERVICE_URL", Default: teams.DefaultChannelServiceURL, Group: "Review", Help: "Bot Connector URL the digest is posted through (the serviceUrl of the team's activities, e.g. https://smba.trafficmanager.net/emea/)", set: httpURL(func(c *Config) *string { return &c.ReviewTeamsService })},
	{Name: "HANDOFF_REVIEW_TEAMS_TENANT", Group: "Review", Help: "tenant of the digest's team (default HANDOFF_TEAMS_TENANT_ID)", set: str(func(c *Config) *string { return &c.ReviewTeamsTenant })},
	{Name: "HANDOFF_REVIEW_LOW_CONFIDENCE", Default: "0.5", Group: "Review", Help: "intent confidence below which a trigger counts as low-confidence in the report", set: float(func(c *Config) *float64 { return &c.ReviewLowConfidence }, 0, 1)},
}

// slackChannelID is the shape of a public (C…) or private (G…) channel id.
var slackChannelID = regexp.MustCompile(`^[CG][A-Z0-9]{6,}$`)

// ConfigError names the variable that is wrong and what it expects.
type ConfigError struct {
	Name string
	Msg  string
}

func (e *ConfigError) Error() string { return e.Name + ": " + e.Msg }

// LoadConfig parses the environment through getenv. Every bad value is
// reported, not just the first: the error joins one *ConfigError per
// variable. A secret variable NAME may instead be read from the file named by
// NAME_FILE (a mounted Kubernetes or systemd secret); setting both is an
// error.
func LoadConfig(getenv func(string) string) (*Config, error) {
	c := &Config{}
	var errs []error
	for _, s := range settings {
		v, err := lookup(s, getenv)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if v == "" {
			v = s.Default
		}
		if v == "" {
			continue
		}
		if err := s.set(c, v); err != nil {
			errs = append(errs, &ConfigError{Name: s.Name, Msg: err.Error()})
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// lookup returns the value of s from the environment, or for a secret from
// the file named by <NAME>_FILE.
func lookup(s setting, getenv func(string) string) (string, error) {
	v := getenv(s.Name)
	if !s.Secret {
		return v, nil
	}
	path := getenv(s.Name + "_FILE")
	if path == "" {
		return v, nil
	}
	if v != "" {
		return "", &ConfigError{Name: s.Name, Msg: "and " + s.Name + "_FILE are both set; set only one"}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", &ConfigError{Name: s.Name + "_FILE", Msg: fmt.Sprintf("cannot read the secret file: %v", err)}
	}
	// Files written by editors and `kubectl create secret --from-file` often
	// end in a newline that is not part of the secret.
	v = strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", &ConfigError{Name: s.Name + "_FILE", Msg: fmt.Sprintf("%s is empty", path)}
	}
	return v, nil
}

// notVariables are HANDOFF_* names that are not settings of the service (the
// test suites' own switches), so no warning is due.
var notVariables = map[string]bool{
	"HANDOFF_TEST_DATABASE_URL": true, "HANDOFF_CHROMIUM": true, "HANDOFF_ARTIFACTS": true, "HANDOFF_PLAYGROUND": true,
	"HANDOFF_TEST_AS_MAIN": true,
}

// UnknownVariables returns a warning for every HANDOFF_* variable of environ
// (KEY=VALUE entries) that is no setting, naming the closest known one.
func UnknownVariables(environ []string) []string {
	known := map[string]bool{}
	var names []string
	for _, s := range settings {
		known[s.Name] = true
		names = append(names, s.Name)
		if s.Secret {
			known[s.Name+"_FILE"] = true
			names = append(names, s.Name+"_FILE")
		}
	}
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "HANDOFF_") || known[k] || notVariables[k] {
			continue
		}
		best, bestD := "", -1
		for _, n := range names {
			if d := editDistance(k, n); bestD < 0 || d < bestD {
				best, bestD = n, d
			}
		}
		out = append(out, fmt.Sprintf("%s is not a known variable and is ignored; did you mean %s?", k, best))
	}
	sort.Strings(out)
	return out
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// Integrated reports whether any outside system is configured; serve then
// requires all of them.
func (c *Config) Integrated() bool {
	return c.TeamsAppID != "" || c.TeamsAnonymousDev || c.RasaURL != "" || c.SNURL != "" || c.SlackToken != ""
}

// ValidateServe checks what serve needs beyond the individual values. Every
// problem is reported: the error joins one *ConfigError per variable.
func (c *Config) ValidateServe() error {
	if c.TeamsAnonymousDev && !loopback(c.Addr) {
		return &ConfigError{Name: "HANDOFF_TEAMS_ANONYMOUS_DEV", Msg: "is only allowed when HANDOFF_ADDR listens on loopback only (e.g. 127.0.0.1:8080)"}
	}
	if c.TeamsAppID == "" && !c.TeamsAnonymousDev && c.RasaURL == "" && c.SNURL == "" && c.SlackToken == "" {
		// A bridge without Teams would answer 404 on /api/messages while
		// /readyz says ready: refuse instead.
		return &ConfigError{Name: "HANDOFF_TEAMS_APP_ID", Msg: "is required to serve: nothing is configured. Set HANDOFF_TEAMS_APP_ID, HANDOFF_RASA_URL and HANDOFF_SERVICENOW_URL (see 'handoff help'), or try 'handoff demo'"}
	}
	need := func(name, v, why string) error {
		if v == "" {
			return &ConfigError{Name: name, Msg: "is required " + why}
		}
		return nil
	}
	checks := []error{
		need("HANDOFF_RASA_URL", c.RasaURL, "to serve (e.g. http://rasa:5005)"),
		need("HANDOFF_REVIEW_SALT", c.ReviewSalt, "to serve (a long random secret; keep it stable)"),
	}
	if !c.TeamsAnonymousDev {
		checks = append(checks, need("HANDOFF_TEAMS_APP_ID", c.TeamsAppID, "to serve (the bot's Microsoft App ID)"),
			need("HANDOFF_TEAMS_APP_PASSWORD", c.TeamsAppPassword, "to send to Teams (the bot's client secret)"))
		if !c.TeamsMultiTenant && c.TeamsTokenURL == "" {
			checks = append(checks, need("HANDOFF_TEAMS_TENANT_ID", c.TeamsTenantID, "for a single-tenant bot (or set HANDOFF_TEAMS_MULTI_TENANT=true)"))
		}
	}
	if c.ReviewTeamsChannel != "" {
		checks = append(checks, need("HANDOFF_PUBLIC_URL", c.PublicURL, "with HANDOFF_REVIEW_TEAMS_CHANNEL, for the digest's link to the review inbox (e.g. https://handoff.example.com)"))
		if c.ReviewTeamsTenant == "" && c.TeamsTenantID == "" {
			checks = append(checks, need("HANDOFF_REVIEW_TEAMS_TENANT", "", "with HANDOFF_REVIEW_TEAMS_CHANNEL when HANDOFF_TEAMS_TENANT_ID is not set (the team's tenant id)"))
		}
	}
	if c.Desk == "slack" {
		checks = append(checks,
			need("HANDOFF_SLACK_BOT_TOKEN", c.SlackToken, "for the slack desk (the app's xoxb- bot token)"),
			need("HANDOFF_SLACK_CHANNEL", c.SlackChannel, "for the slack desk (the support channel's id)"))
		if c.SlackMode == "socket" {
			checks = append(checks, need("HANDOFF_SLACK_APP_TOKEN", c.SlackAppToken, "for Slack's Socket Mode (the app-level xapp- token)"))
			if c.SlackAppToken != "" && !strings.HasPrefix(c.SlackAppToken, "xapp-") {
				checks = append(checks, errors.New("HANDOFF_SLACK_APP_TOKEN: expects the app-level token (xapp-…), not the bot token or the signing secret"))
			}
		} else {
			checks = append(checks, need("HANDOFF_SLACK_SIGNING_SECRET", c.SlackSigningSecret, "for the slack desk's Events API (the app's signing secret; or use HANDOFF_SLACK_MODE=socket)"))
		}
		return errors.Join(checks...)
	}
	checks = append(checks, need("HANDOFF_SERVICENOW_URL", c.SNURL, "to serve (e.g. https://acme.service-now.com)"))
	switch c.SNAuth {
	case "basic", "oauth-password":
		checks = append(checks, need("HANDOFF_SERVICENOW_USER", c.SNUser, "for "+c.SNAuth+" auth"),
			need("HANDOFF_SERVICENOW_PASSWORD", c.SNPassword, "for "+c.SNAuth+" auth"))
	}
	if strings.HasPrefix(c.SNAuth, "oauth") {
		checks = append(checks, need("HANDOFF_SERVICENOW_CLIENT_ID", c.SNClientID, "for "+c.SNAuth+" auth"),
			need("HANDOFF_SERVICENOW_CLIENT_SECRET", c.SNClientSecret, "for "+c.SNAuth+" auth"))
	}
	if c.SNAuth == "oauth-client" {
		checks = append(checks, need("HANDOFF_SERVICENOW_USER", c.SNUser, "to recognise the bridge's own messages (the OAuth application user's name)"))
	}
	if c.Desk == "connect" {
		checks = append(checks, need("HANDOFF_SERVICENOW_QUEUE", c.SNQueue, "for the connect desk (the queue's sys_id)"))
	}
	if c.Desk == "va" {
		if c.VAToken == "" && c.VASecret == "" {
			checks = append(checks, &ConfigError{Name: "HANDOFF_VA_TOKEN", Msg: "or HANDOFF_VA_SECRET is required for the va desk"})
		}
		checks = append(checks, need("HANDOFF_VA_CALLBACK_SECRET", c.VACallbackSecret, "for the va desk (ServiceNow sends it with every callback)"))
		if c.Delivery != "webhook" {
			checks = append(checks, &ConfigError{Name: "HANDOFF_DELIVERY", Msg: "must be webhook for the va desk (the Virtual Agent API has no polling endpoint, so neither poll nor hybrid can work)"})
		}
	}
	if c.Delivery != "poll" && c.Desk == "connect" && c.WebhookSecret == "" && (c.WebhookUser == "" || c.WebhookPassword == "") {
		checks = append(checks, &ConfigError{Name: "HANDOFF_WEBHOOK_SECRET", Msg: "(or HANDOFF_WEBHOOK_USER and HANDOFF_WEBHOOK_PASSWORD) is required for webhook and hybrid delivery"})
	}
	return errors.Join(checks...)
}

func loopback(addr string) bool {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	return host == "localhost" || host == "127.0.0.1" || host == "::1" || strings.HasPrefix(host, "127.")
}
