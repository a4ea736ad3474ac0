// Package natsq stores queued messages, dead letters and chat ids in NATS
// JetStream, shared by replicas.
//
// It gives the guarantees of the bbolt backend across processes: any
// number of relayd replicas open a Store on the same stream and together
// deliver every message at least once, one at a time per conversation, in
// enqueue order.
//
// # Layout
//
// For Options.Stream S (default RELAYD):
//
//   - Stream S, subjects S.msgs.<p>, file storage, work-queue retention
//     (a message leaves the stream when acked or terminated), configurable
//     replicas. A message goes to partition p = fnv32a(route + "\x00" +
//     conversation key) mod P. It is published with Nats-Msg-Id set to the
//     message id, so the stream's two-minute duplicate window drops a
//     publisher's retry. Enqueue returns only after JetStream acknowledged
//     every publish of the batch (published asynchronously, acks awaited
//     together), so ingest answers 202 only for stored messages. With
//     Replicas > 1 an ack means a quorum of servers has the message; a
//     single server writes it to its file store but syncs to disk on its
//     own schedule (sync_interval, two minutes by default), so for power
//     loss durability on one server set sync_interval: always.
//   - Stream S_DLQ, subjects S.dlq.<route>: dead letters as JSON, in the
//     order they died. Listing reads it through a short-lived consumer;
//     replay republishes to the message's partition (at the tail of its
//     conversation, attempts reset) and deletes the dead letter by sequence.
//     Every replica sees and changes the same dead letters.
//   - KV bucket S_chats: chat state per (route, conversation key). PutChat
//     is a compare-and-set on the KV revision (Create for revision 0,
//     Update with the revision otherwise), so two replicas never both start
//     a chat for one conversation: the loser gets queue.ErrConflict. Each
//     Store watches the bucket's headers to count chats by route
//     (ChatCounts), so counting lists nothing.
//   - KV bucket S_dedupe: delivery dedupe marks. Enqueue creates the mark
//     first (a second Create of the key fails: duplicate), then publishes;
//     the two are not atomic, so when publishing fails the mark is deleted
//     again and the sender's retry is not taken for a duplicate. Each mark
//     carries its source's TTL (NATS 2.11+); the bucket's TTL,
//     Options.DedupeTTL, caps them all.
//   - KV bucket S_turns: per supersede key, the stream sequence of its
//     newest message, and per conversation of a route with a coalescing
//     wait, when its last turn ended (see Turns).
//   - KV bucket S_attempts: per message id, the failed-attempt count, last
//     status and error and the time it is due again, written by Lease.Retry
//     and Lease.Release before the nak, read when the message is delivered
//     again (by any replica, after any restart). Stats counts a message out
//     whose due time is still to come as delayed rather than in flight.
//
// # Order across replicas
//
// Each partition has one durable pull consumer, <consumer>-p<N>, filtered
// to its subject, with explicit acks and MaxAckPending 1. The server then
// has at most one message of a partition out at a time, cluster-wide, and
// delivers the next only after that one is acked or terminated; a nakked
// message keeps the slot and is redelivered before anything behind it.
// Because the server enforces this, replicas claim nothing: every replica
// pulls from every partition while its dispatcher waits for work, and
// whichever asks first gets the partition's head. Since a conversation
// lives in exactly one partition, its messages are sent one at a time, in
// enqueue order, whichever replica sends them.
//
// Leases map onto acks: Ack is a confirmed ack (the next message cannot be
// delivered before it returns); Retry records the attempt and naks with
// the retry delay; Release naks with a delay and counts nothing; Dead
// stores the dead letter, then terminates the message (a confirmed term).
// The Store heartbeats every lease it holds every AckWait/3 (an in-progress
// ack), so a long request is never redelivered while it runs; if the process dies the heartbeats stop and, after AckWait, another
// replica gets the message again (at least once, same Idempotency-Key).
//
// A Store pulls only while Next calls wait for more than it holds: each
// partition then has one pull request (for one message) open at the
// server. Once the demand is met, the open pull requests are withdrawn
// (their subscriptions drained, so a message already on its way is kept,
// not lost), because a pull left open would take the partition's next head
// for a replica with no worker free. A pulled message that no Next call
// takes within a second is nakked back for any replica to take.
//
// # Trade-offs
//
// P sets the parallelism: at most P conversations are in flight at once
// across all replicas, so P should be at least the sum of the replicas'
// operator.concurrency. Conversations hashed to one partition share its
// slot: a head message that is backing off (or slow) holds back the other
// conversations of its partition, head-of-line blocking within a partition
// though never across partitions. A larger P makes that rarer and costs one
// consumer and one idle pull per partition per replica. P must be the same
// on every replica; changing it moves conversations between partitions, so
// order is kept again only once every replica runs the new value (a Store
// still drains partitions left over from a larger P).
//
// # Turns
//
// A lease is a turn. For a route that coalesces, the Store reads ahead of
// the partition's head: the next messages on the partition's subject,
// directly from the stream (a direct get of the next message after a
// sequence, up to 256 of them), keeping those of the head's conversation
// up to the route's max_events and budget. The consumer hands out nothing
// behind the head until the head is acked, so no replica can be sending
// them meanwhile. They stay in the stream while the turn is out: an Ack or
// Dead deletes them by sequence and then acks (or terminates) the head; a
// Retry or Release records their attempts and naks the head, and the next
// lease reads them again. A crash at any point loses nothing: a message
// is deleted only after its turn was delivered, and one whose delete did
// not happen is delivered again (a duplicate, as after any crash).
//
// The trade-offs: reading ahead costs a round trip per message read, so a
// turn is formed from at most 256 messages behind the head (a busy
// partition shared with many conversations may find fewer of this one's
// than are queued; the rest go into later turns); and a coalesced head
// holds its partition, not only its conversation, while it waits.
//
//   - The coalescing wait: a head delivered for the first time, accepted
//     less than wait ago, goes back (a nak with the delay, no attempt
//     counted) until accepted + wait, unless its conversation's last turn
//     ended after it was accepted (it then arrived while something was
//     pending, and does not wait again). Turn ends are recorded in KV
//     bucket S_turns for routes with a wait.
//   - Superseding: Enqueue, after JetStream acknowledged a message with a
//     supersede key, records its stream sequence as its key's newest in
//     S_turns (keyed by a hash of route, conversation key and supersede
//     key; entries expire after seven days), before it answers. A message
//     whose key's newest sequence is after its own is superseded: it goes
//     with the turn unsent (a lease of only superseded messages is acked
//     without a request). If that write fails the older message is sent,
//     which loses nothing.
//   - The turn limit keeps its turn times in the chat record (KV S_chats,
//     compare-and-set), so it holds for the whole cluster.
//
// # Outages
//
// The connection reconnects forever. While it is down Enqueue fails at
// once with an error wrapping queue.ErrUnavailable (ingest answers 503)
// and Ping fails (/readyz); messages already acknowledged are on the
// server's disk and are delivered once it is back. After a reconnect the
// Store re-creates anything missing, for a server that lost its storage.
package natsq
