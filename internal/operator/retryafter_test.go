package operator

import (
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 6, 19, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"2", 2 * time.Second, true},
		{"0", 0, true},
		{" 120 ", 2 * time.Minute, true},
		{"Thu, 19 Jun 2025 12:01:30 GMT", 90 * time.Second, true},   // IMF-fixdate
		{"Thursday, 19-Jun-25 12:00:05 GMT", 5 * time.Second, true}, // RFC 850
		{"Thu Jun 19 12:00:10 2025", 10 * time.Second, true},        // asctime
		{"Thu, 19 Jun 2025 11:59:00 GMT", 0, true},                  // in the past: clamp to 0
		{"99999999999999999999999", maxRetryAfter, true},            // overflow: clamp
		{"Fri, 19 Jun 2099 12:00:00 GMT", maxRetryAfter, true},      // far future: clamp
		{"", 0, false},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{"2s", 0, false},
	}
	for _, tt := range tests {
		got, ok := ParseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"2", "Thu, 19 Jun 2025 12:01:30 GMT", "-1", "99999999999999999999", ""} {
		f.Add(s)
	}
	now := time.Date(2025, 6, 19, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := ParseRetryAfter(s, now)
		if d < 0 || d > maxRetryAfter || (!ok && d != 0) {
			t.Fatalf("ParseRetryAfter(%q) = %v, %v", s, d, ok)
		}
	})
}
