package slack

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Slack signs every request it sends (events and interactivity) with the
// app's signing secret:
//
//	X-Slack-Request-Timestamp: 1531420618
//	X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:<timestamp>:<raw body>">
//
// A timestamp further than MaxSkew (5 minutes) from the bridge's clock is
// refused, so a captured request cannot be replayed later.
const (
	HeaderTimestamp  = "X-Slack-Request-Timestamp"
	HeaderSignature  = "X-Slack-Signature"
	HeaderRetryNum   = "X-Slack-Retry-Num"
	HeaderRetryCause = "X-Slack-Retry-Reason"
)

// DefaultMaxSkew is Slack's documented replay window.
const DefaultMaxSkew = 5 * time.Minute

var (
	errNoSignature = errors.New("missing X-Slack-Signature or X-Slack-Request-Timestamp")
	errStale       = errors.New("X-Slack-Request-Timestamp is more than 5 minutes from the bridge's clock")
	errBadSig      = errors.New("X-Slack-Signature does not match the body and the signing secret")
)

// Sign returns the X-Slack-Signature value for body sent at ts (Unix
// seconds). slacktest signs with it too, so the two cannot drift apart
// silently: the fake's tests check it against Slack's documented example.
func Sign(secret string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%d:", ts)
	mac.Write(body)
	return "v0=" + hex.EncodeToString(mac.Sum(nil))
}

// verify checks a request's signature headers against body.
func verify(secret string, maxSkew time.Duration, now time.Time, h http.Header, body []byte) error {
	tsv, sig := strings.TrimSpace(h.Get(HeaderTimestamp)), strings.TrimSpace(h.Get(HeaderSignature))
	if tsv == "" || sig == "" {
		return errNoSignature
	}
	ts, err := parseUnix(tsv)
	if err != nil {
		return fmt.Errorf("X-Slack-Request-Timestamp %q is not Unix seconds", clip(tsv, 40))
	}
	if d := now.Sub(time.Unix(ts, 0)); d > maxSkew || d < -maxSkew {
		return errStale
	}
	if !strings.HasPrefix(sig, "v0=") {
		return errBadSig
	}
	want := Sign(secret, ts, body)
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return errBadSig
	}
	return nil
}

func parseUnix(s string) (int64, error) { return strconv.ParseInt(strings.TrimSpace(s), 10, 64) }
