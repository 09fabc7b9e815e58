// Package teamstest provides in-process fakes of the Microsoft side of a Teams
// bot, built on net/http/httptest, for tests, the demo and end-to-end runs:
//
//   - Issuer: the Bot Framework OpenID metadata and JWKS (RSA keys with
//     endorsements, rotation), a client-credentials token endpoint, and a
//     minter of channel tokens, valid or forged in every way that matters;
//   - Connector: a Bot Connector that records what a bot sends and answers
//     like Teams does, including its rate limits, 413, 403 and 429;
//   - Channel: posts Teams-shaped activities, signed by the Issuer, to a
//     bot's messaging endpoint.
//
// All types are safe for concurrent use.
package teamstest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// BotFrameworkIssuer is the iss claim of channel tokens, as Microsoft sets it.
const BotFrameworkIssuer = "https://api.botframework.com"

// DefaultScope is the only scope the token endpoint grants.
const DefaultScope = "https://api.botframework.com/.default"

// Key is an RSA signing key of the Issuer.
type Key struct {
	ID           string
	Endorsements []string
	priv         *rsa.PrivateKey
}

// Public returns the public half of the key.
func (k *Key) Public() *rsa.PublicKey { return &k.priv.PublicKey }

// Issuer fakes login.botframework.com (OpenID metadata and keys) and
// login.microsoftonline.com (the client-credentials token endpoint).
type Issuer struct {
	// URL is the base URL of the server, e.g. http://127.0.0.1:1234.
	URL string
	// Iss is the issuer claim of the tokens Mint signs: BotFrameworkIssuer.
	Iss string

	srv *httptest.Server

	mu        sync.Mutex
	now       func() time.Time
	signing   *Key
	published []*Key
	clients   map[string]string // client id → secret
	tokens    map[string]accessToken
	counts    IssuerCounts
	nextKid   int
	stray     *Key // never published
}

type accessToken struct {
	clientID string
	expires  time.Time
}

// IssuerCounts counts the requests the Issuer served.
type IssuerCounts struct {
	Metadata int // GET of the OpenID metadata
	JWKS     int // GET of the key set
	Token    int // POST to the token endpoint, successful or not
}

// NewIssuer starts an Issuer with one signing key endorsed for "msteams".
// Close it when done.
func NewIssuer() *Issuer {
	i := &Issuer{
		Iss:     BotFrameworkIssuer,
		now:     time.Now,
		clients: map[string]string{},
		tokens:  map[string]accessToken{},
	}
	i.signing = i.newKey("msteams")
	i.published = []*Key{i.signing}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/.well-known/openidconfiguration", i.serveMetadata)
	mux.HandleFunc("GET /v1/.well-known/keys", i.serveKeys)
	mux.HandleFunc("POST /{tenant}/oauth2/v2.0/token", i.serveToken)
	i.srv = httptest.NewServer(mux)
	i.URL = i.srv.URL
	return i
}

// Close shuts the server down.
func (i *Issuer) Close() { i.srv.Close() }

// SetClock replaces the clock used to mint and check tokens (default
// time.Now).
func (i *Issuer) SetClock(now func() time.Time) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.now = now
}

// MetadataURL is the OpenID metadata document (HandlerConfig.OpenIDMetadataURL).
func (i *Issuer) MetadataURL() string { return i.URL + "/v1/.well-known/openidconfiguration" }

// JWKSURL is the key set named by the metadata.
func (i *Issuer) JWKSURL() string { return i.URL + "/v1/.well-known/keys" }

// TokenURL is the token endpoint for tenant, like
// https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token. Pass
// "{tenant}" to get a template.
func (i *Issuer) TokenURL(tenant string) string {
	return i.URL + "/" + tenant + "/oauth2/v2.0/token"
}

// AddClient registers credentials the token endpoint accepts.
func (i *Issuer) AddClient(clientID, secret string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.clients[clientID] = secret
}

// SigningKey returns the key Mint signs with.
func (i *Issuer) SigningKey() *Key {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.signing
}

// Keys returns the published keys.
func (i *Issuer) Keys() []*Key {
	i.mu.Lock()
	defer i.mu.Unlock()
	return slices.Clone(i.published)
}

// Rotate publishes a new key endorsed for "msteams" and signs with it from
// now on. The old key stays published until Retire.
func (i *Issuer) Rotate() (newKey, old *Key) {
	k := i.newKey("msteams")
	i.mu.Lock()
	defer i.mu.Unlock()
	old = i.signing
	i.published = append(i.published, k)
	i.signing = k
	return k, old
}

// Retire removes k from the published key set.
func (i *Issuer) Retire(k *Key) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.published = slices.DeleteFunc(i.published, func(p *Key) bool { return p.ID == k.ID })
}

// AddKey publishes a new key with the given endorsements (none: endorsed for
// no channel) without signing with it; use it with Sign.
func (i *Issuer) AddKey(endorsements ...string) *Key {
	k := i.newKey(endorsements...)
	i.mu.Lock()
	defer i.mu.Unlock()
	i.published = append(i.published, k)
	return k
}

// UnpublishedKey returns a new key that is not in the key set.
func (i *Issuer) UnpublishedKey() *Key { return i.newKey("msteams") }

// Counts returns how many requests the Issuer served.
func (i *Issuer) Counts() IssuerCounts {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.counts
}

func (i *Issuer) newKey(endorsements ...string) *Key {
	i.mu.Lock()
	n := i.nextKid
	i.nextKid++
	i.mu.Unlock()
	if endorsements == nil {
		endorsements = []string{}
	}
	kid := fmt.Sprintf("fake-key-%d-%s", n+1, randomString(6))
	return &Key{ID: kid, Endorsements: endorsements, priv: pooledKey(n)}
}

// RSA key generation is slow (most of a second under the race detector), so
// the n-th key of every Issuer shares its private key with the n-th key of
// the others: the keys of one Issuer are always distinct. Fine for fakes.
var keyPool struct {
	mu   sync.Mutex
	keys []*rsa.PrivateKey
}

func pooledKey(n int) *rsa.PrivateKey {
	keyPool.mu.Lock()
	defer keyPool.mu.Unlock()
	for len(keyPool.keys) <= n {
		priv, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(fmt.Sprintf("teamstest: generate RSA key: %v", err))
		}
		keyPool.keys = append(keyPool.keys, priv)
	}
	return keyPool.keys[n]
}

// Claims describes a channel token for Sign. Zero fields take defaults.
type Claims struct {
	Audience   string // aud: the bot's app id
	ServiceURL string // serviceurl
	Issuer     string // iss; default Issuer.Iss
	IssuedAt   time.Time
	NotBefore  time.Time // default now − 1 min
	Expiry     time.Time // default now + 1 h
	// Key signs the token and names it in the kid header; default the
	// signing key.
	Key *Key
	// KeyID overrides the kid header (e.g. a published id over another key's
	// signature).
	KeyID string
	// Method overrides the signing method (default RS256); HS256 is signed
	// with the key's public modulus bytes as the secret, the classic
	// algorithm-confusion forgery, and "none" yields an unsigned token.
	Method string
	// Extra claims are added as they are; a nil value removes the claim.
	Extra map[string]any
}

// Sign returns a channel token described by c.
func (i *Issuer) Sign(c Claims) string {
	i.mu.Lock()
	now := i.now()
	if c.Key == nil {
		c.Key = i.signing
	}
	if c.Issuer == "" {
		c.Issuer = i.Iss
	}
	i.mu.Unlock()
	if c.IssuedAt.IsZero() {
		c.IssuedAt = now.Add(-time.Minute)
	}
	if c.NotBefore.IsZero() {
		c.NotBefore = now.Add(-time.Minute)
	}
	if c.Expiry.IsZero() {
		c.Expiry = now.Add(time.Hour)
	}
	mc := jwt.MapClaims{
		"iss":        c.Issuer,
		"aud":        c.Audience,
		"iat":        c.IssuedAt.Unix(),
		"nbf":        c.NotBefore.Unix(),
		"exp":        c.Expiry.Unix(),
		"serviceurl": c.ServiceURL,
	}
	for k, v := range c.Extra {
		if v == nil {
			delete(mc, k)
		} else {
			mc[k] = v
		}
	}
	kid := c.Key.ID
	if c.KeyID != "" {
		kid = c.KeyID
	}
	var (
		s   string
		err error
	)
	switch c.Method {
	case "", "RS256":
		t := jwt.NewWithClaims(jwt.SigningMethodRS256, mc)
		t.Header["kid"] = kid
		s, err = t.SignedString(c.Key.priv)
	case "HS256":
		t := jwt.NewWithClaims(jwt.SigningMethodHS256, mc)
		t.Header["kid"] = kid
		s, err = t.SignedString(c.Key.priv.N.Bytes())
	case "none":
		t := jwt.NewWithClaims(jwt.SigningMethodNone, mc)
		t.Header["kid"] = kid
		s, err = t.SignedString(jwt.UnsafeAllowNoneSignatureType)
	default:
		panic("teamstest: unsupported method " + c.Method)
	}
	if err != nil {
		panic(fmt.Sprintf("teamstest: sign token: %v", err))
	}
	return s
}

// TokenKind names a channel token that Mint produces.
type TokenKind string

// The tokens Mint knows. All but TokenValid must be refused by a bot.
const (
	TokenValid           TokenKind = "valid"
	TokenExpired         TokenKind = "expired"           // exp 10 min ago (beyond a 5 min leeway)
	TokenNotYetValid     TokenKind = "not-yet-valid"     // nbf in 10 min
	TokenUnknownKey      TokenKind = "unknown-key"       // signed by a key that is not published
	TokenBadSignature    TokenKind = "bad-signature"     // published kid, signed by another key
	TokenWrongIssuer     TokenKind = "wrong-issuer"      // iss https://evil.example.com
	TokenWrongAudience   TokenKind = "wrong-audience"    // aud of another bot
	TokenWrongServiceURL TokenKind = "wrong-serviceurl"  // serviceurl of another host
	TokenUnendorsedKey   TokenKind = "unendorsed-key"    // published key endorsed for another channel only (403)
	TokenAlgHS256        TokenKind = "alg-hs256"         // HMAC with the public key as secret
	TokenAlgNone         TokenKind = "alg-none"          // unsigned
	TokenNoServiceURL    TokenKind = "no-serviceurl"     // no serviceurl claim
	TokenNoExpiry        TokenKind = "no-expiry"         // no exp claim
	TokenExpiredInLeeway TokenKind = "expired-in-leeway" // exp 2 min ago: accepted with a 5 min leeway
)

// TokenKinds lists every kind Mint knows.
var TokenKinds = []TokenKind{
	TokenValid, TokenExpired, TokenNotYetValid, TokenUnknownKey, TokenBadSignature, TokenWrongIssuer,
	TokenWrongAudience, TokenWrongServiceURL, TokenUnendorsedKey, TokenAlgHS256, TokenAlgNone,
	TokenNoServiceURL, TokenNoExpiry, TokenExpiredInLeeway,
}

// Mint returns a channel token of the given kind for a bot with app id appID
// and an activity whose serviceUrl is serviceURL.
func (i *Issuer) Mint(kind TokenKind, appID, serviceURL string) string {
	i.mu.Lock()
	now := i.now()
	i.mu.Unlock()
	c := Claims{Audience: appID, ServiceURL: serviceURL}
	switch kind {
	case TokenValid:
	case TokenExpired:
		c.IssuedAt, c.NotBefore, c.Expiry = now.Add(-2*time.Hour), now.Add(-2*time.Hour), now.Add(-10*time.Minute)
	case TokenExpiredInLeeway:
		c.IssuedAt, c.NotBefore, c.Expiry = now.Add(-time.Hour), now.Add(-time.Hour), now.Add(-2*time.Minute)
	case TokenNotYetValid:
		c.IssuedAt, c.NotBefore, c.Expiry = now.Add(10*time.Minute), now.Add(10*time.Minute), now.Add(2*time.Hour)
	case TokenUnknownKey:
		c.Key = i.strayKey()
	case TokenBadSignature:
		c.Key, c.KeyID = i.strayKey(), i.SigningKey().ID
	case TokenWrongIssuer:
		c.Issuer = "https://evil.example.com"
	case TokenWrongAudience:
		c.Audience = "00000000-0000-0000-0000-000000000bad"
	case TokenWrongServiceURL:
		c.ServiceURL = "https://evil.example.com/teams/"
	case TokenUnendorsedKey:
		c.Key = i.unendorsedKey()
	case TokenAlgHS256:
		c.Method = "HS256"
	case TokenAlgNone:
		c.Method = "none"
	case TokenNoServiceURL:
		c.Extra = map[string]any{"serviceurl": nil}
	case TokenNoExpiry:
		c.Extra = map[string]any{"exp": nil}
	default:
		panic("teamstest: unknown token kind " + string(kind))
	}
	return i.Sign(c)
}

// strayKey returns (creating it once) a key that is never published.
func (i *Issuer) strayKey() *Key {
	i.mu.Lock()
	k := i.stray
	i.mu.Unlock()
	if k != nil {
		return k
	}
	k = i.newKey("msteams")
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.stray == nil {
		i.stray = k
	}
	return i.stray
}

// unendorsedKey returns (publishing it once) a key endorsed only for a
// channel other than msteams.
func (i *Issuer) unendorsedKey() *Key {
	i.mu.Lock()
	for _, k := range i.published {
		if len(k.Endorsements) == 1 && k.Endorsements[0] == "webchat" {
			i.mu.Unlock()
			return k
		}
	}
	i.mu.Unlock()
	return i.AddKey("webchat")
}

func (i *Issuer) serveMetadata(w http.ResponseWriter, r *http.Request) {
	i.mu.Lock()
	i.counts.Metadata++
	i.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                i.Iss,
		"authorization_endpoint":                i.URL + "/v1/.well-known/authorize",
		"jwks_uri":                              i.JWKSURL(),
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"token_endpoint_auth_methods_supported": []string{"private_key_jwt"},
	})
}

func (i *Issuer) serveKeys(w http.ResponseWriter, r *http.Request) {
	i.mu.Lock()
	i.counts.JWKS++
	keys := slices.Clone(i.published)
	i.mu.Unlock()
	type jwk struct {
		Kty          string   `json:"kty"`
		Use          string   `json:"use"`
		Kid          string   `json:"kid"`
		N            string   `json:"n"`
		E            string   `json:"e"`
		Endorsements []string `json:"endorsements"`
	}
	doc := struct {
		Keys []jwk `json:"keys"`
	}{Keys: []jwk{}}
	for _, k := range keys {
		doc.Keys = append(doc.Keys, jwk{
			Kty:          "RSA",
			Use:          "sig",
			Kid:          k.ID,
			N:            base64.RawURLEncoding.EncodeToString(k.priv.N.Bytes()),
			E:            base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.priv.E)).Bytes()),
			Endorsements: k.Endorsements,
		})
	}
	writeJSON(w, http.StatusOK, doc)
}

// serveToken is the client-credentials grant, as Entra ID answers it.
func (i *Issuer) serveToken(w http.ResponseWriter, r *http.Request) {
	i.mu.Lock()
	i.counts.Token++
	i.mu.Unlock()
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "malformed form")
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials")
		return
	}
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	i.mu.Lock()
	want, known := i.clients[id]
	i.mu.Unlock()
	if !known || secret == "" || secret != want {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
		return
	}
	if scope := r.PostForm.Get("scope"); scope != DefaultScope {
		oauthError(w, http.StatusBadRequest, "invalid_scope", "AADSTS70011: The provided value for scope "+scope+" is not valid.")
		return
	}
	tok := "fake-at." + randomString(32)
	i.mu.Lock()
	i.tokens[tok] = accessToken{clientID: id, expires: i.now().Add(time.Hour)}
	i.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"expires_in":     3599,
		"ext_expires_in": 3599,
		"access_token":   tok,
	})
}

// ValidAccessToken reports whether tok was issued by the token endpoint and
// has not expired or been revoked, and for which client.
func (i *Issuer) ValidAccessToken(tok string) (clientID string, ok bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	at, found := i.tokens[tok]
	if !found || !i.now().Before(at.expires) {
		return "", false
	}
	return at.clientID, true
}

// RevokeAccessTokens invalidates every access token issued so far.
func (i *Issuer) RevokeAccessTokens() {
	i.mu.Lock()
	defer i.mu.Unlock()
	clear(i.tokens)
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]any{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return strings.TrimRight(base64.RawURLEncoding.EncodeToString(b), "=")
}
