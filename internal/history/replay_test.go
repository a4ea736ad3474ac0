package history

import (
	"context"
	"errors"
	"strconv"
	"testing"
)

// The next replay takes the first free id; a lookup error stops the
// search; every id taken is ErrTooManyReplays.
func TestReplayDelivery(t *testing.T) {
	taken := func(n int) func(context.Context, string) (Record, error) {
		seen := map[string]bool{}
		for i := 1; i <= n; i++ {
			seen["d.replay-"+strconv.Itoa(i)] = true
		}
		return func(_ context.Context, id string) (Record, error) {
			if seen[id] {
				return Record{}, nil
			}
			return Record{}, ErrNotFound
		}
	}
	ctx := context.Background()
	for _, tt := range []struct {
		taken int
		want  string
	}{{0, "d.replay-1"}, {2, "d.replay-3"}, {MaxReplays - 1, "d.replay-1000"}} {
		if got, err := ReplayDelivery(ctx, "d", taken(tt.taken)); err != nil || got != tt.want {
			t.Errorf("%d taken: %q, %v; want %q", tt.taken, got, err, tt.want)
		}
	}
	if _, err := ReplayDelivery(ctx, "d", taken(MaxReplays)); !errors.Is(err, ErrTooManyReplays) {
		t.Errorf("all taken: %v, want ErrTooManyReplays", err)
	}
	boom := errors.New("storage down")
	if _, err := ReplayDelivery(ctx, "d", func(context.Context, string) (Record, error) { return Record{}, boom }); !errors.Is(err, boom) {
		t.Errorf("lookup error: %v, want it passed on", err)
	}
}
