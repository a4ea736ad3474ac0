package verify

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
	"unicode/utf8"
)

// Amazon SNS signs each HTTP(S) delivery itself: the body is a JSON message
// whose Signature is an RSA signature (SignatureVersion 1: SHA1withRSA,
// 2: SHA256withRSA) over a canonical string of some of its fields, made
// with the key of the certificate at SigningCertURL.

// DefaultSNSCertHosts is where SNS keeps its signing certificates and
// subscription endpoints, when cert_hosts is not set.
var DefaultSNSCertHosts = []string{"sns.*.amazonaws.com"}

const (
	snsNotification = "Notification"
	snsSubscribe    = "SubscriptionConfirmation"
	snsUnsubscribe  = "UnsubscribeConfirmation"

	// Certificates are a few KiB; anything larger is not one.
	snsMaxCert     = 64 << 10
	snsMaxConfirm  = 64 << 10
	snsCacheSize   = 64
	snsCertTTL     = 24 * time.Hour
	snsCertFailTTL = 10 * time.Second
)

type snsVerifier struct {
	topics []string // empty: any topic
	hosts  hostPatterns
	client *http.Client
	certs  *certCache
}

var _ Verifier = (*snsVerifier)(nil)

func buildSNS(c Spec) (compiled, error) {
	if err := onlyFields(c, "topics", "cert_hosts", "ca_file"); err != nil {
		return nil, err
	}
	return newSNS(c.Topics, c.CertHosts, c.CAFile)
}

// newSNS compiles an SNS verifier: topics is the TopicArn allow-list (empty
// allows every topic), certHosts where SigningCertURL and SubscribeURL may
// point (DefaultSNSCertHosts when empty), caFile an optional extra CA bundle.
// The config loader rejects secrets and empty topics.
func newSNS(topics, certHosts []string, caFile string) (*snsVerifier, error) {
	if len(certHosts) == 0 {
		certHosts = DefaultSNSCertHosts
	}
	hosts, err := compileHostPatterns("cert_hosts", certHosts)
	if err != nil {
		return nil, err
	}
	client, err := newFetchClient(caFile, hosts)
	if err != nil {
		return nil, err
	}
	v := &snsVerifier{topics: slices.Clone(topics), hosts: hosts, client: client}
	v.certs = newCertCache(snsCacheSize, v.fetchCert)
	return v, nil
}

// Headers is empty: the proof is in the body.
func (v *snsVerifier) Headers() []string { return nil }

func (v *snsVerifier) Verify(r *Request) (Result, error) {
	m, err := parseSNS(r.Body)
	if err != nil {
		return Result{}, fail(ReasonMalformed, "malformed SNS message: %v", err)
	}
	if m.Signature == "" || m.SigningCertURL == "" || m.SignatureVersion == "" {
		return Result{}, fail(ReasonMissing, "SNS message is not signed")
	}
	var hash crypto.Hash
	switch m.SignatureVersion {
	case "1":
		hash = crypto.SHA1
	case "2":
		hash = crypto.SHA256
	default:
		return Result{}, fail(ReasonMalformed, "malformed SNS message: SignatureVersion %q is not 1 or 2", clip(m.SignatureVersion))
	}
	canon, err := m.canonical()
	if err != nil {
		return Result{}, fail(ReasonMalformed, "malformed SNS message: %v", err)
	}
	if len(v.topics) > 0 && !slices.Contains(v.topics, m.TopicArn) {
		return Result{}, fail(ReasonMismatch, "SNS TopicArn is not one of topics")
	}
	if _, err := v.hosts.allowedURL(m.SigningCertURL); err != nil {
		return Result{}, fail(ReasonMismatch, "SNS SigningCertURL %v", err)
	}
	if m.Type == snsSubscribe {
		if _, err := v.hosts.allowedURL(m.SubscribeURL); err != nil {
			return Result{}, fail(ReasonMismatch, "SNS SubscribeURL %v", err)
		}
	}
	sig, err := base64.StdEncoding.DecodeString(m.Signature)
	if err != nil {
		return Result{}, fail(ReasonMalformed, "malformed SNS message: Signature is not base64")
	}
	ctx := requestContext(r)
	key, err := v.certs.get(ctx, m.SigningCertURL)
	if err != nil {
		return Result{}, err
	}
	var digest []byte
	if hash == crypto.SHA1 {
		d := sha1.Sum(canon)
		digest = d[:]
	} else {
		d := sha256.Sum256(canon)
		digest = d[:]
	}
	if rsa.VerifyPKCS1v15(key, hash, digest, sig) != nil {
		return Result{}, fail(ReasonMismatch, "SNS signature does not match the message")
	}

	switch m.Type {
	case snsSubscribe:
		// Confirm with the caller's context: when the sender hangs up it
		// will send the confirmation again.
		if _, err := get(ctx, v.client, m.SubscribeURL, snsMaxConfirm); err != nil {
			return Result{}, fmt.Errorf("%w: confirming the SNS subscription: %v", ErrUnavailable, err)
		}
		return Result{Control: "sns:" + snsSubscribe}, nil
	case snsUnsubscribe:
		return Result{Control: "sns:" + snsUnsubscribe}, nil
	}
	// SNS keeps MessageId across its retries of one message.
	return Result{ReplayKey: replayKeyOf([]byte("sns\x00" + m.MessageID))}, nil
}

func (v *snsVerifier) sign([]byte, time.Time, string) (http.Header, error) {
	return nil, errors.New("type sns: messages are signed by Amazon SNS, not with a configured secret")
}

// fetchCert gets and parses the certificate at u, whose URL is already
// checked against the host rule. It runs detached from the request that
// asked for it, so that request's client hanging up does not fail the
// others waiting for the same certificate.
func (v *snsVerifier) fetchCert(ctx context.Context, u string) (*rsa.PublicKey, error) {
	b, err := get(context.WithoutCancel(ctx), v.client, u, snsMaxCert)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: not a PEM certificate", redactQuery(u))
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", redactQuery(u), err)
	}
	key, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an RSA certificate", redactQuery(u))
	}
	return key, nil
}

// snsMessage holds the string fields of an SNS message that the signature
// covers or that say how to check it.
type snsMessage struct {
	Type, MessageID, Token, TopicArn, Subject, Message, SubscribeURL, Timestamp string
	SignatureVersion, Signature, SigningCertURL                                 string

	has map[string]bool // fields present with a string value
}

func (m *snsMessage) field(key string) *string {
	switch key {
	case "Type":
		return &m.Type
	case "MessageId":
		return &m.MessageID
	case "Token":
		return &m.Token
	case "TopicArn":
		return &m.TopicArn
	case "Subject":
		return &m.Subject
	case "Message":
		return &m.Message
	case "SubscribeURL":
		return &m.SubscribeURL
	case "Timestamp":
		return &m.Timestamp
	case "SignatureVersion":
		return &m.SignatureVersion
	case "Signature":
		return &m.Signature
	case "SigningCertURL":
		return &m.SigningCertURL
	}
	return nil
}

// parseSNS reads an SNS message. It is stricter than encoding/json on
// purpose: a key given twice, invalid UTF-8 or trailing data is an error,
// so what the signature was checked over is exactly what ingest parses and
// routes see.
func parseSNS(body []byte) (*snsMessage, error) {
	if !utf8.Valid(body) {
		return nil, errors.New("not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	m := &snsMessage{has: make(map[string]bool, 12)}
	seen := make(map[string]bool, 16)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errors.New("not a JSON object")
		}
		key, _ := tok.(string)
		if seen[key] {
			return nil, fmt.Errorf("key %q given twice", clip(key))
		}
		seen[key] = true
		dst := m.field(key)
		if dst == nil {
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return nil, errors.New("not a JSON object")
			}
			continue
		}
		var s *string
		if err := dec.Decode(&s); err != nil {
			return nil, fmt.Errorf("%s is not a string", key)
		}
		if s != nil { // null counts as absent
			*dst = *s
			m.has[key] = true
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, errors.New("not a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return m, nil
}

// canonical is the string SNS signs: "Key\nValue\n" for each signed field,
// in this order, for the message's type.
func (m *snsMessage) canonical() ([]byte, error) {
	var keys []string
	switch m.Type {
	case snsNotification:
		keys = []string{"Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"}
	case snsSubscribe, snsUnsubscribe:
		keys = []string{"Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"}
	case "":
		return nil, errors.New("no Type")
	default:
		return nil, fmt.Errorf("the Type %q is not %s, %s or %s", clip(m.Type), snsNotification, snsSubscribe, snsUnsubscribe)
	}
	var b bytes.Buffer
	for _, k := range keys {
		if !m.has[k] {
			if k == "Subject" { // the one optional signed field
				continue
			}
			return nil, fmt.Errorf("no %s", k)
		}
		v := *m.field(k)
		if v == "" && k != "Message" && k != "Subject" {
			return nil, fmt.Errorf("empty %s", k)
		}
		b.WriteString(k)
		b.WriteByte('\n')
		b.WriteString(v)
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

// clip shortens sender-supplied text quoted in an error.
func clip(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	for i := max; i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return s[:i] + "…"
		}
	}
	return ""
}

// certCache is a bounded cache of SNS signing keys by certificate URL. A
// fetch holds no lock: requests whose certificate is cached, or that wait
// for another URL, carry on; requests for the URL being fetched wait for
// that one fetch (or their own context). Failures are remembered briefly so
// a bad URL is not fetched once per request.
type certCache struct {
	max   int
	fetch func(context.Context, string) (*rsa.PublicKey, error)
	now   func() time.Time

	mu      sync.Mutex
	entries map[string]*certEntry
}

type certEntry struct {
	done    chan struct{} // closed when key/err/expires are set
	key     *rsa.PublicKey
	err     error
	expires time.Time
	added   time.Time
}

func newCertCache(max int, fetch func(context.Context, string) (*rsa.PublicKey, error)) *certCache {
	return &certCache{max: max, fetch: fetch, now: time.Now, entries: make(map[string]*certEntry)}
}

func (c *certCache) get(ctx context.Context, u string) (*rsa.PublicKey, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[u]
	if ok && isDone(e) && now.After(e.expires) {
		delete(c.entries, u)
		ok = false
	}
	if !ok {
		if !c.makeRoom(now) {
			c.mu.Unlock()
			return nil, fmt.Errorf("%w: too many SNS certificate fetches in flight", ErrUnavailable)
		}
		e = &certEntry{done: make(chan struct{}), added: now}
		c.entries[u] = e
		c.mu.Unlock()
		key, err := c.fetch(ctx, u)
		ttl := snsCertTTL
		if err != nil {
			ttl = snsCertFailTTL
		}
		e.key, e.err, e.expires = key, err, c.now().Add(ttl)
		close(e.done)
	} else {
		c.mu.Unlock()
		select {
		case <-e.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: waiting for the SNS certificate: %v", ErrUnavailable, ctx.Err())
		}
	}
	if e.err != nil {
		return nil, fmt.Errorf("%w: SNS certificate: %v", ErrUnavailable, e.err)
	}
	return e.key, nil
}

// makeRoom evicts expired entries, then the oldest finished one, until a new
// entry fits; false when every entry is a fetch in flight. Called with mu
// held.
func (c *certCache) makeRoom(now time.Time) bool {
	if len(c.entries) < c.max {
		return true
	}
	var oldest string
	var oldestAt time.Time
	for u, e := range c.entries {
		if !isDone(e) {
			continue
		}
		if now.After(e.expires) {
			delete(c.entries, u)
			continue
		}
		if oldest == "" || e.added.Before(oldestAt) {
			oldest, oldestAt = u, e.added
		}
	}
	if len(c.entries) < c.max {
		return true
	}
	if oldest == "" {
		return false
	}
	delete(c.entries, oldest)
	return true
}

func isDone(e *certEntry) bool {
	select {
	case <-e.done:
		return true
	default:
		return false
	}
}
