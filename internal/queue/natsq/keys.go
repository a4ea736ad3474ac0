package natsq

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// b64 is subject- and KV-key-safe: its alphabet is [A-Za-z0-9_-].
var b64 = base64.RawURLEncoding

// partitionOf maps a conversation to one of n partitions. The same inputs
// give the same partition in every replica and every release, which is what
// keeps one conversation on one ordered consumer.
func partitionOf(route, key string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(route))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

type names struct {
	stream   string // messages stream
	dlq      string // dead-letter stream
	chats    string // KV buckets
	attempts string
	dedupe   string
	turns    string // turn state: supersede keys' newest messages
	owners   string // replicas' membership and partition claims
	consumer string // durable name prefix
}

func newNames(stream, consumer string) names {
	return names{
		stream:   stream,
		dlq:      stream + "_DLQ",
		chats:    stream + "_chats",
		attempts: stream + "_attempts",
		dedupe:   stream + "_dedupe",
		turns:    stream + "_turns",
		owners:   stream + "_owners",
		consumer: consumer,
	}
}

func (n names) msgsWildcard() string     { return n.stream + ".msgs.>" }
func (n names) partSubject(p int) string { return n.stream + ".msgs." + strconv.Itoa(p) }

// convSubject is where a conversation's messages go: its partition and a
// token of its own, so the stream counts messages per conversation.
func (n names) convSubject(p int, route, key string) string {
	return n.partSubject(p) + "." + convToken(route, key)
}

// partFilters are a partition's consumer's subjects: its conversations,
// and the partition's own subject, where releases before per-conversation
// subjects stored every message.
func (n names) partFilters(p int) []string {
	return []string{n.partSubject(p), n.partSubject(p) + ".>"}
}
func (n names) dlqWildcard() string       { return n.stream + ".dlq.>" }
func (n names) consumerName(p int) string { return n.consumer + "-p" + strconv.Itoa(p) }
func (n names) dlqSubject(route string) string {
	return n.stream + ".dlq." + routeToken(route)
}

// partOfConsumer parses a durable name made by consumerName.
func (n names) partOfConsumer(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, n.consumer+"-p")
	if !ok {
		return 0, false
	}
	p, err := strconv.Atoi(rest)
	if err != nil || p < 0 || strconv.Itoa(p) != rest {
		return 0, false
	}
	return p, true
}

// convToken names a conversation in a subject: 72 bits of a hash of its
// route and key, so two conversations of one partition practically never
// share one (if they did, only the per-conversation counts would mix).
func convToken(route, key string) string {
	h := sha256.New()
	h.Write([]byte(route))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return b64.EncodeToString(h.Sum(nil)[:9])
}

// Keys of the owners bucket.
func memberKey(id string) string { return "m." + id }
func claimKey(p int) string      { return "p." + strconv.Itoa(p) }

// partOfSubject parses the partition of a message subject (either form).
func (n names) partOfSubject(subj string) (int, bool) {
	rest, ok := strings.CutPrefix(subj, n.stream+".msgs.")
	if !ok {
		return 0, false
	}
	ps, _, _ := strings.Cut(rest, ".")
	p, err := strconv.Atoi(ps)
	if err != nil || p < 0 || strconv.Itoa(p) != ps {
		return 0, false
	}
	return p, true
}

// routeToken makes a route name one readable subject token. Config route
// names are normally plain words and are kept as they are; anything else is
// base64-encoded behind a "~", which plain names cannot contain.
func routeToken(route string) string {
	plain := route != ""
	for _, c := range route {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			plain = false
			break
		}
	}
	if plain {
		return route
	}
	return "~" + b64.EncodeToString([]byte(route))
}

// chatKey is the KV key of a conversation: both parts base64-encoded with a
// one-letter prefix, so that empty keys and dots in names stay valid and the
// key decodes back for ListChats.
func chatKey(route, key string) string {
	return "r" + b64.EncodeToString([]byte(route)) + ".k" + b64.EncodeToString([]byte(key))
}

func parseChatKey(k string) (route, key string, err error) {
	r, c, ok := strings.Cut(k, ".")
	if !ok || !strings.HasPrefix(r, "r") || !strings.HasPrefix(c, "k") {
		return "", "", fmt.Errorf("natsq: malformed chat key %q", k)
	}
	rb, err1 := b64.DecodeString(r[1:])
	cb, err2 := b64.DecodeString(c[1:])
	if err1 != nil || err2 != nil {
		return "", "", fmt.Errorf("natsq: malformed chat key %q", k)
	}
	return string(rb), string(cb), nil
}

// attemptsKey is the KV key of a message's retry record.
func attemptsKey(id string) string { return "m" + b64.EncodeToString([]byte(id)) }

// newestKey is the KV key of a (route, conversation, supersede key): all
// three come from the config or the sender, so they are hashed.
func newestKey(route, conv, key string) string {
	h := sha256.New()
	for _, s := range [...]string{route, conv, key} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return "s" + b64.EncodeToString(h.Sum(nil))
}

// dedupeKey hashes the sender's dedupe key: senders choose it, so its length
// and characters are not ours to trust as a KV key.
func dedupeKey(k string) string {
	sum := sha256.Sum256([]byte(k))
	return "d" + b64.EncodeToString(sum[:])
}

// Nats-Msg-Id values. A replay and a second death of the same message must
// not be swallowed by the stream's duplicate window, so they carry the
// sequence they come from; a retried call of the same operation still
// dedupes.
func replayMsgID(id string, dlqSeq uint64) string {
	return id + "/replay/" + strconv.FormatUint(dlqSeq, 10)
}
func deadMsgID(id string, seq uint64) string { return id + "/dead/" + strconv.FormatUint(seq, 10) }

// validName reports whether s can name a stream, a KV bucket (with our
// suffixes) and a subject token.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
