// Package dispatch delivers queued prompts to the Operator API, one at a time
// per conversation.
//
// A Dispatcher runs a pool of workers. Each worker leases the head message of
// some conversation from the Queue (the Queue owns per-conversation order and
// never leases two messages of one conversation at once), waits on the
// account's and the route's rate limits (token buckets in the process, or
// slots shared by every replica through Options.Pacer), looks up the
// conversation's chat id, posts the prompt to /api/chat and ends the lease
// according to the answer:
//
//   - 2xx, and 409 (the idempotency key was already taken): delivered. The
//     returned chat id is stored under (route, conversation key) with a
//     compare-and-set and the message is acked, in one write when the
//     lease is a ChatAcker. Up to MaxTails such acks commit in the
//     background while their workers send the next turn; past that a
//     worker waits for its own, so a crash sends again at most
//     Concurrency + MaxTails turns.
//   - 429, 5xx, network errors, timeouts, transient:true: retried after an
//     exponential backoff with full jitter, or exactly after Retry-After when
//     the API sent one. Attempts and the next attempt time are persisted by
//     the Queue, so a restart neither resets nor loses them. A 429 also closes
//     an account-wide gate until that time, so every conversation backs off
//     (on every replica too, through a shared Pacer, when the API sent
//     Retry-After).
//     After retry.max_attempts the message is dead-lettered (max_attempts).
//   - 400, 405, transient:false, 404 for a new chat: dead-lettered at once,
//     with the status, error code and message kept; the conversation moves on.
//   - 404 for a continued chat: the chat is gone. The stored chat id is
//     forgotten and the message is sent again at once as a new chat.
//   - 401: the key is wrong for every message. The lease is released (no
//     attempt counted), all dispatch pauses, and GET /api/cli/health is
//     probed with backoff until the key works again. A pause that comes
//     soon after a resume (the chat endpoint refuses a key the health probe
//     accepts) waits twice as long as the last before its first probe, up
//     to the probe ceiling, so such a key costs a few requests per ceiling
//     rather than per second.
//   - 403: the message is dead-lettered; when every route that was answered
//     recently is answered 403 (see forbidThreshold), dispatch pauses as for
//     401, and resumes once a trial request is no longer refused.
//
// Replies: a route with reply sinks (RouteSettings.Replier) has the
// agent's answer to each delivered turn posted to them. The replies are
// planned (package reply: one post per sink, and for github_comment one per
// distinct pull request, issue or commit of the turn's events, whose
// targets ingest kept on the messages) when the turn is delivered, and each
// post becomes a queue message of kind reply (queue.KindReply, the post as
// JSON for its prompt, its id for its conversation key, so posts hold back
// neither each other nor the turn's conversation). They are stored by the
// write that acks the turn when the lease is a ReplyAcker (bbolt: one
// transaction, so a reply is durable exactly when its turn is acked);
// otherwise (JetStream) they are enqueued just before the ack, at least
// once: a crash between the two sends the turn again, which the Operator
// answers 409 for its Idempotency-Key, so the stored replies are not
// planned twice, but a crash after a reply was posted and before its own
// ack posts it twice.
//
// The same workers lease reply messages and, seeing the kind, post them
// instead of calling /api/chat: no account or route token bucket, no
// preamble, no turn. A post that fails retryably (GitHub's 403/429 rate
// limits, Slack's 429, 5xx, network errors) is retried with the reply's own
// attempts and the retry policy's backoff, or exactly after the wait the
// sink named (x-ratelimit-reset, Retry-After); a rate limit also holds the
// route's other posts to that sink until then (released, no attempt
// counted). A permanent failure (401, 403, 404, 410, 422…) or
// retry.max_attempts dead-letters it, and relayd dlq lists it with kind
// reply and replays it like any message. The turn is never sent again
// because of its replies. relayd_replies_total counts each attempt's
// outcome and the event's history records each reply's. While dispatch is
// paused (401, 403 everywhere) workers lease nothing, so replies wait too.
//
// Shutdown: when Run's context ends the workers stop leasing, requests in
// flight get Settings.DrainTimeout to finish, then they are cancelled and
// their leases released, so those messages stay queued with their attempts
// unchanged.
package dispatch
