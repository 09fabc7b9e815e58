package teams

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

const (
	// keysMaxAge is how long a fetched key set is trusted before it is
	// fetched again; Microsoft asks for at least a daily refresh.
	keysMaxAge = 24 * time.Hour
	// keysRetryAfterFailure spaces out fetch attempts after a failure, so a
	// broken metadata endpoint is not hammered by every request.
	keysRetryAfterFailure = 10 * time.Second
	// unknownKidRefetchEvery rate-limits the extra fetch made when a token
	// names a key we do not know (a new key or a forgery).
	unknownKidRefetchEvery = time.Minute
	// maxKeyDocument bounds the metadata and JWKS documents we read.
	maxKeyDocument = 1 << 20
	// minRSABits is the smallest modulus accepted for a signing key.
	minRSABits = 2048
)

// errKeysUnavailable means no signing keys could be obtained at all: the
// request cannot be judged, which is our failure, not the caller's.
var errKeysUnavailable = errors.New("teams: signing keys unavailable")

// errUnknownKey means the token names a key that is not in the key set.
var errUnknownKey = errors.New("teams: unknown signing key")

// signingKey is one RSA key of the Bot Framework key set with the channels
// it is endorsed for.
type signingKey struct {
	pub          *rsa.PublicKey
	endorsements []string
}

// jsonWebKey is one entry of a JWKS document, including Microsoft's
// non-standard endorsements array.
type jsonWebKey struct {
	Kty          string   `json:"kty"`
	Use          string   `json:"use"`
	Kid          string   `json:"kid"`
	N            string   `json:"n"`
	E            string   `json:"e"`
	Endorsements []string `json:"endorsements"`
}

// keySet is a cache of the signing keys named by an OpenID metadata
// document. It is safe for concurrent use.
type keySet struct {
	metadataURL string
	client      *http.Client
	now         func() time.Time
	log         *slog.Logger

	mu         sync.Mutex
	keys       map[string]signingKey // nil until the first successful fetch
	fetched    time.Time             // last successful fetch
	attempted  time.Time             // last fetch attempt, successful or not
	unknownKid *rate.Limiter         // extra fetches for unknown key ids
}

func newKeySet(metadataURL string, client *http.Client, now func() time.Time, log *slog.Logger) *keySet {
	return &keySet{
		metadataURL: metadataURL,
		client:      client,
		now:         now,
		log:         log,
		unknownKid:  rate.NewLimiter(rate.Every(unknownKidRefetchEvery), 1),
	}
}

// key returns the key with id kid, fetching the key set when it is missing or
// older than keysMaxAge, and once more (rate-limited) when kid is unknown.
// It returns errKeysUnavailable when no key set could ever be fetched and
// errUnknownKey when kid is not in the current set.
func (ks *keySet) key(ctx context.Context, kid string) (signingKey, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	now := ks.now()
	refreshed := false
	if ks.keys == nil || now.Sub(ks.fetched) >= keysMaxAge {
		if ks.attempted.IsZero() || now.Sub(ks.attempted) >= keysRetryAfterFailure {
			refreshed = true
			if err := ks.refresh(ctx, now); err != nil {
				ks.log.WarnContext(ctx, "teams: fetching signing keys failed", "err", err, "stale_keys", len(ks.keys))
			}
		}
		if ks.keys == nil {
			return signingKey{}, errKeysUnavailable
		}
	}
	if k, ok := ks.keys[kid]; ok {
		return k, nil
	}
	if !refreshed && ks.unknownKid.AllowN(now, 1) {
		ks.log.InfoContext(ctx, "teams: unknown signing key, fetching the key set again", "kid", kid)
		if err := ks.refresh(ctx, now); err != nil {
			ks.log.WarnContext(ctx, "teams: fetching signing keys failed", "err", err)
		}
		if k, ok := ks.keys[kid]; ok {
			return k, nil
		}
	}
	return signingKey{}, fmt.Errorf("%w %q", errUnknownKey, kid)
}

// refresh fetches the metadata and the key set it names. On failure the
// previous keys are kept. The fetch is not cancelled with the request that
// triggered it (a caller hanging up must not count as a failed fetch). Called
// with ks.mu held.
func (ks *keySet) refresh(ctx context.Context, now time.Time) error {
	ks.attempted = now
	ctx = context.WithoutCancel(ctx)
	var meta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := ks.getJSON(ctx, ks.metadataURL, &meta); err != nil {
		return fmt.Errorf("teams: openid metadata: %w", err)
	}
	if meta.JWKSURI == "" {
		return errors.New("teams: openid metadata has no jwks_uri")
	}
	var doc struct {
		Keys []jsonWebKey `json:"keys"`
	}
	if err := ks.getJSON(ctx, meta.JWKSURI, &doc); err != nil {
		return fmt.Errorf("teams: jwks: %w", err)
	}
	keys := make(map[string]signingKey, len(doc.Keys))
	for _, k := range doc.Keys {
		sk, err := parseJWK(k)
		if err != nil {
			ks.log.DebugContext(ctx, "teams: skipping signing key", "kid", k.Kid, "err", err)
			continue
		}
		keys[k.Kid] = sk
	}
	if len(keys) == 0 {
		return errors.New("teams: jwks holds no usable RSA key")
	}
	ks.keys = keys
	ks.fetched = now
	return nil
}

func (ks *keySet) getJSON(ctx context.Context, url string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := ks.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxKeyDocument))
	if err != nil {
		return err
	}
	return json.Unmarshal(body, v)
}

// parseJWK turns a JWKS entry into an RSA public key.
func parseJWK(k jsonWebKey) (signingKey, error) {
	if k.Kty != "RSA" {
		return signingKey{}, fmt.Errorf("key type %q", k.Kty)
	}
	if k.Use != "" && k.Use != "sig" {
		return signingKey{}, fmt.Errorf("key use %q", k.Use)
	}
	if k.Kid == "" {
		return signingKey{}, errors.New("no kid")
	}
	n, err := base64.RawURLEncoding.DecodeString(trimPad(k.N))
	if err != nil {
		return signingKey{}, fmt.Errorf("modulus: %w", err)
	}
	e, err := base64.RawURLEncoding.DecodeString(trimPad(k.E))
	if err != nil {
		return signingKey{}, fmt.Errorf("exponent: %w", err)
	}
	if len(e) == 0 || len(e) > 4 {
		return signingKey{}, errors.New("exponent size")
	}
	exp := 0
	for _, b := range e {
		exp = exp<<8 | int(b)
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}
	if pub.N.BitLen() < minRSABits || exp < 3 || exp%2 == 0 {
		return signingKey{}, fmt.Errorf("weak key (%d bits, e=%d)", pub.N.BitLen(), exp)
	}
	return signingKey{pub: pub, endorsements: k.Endorsements}, nil
}

func trimPad(s string) string {
	for len(s) > 0 && s[len(s)-1] == '=' {
		s = s[:len(s)-1]
	}
	return s
}
