// Package natsq stores queued messages, dead letters and chat ids in NATS
// JetStream, shared by replicas.
//
// It gives the guarantees of the bbolt backend across processes: any
// number of relayd replicas open a Store on the same stream and together
// deliver every message at least once, one turn at a time per
// conversation, in enqueue order; a conversation waits only for itself.
//
// # Layout
//
// For Options.Stream S (default RELAYD):
//
//   - Stream S, subjects S.msgs.>, file storage, work-queue retention (a
//     message leaves the stream when acked or terminated), configurable
//     replicas. A message of a conversation goes to subject
//     S.msgs.<p>.<c>: its partition p = fnv32a(route + "\x00" +
//     conversation key) mod P, and c, 72 bits of a SHA-256 of the same,
//     so the stream counts each conversation's messages (relayd chats
//     list reads them with one stream info). Releases before this one
//     published to S.msgs.<p>; a partition's consumer also reads that
//     subject while it holds messages (when taken, it filters on
//     S.msgs.<p>.> alone otherwise: the server finds the next message of
//     one filter far faster than of two), so nothing needs migrating. A message is published with Nats-Msg-Id set
//     to its id, so the stream's two-minute duplicate window drops a
//     publisher's retry. Enqueue returns only after JetStream acknowledged
//     every publish of the batch (published asynchronously, acks awaited
//     together), so ingest answers 202 only for stored messages. With
//     Replicas > 1 an ack means a quorum of servers has the message; a
//     single server writes it to its file store but syncs to disk on its
//     own schedule (sync_interval, two minutes by default), so for power
//     loss durability on one server set sync_interval: always.
//   - Stream S_DLQ, subjects S.dlq.<route>: dead letters as JSON, in the
//     order they died. Listing reads it through a short-lived consumer;
//     replay republishes to the message's conversation subject (at the
//     tail of its conversation, attempts reset) and deletes the dead letter
//     by sequence. Every replica sees and changes the same dead letters.
//   - KV bucket S_chats: chat state per (route, conversation key). PutChat
//     is a compare-and-set on the KV revision (Create for revision 0,
//     Update with the revision otherwise), so two replicas never both start
//     a chat for one conversation: the loser gets queue.ErrConflict. Each
//     Store watches the bucket's headers to count chats by route
//     (ChatCounts), and to keep a cache of the records it read or wrote
//     current: an owner's GetChat costs no request.
//   - KV bucket S_dedupe: delivery dedupe marks. Enqueue creates the mark
//     first (a second Create of the key fails: duplicate), then publishes;
//     the two are not atomic, so when publishing fails the mark is deleted
//     again and the sender's retry is not taken for a duplicate. Each mark
//     carries its source's TTL (NATS 2.11+); the bucket's TTL,
//     Options.DedupeTTL, caps them all.
//   - KV bucket S_turns: per supersede key, the stream sequence of its
//     newest message (see Turns).
//   - KV bucket S_attempts: per message id, the failed-attempt count, last
//     status and error and the time it is due again, written by Lease.Retry
//     (and Lease.Release with a time to come), read by a partition's next
//     owner.
//   - KV bucket S_owners: the replicas (m.<id>) and the partitions' owners
//     (p.<N>), see below.
//
// # Partition owners
//
// Each partition is owned by one replica at a time, as a Kafka consumer
// group's partitions are. A replica registers in S_owners (key m.<id>,
// value its expiry) and refreshes that every OwnerTTL/3; the live members
// (expiry to come) are N, and a replica owns at most its fair share,
// ceil(partitions / N). A claim is key p.<N> with the owner's id and an
// expiry of now + OwnerTTL, created (when absent) or taken over (when
// expired) by compare-and-set on the key's revision, and refreshed the
// same way every OwnerTTL/3. A refresh that finds the revision moved
// means another replica took the partition: the Store drops it at once.
// A replica above its share (one joined) gives partitions back: it stops
// starting turns on them, waits for the turns out to end, flushes their
// acks and deletes the claim; others take them at their next round.
// Close gives every claim back the same way without waiting, so a restart
// or a rolling update hands partitions over at once.
//
// Taking a partition, the owner deletes and re-creates its durable pull
// consumer (<consumer>-p<N>, DeliverAll, explicit acks, MaxAckPending
// Options.Window, state in memory: acked messages leave the stream, so
// the consumer has nothing worth keeping on disk, and an owner that finds
// it gone, after a server restart, re-creates it): it is then delivered
// every message of the partition not acked yet, in stream order,
// including those a previous owner held or had out. A previous owner still running (a "zombie" that lost its claim, say
// behind a network partition) has its consumer deleted under it, so its
// acks go nowhere and what it had out is sent again by the new owner: at
// least once, with the same Idempotency-Key.
//
// Claims expire by wall clock: a replica stops handing out turns of a
// partition once two thirds of OwnerTTL passed since its last successful
// refresh, and others take the claim only after all of OwnerTTL. So a
// turn is never started by two replicas at once as long as replicas'
// clocks differ by less than OwnerTTL/3 (10 s by default); beyond that, a
// turn may be sent twice, which at-least-once delivery allows anyway.
//
// # Scheduling
//
// The owner keeps what the consumer delivers in memory, per conversation
// in stream order, and schedules like the bbolt backend (what it keeps of
// each message: see Trade-offs): Next hands out
// the oldest due head of a conversation that has no turn out (a heap of
// ready heads ordered by enqueue or due time, and one of heads due later).
// Nothing of a partition waits for another conversation's turn:
//
//   - Ack and Dead ack (or terminate) every message of the turn. The acks
//     are plain publishes, not confirmed one by one: only the owner can
//     hand out the conversation's next message, and the consumer
//     redelivers nothing the owner holds.
//   - After a reconnect, or when the consumer sequence shows a gap, the
//     owner reads the partition again from its start (re-creating the
//     consumer): a delivery lost on its way would otherwise let a later
//     message of its conversation go first. It keeps what it holds and its
//     turns out meanwhile, nobody waits: what comes again and is held only
//     moves its acks to the new delivery, and what was lost is newer than
//     anything held (nothing after a gap is taken). A message acked here
//     whose ack was lost with the connection is acked again when it comes
//     back, not sent (the owner remembers its last 4,096 acks per
//     partition).
//   - Retry and Release keep the messages here, due again at the time
//     asked; Retry (and a Release to a later time) writes each message's
//     attempts record first, so a next owner knows the attempts and the
//     due time. No nak: a backing-off conversation holds nobody else.
//   - A turn out has no deadline: its messages stay with the owner as long
//     as it lives and holds the claim, with no heartbeat per message. The
//     consumer's AckWait (five minutes) only brings back a delivery lost on
//     its way; the owner drops a redelivery of a sequence it holds.
//
// # Trade-offs
//
// P now bounds how many replicas share the work (a replica beyond P owns
// nothing and only ingests), not how many conversations are in flight:
// any number of conversations of one partition are sent at once. Every
// replica must use the same P; changing it moves conversations between
// partitions, so order is kept again only once every replica runs the new
// value (a Store still drains partitions left over from a larger P).
//
// A replica that dies holds its partitions until its claim expires
// (OwnerTTL, default AckWait, 30 s): their conversations wait that long,
// then the new owner re-sends the turns that were out. Partitions move
// when replicas join or leave; a partition given back waits for its
// longest turn out, and its conversations wait with it.
//
// The window is per partition, not per conversation: the owner holds at
// most Window (default 16,384) messages of a partition, and a conversation
// with more queued than that fills the window until it drains below it
// (its turns then carry up to max_events each): only a conversation
// deeper than the window holds up the rest of its partition. A
// per-conversation cap enforced by naking the surplus would not help: a
// nakked message keeps its slot in the consumer's ack-pending window until
// it is redelivered and acked.
//
// Memory: a held message costs its item: stream sequence, ack subject, due and
// enqueue times, about 200 bytes with its index entries. The body (the
// decoded message with its prompt) is kept only for a conversation's first
// max(64, max_events) messages, and only while the partition's kept
// bodies stay within 2 MiB (a wide backlog of long prompts keeps fewer).
// A turn that needs a body not kept reads it back from the stream by
// sequence (one request per message, the stream's leader answers); a
// failed read makes the turn wait a second and try again, as a release
// does, and a message the stream no longer has (a late ack of a previous
// owner) is dropped. So an owner's memory per partition is at most about
// Window × 200 bytes + 2 MiB of bodies (+ the turns out): with the
// defaults, 3 MiB of items and 2 MiB of bodies, so for 16 partitions all
// full 50 MiB of items and at most 32 MiB of bodies. A turn of
// a superseding route looks through up to 4,096 held messages and reads
// back those not kept, then drops them again. The consumer's pulls ask for
// at most 1,024 messages at once, so a batch of long prompts on its way is
// bounded too.
//
// While NATS is unreachable (from a replica, or a partitioned minority of
// a cluster) nothing new is fetched; turns of what the owner holds still go
// out until the claim's refreshes fail for two thirds of OwnerTTL; then
// the partition waits for the connection or for another replica, reaching
// NATS, to take it over once the claim expired.
//
// Requests per turn, steady state: the messages arrive in batches of up to
// 1,024 (a pull request per batch); one ack publish per message; one
// direct read per message a turn needs whose body is not kept (past a
// conversation's first messages, or past the bodies' budget); no KV
// request for the turn itself. The dispatcher adds the chat record's
// compare-and-set (its read is cached) and the history outcome. A Retry
// adds one KV put per message and a later Ack one KV purge per message.
// A turn of a coalescing route adds one direct read of its conversation's
// newest sequence. Superseding adds one KV put per keyed message at
// enqueue and one KV get per keyed message when a turn is formed. Ownership costs, per replica,
// one KV put and one bucket read every OwnerTTL/3 plus one KV update per
// partition owned.
//
// # Turns
//
// A lease is a turn: up to the route's max_events and max_prompt_bytes of
// its conversation's messages held by the owner, oldest first (their
// bodies kept here or read back, see Trade-offs). A turn of a route that coalesces or supersedes first
// asks the stream for the newest sequence on its conversation's subject
// and waits, briefly, for the messages up to it to arrive, so that a turn
// carries every message accepted before it was taken, as on bbolt.
//
//   - The coalescing wait: a message that arrives when its conversation
//     has nothing held or out, accepted less than wait ago, is due at
//     accepted + wait, unless its conversation's last turn here ended after
//     it was accepted (it then arrived while something was pending). The
//     turn ends are kept in memory; after a change of owner a message may
//     wait once more, at most until accepted + wait.
//   - Superseding: Enqueue, after JetStream acknowledged a message with a
//     supersede key, records its stream sequence as its key's newest in
//     S_turns (keyed by a hash of route, conversation key and supersede
//     key; entries expire after seven days), before it answers. A message
//     is superseded when a newer message of its key is held in its
//     conversation or S_turns names a newer sequence: it goes with the turn
//     unsent (a lease of only superseded messages is acked without a
//     request). If that write fails the older message is sent, which loses
//     nothing.
//   - The turn limit keeps its turn times in the chat record (KV S_chats,
//     compare-and-set), so it holds for the whole cluster.
//
// # Outages
//
// The connection reconnects forever. While it is down Enqueue fails at
// once with an error wrapping queue.ErrUnavailable (ingest answers 503)
// and Ping fails (/readyz); messages already acknowledged are on the
// server's disk and are delivered once it is back. After a reconnect the
// Store re-creates anything missing, for a server that lost its storage,
// and reads the partitions it owns again (see Scheduling).
package natsq
