package history

import (
	"context"
	"errors"
	"fmt"
)

// MaxReplays bounds the replays of one delivery: {delivery}.replay-1 to
// {delivery}.replay-1000.
const MaxReplays = 1000

// ErrTooManyReplays is returned by ReplayDelivery when every replay id of
// a delivery is taken.
var ErrTooManyReplays = errors.New("history: this event was replayed too often")

// ReplayDelivery returns the delivery id of the next replay of delivery,
// {delivery}.replay-N with the first N no record has, looked up with
// event (which returns ErrNotFound for a free id).
func ReplayDelivery(ctx context.Context, delivery string, event func(context.Context, string) (Record, error)) (string, error) {
	for n := 1; n <= MaxReplays; n++ {
		d := fmt.Sprintf("%s.replay-%d", delivery, n)
		_, err := event(ctx, d)
		if errors.Is(err, ErrNotFound) {
			return d, nil
		}
		if err != nil {
			return "", err
		}
	}
	return "", ErrTooManyReplays
}
