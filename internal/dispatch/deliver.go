package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/relayd/relayd/internal/history"
	"github.com/relayd/relayd/internal/metrics"
	"github.com/relayd/relayd/internal/operator"
	"github.com/relayd/relayd/internal/queue"
)

// maxPutChatTries bounds the compare-and-set loop that records a chat id.
const maxPutChatTries = 8

// maxFailureText bounds error text kept in a dead letter or retry record.
const maxFailureText = 1024

// job is one lease being worked on.
type job struct {
	d     *Dispatcher
	lease queue.Lease
	msg   queue.Message   // the turn's first message: route, conversation
	msgs  []queue.Message // the turn's messages, oldest first
	gone  []queue.Message // superseded: acked with the turn, never sent
	log   *slog.Logger    // with the job's attributes, added lazily (lh)
	lh    jobLog

	reqCtx   context.Context // outlives Run's ctx by the drain timeout
	unholdFn sync.Once

	sent   string // the turn's text as sent, for the history
	sentAt time.Time

	// replies are the reply posts of a delivered turn, stored with its ack.
	replies []queue.Message
}

// ending is called right before the store call that ends the lease: the
// conversation is no longer held. It must come before, not after: once the
// lease ends the queue may hand the conversation's next message to another
// worker at once.
func (j *job) ending() {
	j.unholdFn.Do(func() { j.d.unhold(j.msg) })
}

// handle works one lease to its end: exactly one of Ack, Retry, Release or
// Dead. The store keeps the lease alive meanwhile, however long it takes.
func (d *Dispatcher) handle(ctx, reqCtx context.Context, l queue.Lease) {
	m := l.Message()
	j := &job{d: d, lease: l, msg: m, msgs: l.Messages(), gone: l.Superseded(), reqCtx: reqCtx}
	j.lh.init(d.log.Handler(), slog.String("message_id", m.ID), slog.String("route", m.Route), slog.String("delivery", m.Delivery))
	if len(j.msgs) > 1 {
		j.lh.attrs = append(j.lh.attrs, slog.Int("events", len(j.msgs)))
	}
	j.log = slog.New(&j.lh)
	if !d.hold(m) {
		j.log.Error(msgSecondLease, "conversation", m.ConversationKey)
		j.unholdFn.Do(func() {}) // the hold is the other lease's
		j.release(d.now().Add(time.Second))
		return
	}
	if m.IsReply() {
		j.sendReply()
		return
	}
	if len(j.msgs) == 0 {
		// Every message the lease covers gave way to a newer one.
		j.ending()
		ctx, cancel := j.endCtx()
		defer cancel()
		if err := l.Ack(ctx); err != nil {
			j.log.Error("dispatch: acking superseded messages failed", "err", err)
			return
		}
		j.countSuperseded()
		return
	}
	tail := j.run(ctx)
	if tail == nil {
		j.ending() // a no-op when run ended the lease, as it should have
		return
	}
	// The API has the message; what is left is store work (record the
	// chat and ack, in one write when the lease allows). It runs in the
	// background when a slot is free, so this worker can lease the next
	// message meanwhile. The conversation stays leased until the ack
	// commits, so its order is unaffected.
	select {
	case d.tailSlots <- struct{}{}:
		d.tails.Go(func() {
			defer func() { <-d.tailSlots }()
			tail()
		})
	default:
		// maxTails acks are committing already: this worker waits for its
		// own before it leases again (see maxTails).
		tail()
	}
}

// msgSecondLease is logged if the queue breaks its promise of one lease per
// conversation.
const msgSecondLease = "dispatch: the queue leased a second message of a conversation already in flight; releasing it"

// run works the lease. It ends it itself, except after a delivery: then it
// returns the store work that ends it, for handle to run.
func (j *job) run(ctx context.Context) (tail func()) {
	d, m := j.d, j.msg
	s := d.settings.Load()
	rs := s.Routes[m.Route]

	st, err := d.chats.GetChat(j.reqCtx, m.Route, m.ConversationKey)
	if err != nil {
		if j.reqCtx.Err() != nil { // cut by shutdown
			j.release(d.now())
			return
		}
		j.log.Error("dispatch: reading the conversation's chat failed; retrying shortly", "err", err)
		j.release(d.now().Add(time.Second))
		return
	}
	if at := limitedUntil(rs.TurnLimit, st, d.now()); !at.IsZero() {
		// The loop guard: the conversation had its turns for this window.
		// Its messages wait, and join the first turn the window allows.
		d.m.TurnsLimited.WithLabelValues(m.Route).Inc()
		j.recordOutcome(history.RouteOutcome{Outcome: history.Limited})
		j.log.Info("turn limit reached: the conversation waits", "conversation", m.ConversationKey, "until", at)
		j.release(at)
		return
	}
	text, err := TurnText(rs.Batch, m.ConversationKey, j.msgs)
	if err != nil {
		j.log.Warn("batch_template failed; sending the turn in the plain format", "err", err)
	}
	key := TurnKey(j.msgs)

	chatID := st.ChatID
	if chatID != "" && resetDue(rs.Reset, st, d.now()) {
		j.log.Info("conversation reset: starting a fresh chat",
			"conversation", m.ConversationKey, "old_chat_id", chatID, "chat_messages", st.Messages, "chat_started_at", st.StartedAt)
		chatID = ""
	}

	for {
		trial, err := j.admit(ctx, s.Concurrency)
		var busy *routeBusy
		if errors.As(err, &busy) {
			j.log.Debug("route rate limit busy: message back to the queue", "retry_in", busy.retryIn)
			j.release(d.now().Add(busy.retryIn))
			return
		}
		if err != nil {
			// Run is stopping, the pool shrank, or dispatch paused while
			// this message waited: it goes back, no attempt counted.
			j.release(d.now())
			return
		}
		start := time.Now()
		// The preamble goes only on a turn that starts a chat; the budget
		// the turn was formed to leaves it out.
		sent := withPreamble(s, m.Route, chatID, text)
		j.sent, j.sentAt = sent, d.now()
		j.log.Debug("sending", "chat_id", chatID, "prompt", sent)
		resp, err := d.chatter().Chat(j.reqCtx, operator.ChatRequest{ChatID: chatID, Text: sent, IdempotencyKey: key})
		took := time.Since(start)
		d.m.DispatchDuration.WithLabelValues(m.Route).Observe(took.Seconds())
		if err != nil && j.reqCtx.Err() != nil && !resp.Partial {
			// Cut by shutdown after the drain timeout, before any answer:
			// not the API's fault. (A begun answer is delivered below.)
			d.cut.Store(true)
			if trial {
				d.pause.trialDone(operator.Retry, false)
			}
			j.log.Warn("dispatch: request cancelled by shutdown; message released", "took", took)
			j.release(d.now())
			return
		}

		v := operator.Classify(err, chatID != "")
		answered := err == nil || v.Status != 0 // an HTTP answer, not a network failure
		if trial {
			d.pause.trialDone(v.Outcome, answered)
		}
		if answered {
			if d.forbid.observe(m.Route, v.Outcome == operator.Forbidden, d.now()) && !trial {
				if d.pause.pause(pausedForbidden) {
					j.log.Error("dispatch paused: every route is answered 403; probing the API until a trial message is accepted")
				}
			}
		}

		switch v.Outcome {
		case operator.Delivered, operator.Duplicate, operator.Partial:
			// A partial answer is never sent again: the agent has the turn.
			return j.delivered(rs, st, chatID, resp, v, took, len(sent))
		case operator.ChatGone:
			if chatID == "" {
				// Classify only says ChatGone for a continued chat; guard
				// against a loop all the same.
				j.dead(failureOf(v, d.now()), operator.ReasonNotFound)
				return
			}
			d.m.DispatchAttempts.WithLabelValues(m.Route, "chat_gone").Inc()
			j.log.Info("chat gone (404): forgetting it and sending as a new chat", "old_chat_id", chatID)
			if err := d.chats.DeleteChat(j.reqCtx, m.Route, m.ConversationKey); err != nil {
				j.log.Error("dispatch: forgetting the gone chat failed", "err", err)
			}
			st, chatID = queue.ChatState{}, ""
			if st2, err := d.chats.GetChat(j.reqCtx, m.Route, m.ConversationKey); err == nil {
				st = st2 // the revision to compare against when storing the new chat
			}
		case operator.Unauthorized:
			d.m.DispatchAttempts.WithLabelValues(m.Route, "paused").Inc()
			if d.pause.pause(pausedUnauthorized) {
				j.log.Error("dispatch paused: the Operator API rejected the API key (401); probing until it accepts it")
			}
			j.release(d.now())
			return
		case operator.Forbidden:
			if trial {
				// The key is still refused everywhere: this message is
				// not at fault, keep it; back off the trial's message so a
				// next trial may pick another conversation.
				d.m.DispatchAttempts.WithLabelValues(m.Route, "paused").Inc()
				j.release(d.now().Add(d.probeInitial))
				return
			}
			j.dead(failureOf(v, d.now()), reasonOr(v.Reason, operator.ReasonForbidden))
			return
		case operator.Permanent:
			j.dead(failureOf(v, d.now()), reasonOr(v.Reason, operator.ReasonPermanent))
			return
		default: // operator.Retry, and anything unknown: never lose a message
			j.retry(s.Retry, err, v)
			return
		}
	}
}

// admit waits for everything a request needs before it goes out: the
// account gate, both token buckets, and dispatch not paused. The gate is
// checked again after the buckets, because a 429 seen while this worker
// waited on them must hold it back too.
func (j *job) admit(ctx context.Context, concurrency int) (trial bool, err error) {
	d := j.d
	if err := d.lim.waitGate(ctx); err != nil {
		return false, err
	}
	// One worker always stays free of any single route's bucket.
	if err := d.lim.wait(ctx, j.msg.Route, concurrency-1); err != nil {
		return false, err
	}
	if err := d.lim.waitGate(ctx); err != nil {
		return false, err
	}
	return d.pause.admit()
}

// withPreamble is the text sent for a prompt: the route's preamble first
// when the prompt starts a new chat (chatID ""), so the agent learns what
// the <untrusted> fences mean once per chat; later turns carry the prompt
// alone.
func withPreamble(s *Settings, route, chatID, prompt string) string {
	if chatID != "" {
		return prompt
	}
	pre := s.Preamble
	if rs, ok := s.Routes[route]; ok {
		pre = rs.Preamble
	}
	if pre == "" {
		return prompt
	}
	return pre + "\n\n" + prompt
}

// resetDue reports whether conversation_reset says the chat is too old or
// too long to continue.
func resetDue(r *ConversationReset, st queue.ChatState, now time.Time) bool {
	if r == nil {
		return false
	}
	if after := r.After; after > 0 && !st.StartedAt.IsZero() && now.Sub(st.StartedAt) >= after {
		return true
	}
	return r.Messages > 0 && st.Messages >= r.Messages
}

// delivered counts and logs a delivery and returns the store work that
// ends the lease: record the chat and ack.
func (j *job) delivered(rs RouteSettings, st queue.ChatState, sentID string, resp operator.ChatResponse, v operator.Verdict, took time.Duration, textBytes int) (tail func()) {
	d, m := j.d, j.msg
	// Counted and logged before the lease ends: the delivery happened
	// whatever the ack does, and whoever sees the queue empty sees it counted.
	outcome := "delivered"
	switch v.Outcome {
	case operator.Duplicate:
		outcome = "conflict"
	case operator.Partial:
		outcome = "partial"
		j.log.Warn("answer cut off after it began; delivered with what arrived, not sent again", "err", v.Message)
	}
	status := resp.Status
	if status == 0 {
		status = v.Status
	}
	d.m.DispatchAttempts.WithLabelValues(m.Route, outcome).Inc()
	d.m.Turns.WithLabelValues(m.Route).Inc()
	d.m.TurnEvents.WithLabelValues(m.Route).Observe(float64(len(j.msgs)))
	var latency time.Duration
	now := d.now()
	for i, x := range j.msgs {
		if x.EnqueuedAt.IsZero() {
			continue
		}
		l := now.Sub(x.EnqueuedAt)
		if i == 0 {
			latency = l
		}
		d.m.DeliveryLatency.WithLabelValues(m.Route).Observe(max(l, 0).Seconds())
	}
	chatID := resp.ChatID
	if chatID == "" {
		chatID = sentID
	}
	if ctx := context.Background(); d.log.Enabled(ctx, slog.LevelInfo) {
		// What j.log.Info would write, the job's attributes first, without
		// having the handler format them apart (see jobLog).
		attrs := append(j.lh.attrs[:len(j.lh.attrs):len(j.lh.attrs)],
			slog.Int("status", status), slog.String("outcome", outcome), slog.String("chat_id", chatID),
			slog.String("conversation", m.ConversationKey), slog.Int("attempts", j.attempts()+1),
			slog.Int("prompt_bytes", textBytes), slog.Int("reply_bytes", len(resp.Text)),
			slog.Duration("took", took), slog.Duration("latency", latency))
		d.log.LogAttrs(ctx, slog.LevelInfo, "delivered", attrs...)
	}
	if resp.Text != "" {
		j.log.Debug("reply", "chat_id", chatID, "text", resp.Text)
	}
	j.recordOutcome(history.RouteOutcome{Outcome: deliveredOutcome(v), Turn: j.sent, Reply: resp.Text, ChatID: chatID, Attempts: j.attempts() + 1, SentAt: j.sentAt, DoneAt: d.now()})
	j.replies = j.replyMessages(rs, chatID, resp.Text, v.Outcome == operator.Partial)
	return func() {
		if len(j.replies) > 0 {
			ctx, cancel := j.endCtx()
			j.storeReplies(ctx)
			cancel()
		}
		if j.recordChat(rs.TurnLimit, st, sentID, resp.ChatID) {
			j.countSuperseded()
			return
		}
		ctx, cancel := j.endCtx()
		defer cancel()
		j.ending()
		if err := j.ack(ctx); err != nil {
			// Delivered all the same; the store will hand it out again and
			// the API answers the same Idempotency-Key with 409.
			j.log.Error("dispatch: acking a delivered message failed", "err", err)
			return
		}
		j.countSuperseded()
	}
}

// countSuperseded counts the lease's superseded messages once it ended
// with Ack or Dead, which removed them.
func (j *job) countSuperseded() {
	if n := len(j.gone); n > 0 {
		j.d.m.MessagesSuperseded.WithLabelValues(j.msg.Route).Add(float64(n))
		j.recordSuperseded(j.d.now())
		j.log.Info("superseded messages dropped", "count", n, "conversation", j.msg.ConversationKey)
	}
}

// attempts is the most failed attempts of a message of the turn.
func (j *job) attempts() int {
	n := 0
	for _, m := range j.msgs {
		n = max(n, m.Attempts)
	}
	return n
}

// recordChat stores what the answer says about the conversation's chat,
// with compare-and-set: on a conflict it reads the record again and
// re-decides against it. When the lease is a ChatAcker the chat is stored
// and the lease acked in one write, and acked reports that it was; else
// the caller still has to ack.
func (j *job) recordChat(tl *TurnLimit, st queue.ChatState, sentID, gotID string) (acked bool) {
	d, m := j.d, j.msg
	ctx, cancel := j.endCtx()
	defer cancel()
	put := d.chats.PutChat
	ca, combined := j.lease.(ChatAcker)
	if combined {
		put = ca.AckWithChat
	}
	if ra, ok := j.lease.(ReplyAcker); ok && len(j.replies) > 0 {
		combined = true
		put = func(ctx context.Context, route, key string, st queue.ChatState) error {
			return ra.AckWithReplies(ctx, &queue.Chat{Route: route, ConversationKey: key, ChatState: st}, j.replies)
		}
	}
	for try := 1; ; try++ {
		now := d.now()
		next, write := nextChatState(st, sentID, gotID, now)
		if tl != nil && tl.Turns > 0 && tl.Per > 0 {
			// The turn limit counts this turn, whatever became of the chat.
			next, write = withTurn(tl, next, now), true
			next.UpdatedAt = now
		}
		if !write {
			return false
		}
		if combined {
			// The write may end the lease; a conflict leaves it open, but
			// the store still holds the conversation until it ends.
			j.ending()
		}
		err := put(ctx, m.Route, m.ConversationKey, next)
		if err == nil {
			return combined
		}
		if !errors.Is(err, queue.ErrConflict) || try >= maxPutChatTries {
			j.log.Error("dispatch: storing the chat id failed; the next message may start a new chat",
				"chat_id", gotID, "err", err)
			return false
		}
		if st, err = d.chats.GetChat(ctx, m.Route, m.ConversationKey); err != nil {
			j.log.Error("dispatch: re-reading the chat after a conflict failed", "err", err)
			return false
		}
	}
}

// nextChatState decides the record after a delivery. st is the stored
// record, sentID the chat the message went to ("" for a new chat), gotID the
// chat the API answered with ("" for a 202 or 409 without a body).
func nextChatState(st queue.ChatState, sentID, gotID string, now time.Time) (queue.ChatState, bool) {
	switch {
	case gotID == "" && sentID != "" && st.ChatID == sentID:
		// Accepted into the chat we continued: count it.
		st.Messages++
	case gotID == "":
		// No chat id to learn (a new chat answered 202 or 409).
		return st, false
	case gotID == st.ChatID:
		st.Messages++
	case gotID == sentID:
		// We continued a chat the store no longer holds: it was reset or
		// replaced while we were sending. That change wins.
		return st, false
	default:
		st.ChatID, st.StartedAt, st.Messages = gotID, now, 1
	}
	st.UpdatedAt = now
	return st, true
}

// retry schedules another attempt, or dead-letters past max_attempts.
func (j *job) retry(p Retry, err error, v operator.Verdict) {
	d, m := j.d, j.msg
	now := d.now()
	f := failureOf(v, now)
	f.Reason = reasonOr(v.Reason, operator.ReasonTransient)
	attempts := j.attempts() + 1
	delay := RetryDelay(p, attempts, v.RetryAfter, d.rand())
	if f.Reason == operator.ReasonRateLimited {
		// Slow the whole account, not only this conversation, even when
		// this message has had its last attempt; the other replicas too
		// when the API said how long.
		ctx, cancel := j.endCtx()
		d.lim.closeGate(ctx, time.Now().Add(delay), v.RetryAfter > 0)
		cancel()
	}
	if p.MaxAttempts > 0 && attempts >= p.MaxAttempts {
		j.log.Warn("giving up after max attempts", "attempts", attempts, "last_status", f.Status, "last_reason", f.Reason)
		f.Message = trimText(f.Reason + ": " + f.Message)
		j.dead(f, metrics.ReasonMaxAttempts)
		return
	}
	at := now.Add(delay)
	d.m.DispatchAttempts.WithLabelValues(m.Route, "retry").Inc()
	d.m.Retries.WithLabelValues(m.Route, f.Reason).Inc()
	j.log.Warn("attempt failed; retrying",
		"status", f.Status, "code", f.Code, "reason", f.Reason, "attempts", attempts,
		"retry_in", delay, "retry_after", v.RetryAfter, "err", err)
	j.recordOutcome(history.RouteOutcome{Attempts: attempts, LastError: f.Text()})
	j.ending()
	ctx, cancel := j.endCtx()
	defer cancel()
	if err := j.lease.Retry(ctx, at, f); err != nil {
		j.log.Error("dispatch: scheduling a retry failed", "err", err)
	}
}

// dead moves the message to the dead letters with reason.
func (j *job) dead(f queue.Failure, reason string) {
	d, m := j.d, j.msg
	f.Reason = reason
	d.m.DispatchAttempts.WithLabelValues(m.Route, "dead").Inc()
	d.m.DeadLetters.WithLabelValues(m.Route, reason).Add(float64(len(j.msgs)))
	j.log.Error("dead-lettered", "reason", reason, "status", f.Status, "code", f.Code,
		"error", f.Message, "attempts", j.attempts()+1, "conversation", m.ConversationKey)
	j.recordOutcome(history.RouteOutcome{Outcome: history.Dead, Attempts: j.attempts() + 1, LastError: f.Text(), DoneAt: d.now()})
	j.ending()
	ctx, cancel := j.endCtx()
	defer cancel()
	if err := j.lease.Dead(ctx, f); err != nil {
		j.log.Error("dispatch: dead-lettering failed", "err", err)
		return
	}
	j.countSuperseded()
}

// release puts the message back due at at, no attempt counted.
func (j *job) release(at time.Time) {
	j.ending()
	ctx, cancel := j.endCtx()
	defer cancel()
	if err := j.lease.Release(ctx, at); err != nil {
		j.log.Error("dispatch: releasing the message failed", "err", err)
	}
}

// endCtx is for the store calls that end a lease: they must run even when
// the request was just cancelled by shutdown.
func (j *job) endCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(j.reqCtx), leaseOpTimeout)
}

// failureOf describes a failed attempt for the store.
func failureOf(v operator.Verdict, now time.Time) queue.Failure {
	return queue.Failure{Status: v.Status, Code: v.Code, Message: trimText(v.Message), Reason: v.Reason, At: now}
}

func reasonOr(reason, fallback string) string {
	if reason == "" {
		return fallback
	}
	return reason
}

// trimText keeps failure text bounded and valid UTF-8.
func trimText(s string) string {
	if len(s) <= maxFailureText {
		return s
	}
	s = s[:maxFailureText]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}
