package dispatch

import (
	"context"
	"time"

	"github.com/relayd/relayd/internal/history"
	"github.com/relayd/relayd/internal/operator"
	"github.com/relayd/relayd/internal/queue"
)

// History records what became of each message on its event's record (see
// package history). Outcome must not block on a disk: the store joins the
// update to a write it makes anyway.
type History interface {
	Outcome(ctx context.Context, delivery, route string, o history.RouteOutcome)
}

// recordOutcome updates the route outcome of every message of the turn in
// the history, when there is one.
func (j *job) recordOutcome(o history.RouteOutcome) {
	h := j.d.hist
	if h == nil {
		return
	}
	msgs := j.msgs
	if len(msgs) == 0 {
		msgs = []queue.Message{j.msg}
	}
	for _, m := range msgs {
		o.MessageID = m.ID
		h.Outcome(j.reqCtx, m.Delivery, m.Route, o)
	}
}

// deliveredOutcome is the history outcome of a delivery verdict.
func deliveredOutcome(v operator.Verdict) string {
	if v.Outcome == operator.Partial {
		return history.Partial
	}
	return history.Delivered
}

// recordSuperseded records the lease's superseded messages as such, once
// the lease ended with Ack or Dead, which removed them.
func (j *job) recordSuperseded(at time.Time) {
	h := j.d.hist
	if h == nil {
		return
	}
	for _, m := range j.gone {
		h.Outcome(j.reqCtx, m.Delivery, m.Route, history.RouteOutcome{MessageID: m.ID, Outcome: history.Superseded, DoneAt: at})
	}
}
