package dispatch

import (
	"math"
	"time"
)

// maxRetryAfter bounds a Retry-After the API sends. Retry-After is otherwise
// honoured exactly, even past retry.max (asking again sooner only earns
// another 429), but a nonsensical value must not stall the account forever.
const maxRetryAfter = 24 * time.Hour

// Backoff returns the full-jitter delay before the next try after the
// attempt-th failed attempt (attempt >= 1): rnd × min(max, initial·2^(attempt-1)),
// where rnd is uniform in [0, 1). A zero max means no ceiling.
func Backoff(p Retry, attempt int, rnd float64) time.Duration {
	initial, ceiling := p.Initial, p.Max
	if initial <= 0 {
		initial = time.Second
	}
	if attempt < 1 {
		attempt = 1
	}
	window := float64(initial) * math.Exp2(float64(attempt-1))
	if ceiling > 0 && window > float64(ceiling) {
		window = float64(ceiling)
	}
	if window > math.MaxInt64 {
		window = math.MaxInt64
	}
	switch {
	case rnd < 0:
		rnd = 0
	case rnd >= 1:
		rnd = math.Nextafter(1, 0)
	}
	return time.Duration(rnd * window)
}

// RetryDelay is how long to wait before retrying after the attempt-th failed
// attempt. A positive retryAfter (the API's Retry-After) wins over the
// backoff and over retry.max: the retry is never sooner than the API asked,
// up to maxRetryAfter.
func RetryDelay(p Retry, attempt int, retryAfter time.Duration, rnd float64) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, maxRetryAfter)
	}
	return Backoff(p, attempt, rnd)
}
