package daemon

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/dispatch"
	"github.com/relayd/relayd/internal/verify"
)

func TestNatsqOptions(t *testing.T) {
	c := &config.Config{
		Storage: config.Storage{
			MaxPending: 500,
			DedupeTTL:  config.Duration(24 * time.Hour),
			NATS: config.NATS{
				URL:        "nats://a:4222, nats://b:4222",
				URLs:       []string{"nats://c:4222"},
				Stream:     "JOBS",
				CredsFile:  "/etc/nats/relayd.creds",
				Replicas:   3,
				Partitions: 32,
				TLS:        config.TLS{CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem", InsecureSkipVerify: true},
			},
		},
		Sources: []config.Source{{DedupeTTL: config.Duration(72 * time.Hour)}, {}},
	}
	o := natsqOptions(c, nil)
	if o.Stream != "JOBS" || o.Replicas != 3 || o.Partitions != 32 || o.MaxPending != 500 ||
		o.CredsFile != "/etc/nats/relayd.creds" || o.DedupeTTL != 72*time.Hour {
		t.Fatalf("options %+v", o)
	}
	if o.TLS.CAFile != "ca.pem" || o.TLS.CertFile != "c.pem" || o.TLS.KeyFile != "k.pem" || !o.TLS.InsecureSkipVerify {
		t.Fatalf("tls %+v", o.TLS)
	}
	if got := strings.Join(o.URLs, " "); got != "nats://a:4222, nats://b:4222 nats://c:4222" {
		t.Fatalf("urls %q", got)
	}
}

func TestDispatchSettings(t *testing.T) {
	c := &config.Config{
		Operator: config.Operator{
			Concurrency: 3,
			RateLimit:   config.RateLimit{PerSecond: 2, Burst: 5},
			Retry:       config.Retry{Initial: config.Duration(time.Second), Max: config.Duration(10 * time.Minute), MaxAttempts: 20},
		},
		Server: config.Server{ShutdownTimeout: config.Duration(30 * time.Second)},
		Routes: []config.Route{
			{Name: "plain"},
			{
				Name:              "tuned",
				RateLimit:         &config.RateLimit{PerSecond: 0.5, Burst: 1},
				ConversationReset: &config.ConversationReset{After: config.Duration(time.Hour), Messages: 50},
			},
		},
	}
	s := settings(c)
	if s.Concurrency != 3 || s.DrainTimeout != 30*time.Second ||
		s.RateLimit != (dispatch.RateLimit{PerSecond: 2, Burst: 5}) ||
		s.Retry != (dispatch.Retry{Initial: time.Second, Max: 10 * time.Minute, MaxAttempts: 20}) {
		t.Fatalf("settings %+v", s)
	}
	if p := s.Routes["plain"]; p.RateLimit != nil || p.Reset != nil {
		t.Errorf("plain route %+v, want no limit and no reset", p)
	}
	tuned := s.Routes["tuned"]
	if tuned.RateLimit == nil || *tuned.RateLimit != (dispatch.RateLimit{PerSecond: 0.5, Burst: 1}) {
		t.Errorf("tuned rate limit %+v", tuned.RateLimit)
	}
	if tuned.Reset == nil || *tuned.Reset != (dispatch.ConversationReset{After: time.Hour, Messages: 50}) {
		t.Errorf("tuned reset %+v", tuned.Reset)
	}
}

// TestVerifySpec: every verify field of relay.yaml reaches verify's spec
// (secrets_file is read into secrets by the loader).
func TestVerifySpec(t *testing.T) {
	v := &config.Verify{
		Type: "hmac", Secrets: []string{"s"}, Header: "X-S", Algorithm: "sha1", Encoding: "base64", Prefix: "p=",
		Tolerance: config.Duration(time.Minute), Timestamped: true, TimestampKey: "t", SignatureKey: "v", Separator: ";",
		Topics: []string{"arn"}, CertHosts: []string{"h"}, CAFile: "/ca.pem", Issuer: "https://i", Audience: "a",
		Email: "e@x", JWKSURL: "https://i/jwks", Username: "u",
	}
	want := verify.Spec{
		Type: "hmac", Secrets: []string{"s"}, Header: "X-S", Algorithm: "sha1", Encoding: "base64", Prefix: "p=",
		Tolerance: time.Minute, Timestamped: true, TimestampKey: "t", SignatureKey: "v", Separator: ";",
		Topics: []string{"arn"}, CertHosts: []string{"h"}, CAFile: "/ca.pem", Issuer: "https://i", Audience: "a",
		Email: "e@x", JWKSURL: "https://i/jwks", Username: "u",
	}
	if got := VerifySpec(v); !reflect.DeepEqual(got, want) {
		t.Fatalf("VerifySpec = %+v\nwant %+v", got, want)
	}
	// A field added to verify.Spec and not set above fails here, so the
	// mapping cannot silently miss it.
	rv := reflect.ValueOf(want)
	for i := range rv.NumField() {
		if rv.Field(i).IsZero() {
			t.Errorf("verify.Spec.%s is not covered by this test", rv.Type().Field(i).Name)
		}
	}
	if got, err := IngestSpec(&config.Config{Sources: []config.Source{{Delivery: "body.id", Verify: v}}}); err != nil || got.Sources[0].Delivery != "body.id" {
		t.Errorf("source delivery %q, want body.id", got.Sources[0].Delivery)
	}
}

func TestTurnMapping(t *testing.T) {
	cfg, err := config.Parse([]byte(`
operator: {api_key: k}
sources:
  - {name: gh, path: /hooks/gh, verify: {type: none}}
routes:
  - {name: plain, source: gh, template: t}
  - name: shaped
    source: gh
    template: t
    coalesce: {wait: 10s, max_events: 2}
    supersede: 'event'
    turn_limit: {turns: 3, per: 1h}
    max_prompt_bytes: 300
    batch_template: '{{ len .events }}'
`), t.TempDir(), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	table, err := CompileIngest(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := turnPolicies(cfg, table)
	if plain := p("plain"); plain.Max() != 1 || plain.Wait != 0 || plain.Supersede || plain.Fits != nil {
		t.Errorf("plain policy %+v, want one event a turn", plain)
	}
	shaped := p("shaped")
	if shaped.MaxEvents != 2 || shaped.Wait != 10*time.Second || !shaped.Supersede || shaped.Fits == nil {
		t.Errorf("shaped policy %+v", shaped)
	}
	s := withBatches(settings(cfg), table)
	rs := s.Routes["shaped"]
	if rs.TurnLimit == nil || *rs.TurnLimit != (dispatch.TurnLimit{Turns: 3, Per: time.Hour}) || rs.Batch == nil {
		t.Errorf("shaped dispatch settings %+v", rs)
	}
	if s.Routes["plain"].Batch != nil || s.Routes["plain"].TurnLimit != nil {
		t.Errorf("plain dispatch settings %+v", s.Routes["plain"])
	}
}
