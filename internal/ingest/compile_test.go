package ingest

import (
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relayd/relayd/internal/metrics"
	"github.com/relayd/relayd/internal/payload"
	"github.com/relayd/relayd/internal/route"
	"github.com/relayd/relayd/internal/verify"
)

func compileOne(t *testing.T, sc SourceSpec) *Source {
	t.Helper()
	sc.Name, sc.Path = "s", "/s"
	tab, err := Compile(Spec{MaxBody: 1 << 10, Sources: []SourceSpec{sc}})
	if err != nil {
		t.Fatal(err)
	}
	return tab.Sources()[0]
}

// TestCompiledSenderRules: the sender's event, delivery and ping rules are
// chosen from the verify type once, and the source's own headers win.
func TestCompiledSenderRules(t *testing.T) {
	sec := []string{"s"}
	for _, tc := range []struct {
		name       string
		sc         SourceSpec
		event      string // header the parser reads the event type from
		deliveries []string
		ping       string
	}{
		{"github", SourceSpec{Verify: verify.Spec{Type: "github", Secrets: sec}},
			"X-Github-Event", []string{"X-Github-Delivery"}, "ping"},
		{"gitlab falls back to Idempotency-Key", SourceSpec{Verify: verify.Spec{Type: "gitlab", Secrets: sec}},
			"X-Gitlab-Event", []string{"X-Gitlab-Event-Uuid", "Idempotency-Key"}, ""},
		{"gitlab with own delivery header", SourceSpec{Verify: verify.Spec{Type: "gitlab", Secrets: sec}, DeliveryHeader: "x-request-id"},
			"X-Gitlab-Event", []string{"X-Request-Id", "Idempotency-Key"}, ""},
		{"standard-webhooks", SourceSpec{Verify: verify.Spec{Type: "standard-webhooks", Secrets: []string{"c2VjcmV0"}}},
			"", []string{"Webhook-Id"}, ""},
		{"buildkite", SourceSpec{Verify: verify.Spec{Type: "buildkite", Secrets: sec}},
			"X-Buildkite-Event", nil, ""},
		{"circleci", SourceSpec{Verify: verify.Spec{Type: "circleci", Secrets: sec}},
			"Circleci-Event-Type", nil, ""},
		{"hmac with own headers", SourceSpec{Verify: verify.Spec{Type: "hmac", Header: "X-Sig", Secrets: sec}, EventHeader: "x-kind", DeliveryHeader: "x-id"},
			"X-Kind", []string{"X-Id"}, ""},
		{"github with own event header keeps ping", SourceSpec{Verify: verify.Spec{Type: "github", Secrets: sec}, EventHeader: "X-Kind"},
			"X-Kind", []string{"X-Github-Delivery"}, "ping"},
		{"none", SourceSpec{Verify: verify.Spec{Type: "none"}}, "", nil, ""},
		{"bitbucket", SourceSpec{Verify: verify.Spec{Type: "bitbucket", Secrets: sec}},
			"X-Event-Key", []string{"X-Request-Uuid"}, ""},
		{"gitea", SourceSpec{Verify: verify.Spec{Type: "gitea", Secrets: sec}},
			"X-Gitea-Event", []string{"X-Gitea-Delivery"}, ""},
		{"forgejo", SourceSpec{Verify: verify.Spec{Type: "forgejo", Secrets: sec}},
			"X-Forgejo-Event", []string{"X-Forgejo-Delivery"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := compileOne(t, tc.sc)
			if !slices.Equal(s.deliveryHeaders, tc.deliveries) {
				t.Errorf("delivery headers %q, want %q", s.deliveryHeaders, tc.deliveries)
			}
			if s.pingEvent != tc.ping {
				t.Errorf("ping event %q, want %q", s.pingEvent, tc.ping)
			}
			hdr := http.Header{}
			for _, h := range []string{"X-Github-Event", "X-Gitlab-Event", "X-Buildkite-Event", "Circleci-Event-Type", "X-Kind",
				"X-Event-Key", "X-Gitea-Event", "X-Forgejo-Event"} {
				hdr.Set(h, "from "+h)
			}
			items, err := s.parser.Parse(hdr, "{}")
			if err != nil {
				t.Fatal(err)
			}
			want := ""
			if tc.event != "" {
				want = "from " + tc.event
			}
			if items[0].Event != want {
				t.Errorf("event %q, want %q", items[0].Event, want)
			}
		})
	}
}

// TestCompiledParser: the source's body mode and envelope pick the parser.
func TestCompiledParser(t *testing.T) {
	none := verify.Spec{Type: "none"}
	hdr := http.Header{"Content-Type": {"application/json"}}
	for _, tc := range []struct {
		name string
		sc   SourceSpec
		body string
		want any // the first item's body; nil with wantErr
		err  bool
	}{
		{"json parses", SourceSpec{Verify: none}, `{"a":1}`, map[string]any{"a": int64(1)}, false},
		{"json refuses text", SourceSpec{Verify: none}, `hello`, nil, true},
		{"text never parses", SourceSpec{Verify: none, Body: payload.Text}, `{"a":1}`, `{"a":1}`, false},
		{"auto falls back to text", SourceSpec{Verify: none, Body: payload.Auto}, `hello`, "hello", false},
		{"auto parses", SourceSpec{Verify: none, Body: payload.Auto}, `[1]`, []any{int64(1)}, false},
		{"envelope is JSON whatever the mode", SourceSpec{Verify: none, Body: payload.Text, Envelope: payload.PubSub},
			`{"message":{"data":"eyJiIjoyfQ==","messageId":"m"}}`, map[string]any{"b": int64(2)}, false},
		{"cloudevents envelope", SourceSpec{Verify: none, Envelope: payload.CloudEvents},
			`{"specversion":"1.0","id":"i","source":"s","type":"t","data":"d"}`, "d", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			items, err := compileOne(t, tc.sc).parser.Parse(hdr, tc.body)
			if (err != nil) != tc.err {
				t.Fatalf("error %v, want error %t", err, tc.err)
			}
			if err == nil {
				if got, _ := json.Marshal(items[0].Body); string(got) != mustJSON(t, tc.want) {
					t.Errorf("body %s, want %s", got, mustJSON(t, tc.want))
				}
			}
		})
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestHiddenHeaders: routes see every header but the verifier's own
// credential headers and the generic credentials.
func TestHiddenHeaders(t *testing.T) {
	generic := []string{"authorization", "cookie", "proxy-authorization", "x-buildkite-token", "x-gitlab-token"}
	for _, tc := range []struct {
		v    verify.Spec
		want []string // besides generic
	}{
		{verify.Spec{Type: "github", Secrets: []string{"s"}}, []string{"x-hub-signature-256"}},
		{verify.Spec{Type: "gitlab", Secrets: []string{"s"}}, []string{"webhook-signature", "x-gitlab-token"}},
		{verify.Spec{Type: "standard-webhooks", Secrets: []string{"c2VjcmV0"}}, []string{"webhook-signature"}},
		{verify.Spec{Type: "hmac", Header: "X-My-Sig", Secrets: []string{"s"}}, []string{"x-my-sig"}},
		{verify.Spec{Type: "stripe", Secrets: []string{"s"}}, []string{"stripe-signature"}},
		{verify.Spec{Type: "bearer", Secrets: []string{"s"}}, nil},
		{verify.Spec{Type: "none"}, nil},
		{verify.Spec{Type: "bitbucket", Secrets: []string{"s"}}, []string{"x-hub-signature"}},
		{verify.Spec{Type: "gitea", Secrets: []string{"s"}}, []string{"x-gitea-signature"}},
		{verify.Spec{Type: "forgejo", Secrets: []string{"s"}}, []string{"x-forgejo-signature"}},
		{verify.Spec{Type: "basic", Username: "u", Secrets: []string{"s"}}, nil},
		{verify.Spec{Type: "oidc", Issuer: "https://accounts.google.com", Audience: "a"}, nil},
		{verify.Spec{Type: "sns"}, nil},
	} {
		s := compileOne(t, SourceSpec{Verify: tc.v})
		want := slices.Sorted(slices.Values(append(slices.Clone(generic), tc.want...)))
		want = slices.Compact(want)
		if got := slices.Sorted(maps.Keys(s.hidden)); !slices.Equal(got, want) {
			t.Errorf("%s: hidden %q, want %q", tc.v.Type, got, want)
		}
		hdr := http.Header{"X-Other": {"shown"}, "Webhook-Id": {"shown"}}
		for _, h := range append(tc.want, generic...) {
			hdr.Set(h, "secret")
		}
		got := flattenHeaders(hdr, s.hidden)
		for k, v := range got {
			if v == "secret" {
				t.Errorf("%s: routes see %s", tc.v.Type, k)
			}
		}
		if got["x-other"] != "shown" || got["webhook-id"] != "shown" {
			t.Errorf("%s: routes miss other headers: %v", tc.v.Type, got)
		}
	}
}

// TestCompiledDelivery: the delivery expression is the source's own, else
// the sender's (body.id for stripe and circleci), compiled once.
func TestCompiledDelivery(t *testing.T) {
	sec := []string{"s"}
	for _, tc := range []struct {
		name string
		sc   SourceSpec
		want string // the id for the body below; "" for no expression
	}{
		{"stripe", SourceSpec{Verify: verify.Spec{Type: "stripe", Secrets: sec}}, "evt_1"},
		{"circleci", SourceSpec{Verify: verify.Spec{Type: "circleci", Secrets: sec}}, "evt_1"},
		{"github has none", SourceSpec{Verify: verify.Spec{Type: "github", Secrets: sec}}, ""},
		{"own expression", SourceSpec{Verify: verify.Spec{Type: "none"}, Delivery: "body.request.id"}, "42"},
		{"own expression wins over the sender's", SourceSpec{Verify: verify.Spec{Type: "stripe", Secrets: sec}, Delivery: "body.type"}, "invoice.paid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := compileOne(t, tc.sc)
			if s.deliveryKey == nil {
				if tc.want != "" {
					t.Fatalf("no delivery expression, want one giving %q", tc.want)
				}
				return
			}
			items, err := s.parser.Parse(http.Header{}, `{"id":"evt_1","type":"invoice.paid","request":{"id":42}}`)
			if err != nil {
				t.Fatal(err)
			}
			h := New(&Table{}, Options{})
			if got := h.exprDelivery(s, items, nil, "", time.Now()); got != tc.want || items[0].Delivery != tc.want {
				t.Errorf("delivery %q (item %q), want %q", got, items[0].Delivery, tc.want)
			}
		})
	}
}

// TestCompileErrors: errors are *FieldError named by their config path.
func TestCompileErrors(t *testing.T) {
	_, err := Compile(Spec{
		Sources: []SourceSpec{
			{Name: "a", Path: "/a", Verify: verify.Spec{Type: "none"}},
			{Name: "b", Path: "/b", Verify: verify.Spec{Type: "github"}},
			{Name: "c", Path: "/c", Verify: verify.Spec{Type: "none"}, Delivery: "body.id +"},
		},
		Routes: []route.Spec{
			{Name: "r0", Source: "a", Template: "x"},
			{Name: "r1", Source: "a", Filter: "evnt == 1", Template: "x"},
		},
	})
	if err == nil {
		t.Fatal("Compile accepted a verify block without secrets, a bad delivery expression and a bad filter")
	}
	var fields []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		fe, ok := e.(*FieldError)
		if !ok {
			t.Fatalf("%T %v is not a *FieldError", e, e)
		}
		fields = append(fields, fe.Field)
	}
	if want := []string{"sources[1].verify", "sources[2].delivery", "routes[1].filter"}; !slices.Equal(fields, want) {
		t.Errorf("fields %q, want %q", fields, want)
	}
	msg := err.Error()
	for _, want := range []string{"sources[1].verify: secrets: at least one secret is required", "routes[1].filter: unknown name evnt"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	var re *route.FieldError
	if !errors.As(err, &re) || re.Field != "filter" {
		t.Errorf("route's own FieldError is not in the chain: %v", re)
	}
}

// TestStageErrors: each refusal answers its status, code and headers, and
// is counted once, by serve.
func TestStageErrors(t *testing.T) {
	for _, tc := range []struct {
		err     *httpError
		status  int
		code    string
		header  string // a header the answer must carry
		failure string // verification failure counted
	}{
		{errNotFound, 404, "not_found", "", ""},
		{errMethod, 405, "method_not_allowed", "Allow", ""},
		{errDraining, 503, "shutting_down", "Retry-After", ""},
		{errForbidden, 403, "forbidden", "", "forbidden_ip"},
		{errQueueFull, 503, "queue_full", "Retry-After", ""},
		{errStorage, 503, "storage_unavailable", "Retry-After", ""},
		{errVerifyUnavailable, 503, "verify_unavailable", "Retry-After", ""},
		{badBody("body is not valid JSON"), 400, "invalid_body", "", ""},
		{verifyError(verify.ReasonMissing), 401, "signature_missing", "", "missing"},
		{verifyError(verify.ReasonMismatch), 401, "signature_mismatch", "", "mismatch"},
		{verifyError(verify.ReasonStale), 401, "timestamp_stale", "", "stale"},
		{verifyError(verify.ReasonMalformed), 401, "signature_malformed", "", "malformed"},
		{verifyError("unheard of"), 401, "signature_mismatch", "", "mismatch"},
	} {
		t.Run(tc.code, func(t *testing.T) {
			m := metrics.New(prometheus.NewRegistry())
			h := New(&Table{}, Options{Metrics: m})
			rec := httptest.NewRecorder()
			c := echo.New().NewContext(httptest.NewRequest(http.MethodPost, "/s", nil), rec)
			if err := h.fail(c, "s", tc.err); err != nil {
				t.Fatal(err)
			}
			if rec.Code != tc.status {
				t.Errorf("status %d, want %d", rec.Code, tc.status)
			}
			var body errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error.Code != tc.code || body.Error.Message == "" {
				t.Errorf("body %s (%v), want code %s and a message", rec.Body, err, tc.code)
			}
			if tc.header != "" && rec.Header().Get(tc.header) == "" {
				t.Errorf("answer lacks %s", tc.header)
			}
			if got := testutil.ToFloat64(m.HTTPRequests.WithLabelValues("s", strconv.Itoa(tc.status))); got != 1 {
				t.Errorf("requests{s,%d} = %v, want 1", tc.status, got)
			}
			for _, r := range append(slices.Clone(verify.Reasons), "forbidden_ip") {
				want := 0.0
				if r == tc.failure {
					want = 1
				}
				if got := testutil.ToFloat64(m.VerificationFailures.WithLabelValues("s", r)); got != want {
					t.Errorf("verification failures{s,%s} = %v, want %v", r, got, want)
				}
			}
		})
	}
}
