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
	"net/url"
	"sync"
	"time"
)

const (
	// keysMaxAge is how long a fetched key set is trusted before a request
	// that finds it older starts a fetch in the background; Microsoft asks
	// for at least a daily refresh.
	keysMaxAge = 24 * time.Hour
	// DefaultKeyRefresh is how often Run fetches the key set.
	DefaultKeyRefresh = 4 * time.Hour
	// keysRetryAfterFailure is how soon Run tries again after a failed fetch.
	keysRetryAfterFailure = time.Minute
	// DefaultKeyRefetchSpacing is the least time between the starts of two
	// fetches: an unknown kid fetches the set at most this often.
	DefaultKeyRefetchSpacing = 5 * time.Second
	// unknownKidMemory is how long a kid that a fetch started after its
	// request did not find is refused without another fetch.
	unknownKidMemory = time.Minute
	// keysFetchTimeout bounds one fetch (metadata and JWKS together).
	keysFetchTimeout = 20 * time.Second
	// maxKeyDocument bounds the metadata and JWKS documents we read.
	maxKeyDocument = 1 << 20
	// minRSABits is the smallest modulus accepted for a signing key.
	minRSABits = 2048
	// maxUnknownKids bounds the memory of unknown kids.
	maxUnknownKids = 1024
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

// keySet caches the signing keys named by an OpenID metadata document. Its
// mutex is never held across a fetch: readers get the cached keys at once
// while one fetch at a time runs in its own goroutine, which close cancels
// and waits for. It is safe for concurrent use.
type keySet struct {
	metadataURL string
	client      *http.Client
	now         func() time.Time // the clock of keysMaxAge (tests move it)
	spacing     time.Duration    // least time between fetch starts
	log         *slog.Logger

	mu       sync.Mutex
	keys     map[string]signingKey // nil until the first successful fetch
	fetched  time.Time             // now() of the last successful fetch
	inflight *fetchCall            // the running fetch, nil if none
	last     *fetchCall            // the last finished fetch
	unknown  map[string]time.Time  // kid → refused without a fetch until then
	closed   bool                  // close was called: no fetch starts

	base    context.Context // the fetches' context, cancelled by close
	cancel  context.CancelFunc
	fetches sync.WaitGroup // the fetch goroutines
}

// errKeySetClosed is the error of a fetch asked for after close.
var errKeySetClosed = errors.New("teams: the handler has stopped; no signing key fetch starts")

// fetchCall is one fetch of the key set; done is closed when it finished.
type fetchCall struct {
	started time.Time // wall clock, for the spacing
	done    chan struct{}
	err     error
}

func newKeySet(metadataURL string, client *http.Client, now func() time.Time, spacing time.Duration, log *slog.Logger) *keySet {
	base, cancel := context.WithCancel(context.Background())
	return &keySet{metadataURL: metadataURL, client: client, now: now, spacing: spacing, log: log,
		unknown: map[string]time.Time{}, base: base, cancel: cancel}
}

// close cancels the fetch in flight, if any, waits for it to end and lets
// no other start: afterwards nothing of the key set runs.
func (ks *keySet) close() {
	ks.mu.Lock()
	ks.closed = true
	ks.mu.Unlock()
	ks.cancel()
	ks.fetches.Wait()
}

// key returns the key with id kid. It never waits for the network while the
// key is cached (a set older than keysMaxAge is refreshed in the background).
// Before the first successful fetch it waits for one (errKeysUnavailable if
// it fails). For an unknown kid, when mayFetch is true, it waits for a fetch
// that starts after this call (at most one starts per spacing, shared by all
// callers); a kid still unknown after that is refused without fetching for
// unknownKidMemory. It returns errUnknownKey for kids not in the set.
func (ks *keySet) key(ctx context.Context, kid string, mayFetch bool) (signingKey, error) {
	arrived := time.Now()
	ks.mu.Lock()
	k, ok := ks.keys[kid]
	have := ks.keys != nil
	stale := have && ks.now().Sub(ks.fetched) >= keysMaxAge
	if stale {
		ks.startLocked()
	}
	refused := time.Now().Before(ks.unknown[kid])
	ks.mu.Unlock()
	switch {
	case ok:
		return k, nil
	case !have:
		if err := ks.await(ctx, arrived, false); err != nil {
			return signingKey{}, fmt.Errorf("%w: %w", errKeysUnavailable, err)
		}
	case !mayFetch || refused:
		return signingKey{}, fmt.Errorf("%w %q", errUnknownKey, kid)
	default:
		ks.log.InfoContext(ctx, "teams: unknown signing key, fetching the key set again", "kid", kid)
		if err := ks.await(ctx, arrived, true); err != nil {
			ks.log.WarnContext(ctx, "teams: fetching signing keys failed", "err", err)
		}
	}
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if k, ok := ks.keys[kid]; ok {
		return k, nil
	}
	if ks.keys == nil {
		return signingKey{}, errKeysUnavailable
	}
	if mayFetch && len(ks.unknown) < maxUnknownKids {
		ks.unknown[kid] = time.Now().Add(unknownKidMemory)
	}
	return signingKey{}, fmt.Errorf("%w %q", errUnknownKey, kid)
}

// await waits until a fetch that started at or after since has finished and
// returns its error. It joins the running fetch or starts one; when the last
// one started less than spacing ago it waits for the spacing if wait is true
// and otherwise returns the last fetch's error at once.
func (ks *keySet) await(ctx context.Context, since time.Time, wait bool) error {
	for {
		ks.mu.Lock()
		c := ks.inflight
		switch {
		case c != nil:
		case ks.last != nil && !ks.last.started.Before(since):
			err := ks.last.err
			ks.mu.Unlock()
			return err
		default:
			c = ks.startLocked()
		}
		var gap time.Duration
		if c == nil {
			if !wait {
				err := ks.last.err
				ks.mu.Unlock()
				return err
			}
			gap = ks.spacing - time.Since(ks.last.started)
		}
		ks.mu.Unlock()
		if c != nil {
			select {
			case <-c.done:
				if !c.started.Before(since) || !wait {
					return c.err
				}
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		t := time.NewTimer(gap)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// startLocked starts a fetch unless one is running (returned) or the last
// one started less than spacing ago (nil). Called with ks.mu held; the fetch
// runs without it.
func (ks *keySet) startLocked() *fetchCall {
	if ks.inflight != nil {
		return ks.inflight
	}
	if ks.closed {
		c := &fetchCall{started: time.Now(), done: make(chan struct{}), err: errKeySetClosed}
		close(c.done)
		return c
	}
	if ks.last != nil && time.Since(ks.last.started) < ks.spacing {
		return nil
	}
	c := &fetchCall{started: time.Now(), done: make(chan struct{})}
	ks.inflight = c
	ks.fetches.Add(1)
	go func() {
		defer ks.fetches.Done()
		// Not cancelled with the request that started it: a caller hanging
		// up must not count as a failed fetch. close cancels it.
		ctx, cancel := context.WithTimeout(ks.base, keysFetchTimeout)
		defer cancel()
		keys, err := ks.fetch(ctx)
		ks.mu.Lock()
		if err == nil {
			ks.keys, ks.fetched = keys, ks.now()
			clear(ks.unknown)
		} else if ks.base.Err() == nil {
			ks.log.Warn("teams: fetching signing keys failed", "err", err, "cached_keys", len(ks.keys))
		}
		c.err = err
		ks.inflight, ks.last = nil, c
		ks.mu.Unlock()
		close(c.done)
	}()
	return c
}

// refresh fetches the key set now (or joins the running fetch) and waits for
// it; used by Run.
func (ks *keySet) refresh(ctx context.Context) error {
	return ks.await(ctx, time.Now(), true)
}

// fetch reads the metadata and the key set it names.
func (ks *keySet) fetch(ctx context.Context) (map[string]signingKey, error) {
	body, err := ks.get(ctx, ks.metadataURL)
	if err != nil {
		return nil, fmt.Errorf("teams: openid metadata: %w", err)
	}
	jwksURI, err := parseOpenIDMetadata(body)
	if err != nil {
		return nil, err
	}
	if body, err = ks.get(ctx, jwksURI); err != nil {
		return nil, fmt.Errorf("teams: jwks: %w", err)
	}
	return parseKeySet(body, ks.log)
}

// parseOpenIDMetadata returns the jwks_uri of an OpenID metadata document.
func parseOpenIDMetadata(body []byte) (string, error) {
	var meta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &meta); err != nil {
		return "", fmt.Errorf("teams: openid metadata: %w", err)
	}
	u, err := url.Parse(meta.JWKSURI)
	if meta.JWKSURI == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("teams: openid metadata has no usable jwks_uri (%.100q)", meta.JWKSURI)
	}
	return meta.JWKSURI, nil
}

// parseKeySet reads a JWKS document; entries that are not usable RSA signing
// keys are skipped, and a set without any is an error.
func parseKeySet(body []byte, log *slog.Logger) (map[string]signingKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("teams: jwks: %w", err)
	}
	keys := make(map[string]signingKey, len(doc.Keys))
	for _, raw := range doc.Keys {
		var k jsonWebKey
		if err := json.Unmarshal(raw, &k); err != nil {
			log.Debug("teams: skipping malformed signing key", "err", err)
			continue
		}
		sk, err := parseJWK(k)
		if err != nil {
			log.Debug("teams: skipping signing key", "kid", k.Kid, "err", err)
			continue
		}
		keys[k.Kid] = sk
	}
	if len(keys) == 0 {
		return nil, errors.New("teams: jwks holds no usable RSA key")
	}
	return keys, nil
}

func (ks *keySet) get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := ks.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	return io.ReadAll(io.LimitReader(resp.Body, maxKeyDocument))
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
