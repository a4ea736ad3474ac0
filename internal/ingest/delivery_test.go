package ingest_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/daemon"
	"github.com/relayd/relayd/internal/verify"
)

const deliveryConfig = `
storage: {path: unused}
operator: {api_key: ck_live_x}
sources:
  - {name: stripe, path: /hooks/stripe, verify: {type: stripe, secrets: [whsec_stripe]}}
  - {name: circleci, path: /hooks/circleci, verify: {type: circleci, secrets: [cc-secret]}}
  - name: custom
    path: /hooks/custom
    delivery: 'body.request.id'
    verify: {type: none}
  - name: records
    path: /hooks/records
    unwrap: s3
    delivery: 'body.s3.object.eTag'
    verify: {type: none}
routes:
  - {name: stripe, source: stripe, template: '{{ .delivery }}'}
  - {name: circleci, source: circleci, template: '{{ .delivery }}'}
  - {name: custom, source: custom, template: '{{ .delivery }}'}
  - {name: records, source: records, template: '{{ .delivery }}'}
`

func TestDeliveryExpression(t *testing.T) {
	r := newRigFrom(t, deliveryConfig)
	send := func(path, typ, secret, body string, at time.Time) reply {
		t.Helper()
		h, err := verify.Sign(verify.Spec{Type: typ, Secrets: []string{secret}}, []byte(body), at, "")
		if err != nil {
			t.Fatal(err)
		}
		return r.do(t, "POST", path, h, strings.NewReader(body))
	}
	now := time.Now()

	// Stripe retries an event with a new timestamp and signature: the
	// event id makes it a duplicate.
	evt := `{"id":"evt_1","type":"invoice.paid"}`
	if rep := send("/hooks/stripe", "stripe", "whsec_stripe", evt, now.Add(-2*time.Minute)); rep.status != 202 || rep.body["delivery"] != "evt_1" {
		t.Fatalf("first: %d %s", rep.status, rep.raw)
	}
	if rep := send("/hooks/stripe", "stripe", "whsec_stripe", evt, now); rep.status != 200 || rep.body["duplicate"] != true {
		t.Fatalf("retry: %d %s, want a duplicate", rep.status, rep.raw)
	}
	if rep := send("/hooks/stripe", "stripe", "whsec_stripe", `{"id":"evt_2"}`, now); rep.status != 202 {
		t.Fatalf("another event: %d %s", rep.status, rep.raw)
	}
	// No id in the body: the signature still keys the dedupe, as before.
	if rep := send("/hooks/stripe", "stripe", "whsec_stripe", `{"type":"x"}`, now); rep.status != 202 {
		t.Fatalf("no id: %d %s", rep.status, rep.raw)
	}

	cc := `{"id":"3888f21b-eaa7-38e3-8f3d-75a63bba8895","type":"workflow-completed"}`
	if rep := send("/hooks/circleci", "circleci", "cc-secret", cc, now); rep.status != 202 {
		t.Fatalf("circleci: %d %s", rep.status, rep.raw)
	}
	if rep := send("/hooks/circleci", "circleci", "cc-secret", cc, now); rep.status != 200 || rep.body["duplicate"] != true {
		t.Fatalf("circleci retry: %d %s, want a duplicate", rep.status, rep.raw)
	}

	if rep := r.do(t, "POST", "/hooks/custom", nil, strings.NewReader(`{"request":{"id":42}}`)); rep.status != 202 || rep.body["delivery"] != "42" {
		t.Fatalf("custom: %d %s", rep.status, rep.raw)
	}
	if rep := r.do(t, "POST", "/hooks/custom", nil, strings.NewReader(`{"request":{"id":42},"x":1}`)); rep.body["duplicate"] != true {
		t.Fatalf("custom again: %d %s, want a duplicate", rep.status, rep.raw)
	}

	s3 := `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k1","eTag":"e1"}}},
	                  {"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k2","eTag":"e2"}}}]}`
	if rep := r.do(t, "POST", "/hooks/records", nil, bytes.NewReader([]byte(s3))); rep.status != 202 {
		t.Fatalf("records: %d %s", rep.status, rep.raw)
	}
	if rep := r.do(t, "POST", "/hooks/records", nil, bytes.NewReader([]byte(s3))); rep.body["duplicate"] != true {
		t.Fatalf("records again: %d %s, want a duplicate", rep.status, rep.raw)
	}

	var got []string
	for _, m := range r.drain(t) {
		got = append(got, m.Route+"="+m.Delivery)
	}
	want := "stripe=evt_1 stripe=evt_2 circleci=3888f21b-eaa7-38e3-8f3d-75a63bba8895 custom=42 records=e1 records=e2"
	// The stripe event without an id has a generated delivery.
	if len(got) != 7 || strings.Join(append(got[:2:2], got[3:]...), " ") != want {
		t.Fatalf("messages %v, want %s and one generated", got, want)
	}
}

func TestDeliveryExpressionErrors(t *testing.T) {
	yaml := strings.Replace(deliveryConfig, "'body.request.id'", "'body.request.'", 1)
	cfg, err := config.Parse([]byte(yaml), t.TempDir(), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	_, err = daemon.CompileIngest(cfg)
	if err == nil || !strings.Contains(err.Error(), "sources[2].delivery: ") {
		t.Fatalf("err = %v, want one naming sources[2].delivery", err)
	}
}
