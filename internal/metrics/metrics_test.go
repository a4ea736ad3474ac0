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
		"RetryReasons": RetryReasons, "DeadReasons": DeadReasons, "ReplyDeadReasons": ReplyDeadReasons,
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

// A route with reply sinks has its replies and its dead replies at zero;
// a sink type outside the fixed set is no label, and a dead-letter reason
// both kinds share is one series.
func TestInitReplyLabels(t *testing.T) {
	m := New(prometheus.NewRegistry())
	m.InitLabels(nil, []string{"r1", "r2"})
	m.InitReplyLabels("r1", []string{"github_comment", "slack", "carrier-pigeon"})
	m.InitReplyLabels("r2", nil)
	if got, want := testutil.CollectAndCount(m.Replies), 2*len(ReplyOutcomes); got != want {
		t.Errorf("replies: %d series, want %d", got, want)
	}
	union := slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(DeadReasons), ReplyDeadReasons...))))
	if got, want := testutil.CollectAndCount(m.DeadLetters), len(union)+len(DeadReasons); got != want {
		t.Errorf("dead letters: %d series, want %d (r1: %v; r2: %v)", got, want, union, DeadReasons)
	}
}
