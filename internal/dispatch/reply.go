package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/relayd/relayd/internal/history"
	"github.com/relayd/relayd/internal/metrics"
	"github.com/relayd/relayd/internal/operator"
	"github.com/relayd/relayd/internal/queue"
	"github.com/relayd/relayd/internal/reply"
)

// Replier plans and sends a route's replies (package reply's *Replier).
type Replier interface {
	Plan(r reply.Reply) ([]reply.Post, error)
	Send(ctx context.Context, p reply.Post) error
}

// ReplyAcker is a lease that can ack its turn, store the conversation's chat
// record (when chat is not nil, with PutChat's compare-and-set) and enqueue
// the turn's reply posts as messages of their own, in one atomic write.
// On queue.ErrConflict nothing is written and the lease stays open.
type ReplyAcker interface {
	AckWithReplies(ctx context.Context, chat *queue.Chat, replies []queue.Message) error
}

// Enqueuer stores messages; a lease that is not a ReplyAcker has its
// turn's replies enqueued through it before it is acked.
type Enqueuer interface {
	Enqueue(ctx context.Context, b queue.Batch) (duplicate bool, err error)
}

// replyMessages plans the replies to a delivered turn and makes each post a
// message: kind reply, its own conversation (the post's id, so one post's
// retries hold back neither another post nor the turn's conversation), the
// post as JSON for its prompt.
func (j *job) replyMessages(rs RouteSettings, chatID, text string, partial bool) []queue.Message {
	if rs.Replier == nil || text == "" {
		return nil
	}
	m := j.msg
	rep := reply.Reply{Route: m.Route, Conversation: m.ConversationKey, ChatID: chatID, Text: text, Partial: partial}
	for _, x := range j.msgs {
		e := reply.Event{Source: x.Source, Event: x.Event, Delivery: x.Delivery, Prompt: x.Prompt}
		if x.ReplyRepo != "" {
			e.Target = &reply.Target{Repo: x.ReplyRepo, Number: x.ReplyNumber, SHA: x.ReplySHA}
		}
		rep.Events = append(rep.Events, e)
	}
	posts, err := rs.Replier.Plan(rep)
	if err != nil {
		j.log.Error("reply_template failed; the answer is not posted", "err", err)
		return nil
	}
	now := j.d.now()
	out := make([]queue.Message, 0, len(posts))
	var outcomes []history.ReplyOutcome
	for _, p := range posts {
		b, err := json.Marshal(p)
		if err != nil {
			j.log.Error("dispatch: encoding a reply failed", "err", err)
			continue
		}
		out = append(out, queue.Message{
			ID: p.ID, Route: m.Route, ConversationKey: p.ID, Prompt: string(b), Kind: queue.KindReply,
			Source: m.Source, Delivery: m.Delivery, Event: m.Event, EnqueuedAt: now,
		})
		outcomes = append(outcomes, history.ReplyOutcome{ID: p.ID, Sink: p.Type, Target: targetString(p.Target), Outcome: history.ReplyQueued, At: now})
	}
	if len(outcomes) > 0 {
		j.recordOutcome(history.RouteOutcome{Replies: outcomes})
	}
	return out
}

func targetString(t *reply.Target) string {
	if t == nil {
		return ""
	}
	return t.String()
}

// storeReplies enqueues the turn's replies ahead of its ack when the lease
// cannot store them in the ack's own write. A crash between the two sends
// the turn again; the Operator answers its Idempotency-Key with 409 and
// the replies, stored already, are not planned twice.
func (j *job) storeReplies(ctx context.Context) {
	if len(j.replies) == 0 {
		return
	}
	if _, ok := j.lease.(ReplyAcker); ok {
		return
	}
	if j.d.enq == nil {
		j.log.Error("dispatch: the store cannot keep replies; the answer is not posted", "replies", len(j.replies))
		j.replies = nil
		return
	}
	if _, err := j.d.enq.Enqueue(ctx, queue.Batch{Messages: j.replies}); err != nil {
		j.log.Error("dispatch: storing the replies failed; the answer is not posted", "err", err, "replies", len(j.replies))
	}
	j.replies = nil
}

// ack ends a delivered lease, with its replies when the lease takes them.
func (j *job) ack(ctx context.Context) error {
	if ra, ok := j.lease.(ReplyAcker); ok && len(j.replies) > 0 {
		return ra.AckWithReplies(ctx, nil, j.replies)
	}
	return j.lease.Ack(ctx)
}

// sendReply works a reply lease: one attempt to post it, then ack, retry
// with the reply's own backoff (the sink's wait when it named one), or
// dead-letter. It never touches the turn the reply answers.
func (j *job) sendReply() {
	d, m := j.d, j.msg
	s := d.settings.Load()
	var p reply.Post
	if err := json.Unmarshal([]byte(m.Prompt), &p); err != nil {
		j.replyDead(p, "", &reply.Error{Reason: reply.ReasonBadPost, Msg: "undecodable reply: " + err.Error()})
		return
	}
	sink := p.Type
	rs := s.Routes[m.Route]
	if rs.Replier == nil {
		j.replyDead(p, sink, &reply.Error{Sink: sink, Reason: reply.ReasonBadPost, Msg: "the route has no reply sinks (any more)"})
		return
	}
	gate := sinkGate{m.Route, p.Sink}
	if v, ok := d.sinkGates.Load(gate); ok {
		if until := v.(time.Time); d.now().Before(until) {
			// The sink asked for a wait that another post learned of: this
			// post waits too, without an attempt, instead of spending the
			// sink's patience.
			j.release(until)
			return
		}
		d.sinkGates.CompareAndDelete(gate, v)
	}
	err := rs.Replier.Send(j.reqCtx, p)
	if err == nil {
		j.countReply(sink, history.ReplySent)
		j.log.Info("reply posted", "sink", sink, "target", targetString(p.Target), "attempts", m.Attempts+1)
		j.recordReply(p, history.ReplySent, m.Attempts+1, "")
		j.ending()
		ctx, cancel := j.endCtx()
		defer cancel()
		if err := j.lease.Ack(ctx); err != nil {
			j.log.Error("dispatch: acking a posted reply failed", "err", err)
		}
		return
	}
	if j.reqCtx.Err() != nil {
		j.release(d.now()) // cut by shutdown: not the sink's fault
		return
	}
	retry, wait := reply.Classify(err)
	attempts := m.Attempts + 1
	if !retry || (s.Retry.MaxAttempts > 0 && attempts >= s.Retry.MaxAttempts) {
		j.replyDead(p, sink, err)
		return
	}
	delay := RetryDelay(s.Retry, attempts, wait, d.rand())
	f := replyFailure(err, d.now())
	if wait > 0 && f.Reason == reply.ReasonRateLimited {
		d.sinkGates.Store(gate, d.now().Add(delay))
	}
	j.countReply(sink, history.ReplyRetry)
	j.log.Warn("reply failed; retrying", "sink", sink, "status", f.Status, "reason", f.Reason,
		"attempts", attempts, "retry_in", delay, "err", err)
	j.recordReply(p, history.ReplyRetry, attempts, f.Text())
	j.ending()
	ctx, cancel := j.endCtx()
	defer cancel()
	if err := j.lease.Retry(ctx, d.now().Add(delay), f); err != nil {
		j.log.Error("dispatch: scheduling a reply's retry failed", "err", err)
	}
}

// sinkGate names one reply sink of one route.
type sinkGate struct {
	route string
	sink  int
}

// replyDead dead-letters a reply post.
func (j *job) replyDead(p reply.Post, sink string, err error) {
	d, m := j.d, j.msg
	f := replyFailure(err, d.now())
	j.countReply(sink, history.ReplyDead)
	// A dead reply is a dead letter like any message: the alert on dead
	// letters must see it. A retryable failure died of its attempts.
	reason := f.Reason
	if retry, _ := reply.Classify(err); retry {
		reason = metrics.ReasonMaxAttempts
	} else if !slices.Contains(metrics.ReplyDeadReasons, reason) {
		reason = operator.ReasonPermanent // labels stay a fixed set
	}
	d.m.DeadLetters.WithLabelValues(m.Route, reason).Inc()
	j.log.Error("reply dead-lettered", "sink", sink, "status", f.Status, "reason", f.Reason,
		"attempts", m.Attempts+1, "err", err)
	j.recordReply(p, history.ReplyDead, m.Attempts+1, f.Text())
	j.ending()
	ctx, cancel := j.endCtx()
	defer cancel()
	if err := j.lease.Dead(ctx, f); err != nil {
		j.log.Error("dispatch: dead-lettering a reply failed", "err", err)
	}
}

// countReply counts one attempt's outcome; a sink type outside the fixed
// set (a stored post no sink of the route matches) is not a label.
func (j *job) countReply(sink, outcome string) {
	if slices.Contains(metrics.ReplySinks, sink) {
		j.d.m.Replies.WithLabelValues(j.msg.Route, sink, outcome).Inc()
	}
}

func replyFailure(err error, now time.Time) queue.Failure {
	f := queue.Failure{Reason: reply.ReasonBadPost, Message: trimText(err.Error()), At: now}
	var e *reply.Error
	if errors.As(err, &e) {
		f.Status, f.Code, f.Reason = e.Status, e.Code, e.Reason
	}
	if f.Reason == "" {
		f.Reason = operator.ReasonPermanent
	}
	return f
}

// recordReply records what became of a reply on the history of every event
// its turn answered.
func (j *job) recordReply(p reply.Post, outcome string, attempts int, errText string) {
	h := j.d.hist
	if h == nil {
		return
	}
	ro := history.ReplyOutcome{ID: p.ID, Sink: p.Type, Target: targetString(p.Target), Outcome: outcome,
		Attempts: attempts, Error: errText, At: j.d.now()}
	deliveries := p.Deliveries
	if len(deliveries) == 0 {
		deliveries = []string{j.msg.Delivery}
	}
	for _, dl := range deliveries {
		h.Outcome(j.reqCtx, dl, j.msg.Route, history.RouteOutcome{Replies: []history.ReplyOutcome{ro}})
	}
}
