package teams

import (
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/url"
	"testing"

	"github.com/handoffhq/handoff/teams/teamstest"
)

// FuzzParseOpenIDMetadata: never panics; a jwks_uri it returns is an absolute
// http(s) URL.
func FuzzParseOpenIDMetadata(f *testing.F) {
	f.Add([]byte(`{"issuer":"https://api.botframework.com","jwks_uri":"https://login.botframework.com/v1/.well-known/keys","id_token_signing_alg_values_supported":["RS256"]}`))
	f.Add([]byte(`{"jwks_uri":""}`))
	f.Add([]byte(`{"jwks_uri":"file:///etc/passwd"}`))
	f.Add([]byte(`{"jwks_uri":5}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		uri, err := parseOpenIDMetadata(body)
		if err != nil {
			return
		}
		u, perr := url.Parse(uri)
		if perr != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			t.Fatalf("accepted jwks_uri %q", uri)
		}
	})
}

// FuzzParseKeySet: never panics; every key it keeps is an RSA key of at
// least 2048 bits with an odd exponent, under a non-empty kid.
func FuzzParseKeySet(f *testing.F) {
	issuer := teamstest.NewIssuer()
	issuer.Close()
	k := issuer.SigningKey()
	doc, _ := json.Marshal(map[string]any{"keys": []any{
		map[string]any{"kty": "RSA", "use": "sig", "kid": k.ID, "n": b64(k.Public().N.Bytes()), "e": "AQAB", "endorsements": []string{"msteams"}},
		map[string]any{"kty": "EC", "kid": "ec", "crv": "P-256"},
		map[string]any{"kty": "RSA", "kid": "small", "n": "AQAB", "e": "AQAB"},
		map[string]any{"kty": "RSA", "kid": 5},
	}})
	f.Add(doc)
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"x","n":"%%%","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"x","n":"AQAB","e":"AAAAAAAA"}]}`))
	f.Add([]byte(`{"keys":null}`))
	log := slog.New(slog.DiscardHandler)
	f.Fuzz(func(t *testing.T, body []byte) {
		keys, err := parseKeySet(body, log)
		if err != nil {
			if len(keys) != 0 {
				t.Fatal("keys returned with an error")
			}
			return
		}
		if len(keys) == 0 {
			t.Fatal("an empty key set accepted")
		}
		for kid, sk := range keys {
			if kid == "" || sk.pub == nil || sk.pub.N.BitLen() < minRSABits || sk.pub.E%2 == 0 || sk.pub.E < 3 {
				t.Fatalf("kept key %q: %+v", kid, sk.pub)
			}
		}
	})
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
