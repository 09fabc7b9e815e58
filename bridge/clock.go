package bridge

import "time"

// Clock is the time source of the background loops (poller, timeout
// sweeper, leader lease). Tests inject a fake (bridgetest.Clock) and step
// time instead of sleeping.
type Clock interface {
	Now() time.Time
	// After sends the time on the returned channel once d has passed, like
	// time.After.
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// After returns time.After(d).
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
