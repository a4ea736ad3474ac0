package boltq

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/relayd/relayd/internal/queue"
)

// Queued messages use a compact binary encoding rather than JSON: they are
// written once per enqueue and read once per lease on the hot path, and the
// fixed header lets the index read a head's due time without decoding the
// rest.
//
//	[0]      format version (msgV1)
//	[1:9]    NextAttemptAt, Unix nanoseconds, big endian (0 = zero time)
//	[9:17]   EnqueuedAt, Unix nanoseconds, big endian (0 = zero time)
//	then     uvarint Attempts, varint LastStatus, and the strings ID, Route,
//	         ConversationKey, Prompt, Source, Delivery, Event, LastError,
//	         each as a uvarint length followed by the bytes.
//	         Version msgV2 adds SupersedeKey after LastError; a message
//	         without one is still written as msgV1.
//	         Version msgV3 adds, after SupersedeKey, the strings Kind,
//	         ReplyRepo and ReplySHA and a uvarint ReplyNumber; a message
//	         without them is still written as msgV1 or msgV2.
const (
	msgV1     = 1
	msgV2     = 2
	msgV3     = 3
	msgHeader = 17
)

var errCorrupt = errors.New("boltq: corrupt record")

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// encodeMessage appends m's encoding to dst.
func encodeMessage(dst []byte, m *queue.Message) []byte {
	n := msgHeader + 2*binary.MaxVarintLen64 + 8*binary.MaxVarintLen32 +
		len(m.ID) + len(m.Route) + len(m.ConversationKey) + len(m.Prompt) +
		len(m.Source) + len(m.Delivery) + len(m.Event) + len(m.LastError) + len(m.SupersedeKey) +
		len(m.Kind) + len(m.ReplyRepo) + len(m.ReplySHA)
	// Grown as append grows a slice: a log frame appends a whole batch's
	// messages to one buffer, and growing it by exactly one message each
	// time would copy it once per message.
	dst = slices.Grow(dst, n)
	version := byte(msgV1)
	switch {
	case m.Kind != "" || m.ReplyRepo != "" || m.ReplySHA != "" || m.ReplyNumber > 0:
		version = msgV3
	case m.SupersedeKey != "":
		version = msgV2
	}
	dst = append(dst, version)
	dst = binary.BigEndian.AppendUint64(dst, uint64(unixNano(m.NextAttemptAt)))
	dst = binary.BigEndian.AppendUint64(dst, uint64(unixNano(m.EnqueuedAt)))
	attempts := m.Attempts
	if attempts < 0 {
		attempts = 0
	}
	dst = binary.AppendUvarint(dst, uint64(attempts))
	dst = binary.AppendVarint(dst, int64(m.LastStatus))
	for _, s := range [...]string{m.ID, m.Route, m.ConversationKey, m.Prompt, m.Source, m.Delivery, m.Event, m.LastError} {
		dst = appendString(dst, s)
	}
	if version >= msgV2 {
		dst = appendString(dst, m.SupersedeKey)
	}
	if version == msgV3 {
		for _, s := range [...]string{m.Kind, m.ReplyRepo, m.ReplySHA} {
			dst = appendString(dst, s)
		}
		dst = binary.AppendUvarint(dst, uint64(max(m.ReplyNumber, 0)))
	}
	return dst
}

// msgTimes reads the fixed header: the next attempt time and the enqueue time.
func msgTimes(v []byte) (next, enqueued int64, err error) {
	if len(v) < msgHeader || v[0] < msgV1 || v[0] > msgV3 {
		return 0, 0, errCorrupt
	}
	return int64(binary.BigEndian.Uint64(v[1:9])), int64(binary.BigEndian.Uint64(v[9:17])), nil
}

// decodeMessage decodes v. The strings share one copy of v's tail: v may be
// bbolt's mmap, only valid during its transaction.
func decodeMessage(v []byte) (queue.Message, error) {
	var m queue.Message
	next, enq, err := msgTimes(v)
	if err != nil {
		return m, err
	}
	m.NextAttemptAt = fromUnixNano(next)
	m.EnqueuedAt = fromUnixNano(enq)
	p := v[msgHeader:]
	a, n := binary.Uvarint(p)
	if n <= 0 || a > 1<<31 {
		return m, errCorrupt
	}
	m.Attempts = int(a)
	p = p[n:]
	st, n := binary.Varint(p)
	if n <= 0 || st < -1<<31 || st > 1<<31 {
		return m, errCorrupt
	}
	m.LastStatus = int(st)
	p = p[n:]
	all := string(p)
	fields := []*string{&m.ID, &m.Route, &m.ConversationKey, &m.Prompt, &m.Source, &m.Delivery, &m.Event, &m.LastError}
	if v[0] >= msgV2 {
		fields = append(fields, &m.SupersedeKey)
	}
	if v[0] == msgV3 {
		fields = append(fields, &m.Kind, &m.ReplyRepo, &m.ReplySHA)
	}
	for _, f := range fields {
		l, n := binary.Uvarint(p)
		if n <= 0 || l > uint64(len(p)-n) {
			return queue.Message{}, errCorrupt
		}
		off := len(all) - len(p) + n
		*f = all[off : off+int(l)]
		p = p[n+int(l):]
	}
	if v[0] == msgV3 {
		num, n := binary.Uvarint(p)
		if n <= 0 || num > 1<<62 {
			return queue.Message{}, errCorrupt
		}
		m.ReplyNumber = int64(num)
		p = p[n:]
	}
	if len(p) != 0 {
		return queue.Message{}, errCorrupt
	}
	return m, nil
}

// Keys.

func u64(n uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], n)
	return k[:]
}

// maxNameLen bounds the keys built from user data (conversation keys come
// from an expr over the webhook body, dedupe keys from headers). Longer ones
// are replaced by a hash, well inside bbolt's key size limit.
const maxNameLen = 512

// convName is the key of a (route, conversation key) in the convs and chats
// buckets. Route names come from the config and never contain NUL.
// routeOfName is the route part of a convName.
func routeOfName(name []byte) string {
	if i := bytes.IndexByte(name, 0); i >= 0 {
		return string(name[:i])
	}
	return string(name)
}

func convName(route, key string) []byte {
	if len(route)+1+len(key) <= maxNameLen {
		b := make([]byte, 0, len(route)+1+len(key))
		b = append(b, route...)
		b = append(b, 0)
		return append(b, key...)
	}
	sum := sha256.Sum256([]byte(key))
	b := make([]byte, 0, len(route)+2+2*len(sum))
	b = append(b, route...)
	b = append(b, 0, '#')
	return hex.AppendEncode(b, sum[:])
}

func dedupeName(key string) []byte {
	if len(key) <= maxNameLen {
		return []byte(key)
	}
	sum := sha256.Sum256([]byte(key))
	return hex.AppendEncode([]byte("#"), sum[:])
}

// Dead-letter index keys: "m"+message id → dead key, and
// "d"+uvarint(len(delivery))+delivery+dead key → marker. The length prefix
// makes a delivery id's entries an exact prefix range.
func deadByID(id string) []byte {
	return append([]byte{'m'}, id...)
}

func deadByDeliveryPrefix(delivery string) []byte {
	b := binary.AppendUvarint([]byte{'d'}, uint64(len(delivery)))
	return append(b, delivery...)
}

// convRec is a convs record: the conversation's number (its in-memory
// identity), its first and last message sequences and its message count.
type convRec struct {
	num, head, tail, count uint64
}

func (r convRec) bytes() []byte {
	v := make([]byte, 32)
	binary.BigEndian.PutUint64(v[0:], r.num)
	binary.BigEndian.PutUint64(v[8:], r.head)
	binary.BigEndian.PutUint64(v[16:], r.tail)
	binary.BigEndian.PutUint64(v[24:], r.count)
	return v
}

func parseConvRec(v []byte) (convRec, error) {
	if len(v) != 32 {
		return convRec{}, fmt.Errorf("%w: conversation record of %d bytes", errCorrupt, len(v))
	}
	return convRec{
		num:   binary.BigEndian.Uint64(v[0:]),
		head:  binary.BigEndian.Uint64(v[8:]),
		tail:  binary.BigEndian.Uint64(v[16:]),
		count: binary.BigEndian.Uint64(v[24:]),
	}, nil
}
