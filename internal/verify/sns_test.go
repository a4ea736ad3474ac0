package verify

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const snsTopic = "arn:aws:sns:eu-west-1:123456789012:landing"

// snsFixture is an HTTPS server standing in for sns.<region>.amazonaws.com:
// it serves the signing certificate and answers subscription confirmations.
type snsFixture struct {
	base, caFile string
	key          *rsa.PrivateKey
	certFetches  atomic.Int32
	confirms     atomic.Int32
	confirmQuery atomic.Value // string
	confirmFails atomic.Bool
}

func newSNSFixture(t *testing.T) *snsFixture {
	t.Helper()
	ca := newTestCA(t)
	f := &snsFixture{caFile: ca.caFile, key: testRSAKey(t, 0)}
	certPEM := selfSignedPEM(t, f.key)
	otherPEM := selfSignedPEM(t, testRSAKey(t, 1))
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecTmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "ec"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	ecDER, err := x509.CreateCertificate(rand.Reader, ecTmpl, ecTmpl, &ecKey.PublicKey, ecKey)
	if err != nil {
		t.Fatal(err)
	}
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ecDER})

	mux := http.NewServeMux()
	mux.HandleFunc("GET /SimpleNotificationService-test.pem", func(w http.ResponseWriter, r *http.Request) {
		f.certFetches.Add(1)
		w.Write(certPEM)
	})
	mux.HandleFunc("GET /other.pem", func(w http.ResponseWriter, r *http.Request) { w.Write(otherPEM) })
	mux.HandleFunc("GET /ec.pem", func(w http.ResponseWriter, r *http.Request) { w.Write(ecPEM) })
	mux.HandleFunc("GET /junk.pem", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("not a certificate")) })
	mux.HandleFunc("GET /redirect.pem", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://elsewhere.example/SimpleNotificationService-test.pem", http.StatusFound)
	})
	mux.HandleFunc("GET /confirm", func(w http.ResponseWriter, r *http.Request) {
		f.confirms.Add(1)
		f.confirmQuery.Store(r.URL.RawQuery)
		if f.confirmFails.Load() {
			http.Error(w, "no", http.StatusInternalServerError)
			return
		}
		w.Write([]byte("<ConfirmSubscriptionResponse/>"))
	})
	f.base = ca.server(t, mux).URL
	return f
}

func (f *snsFixture) certURL() string { return f.base + "/SimpleNotificationService-test.pem" }

func (f *snsFixture) verifier(t *testing.T, topics ...string) *snsVerifier {
	t.Helper()
	v, err := newSNS(topics, []string{"127.0.0.1"}, f.caFile)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// snsMsg builds a message of type typ, signed as SNS signs it.
func (f *snsFixture) msg(typ string, edit func(m map[string]any)) map[string]any {
	m := map[string]any{
		"Type":             typ,
		"MessageId":        "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
		"TopicArn":         snsTopic,
		"Message":          `{"Records":[{"eventName":"ObjectCreated:Put"}]}`,
		"Timestamp":        "2026-11-29T12:00:00.000Z",
		"SignatureVersion": "2",
		"SigningCertURL":   f.certURL(),
	}
	switch typ {
	case snsNotification:
		m["Subject"] = "Amazon S3 Notification"
		m["UnsubscribeURL"] = f.base + "/unsubscribe?SubscriptionArn=x"
		m["MessageAttributes"] = map[string]any{"k": map[string]any{"Type": "String", "Value": "v"}}
	case snsSubscribe, snsUnsubscribe:
		m["Token"] = "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb71854e285d6ad02428b09ceece29417f1f02d609c582afbacc99c583a916b9981dd2728f4ae6fdb82efd087cc3b7849e05798d2d2785c03b0879594eeac82c01f235d0e717736"
		m["Message"] = "You have chosen to subscribe to the topic " + snsTopic
		m["SubscribeURL"] = f.base + "/confirm?Action=ConfirmSubscription&Token=2336412f"
	}
	if edit != nil {
		edit(m)
	}
	return m
}

// sign sets Signature over m's canonical string with key.
func snsSign(t testing.TB, m map[string]any, key *rsa.PrivateKey) {
	t.Helper()
	var keys []string
	if m["Type"] == snsNotification {
		keys = []string{"Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"}
	} else {
		keys = []string{"Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"}
	}
	var b strings.Builder
	for _, k := range keys {
		if v, ok := m[k].(string); ok {
			b.WriteString(k + "\n" + v + "\n")
		}
	}
	var sig []byte
	var err error
	if m["SignatureVersion"] == "1" {
		d := sha1.Sum([]byte(b.String()))
		sig, err = rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA1, d[:])
	} else {
		d := sha256.Sum256([]byte(b.String()))
		sig, err = rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, d[:])
	}
	if err != nil {
		t.Fatal(err)
	}
	m["Signature"] = base64.StdEncoding.EncodeToString(sig)
}

func snsBody(t testing.TB, m map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSNS(t *testing.T) {
	f := newSNSFixture(t)
	v := f.verifier(t, snsTopic, "arn:aws:sns:eu-west-1:123456789012:other")
	ctx := context.Background()

	signed := func(typ string, edit func(map[string]any)) map[string]any {
		m := f.msg(typ, edit)
		snsSign(t, m, f.key)
		return m
	}
	// after signing, so the signature no longer covers what is sent
	tamper := func(m map[string]any, edit func(map[string]any)) map[string]any {
		edit(m)
		return m
	}
	cases := []struct {
		name    string
		body    []byte
		reason  string // "" accepted; "unavailable" for ErrUnavailable
		control string
	}{
		{"notification v2", snsBody(t, signed(snsNotification, nil)), "", ""},
		{"notification v1", snsBody(t, signed(snsNotification, func(m map[string]any) { m["SignatureVersion"] = "1" })), "", ""},
		{"notification without subject", snsBody(t, signed(snsNotification, func(m map[string]any) { delete(m, "Subject") })), "", ""},
		{"subject null is absent", snsBody(t, signed(snsNotification, func(m map[string]any) { m["Subject"] = nil })), "", ""},
		{"unsubscribe confirmation", snsBody(t, signed(snsUnsubscribe, nil)), "", "sns:UnsubscribeConfirmation"},
		{"second topic of the list", snsBody(t, signed(snsNotification, func(m map[string]any) {
			m["TopicArn"] = "arn:aws:sns:eu-west-1:123456789012:other"
		})), "", ""},

		{"message changed", snsBody(t, tamper(signed(snsNotification, nil), func(m map[string]any) { m["Message"] = `{"Records":[]}` })), ReasonMismatch, ""},
		{"subject changed", snsBody(t, tamper(signed(snsNotification, nil), func(m map[string]any) { m["Subject"] = "x" })), ReasonMismatch, ""},
		{"subject added", snsBody(t, tamper(signed(snsNotification, func(m map[string]any) { delete(m, "Subject") }), func(m map[string]any) { m["Subject"] = "x" })), ReasonMismatch, ""},
		{"subject removed", snsBody(t, tamper(signed(snsNotification, nil), func(m map[string]any) { delete(m, "Subject") })), ReasonMismatch, ""},
		{"message id changed", snsBody(t, tamper(signed(snsNotification, nil), func(m map[string]any) { m["MessageId"] = "other" })), ReasonMismatch, ""},
		{"version 2 signature called 1", snsBody(t, tamper(signed(snsNotification, nil), func(m map[string]any) { m["SignatureVersion"] = "1" })), ReasonMismatch, ""},
		{"signed by another key", snsBody(t, func() map[string]any {
			m := f.msg(snsNotification, nil)
			snsSign(t, m, testRSAKey(t, 1))
			return m
		}()), ReasonMismatch, ""},
		{"another key with its own certificate on an allowed host", snsBody(t, func() map[string]any {
			// Only the host vouches for a certificate: this one is
			// served from it, so it verifies (as it would on AWS).
			m := f.msg(snsNotification, func(m map[string]any) { m["SigningCertURL"] = f.base + "/other.pem" })
			snsSign(t, m, testRSAKey(t, 1))
			return m
		}()), "", ""},
		{"unsubscribe replayed as a notification", snsBody(t, tamper(signed(snsUnsubscribe, nil), func(m map[string]any) { m["Type"] = snsNotification })), ReasonMismatch, ""},
		{"topic outside topics", snsBody(t, signed(snsNotification, func(m map[string]any) {
			m["TopicArn"] = "arn:aws:sns:eu-west-1:999999999999:landing"
		})), ReasonMismatch, ""},
		{"cert over http", snsBody(t, signed(snsNotification, func(m map[string]any) {
			m["SigningCertURL"] = strings.Replace(f.certURL(), "https://", "http://", 1)
		})), ReasonMismatch, ""},
		{"cert on another host", snsBody(t, signed(snsNotification, func(m map[string]any) {
			m["SigningCertURL"] = "https://sns.eu-west-1.amazonaws.com.evil.example/SimpleNotificationService-test.pem"
		})), ReasonMismatch, ""},
		{"cert host hidden behind user info", snsBody(t, signed(snsNotification, func(m map[string]any) {
			m["SigningCertURL"] = "https://127.0.0.1@evil.example/x.pem"
		})), ReasonMismatch, ""},
		{"cert redirected elsewhere", snsBody(t, signed(snsNotification, func(m map[string]any) {
			m["SigningCertURL"] = f.base + "/redirect.pem"
		})), "unavailable", ""},
		{"cert not RSA", snsBody(t, signed(snsNotification, func(m map[string]any) { m["SigningCertURL"] = f.base + "/ec.pem" })), "unavailable", ""},
		{"cert not PEM", snsBody(t, signed(snsNotification, func(m map[string]any) { m["SigningCertURL"] = f.base + "/junk.pem" })), "unavailable", ""},
		{"cert missing", snsBody(t, signed(snsNotification, func(m map[string]any) { m["SigningCertURL"] = f.base + "/nothing.pem" })), "unavailable", ""},
		{"subscribe URL on another host", snsBody(t, signed(snsSubscribe, func(m map[string]any) {
			m["SubscribeURL"] = "https://evil.example/confirm?Token=1"
		})), ReasonMismatch, ""},
		{"subscribe URL over http", snsBody(t, signed(snsSubscribe, func(m map[string]any) {
			m["SubscribeURL"] = strings.Replace(m["SubscribeURL"].(string), "https://", "http://", 1)
		})), ReasonMismatch, ""},

		{"unsigned", snsBody(t, f.msg(snsNotification, nil)), ReasonMissing, ""},
		{"signature version 3", snsBody(t, signed(snsNotification, func(m map[string]any) { m["SignatureVersion"] = "3" })), ReasonMalformed, ""},
		{"signature not base64", snsBody(t, tamper(signed(snsNotification, nil), func(m map[string]any) { m["Signature"] = "%%%" })), ReasonMalformed, ""},
		{"unknown type", snsBody(t, signed(snsNotification, func(m map[string]any) { m["Type"] = "Other" })), ReasonMalformed, ""},
		{"no message id", snsBody(t, signed(snsNotification, func(m map[string]any) { delete(m, "MessageId") })), ReasonMalformed, ""},
		{"confirmation without token", snsBody(t, signed(snsUnsubscribe, func(m map[string]any) { delete(m, "Token") })), ReasonMalformed, ""},
		{"number where a string belongs", snsBody(t, signed(snsNotification, func(m map[string]any) { m["Timestamp"] = 5 })), ReasonMalformed, ""},
		{"not JSON", []byte("Type=Notification"), ReasonMalformed, ""},
		{"a JSON array", []byte(`[{"Type":"Notification"}]`), ReasonMalformed, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := v.Verify(&Request{Body: c.body, Context: ctx})
			switch c.reason {
			case "unavailable":
				var ve *Error
				if !errors.Is(err, ErrUnavailable) || errors.As(err, &ve) {
					t.Fatalf("err = %v, want ErrUnavailable and no *Error", err)
				}
				return
			default:
				if got := reasonOf(err); got != c.reason {
					t.Fatalf("reason %q (%v), want %q", got, err, c.reason)
				}
			}
			if err != nil {
				checkOutcome(t, err)
				return
			}
			if res.Control != c.control {
				t.Fatalf("Control = %q, want %q", res.Control, c.control)
			}
			if c.control == "" && res.ReplayKey == "" {
				t.Fatal("a notification has no ReplayKey")
			}
		})
	}
	if n := f.confirms.Load(); n != 0 {
		t.Fatalf("%d subscription confirmations fetched by messages that were refused or not subscriptions", n)
	}
}

// A message must be what encoding/json and ingest's parser read alike:
// a key given twice could be signed in one copy and routed in the other.
func TestSNSParserStrict(t *testing.T) {
	f := newSNSFixture(t)
	v := f.verifier(t)
	m := f.msg(snsNotification, nil)
	snsSign(t, m, f.key)
	good := snsBody(t, m)
	if _, err := v.Verify(&Request{Body: good}); err != nil {
		t.Fatal(err)
	}
	dup := strings.Replace(string(good), `"Message":`, `"Message":"{\"Records\":[]}","Message":`, 1)
	invalidUTF8 := strings.Replace(string(good), "Amazon S3", "Amazon \xff S3", 1)
	for name, body := range map[string]string{
		"duplicate key":  dup,
		"invalid UTF-8":  invalidUTF8,
		"trailing data":  string(good) + "{}",
		"trailing comma": strings.TrimSuffix(string(good), "}") + ",}",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := v.Verify(&Request{Body: []byte(body)})
			if reasonOf(err) != ReasonMalformed {
				t.Fatalf("err = %v, want malformed", err)
			}
		})
	}
	t.Run("trailing whitespace is fine", func(t *testing.T) {
		if _, err := v.Verify(&Request{Body: append(append([]byte{}, good...), " \n"...)}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestSNSSubscriptionConfirmation(t *testing.T) {
	f := newSNSFixture(t)
	v := f.verifier(t, snsTopic)
	m := f.msg(snsSubscribe, nil)
	snsSign(t, m, f.key)
	body := snsBody(t, m)

	res, err := v.Verify(&Request{Body: body, Context: context.Background()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Control != "sns:SubscriptionConfirmation" {
		t.Fatalf("Control = %q", res.Control)
	}
	if n := f.confirms.Load(); n != 1 {
		t.Fatalf("SubscribeURL fetched %d times, want 1", n)
	}
	if q := f.confirmQuery.Load(); q != "Action=ConfirmSubscription&Token=2336412f" {
		t.Fatalf("SubscribeURL fetched with query %q", q)
	}

	t.Run("a failed confirmation is not a 401", func(t *testing.T) {
		f.confirmFails.Store(true)
		defer f.confirmFails.Store(false)
		res, err := v.Verify(&Request{Body: body})
		var ve *Error
		if !errors.Is(err, ErrUnavailable) || errors.As(err, &ve) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
		if res.Control != "" {
			t.Fatalf("Control = %q on failure", res.Control)
		}
		if strings.Contains(err.Error(), "Token=") {
			t.Fatalf("error %q shows the subscription token", err)
		}
	})
	t.Run("a forged confirmation fetches nothing", func(t *testing.T) {
		before := f.confirms.Load()
		forged := f.msg(snsSubscribe, nil)
		snsSign(t, forged, testRSAKey(t, 1))
		if _, err := v.Verify(&Request{Body: snsBody(t, forged)}); reasonOf(err) != ReasonMismatch {
			t.Fatalf("err = %v, want mismatch", err)
		}
		if f.confirms.Load() != before {
			t.Fatal("a forged SubscriptionConfirmation was confirmed")
		}
	})
	t.Run("the topic rule holds for confirmations", func(t *testing.T) {
		before := f.confirms.Load()
		other := f.msg(snsSubscribe, func(m map[string]any) { m["TopicArn"] = "arn:aws:sns:eu-west-1:1:other" })
		snsSign(t, other, f.key)
		if _, err := v.Verify(&Request{Body: snsBody(t, other)}); reasonOf(err) != ReasonMismatch {
			t.Fatalf("err = %v, want mismatch", err)
		}
		if f.confirms.Load() != before {
			t.Fatal("a subscription to a topic outside topics was confirmed")
		}
	})
}

func TestSNSCertificateCached(t *testing.T) {
	f := newSNSFixture(t)
	v := f.verifier(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			m := f.msg(snsNotification, func(m map[string]any) { m["MessageId"] = string(rune('a' + i)) })
			snsSign(t, m, f.key)
			if _, err := v.Verify(&Request{Body: snsBody(t, m)}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := f.certFetches.Load(); n != 1 {
		t.Fatalf("certificate fetched %d times, want 1", n)
	}
}

func TestSNSReplayKey(t *testing.T) {
	f := newSNSFixture(t)
	v := f.verifier(t)
	key := func(id string) string {
		m := f.msg(snsNotification, func(m map[string]any) { m["MessageId"] = id })
		snsSign(t, m, f.key)
		res, err := v.Verify(&Request{Body: snsBody(t, m)})
		if err != nil {
			t.Fatal(err)
		}
		return res.ReplayKey
	}
	// SNS signs each retry afresh (PKCS #1 v1.5 is deterministic, but the
	// key is the same however the message is signed).
	if a, b := key("m-1"), key("m-1"); a != b || a == "" {
		t.Fatalf("retries of one message: keys %q and %q", a, b)
	}
	if key("m-1") == key("m-2") {
		t.Fatal("two messages share a ReplayKey")
	}
}

func TestCertCache(t *testing.T) {
	key := &testRSAKey(t, 0).PublicKey
	t.Run("bounded", func(t *testing.T) {
		var fetches atomic.Int32
		c := newCertCache(2, func(context.Context, string) (*rsa.PublicKey, error) {
			fetches.Add(1)
			return key, nil
		})
		for _, u := range []string{"a", "b", "c", "a", "d"} {
			if _, err := c.get(context.Background(), u); err != nil {
				t.Fatal(err)
			}
			if len(c.entries) > 2 {
				t.Fatalf("%d entries in a cache of 2", len(c.entries))
			}
		}
		if n := fetches.Load(); n != 5 { // "a" was evicted by "c"
			t.Fatalf("%d fetches, want 5", n)
		}
	})
	t.Run("failures expire", func(t *testing.T) {
		now := time.Unix(1000, 0)
		var fetches atomic.Int32
		c := newCertCache(4, func(context.Context, string) (*rsa.PublicKey, error) {
			fetches.Add(1)
			return nil, errors.New("404")
		})
		c.now = func() time.Time { return now }
		for range 3 {
			if _, err := c.get(context.Background(), "u"); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v", err)
			}
		}
		if fetches.Load() != 1 {
			t.Fatalf("a failing URL fetched %d times at once", fetches.Load())
		}
		now = now.Add(snsCertFailTTL + time.Second)
		c.get(context.Background(), "u")
		if fetches.Load() != 2 {
			t.Fatal("a failure was remembered past its time")
		}
	})
	t.Run("a fetch blocks only its own URL", func(t *testing.T) {
		release := make(chan struct{})
		started := make(chan struct{})
		c := newCertCache(2, func(_ context.Context, u string) (*rsa.PublicKey, error) {
			if u == "slow" {
				close(started)
				<-release
			}
			return key, nil
		})
		if _, err := c.get(context.Background(), "cached"); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { _, err := c.get(context.Background(), "slow"); done <- err }()
		<-started
		// While "slow" is being fetched: a cached URL answers, a waiter
		// for "slow" gives up with its context, and a full cache of
		// fetches in flight refuses rather than waits.
		if _, err := c.get(context.Background(), "cached"); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := c.get(ctx, "slow"); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("waiter with a cancelled context: %v", err)
		}
		c.mu.Lock()
		delete(c.entries, "cached")
		c.entries["other-in-flight"] = &certEntry{done: make(chan struct{})}
		c.mu.Unlock()
		if _, err := c.get(context.Background(), "third"); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("full of fetches in flight: %v", err)
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}

func TestHostPatterns(t *testing.T) {
	h, err := compileHostPatterns("cert_hosts", DefaultSNSCertHosts)
	if err != nil {
		t.Fatal(err)
	}
	for u, want := range map[string]bool{
		"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-1.pem":     true,
		"https://SNS.EU-WEST-1.AMAZONAWS.COM/x.pem":                               true,
		"https://sns.us-east-1.amazonaws.com:443/x.pem":                           true,
		"http://sns.us-east-1.amazonaws.com/x.pem":                                false,
		"https://sns.amazonaws.com/x.pem":                                         false,
		"https://sns.a.b.amazonaws.com/x.pem":                                     false,
		"https://sns.us-east-1.amazonaws.com.evil.example/x.pem":                  false,
		"https://evil.example/sns.us-east-1.amazonaws.com/x.pem":                  false,
		"https://sns.us-east-1.amazonaws.com@evil.example/x.pem":                  false,
		"https://user@sns.us-east-1.amazonaws.com/x.pem":                          false,
		"https://xsns.us-east-1.amazonaws.com/x.pem":                              false,
		"https://sns.us-east-1.amazonaws.com./x.pem":                              false,
		"https://evil.example/?u=https://sns.us-east-1.amazonaws.com/x.pem":       false,
		"//sns.us-east-1.amazonaws.com/x.pem":                                     false,
		"https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-1.pem": false,
	} {
		if _, err := h.allowedURL(u); (err == nil) != want {
			t.Errorf("%s: allowed = %v, want %v", u, err == nil, want)
		}
	}
	for _, bad := range []string{"", "*.", "sns..amazonaws.com", "https://sns.x.com", "sns.*.amazon_aws.com", "sns.a*.com"} {
		if _, err := compileHostPatterns("cert_hosts", []string{bad}); err == nil || !strings.HasPrefix(err.Error(), "cert_hosts[0]: ") {
			t.Errorf("pattern %q: err = %v", bad, err)
		}
	}
}

func TestSNSConfig(t *testing.T) {
	f := newSNSFixture(t)
	for _, c := range []struct {
		c    Spec
		want string
	}{
		{Spec{Type: "sns", Issuer: "https://x"}, "issuer: not used by type sns"},
		{Spec{Type: "sns", CertHosts: []string{"sns.*.amazonaws.com", "bad host"}}, `cert_hosts[1]: "bad host" is not a host name pattern (labels of letters, digits and '-', or '*' for one label)`},
		{Spec{Type: "sns", CAFile: "/nonexistent/ca.pem"}, "ca_file: open /nonexistent/ca.pem: no such file or directory"},
		{Spec{Type: "sns", CAFile: f.caFile + ".missing"}, "ca_file: open " + f.caFile + ".missing: no such file or directory"},
		{Spec{Type: "github", Secrets: []string{"s"}, Topics: []string{"t"}}, "topics: not used by type github"},
	} {
		if _, err := New(c.c); err == nil || err.Error() != c.want {
			t.Errorf("New(%+v) = %v, want %s", c.c, err, c.want)
		}
	}
	v, err := New(Spec{Type: "sns", Topics: []string{snsTopic}, CAFile: f.caFile})
	if err != nil {
		t.Fatal(err)
	}
	if h := v.(*snsVerifier).Headers(); len(h) != 0 {
		t.Errorf("Headers = %v", h)
	}
	if _, err := Sign(Spec{Type: "sns"}, nil, clock, ""); err == nil {
		t.Error("Sign made an SNS signature")
	}
}
