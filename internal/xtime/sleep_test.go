package xtime

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSleep(t *testing.T) {
	live := context.Background()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		d    time.Duration
		want error
	}{
		{"elapsed", live, time.Millisecond, nil},
		{"zero", live, 0, nil},
		{"negative", live, -time.Second, nil},
		{"cancelled", done, time.Hour, context.Canceled},
		{"cancelled zero", done, 0, context.Canceled},
	} {
		if got := Sleep(tc.ctx, tc.d); !errors.Is(got, tc.want) {
			t.Errorf("%s: Sleep = %v, want %v", tc.name, got, tc.want)
		}
	}
}
