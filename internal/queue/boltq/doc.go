// Package boltq stores queued messages, dead letters, chat ids and dedupe
// marks in one bbolt file.
//
// It is relayd's embedded storage backend: ingest's durable store
// (Enqueue answers only after the batch is fsync'd), the dispatcher's queue
// (Next leases a message only when it is the head of its conversation and no
// other message of that conversation is out) and its chat-state store
// (compare-and-set on a revision). One goroutine owns every write
// transaction and commits whatever queued while the previous commit ran in
// one transaction (group commit), so concurrent webhooks and dispatcher acks
// share fsyncs without a fixed batching delay. A lease's AckWithChat stores
// the conversation's chat record and acks in one transaction, so a delivery
// costs one commit.
//
// Only a small index lives in memory: one record per conversation that has
// messages (its count, its head and whether it is leased), never the
// messages themselves, so memory grows with conversations, not with queue
// depth.
package boltq
