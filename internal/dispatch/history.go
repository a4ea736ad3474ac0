package dispatch

import (
	"context"

	"github.com/relayd/relayd/internal/history"
	"github.com/relayd/relayd/internal/operator"
)

// History records what became of each message on its event's record (see
// package history). Outcome must not block on a disk: the store joins the
// update to a write it makes anyway.
type History interface {
	Outcome(ctx context.Context, delivery, route string, o history.RouteOutcome)
}

// recordOutcome updates the message's route outcome in the history, when
// there is one.
func (j *job) recordOutcome(o history.RouteOutcome) {
	h := j.d.hist
	if h == nil {
		return
	}
	o.MessageID = j.msg.ID
	h.Outcome(j.reqCtx, j.msg.Delivery, j.msg.Route, o)
}

// deliveredOutcome is the history outcome of a delivery verdict.
func deliveredOutcome(v operator.Verdict) string {
	if v.Outcome == operator.Partial {
		return history.Partial
	}
	return history.Delivered
}
