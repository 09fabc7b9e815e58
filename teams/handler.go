package teams

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/handoffhq/handoff/bridge"
)

// Defaults of HandlerConfig.
const (
	DefaultOpenIDMetadataURL = "https://login.botframework.com/v1/.well-known/openidconfiguration"
	DefaultIssuer            = "https://api.botframework.com"
	DefaultLeeway            = 5 * time.Minute
	DefaultMaxBody           = 256 << 10
)

// maxTokenLength bounds the bearer token we are willing to parse.
const maxTokenLength = 16 << 10

// Inbox receives the authenticated activities. The bridge's relay implements
// it by persisting the activity; replies go out later through Client.
type Inbox interface {
	// UserActivity persists a. A returned error makes Handler answer 500, so
	// Teams delivers the activity again; a duplicate delivery must therefore
	// be a no-op (bridge.UserActivity.ID is the de-duplication key).
	UserActivity(ctx context.Context, a bridge.UserActivity) error
}

// HandlerConfig configures Handler. Zero fields take the defaults noted.
type HandlerConfig struct {
	// AppID is the bot's Microsoft App ID. Required unless AnonymousDev.
	AppID string
	// Audiences accepted in the token's aud claim. Default: AppID,
	// "api://"+AppID and "api://botid-"+AppID.
	Audiences []string
	// OpenIDMetadataURL names the JWKS (jwks_uri). Default
	// DefaultOpenIDMetadataURL.
	OpenIDMetadataURL string
	// Issuer is the required iss claim. Default DefaultIssuer.
	Issuer string
	// Leeway is the clock skew allowed on exp and nbf. Default 5 min.
	Leeway time.Duration
	// MaxBody bounds the request body in bytes; larger bodies get 413.
	// Default 256 KiB (the service passes HANDOFF_MAX_BODY).
	MaxBody int64
	// AllowedServiceURLHosts and ExtraServiceURLHosts are the client's
	// allow-list (see ClientConfig): an activity whose serviceUrl is not on
	// it is refused with 403, since no reply could ever reach it. Default
	// DefaultServiceURLHosts; in AnonymousDev only loopback hosts.
	AllowedServiceURLHosts []string
	ExtraServiceURLHosts   []string
	// AnonymousDev accepts requests without an Authorization header, as the
	// Microsoft 365 Agents Playground sends them. It is refused unless
	// ListenAddr is a loopback address, and even then only requests from a
	// loopback peer (and not through a reverse proxy: no Forwarded or
	// X-Forwarded-* headers) are accepted without a token. Requests that do
	// carry a token are verified as usual (and refused when there is no
	// AppID to check the audience against). Never use it in production.
	AnonymousDev bool
	// ListenAddr is the address the server listens on; NewHandler checks it
	// with LoopbackOnly when AnonymousDev is set.
	ListenAddr string
	// HTTPClient fetches the OpenID metadata and the JWKS. Default: a client
	// with a 10 s timeout.
	HTTPClient *http.Client
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// KeyRefresh is how often Run fetches the signing keys. Default
	// DefaultKeyRefresh (4 h).
	KeyRefresh time.Duration
	// KeyRefetchSpacing is the least time between two fetches of the keys
	// (a token naming an unknown key waits for the next one). Default
	// DefaultKeyRefetchSpacing (5 s).
	KeyRefetchSpacing time.Duration
}

// Handler is the bot's messaging endpoint (POST /api/messages). It
// authenticates each request as the Bot Framework prescribes, maps the
// activity to a bridge.UserActivity and hands it to the Inbox.
type Handler struct {
	cfg    HandlerConfig
	inbox  Inbox
	log    *slog.Logger
	keys   *keySet
	parser *jwt.Parser
	claims *jwt.Validator // the parser's claim checks, before the signature is known
	hosts  serviceHosts
}

// NewHandler checks cfg, fills in the defaults and returns the handler.
func NewHandler(cfg HandlerConfig, inbox Inbox, log *slog.Logger) (*Handler, error) {
	if inbox == nil {
		return nil, errors.New("teams: handler: nil inbox")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.AnonymousDev && !LoopbackOnly(cfg.ListenAddr) {
		return nil, fmt.Errorf("teams: handler: anonymous dev mode is only allowed on a loopback listen address, not %q", cfg.ListenAddr)
	}
	if cfg.AppID == "" && !cfg.AnonymousDev {
		return nil, errors.New("teams: handler: AppID is required")
	}
	if len(cfg.Audiences) == 0 && cfg.AppID != "" {
		cfg.Audiences = []string{cfg.AppID, "api://" + cfg.AppID, "api://botid-" + cfg.AppID}
	}
	if cfg.OpenIDMetadataURL == "" {
		cfg.OpenIDMetadataURL = DefaultOpenIDMetadataURL
	}
	if cfg.Issuer == "" {
		cfg.Issuer = DefaultIssuer
	}
	if cfg.Leeway <= 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.KeyRefresh <= 0 {
		cfg.KeyRefresh = DefaultKeyRefresh
	}
	if cfg.KeyRefetchSpacing <= 0 {
		cfg.KeyRefetchSpacing = DefaultKeyRefetchSpacing
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(cfg.Now),
		jwt.WithExpirationRequired(),
	}
	if len(cfg.Audiences) > 0 {
		opts = append(opts, jwt.WithAudience(cfg.Audiences...))
	}
	h := &Handler{
		cfg:    cfg,
		inbox:  inbox,
		log:    log,
		keys:   newKeySet(cfg.OpenIDMetadataURL, cfg.HTTPClient, cfg.Now, cfg.KeyRefetchSpacing, log),
		parser: jwt.NewParser(opts...),
		claims: jwt.NewValidator(opts...),
		hosts:  newServiceHosts(cfg.AllowedServiceURLHosts, cfg.ExtraServiceURLHosts, cfg.AnonymousDev),
	}
	if cfg.AnonymousDev {
		log.Warn("teams: ANONYMOUS DEV MODE: requests without a Bot Framework token are accepted from loopback peers; never run this in production",
			"listen_addr", cfg.ListenAddr)
	}
	return h, nil
}

// LoopbackOnly reports whether addr (host:port, or a bare host) listens on a
// loopback interface only: localhost or a loopback IP. An empty host, as in
// ":3978", means every interface and is not loopback.
func LoopbackOnly(addr string) bool {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	return isLoopbackHost(host)
}

func isLoopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// claims is what a verified token tells us.
type claims struct {
	serviceURL   string
	endorsements []string
}

// ServeHTTP implements http.Handler. Verification runs in this order, and a
// request that fails a step reaches nothing beyond it:
//
//  1. Authorization: Bearer <jwt> (401), verified with RS256 against the key
//     set, iss, aud, exp and nbf (401; 503 if no keys can be fetched);
//  2. the Content-Type must be JSON (415);
//  3. the body is read, at most MaxBody bytes (413), decoded and checked:
//     a JSON object with id, from.id and recipient.id, and "text" a string
//     when present (400);
//  4. the token's serviceurl claim must equal the activity's serviceUrl (401)
//     and the key's endorsements must contain its channelId (403);
//  5. the serviceUrl's host must be on the allow-list (403);
//  6. the activity is mapped and passed to the Inbox (500 on its error).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ctx := r.Context()
	var verified *claims
	auth := r.Header.Get("Authorization")
	if auth == "" && h.cfg.AnonymousDev && isLoopbackPeer(r.RemoteAddr) && !proxied(r) {
		h.log.DebugContext(ctx, "teams: anonymous dev request accepted", "remote_addr", r.RemoteAddr)
	} else {
		c, status, err := h.authenticate(ctx, auth)
		if err != nil {
			h.reject(ctx, w, r, status, err)
			return
		}
		verified = &c
	}

	if !jsonContentType(r.Header.Get("Content-Type")) {
		h.reject(ctx, w, r, http.StatusUnsupportedMediaType, fmt.Errorf("teams: Content-Type %q is not application/json", r.Header.Get("Content-Type")))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, h.cfg.MaxBody)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.reject(ctx, w, r, http.StatusRequestEntityTooLarge, fmt.Errorf("teams: body over %d bytes", h.cfg.MaxBody))
			return
		}
		h.reject(ctx, w, r, http.StatusBadRequest, fmt.Errorf("teams: read body: %w", err))
		return
	}
	act, err := decodeActivity(body)
	if err == nil {
		err = checkActivity(body, act)
	}
	if err != nil {
		h.reject(ctx, w, r, http.StatusBadRequest, err)
		return
	}
	if verified != nil {
		if !sameServiceURL(verified.serviceURL, act.ServiceURL) {
			h.reject(ctx, w, r, http.StatusUnauthorized, fmt.Errorf("teams: serviceurl claim %q does not match the activity's serviceUrl %q", verified.serviceURL, act.ServiceURL))
			return
		}
		if act.ChannelID == "" || !slices.Contains(verified.endorsements, act.ChannelID) {
			h.reject(ctx, w, r, http.StatusForbidden, fmt.Errorf("teams: signing key is not endorsed for channel %q", act.ChannelID))
			return
		}
	}
	if _, err := h.hosts.check(act.ServiceURL); err != nil {
		h.reject(ctx, w, r, http.StatusForbidden, err)
		return
	}

	ua, ok, err := mapActivity(act, h.cfg.Now())
	if err != nil {
		h.reject(ctx, w, r, http.StatusBadRequest, err)
		return
	}
	if !ok {
		h.log.DebugContext(ctx, "teams: activity ignored", "type", string(act.Type), "activity_id", act.ID)
		w.WriteHeader(http.StatusOK)
		return
	}
	if err := h.inbox.UserActivity(ctx, ua); err != nil {
		h.log.ErrorContext(ctx, "teams: inbox refused the activity; Teams will retry",
			"err", err, "kind", string(ua.Kind), "activity_id", ua.ID, "conversation_id", string(ua.Ref.Conversation))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// authenticate checks the Authorization header and the token it carries. On
// failure it returns the status to answer with.
func (h *Handler) authenticate(ctx context.Context, auth string) (claims, int, error) {
	scheme, raw, found := strings.Cut(auth, " ")
	if auth == "" {
		return claims{}, http.StatusUnauthorized, errors.New("teams: no Authorization header")
	}
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return claims{}, http.StatusUnauthorized, errors.New("teams: Authorization scheme is not Bearer")
	}
	if len(h.cfg.Audiences) == 0 {
		return claims{}, http.StatusUnauthorized, errors.New("teams: no AppID configured to check the token's audience")
	}
	raw = strings.TrimSpace(raw)
	if raw == "" || len(raw) > maxTokenLength {
		return claims{}, http.StatusUnauthorized, errors.New("teams: empty or oversized bearer token")
	}
	var endorsements []string
	tok, err := h.parser.Parse(raw, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("teams: token has no kid")
		}
		// Only a token that would pass but for its key may make the key set
		// be fetched again: junk cannot use up the fetches.
		k, err := h.keys.key(ctx, kid, h.plausible(t))
		if err != nil {
			return nil, err
		}
		endorsements = k.endorsements
		return k.pub, nil
	})
	if err != nil {
		if errors.Is(err, errKeysUnavailable) {
			return claims{}, http.StatusServiceUnavailable, err
		}
		return claims{}, http.StatusUnauthorized, fmt.Errorf("teams: token rejected: %w", err)
	}
	mc, _ := tok.Claims.(jwt.MapClaims)
	su, _ := mc["serviceurl"].(string)
	if su == "" {
		su, _ = mc["serviceUrl"].(string)
	}
	if su == "" {
		return claims{}, http.StatusUnauthorized, errors.New("teams: token has no serviceurl claim")
	}
	return claims{serviceURL: su, endorsements: endorsements}, 0, nil
}

// plausible reports whether a token's claims pass every check but the
// signature: issuer, audience, expiry and not-before (with leeway), and a
// serviceurl claim. (The parser has already checked the algorithm.)
func (h *Handler) plausible(t *jwt.Token) bool {
	mc, ok := t.Claims.(jwt.MapClaims)
	if !ok || h.claims.Validate(mc) != nil {
		return false
	}
	su, _ := mc["serviceurl"].(string)
	if su == "" {
		su, _ = mc["serviceUrl"].(string)
	}
	return su != ""
}

// Run keeps the signing keys fresh until ctx ends (then it returns nil): it
// fetches them at once and then every KeyRefresh, and a minute after a
// failed fetch. Requests never wait for these fetches while keys are cached.
// On return it cancels the fetch in flight (one a request may have started)
// and waits for it, so call it for as long as the handler serves: after Run,
// no fetch starts: a request that finds no cached key is refused.
func (h *Handler) Run(ctx context.Context) error {
	defer h.keys.close()
	for {
		next := h.cfg.KeyRefresh
		if err := h.keys.refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			h.log.WarnContext(ctx, "teams: scheduled fetch of the signing keys failed; cached keys stay in use", "err", err, "retry_in", keysRetryAfterFailure)
			next = keysRetryAfterFailure
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func (h *Handler) reject(ctx context.Context, w http.ResponseWriter, r *http.Request, status int, err error) {
	level := slog.LevelInfo
	if status == http.StatusServiceUnavailable {
		level = slog.LevelError
	}
	h.log.Log(ctx, level, "teams: request rejected", "status", status, "err", err, "remote_addr", r.RemoteAddr)
	msg := http.StatusText(status)
	switch status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", "Bearer")
	case http.StatusBadRequest, http.StatusForbidden, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		msg += ": " + err.Error() // says what to fix; nothing secret is in it
	}
	http.Error(w, msg, status)
}

// jsonContentType reports whether a Content-Type header names JSON
// (application/json or application/*+json, any parameters).
func jsonContentType(v string) bool {
	mt, _, err := mime.ParseMediaType(v)
	if err != nil {
		return false
	}
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// sameServiceURL compares service URLs case-insensitively, ignoring one
// trailing slash, as Microsoft's Teams SDK does.
func sameServiceURL(a, b string) bool {
	return a != "" && strings.EqualFold(strings.TrimSuffix(a, "/"), strings.TrimSuffix(b, "/"))
}

// proxied reports whether the request came through a reverse proxy, whose
// own connection is loopback although the client is not.
func proxied(r *http.Request) bool {
	for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-Ip"} {
		if r.Header.Get(h) != "" {
			return true
		}
	}
	return false
}

func isLoopbackPeer(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
