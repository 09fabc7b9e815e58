package bridge

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors shared by the domain and its adapters. Adapters wrap them with
// %w so callers can test with errors.Is.
var (
	// ErrNotFound: the requested session, conversation or record does not exist.
	ErrNotFound = errors.New("not found")
	// ErrIllegalTransition: the state machine does not allow the requested move.
	ErrIllegalTransition = errors.New("illegal state transition")
	// ErrConflict: the row changed underneath an optimistic update; reload and retry.
	ErrConflict = errors.New("concurrent update")
	// ErrChatClosed: the agent desk says the chat is closed or cannot be located.
	ErrChatClosed = errors.New("agent chat closed or not found")
	// ErrUserUnreachable: Teams refuses writes to the conversation (the user removed
	// or blocked the bot, 403 MessageWritesBlocked). Retrying cannot help.
	ErrUserUnreachable = errors.New("user unreachable: bot removed or blocked")
	// ErrUnauthorized: an outside system rejected our credentials.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrCardGone: the channel no longer lets the bot update a card it sent
	// (the activity was deleted or is too old); send a new one instead.
	ErrCardGone = errors.New("card can no longer be updated")
	// ErrLeaseLost: an outbox item's claim expired and was taken by another
	// worker (or released); the stale worker's outcome is refused.
	ErrLeaseLost = errors.New("outbox claim lost")
)

// PermanentError marks a failure that retrying will not cure (bad request,
// closed chat, blocked bot). The dispatcher stops retrying such an item at once.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent: " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so that IsPermanent reports true. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err (or anything it wraps) is a PermanentError,
// ErrChatClosed, ErrUserUnreachable or ErrUnauthorized.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p) || errors.Is(err, ErrChatClosed) || errors.Is(err, ErrUserUnreachable) || errors.Is(err, ErrUnauthorized)
}

// StatusError carries the HTTP status and the outside system's own error message,
// so logs and users see why a call failed.
type StatusError struct {
	System  string // "servicenow", "teams", "rasa"
	Op      string // e.g. "open chat"
	Status  int    // HTTP status, 0 if the request never got an answer
	Message string // the remote error envelope's message, if any
	Detail  string // the remote error envelope's detail, if any
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("%s: %s: HTTP %d", e.System, e.Op, e.Status)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	return msg
}

// ThrottledError is returned by an adapter when the outside system asked the
// bridge to wait (HTTP 429, or 503 with Retry-After, or the desk's own
// rate-limit headers). Being throttled is not a failure: the dispatcher and
// the poller reschedule for Until without spending an attempt, and every call
// to the same Destination backs off until then.
type ThrottledError struct {
	Destination string    // what throttled us, e.g. "servicenow", "teams", "rasa"
	Until       time.Time // when the outside system said to try again
	Err         error     // the underlying error (usually a *StatusError)
}

func (e *ThrottledError) Error() string {
	msg := fmt.Sprintf("%s: throttled until %s", e.Destination, e.Until.UTC().Format(time.RFC3339))
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *ThrottledError) Unwrap() error { return e.Err }

// Throttled reports whether err (or anything it wraps) is a ThrottledError
// and returns it.
func Throttled(err error) (*ThrottledError, bool) {
	var t *ThrottledError
	if errors.As(err, &t) {
		return t, true
	}
	return nil, false
}
