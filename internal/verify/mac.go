package verify

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
	"sync"
)

// algorithm is a hash an HMAC scheme may name.
type algorithm struct {
	name string
	new  func() hash.Hash
	size int
}

var algorithms = []algorithm{
	{"sha1", sha1.New, sha1.Size},
	{"sha256", sha256.New, sha256.Size},
	{"sha512", sha512.New, sha512.Size},
}

func algorithmNamed(name string) (algorithm, error) {
	if name == "" {
		name = "sha256"
	}
	names := make([]string, len(algorithms))
	for i, a := range algorithms {
		if a.name == name {
			return a, nil
		}
		names[i] = a.name
	}
	return algorithm{}, fmt.Errorf("algorithm: %q is not one of %s", name, strings.Join(names, ", "))
}

// encoding is how a signature travels in its header.
type encoding int

const (
	encHex encoding = iota
	encBase64
)

func encodingNamed(name string) (encoding, error) {
	switch name {
	case "", "hex":
		return encHex, nil
	case "base64":
		return encBase64, nil
	}
	return 0, fmt.Errorf("encoding: %q is not one of hex, base64", name)
}

func (e encoding) encode(sum []byte) string {
	if e == encBase64 {
		return base64.StdEncoding.EncodeToString(sum)
	}
	return hex.EncodeToString(sum)
}

// macKey is one secret, with a pool of keyed HMAC states so the hot path
// neither re-keys nor allocates.
type macKey struct {
	pool sync.Pool
}

type macState struct {
	h   hash.Hash
	sum [sha512.Size]byte
}

func newMACKey(alg algorithm, key []byte) *macKey {
	key = append([]byte(nil), key...)
	k := &macKey{}
	k.pool.New = func() any { return &macState{h: hmac.New(alg.new, key)} }
	return k
}

func newMACKeys(alg algorithm, keys [][]byte) []*macKey {
	out := make([]*macKey, len(keys))
	for i, k := range keys {
		out[i] = newMACKey(alg, k)
	}
	return out
}

// macOnce computes HMAC(prefix || body) with a fresh state: the signing
// side, which is not on the hot path.
func macOnce(alg algorithm, key, prefix, body []byte) []byte {
	h := hmac.New(alg.new, key)
	h.Write(prefix)
	h.Write(body)
	return h.Sum(nil)
}

// matchAny reports whether any of sigs is the HMAC of prefix||body under any
// of keys. Every key is tried against every signature, with no early exit,
// so timing does not tell which secret (or whether any) matched.
func matchAny(keys []*macKey, prefix, body []byte, sigs *sigList) bool {
	ok := 0
	for _, k := range keys {
		st := k.pool.Get().(*macState)
		st.h.Reset()
		st.h.Write(prefix)
		st.h.Write(body)
		sum := st.h.Sum(st.sum[:0])
		for i := 0; i < sigs.n; i++ {
			ok |= subtle.ConstantTimeCompare(sum, sigs.at(i))
		}
		k.pool.Put(st)
	}
	return ok == 1
}

// sigList holds decoded candidate signatures of one size back to back, plus
// scratch space for the signed prefix; pooled so a verification does not
// allocate.
type sigList struct {
	size   int
	n      int
	dec    []byte
	tmp    []byte
	prefix []byte
}

var sigPool = sync.Pool{New: func() any {
	return &sigList{dec: make([]byte, 0, 2*sha512.Size), tmp: make([]byte, 0, 128), prefix: make([]byte, 0, 64)}
}}

func getSigs(size int) *sigList {
	s := sigPool.Get().(*sigList)
	s.size, s.n = size, 0
	s.dec, s.tmp, s.prefix = s.dec[:0], s.tmp[:0], s.prefix[:0]
	return s
}

func putSigs(s *sigList) {
	// Do not keep buffers a hostile header grew.
	if cap(s.dec) > 4096 || cap(s.tmp) > 4096 || cap(s.prefix) > 4096 {
		return
	}
	sigPool.Put(s)
}

func (s *sigList) at(i int) []byte { return s.dec[i*s.size : (i+1)*s.size] }

// add decodes v and keeps it when it has the digest's size. It reports
// false when v is not valid in enc or has the wrong size.
func (s *sigList) add(enc encoding, v string) bool {
	start := len(s.dec)
	var ok bool
	if enc == encHex {
		s.dec, ok = appendHex(s.dec, v)
	} else {
		s.dec, ok = s.appendBase64(v)
	}
	if !ok || len(s.dec)-start != s.size {
		s.dec = s.dec[:start]
		return false
	}
	s.n++
	return true
}

// appendBase64 accepts standard and URL alphabets, padded or not: senders
// differ, and the comparison is on the decoded bytes either way.
func (s *sigList) appendBase64(v string) ([]byte, bool) {
	if len(v) > 4*sha512.Size { // longer than any digest; do not decode junk
		return s.dec, false
	}
	s.tmp = append(s.tmp[:0], v...)
	for _, e := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		out, err := e.AppendDecode(s.dec, s.tmp)
		if err == nil {
			return out, true
		}
	}
	return s.dec, false
}

// appendHex decodes hex from a string without converting it to []byte.
func appendHex(dst []byte, v string) ([]byte, bool) {
	if len(v)%2 != 0 || len(v) > 2*sha512.Size {
		return dst, false
	}
	for i := 0; i < len(v); i += 2 {
		hi, ok1 := fromHex(v[i])
		lo, ok2 := fromHex(v[i+1])
		if !ok1 || !ok2 {
			return dst, false
		}
		dst = append(dst, hi<<4|lo)
	}
	return dst, true
}

func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
