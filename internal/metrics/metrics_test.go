package metrics

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relayd/relayd/internal/operator"
	"github.com/relayd/relayd/internal/verify"
)

// Every reason the packages below can report has a series, so rate() over
// it works from the first scrape, and no label set lists a value twice.
func TestLabelSetsCoverReasons(t *testing.T) {
	for _, r := range verify.Reasons {
		if !slices.Contains(VerificationReasons, r) {
			t.Errorf("verify reason %q missing from VerificationReasons", r)
		}
	}
	// Whatever Classify answers, its reason is a retry or a dead reason.
	f, tr := false, true
	errs := []error{
		&net.OpError{Op: "dial", Err: errors.New("refused")},
		context.DeadlineExceeded,
	}
	for status := 200; status <= 599; status++ {
		for _, transient := range []*bool{nil, &f, &tr} {
			errs = append(errs, &operator.APIError{Status: status, Transient: transient})
		}
	}
	for _, err := range errs {
		for _, continued := range []bool{false, true} {
			v := operator.Classify(err, continued)
			switch {
			case v.Reason == "", v.Outcome == operator.Unauthorized:
				// A 401 pauses dispatch; its message is kept, never dead.
			case v.Outcome == operator.Retry && !slices.Contains(RetryReasons, v.Reason):
				t.Errorf("Classify(%v) = retry %q, missing from RetryReasons", err, v.Reason)
			case v.Outcome != operator.Retry && !slices.Contains(DeadReasons, v.Reason):
				t.Errorf("Classify(%v) = %v %q, missing from DeadReasons", err, v.Outcome, v.Reason)
			}
		}
	}
	for name, set := range map[string][]string{
		"VerificationReasons": VerificationReasons, "DispatchOutcomes": DispatchOutcomes,
		"RetryReasons": RetryReasons, "DeadReasons": DeadReasons,
	} {
		if s := slices.Compact(slices.Sorted(slices.Values(set))); len(s) != len(set) {
			t.Errorf("%s lists a value twice: %v", name, set)
		}
	}
}

func TestInitLabels(t *testing.T) {
	m := New(prometheus.NewRegistry())
	m.InitLabels([]string{"gh"}, []string{"r1", "r2"})
	for _, tc := range []struct {
		name string
		c    prometheus.Collector
		want int
	}{
		{"verification failures", m.VerificationFailures, len(VerificationReasons)},
		{"retries", m.Retries, 2 * len(RetryReasons)},
		{"dead letters", m.DeadLetters, 2 * len(DeadReasons)},
		{"dispatch attempts", m.DispatchAttempts, 2 * len(DispatchOutcomes)},
	} {
		if got := testutil.CollectAndCount(tc.c); got != tc.want {
			t.Errorf("%s: %d series, want %d", tc.name, got, tc.want)
		}
	}
}
