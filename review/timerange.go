package review

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"
)

const dateLayout = "2006-01-02"

// maxLast bounds a relative range (100 years).
const maxLast = 100 * 366 * 24 * time.Hour

var lastRE = regexp.MustCompile(`^(\d{1,6})([hdw])$`)

// ParseRange reads an export range as the CLI (--from, --to, --last) and the
// HTTP endpoint (from=, to=, last=) give it, and returns it as [start, end).
//
//   - last is a span ending at now: "7d", "2w", "36h" or any Go duration
//     ("90m"). It cannot be combined with from or to.
//   - from and to are dates (YYYY-MM-DD, midnight in now's location) or RFC
//     3339 times. A date given as to includes that whole day: --from
//     2026-11-01 --to 2026-11-30 is all of November. An RFC 3339 to is
//     exclusive.
//   - to defaults to now; from is required unless last is given.
//
// The errors name the parameter and the expected form.
func ParseRange(from, to, last string, now time.Time) (time.Time, time.Time, error) {
	if last != "" {
		if from != "" || to != "" {
			return time.Time{}, time.Time{}, errors.New("review: give either last or from/to, not both")
		}
		d, err := parseLast(last)
		if err != nil {
			return time.Time{}, time.Time{}, err
		}
		return now.Add(-d), now, nil
	}
	if from == "" {
		return time.Time{}, time.Time{}, errors.New("review: from is required (YYYY-MM-DD or RFC 3339), or give last (e.g. 7d)")
	}
	start, err := parseBound("from", from, now.Location(), false)
	if err != nil {
		return time.Time{}, time.Time{}, err
	}
	end := now
	if to != "" {
		if end, err = parseBound("to", to, now.Location(), true); err != nil {
			return time.Time{}, time.Time{}, err
		}
	}
	if !start.Before(end) {
		return time.Time{}, time.Time{}, fmt.Errorf("review: from (%s) must be before to (%s)",
			start.Format(time.RFC3339), end.Format(time.RFC3339))
	}
	return start, end, nil
}

func parseLast(s string) (time.Duration, error) {
	var d time.Duration
	if m := lastRE.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1]) // at most 6 digits: cannot fail
		unit := map[string]time.Duration{"h": time.Hour, "d": 24 * time.Hour, "w": 7 * 24 * time.Hour}[m[2]]
		if time.Duration(n) > maxLast/unit {
			return 0, fmt.Errorf("review: last %q is longer than 100 years", s)
		}
		d = time.Duration(n) * unit
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("review: bad last %q: want a span like 7d, 2w, 36h or 90m", s)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("review: last %q must be positive", s)
	}
	if d > maxLast {
		return 0, fmt.Errorf("review: last %q is longer than 100 years", s)
	}
	return d, nil
}

// parseBound reads a date (in loc; the day after it when endOfDay) or an RFC
// 3339 time.
func parseBound(name, s string, loc *time.Location, endOfDay bool) (time.Time, error) {
	if t, err := time.ParseInLocation(dateLayout, s, loc); err == nil {
		if endOfDay {
			t = t.AddDate(0, 0, 1)
		}
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("review: bad %s %q: want a date (2026-11-16) or an RFC 3339 time (2026-11-16T06:00:00Z)", name, s)
	}
	return t, nil
}
