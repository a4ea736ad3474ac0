// Package boltq stores queued messages, dead letters, chat ids and dedupe
// marks in one bbolt file.
//
// It is relayd's embedded storage backend: ingest's durable store
// (Enqueue answers only after the batch is fsync'd), the dispatcher's queue
// (Next leases a message only when it is the head of its conversation and no
// other message of that conversation is out) and its chat-state store
// (compare-and-set on a revision).
//
// Enqueues go through a write-ahead log (wal.go): one goroutine appends
// whatever queued while its previous write ran and syncs it with one
// fdatasync (group commit, no fixed delay), then answers. It writes into
// segments that another goroutine has filled with zeros and synced
// beforehand (walprep.go), so a sync writes data and not the file's size.
// A third goroutine owns every bbolt write transaction: it applies logged
// groups and the dispatcher's lease endings, again as one transaction per
// group. Under load it spaces transactions that only apply logged
// enqueues, so bbolt's two fsyncs a commit do not crowd out the log's;
// anything a caller waits on (an ack, a chat update) is committed at once,
// and goes ahead of logged groups past a budget, so it never waits behind
// the log's backlog. The one exception is a steady stream of lease
// endings: while at least twice as many leases are in flight as requests
// are queued, these gather for up to 8 ms after the last commit began, so
// that one transaction holds many (see gather). An idle store never waits.
// Chat records are kept decoded in memory once read or written
// (chatcache.go): a turn reads its conversation's record without a read
// transaction or a JSON decode.
// A lease's AckWithChat stores the conversation's chat record and acks in
// one transaction, so a delivery costs one commit.
//
// A lease is a turn: the head and, when the route's TurnPolicy allows more
// than one event, the messages right behind it, read from the
// conversation's list at lease time (see turn.go). They end together, in
// one transaction. With supersede the whole conversation is read, so an
// older message whose key has a newer one anywhere behind it is left out
// of the turn and removed with it. A coalescing wait is stored as the first
// message's next-attempt time, and only when it starts its conversation.
//
// Only a small index lives in memory: one record per conversation that has
// messages (its count, its head and whether it is leased), never the
// messages themselves, so memory grows with conversations, not with queue
// depth.
package boltq
