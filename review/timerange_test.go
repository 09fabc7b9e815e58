package review

import (
	"strings"
	"testing"
	"time"
)

func TestParseRange(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	now := testNow // Monday 2026-11-16 06:00 UTC
	tests := []struct {
		name             string
		from, to, last   string
		now              time.Time
		wantFrom, wantTo time.Time
		wantErr          string
	}{
		{name: "dates, to inclusive", from: "2026-11-09", to: "2026-11-15", now: now, wantFrom: weekFrom, wantTo: weekTo},
		{name: "one day", from: "2026-11-09", to: "2026-11-09", now: now, wantFrom: weekFrom, wantTo: weekFrom.AddDate(0, 0, 1)},
		{name: "to defaults to now", from: "2026-11-09", now: now, wantFrom: weekFrom, wantTo: now},
		{name: "RFC 3339, to exclusive", from: "2026-11-09T06:00:00Z", to: "2026-11-16T06:00:00+01:00", now: now,
			wantFrom: weekFrom.Add(6 * time.Hour), wantTo: weekTo.Add(5 * time.Hour)},
		{name: "dates in now's location", from: "2026-11-09", to: "2026-11-15", now: now.In(berlin),
			wantFrom: weekFrom.Add(-time.Hour), wantTo: weekTo.Add(-time.Hour)},
		{name: "last 7d", last: "7d", now: now, wantFrom: now.AddDate(0, 0, -7), wantTo: now},
		{name: "last 2w", last: "2w", now: now, wantFrom: now.AddDate(0, 0, -14), wantTo: now},
		{name: "last 36h", last: "36h", now: now, wantFrom: now.Add(-36 * time.Hour), wantTo: now},
		{name: "last Go duration", last: "90m", now: now, wantFrom: now.Add(-90 * time.Minute), wantTo: now},
		{name: "nothing", now: now, wantErr: "from is required"},
		{name: "to without from", to: "2026-11-15", now: now, wantErr: "from is required"},
		{name: "last and from", from: "2026-11-09", last: "7d", now: now, wantErr: "not both"},
		{name: "last and to", to: "2026-11-09", last: "7d", now: now, wantErr: "not both"},
		{name: "bad last", last: "seven days", now: now, wantErr: `bad last "seven days"`},
		{name: "zero last", last: "0d", now: now, wantErr: "must be positive"},
		{name: "negative last", last: "-5h", now: now, wantErr: "must be positive"},
		{name: "huge last", last: "999999w", now: now, wantErr: "longer than 100 years"},
		{name: "bad from", from: "09.11.2026", now: now, wantErr: `bad from "09.11.2026": want a date (2026-11-16) or an RFC 3339 time`},
		{name: "bad to", from: "2026-11-09", to: "2026-13-01", now: now, wantErr: `bad to "2026-13-01"`},
		{name: "reversed", from: "2026-11-16", to: "2026-11-09", now: now, wantErr: "must be before to"},
		{name: "from in the future, to defaulted", from: "2026-12-01", now: now, wantErr: "must be before to"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from, to, err := ParseRange(tt.from, tt.to, tt.last, tt.now)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "review: ") {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !from.Equal(tt.wantFrom) || !to.Equal(tt.wantTo) {
				t.Errorf("range = %v .. %v, want %v .. %v", from, to, tt.wantFrom, tt.wantTo)
			}
		})
	}
}

func TestRangeName(t *testing.T) {
	tests := []struct {
		from, to time.Time
		want     string
	}{
		{weekFrom, weekTo, "2026-11-09_2026-11-15"},
		{weekFrom, weekFrom.AddDate(0, 0, 1), "2026-11-09"},
		{weekFrom.Add(time.Hour), weekTo, "20261109T010000Z_20261116T000000Z"},
	}
	for _, tt := range tests {
		if got := rangeName(tt.from, tt.to); got != tt.want {
			t.Errorf("rangeName(%v, %v) = %q, want %q", tt.from, tt.to, got, tt.want)
		}
	}
}
