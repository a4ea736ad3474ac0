package ingest_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const sendersTopic = "arn:aws:sns:eu-west-1:123456789012:landing"

const sendersConfig = `
storage: {path: unused}
operator: {api_key: ck_live_x}
sources:
  - name: gitea
    path: /hooks/gitea
    verify: {type: gitea, secrets: ["gitea-secret"]}
  - name: bitbucket
    path: /hooks/bitbucket
    verify: {type: bitbucket, secrets: ["bb-secret"]}
  - name: azure
    path: /hooks/azure
    verify: {type: basic, username: relay, secrets: ["azure-password"]}
  - name: sns
    path: /hooks/sns
    unwrap: s3
    verify: {type: sns, topics: ["` + sendersTopic + `"], cert_hosts: ["127.0.0.1"], ca_file: ca.pem}
  - name: pubsub
    path: /hooks/pubsub
    unwrap: pubsub
    verify: {type: oidc, issuer: "https://accounts.google.com", audience: "https://relay.example.com/hooks/pubsub", jwks_url: "https://127.0.0.1:1/certs"}
routes:
  - {name: gitea, source: gitea, template: '{{ .event }} {{ .delivery }} {{ .headers }}'}
  - {name: bitbucket, source: bitbucket, template: '{{ .event }} {{ .delivery }}'}
  - {name: azure, source: azure, template: 'azure {{ .headers }}'}
  - {name: objects, source: sns, template: '{{ .event }} {{ .object.key }}'}
  - {name: ps, source: pubsub, template: '{{ .delivery }}'}
`

// snsHost serves an SNS signing certificate and subscription confirmations
// over HTTPS, with a CA of the test's own written to dir/ca.pem.
type snsHost struct {
	url      string
	key      *rsa.PrivateKey
	confirms atomic.Int32
}

func newSNSHost(t *testing.T, dir string) *snsHost {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(err)
	caCert, err := x509.ParseCertificate(caDER)
	must(err)
	must(os.WriteFile(filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600))

	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	must(err)

	h := &snsHost{}
	h.key, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	sigTmpl := &x509.Certificate{SerialNumber: big.NewInt(3), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	sigDER, err := x509.CreateCertificate(rand.Reader, sigTmpl, sigTmpl, &h.key.PublicKey, h.key)
	must(err)
	sigPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: sigDER})

	mux := http.NewServeMux()
	mux.HandleFunc("GET /cert.pem", func(w http.ResponseWriter, r *http.Request) { w.Write(sigPEM) })
	mux.HandleFunc("GET /confirm", func(w http.ResponseWriter, r *http.Request) { h.confirms.Add(1) })
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	h.url = srv.URL
	return h
}

// message returns a signed SNS message of type typ carrying inner.
func (h *snsHost) message(t *testing.T, typ, id, inner string, key *rsa.PrivateKey) []byte {
	t.Helper()
	m := map[string]string{
		"Type": typ, "MessageId": id, "TopicArn": sendersTopic, "Message": inner,
		"Timestamp": "2026-11-29T12:00:00.000Z", "SignatureVersion": "2", "SigningCertURL": h.url + "/cert.pem",
	}
	keys := []string{"Message", "MessageId", "Timestamp", "TopicArn", "Type"}
	if typ != "Notification" {
		m["Token"] = "tok"
		m["SubscribeURL"] = h.url + "/confirm?Token=tok"
		keys = []string{"Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"}
	}
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "\n" + m[k] + "\n")
	}
	d := sha256.Sum256([]byte(b.String()))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, d[:])
	if err != nil {
		t.Fatal(err)
	}
	m["Signature"] = base64.StdEncoding.EncodeToString(sig)
	body, _ := json.Marshal(m)
	return body
}

func newSendersRig(t *testing.T) (*rig, *snsHost) {
	t.Helper()
	dir := t.TempDir()
	host := newSNSHost(t, dir)
	return newRigIn(t, dir, sendersConfig), host
}

func TestSenderPresets(t *testing.T) {
	r, _ := newSendersRig(t)
	body := []byte(`{"ref":"refs/heads/main"}`)

	h := signed(t, "gitea", []string{"gitea-secret"}, body, "")
	h.Set("X-Gitea-Event", "push")
	h.Set("X-Gitea-Delivery", "gt-1")
	for i, want := range []int{202, 200} { // the retry is a duplicate
		if rep := r.do(t, "POST", "/hooks/gitea", h, bytes.NewReader(body)); rep.status != want {
			t.Fatalf("delivery %d: got %d %s, want %d", i, rep.status, rep.raw, want)
		}
	}
	h = signed(t, "bitbucket", []string{"bb-secret"}, body, "")
	h.Set("X-Event-Key", "repo:push")
	h.Set("X-Request-UUID", "bb-1")
	if rep := r.do(t, "POST", "/hooks/bitbucket", h, bytes.NewReader(body)); rep.status != 202 {
		t.Fatalf("bitbucket: got %d %s", rep.status, rep.raw)
	}
	msgs := r.drain(t)
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	if msgs[0].Delivery != "gt-1" || !strings.HasPrefix(msgs[0].Prompt, "push gt-1 ") {
		t.Errorf("gitea message: delivery %q prompt %q", msgs[0].Delivery, msgs[0].Prompt)
	}
	if strings.Contains(strings.ToLower(msgs[0].Prompt), "x-gitea-signature") {
		t.Errorf("the signature header reached a template: %q", msgs[0].Prompt)
	}
	if msgs[1].Delivery != "bb-1" || msgs[1].Prompt != "repo:push bb-1" {
		t.Errorf("bitbucket message: delivery %q prompt %q", msgs[1].Delivery, msgs[1].Prompt)
	}
}

func TestSenderBasic(t *testing.T) {
	r, _ := newSendersRig(t)
	auth := func(cred string) http.Header {
		return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(cred))}}
	}
	if rep := r.do(t, "POST", "/hooks/azure", auth("relay:azure-password"), strings.NewReader(`{}`)); rep.status != 202 {
		t.Fatalf("got %d %s", rep.status, rep.raw)
	}
	if rep := r.do(t, "POST", "/hooks/azure", auth("relay:wrong"), strings.NewReader(`{}`)); rep.status != 401 {
		t.Fatalf("wrong password: got %d %s", rep.status, rep.raw)
	}
	msgs := r.drain(t)
	if len(msgs) != 1 || strings.Contains(msgs[0].Prompt, "azure-password") || strings.Contains(strings.ToLower(msgs[0].Prompt), "authorization") {
		t.Fatalf("messages %+v", msgs)
	}
}

func TestSenderSNS(t *testing.T) {
	r, host := newSendersRig(t)
	s3 := `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"landing"},"object":{"key":"raw/a.csv","size":1,"sequencer":"01"}}}]}`

	rep := r.do(t, "POST", "/hooks/sns", nil, bytes.NewReader(host.message(t, "SubscriptionConfirmation", "sub-1", "subscribe?", host.key)))
	if rep.status != 200 || rep.raw == "" || len(rep.body["routes"].([]any)) != 0 {
		t.Fatalf("subscription confirmation: got %d %s", rep.status, rep.raw)
	}
	if host.confirms.Load() != 1 {
		t.Fatalf("SubscribeURL fetched %d times", host.confirms.Load())
	}
	if !strings.Contains(r.logs.String(), "sns:SubscriptionConfirmation") {
		t.Error("the confirmation is not in the log")
	}
	rep = r.do(t, "POST", "/hooks/sns", nil, bytes.NewReader(host.message(t, "UnsubscribeConfirmation", "unsub-1", "bye", host.key)))
	if rep.status != 200 {
		t.Fatalf("unsubscribe confirmation: got %d %s", rep.status, rep.raw)
	}

	note := host.message(t, "Notification", "n-1", s3, host.key)
	if rep := r.do(t, "POST", "/hooks/sns", nil, bytes.NewReader(note)); rep.status != 202 {
		t.Fatalf("notification: got %d %s", rep.status, rep.raw)
	}
	if rep := r.do(t, "POST", "/hooks/sns", nil, bytes.NewReader(note)); rep.status != 200 || rep.body["duplicate"] != true {
		t.Fatalf("retried notification: got %d %s", rep.status, rep.raw)
	}
	forger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if rep := r.do(t, "POST", "/hooks/sns", nil, bytes.NewReader(host.message(t, "Notification", "n-2", s3, forger))); rep.status != 401 {
		t.Fatalf("forged notification: got %d %s", rep.status, rep.raw)
	}
	if rep := r.do(t, "POST", "/hooks/sns", nil, bytes.NewReader(host.message(t, "SubscriptionConfirmation", "sub-2", "x", forger))); rep.status != 401 || host.confirms.Load() != 1 {
		t.Fatalf("forged confirmation: got %d %s, %d confirmations", rep.status, rep.raw, host.confirms.Load())
	}
	msgs := r.drain(t)
	if len(msgs) != 1 || msgs[0].Prompt != "ObjectCreated:Put raw/a.csv" {
		t.Fatalf("messages %+v, want the one notification", msgs)
	}
}

func TestSenderVerifyUnavailable(t *testing.T) {
	r, _ := newSendersRig(t)
	// Well formed, so the verifier needs the issuer's keys, which cannot
	// be fetched: the sender is told to retry, not that it is refused.
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","kid":"k1","typ":"JWT"}`))
	claims := base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"https://accounts.google.com"}`))
	tok := hdr + "." + claims + ".AAAA"
	rep := r.do(t, "POST", "/hooks/pubsub", http.Header{"Authorization": {"Bearer " + tok}}, strings.NewReader(`{"message":{"data":""}}`))
	if rep.status != 503 || rep.header.Get("Retry-After") == "" {
		t.Fatalf("got %d %s, want 503 with Retry-After", rep.status, rep.raw)
	}
	if rep := r.do(t, "POST", "/hooks/pubsub", http.Header{"Authorization": {"Bearer not-a-jwt"}}, strings.NewReader(`{}`)); rep.status != 401 {
		t.Fatalf("malformed token: got %d %s", rep.status, rep.raw)
	}
}
