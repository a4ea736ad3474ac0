package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/samples"
)

// sample is what relayd send posts: the body as the sender would send it
// and the Content-Type it would use.
type sample struct {
	body        []byte
	contentType string
	headers     map[string]string // the sender's own, besides the signature
}

// sendOptions are the flags that shape a generated sample.
type sendOptions struct {
	event, action, file string
	delivery            string
	sns                 bool
	sets                []string
}

// buildSample makes the request body for src: the file as given, or a
// sample in the shape src's sender (and its unwrap envelope) uses. --set
// edits what routes see as body, before any envelope wraps it.
func buildSample(src *config.Source, o sendOptions, now time.Time) (sample, error) {
	if o.file != "" {
		body, err := os.ReadFile(o.file)
		if err != nil {
			return sample{}, err
		}
		if len(o.sets) > 0 {
			if body, err = applySets(body, o.sets); err != nil {
				return sample{}, err
			}
		}
		ct := "application/json"
		if src.Unwrap == "cloudevents" && looksLikeCloudEvent(body) {
			ct = "application/cloudevents+json"
		}
		return sample{body: body, contentType: ct}, nil
	}
	switch src.Unwrap {
	case "s3":
		return s3Sample(src, o, now)
	case "pubsub":
		return pubSubSample(o, now)
	case "cloudevents":
		return cloudEventSample(o, now)
	}
	body, err := senderPayload(src, o, now)
	if err != nil {
		return sample{}, err
	}
	if len(o.sets) > 0 {
		if body, err = applySets(body, o.sets); err != nil {
			return sample{}, err
		}
	}
	return sample{body: body, contentType: "application/json"}, nil
}

// senderPayload is the body of a sender that needs no envelope.
func senderPayload(src *config.Source, o sendOptions, now time.Time) ([]byte, error) {
	switch src.Verify.Type {
	case "github":
		return samples.GitHub(firstNonEmpty(o.event, "push"), o.action)
	case "stripe":
		// Stripe's own id is the event's delivery id (body.id).
		return json.Marshal(map[string]any{
			"id": o.delivery, "object": "event", "type": firstNonEmpty(o.event, "invoice.payment_failed"),
			"created": now.Unix(), "livemode": false,
			"data": map[string]any{"object": map[string]any{"id": "in_relayd_send", "object": "invoice"}},
		})
	case "circleci":
		return json.Marshal(map[string]any{
			"id": o.delivery, "type": firstNonEmpty(o.event, "workflow-completed"),
			"happened_at": now.UTC().Format(time.RFC3339),
			"workflow":    map[string]any{"name": "build", "status": "failed"},
			"project":     map[string]any{"slug": "gh/octo/relayd-send"},
		})
	}
	return json.Marshal(map[string]any{
		"id":      o.delivery,
		"event":   firstNonEmpty(o.event, "relayd.test"),
		"message": "a test event from relayd send",
		"sent_at": now.UTC().Format(time.RFC3339),
	})
}

// s3Sample is an S3 event notification with one record, wrapped in an SNS
// Notification with --sns or when the source verifies SNS signatures. The
// record's sequencer carries the delivery id, so the same --delivery is
// the same object version to relayd's dedupe.
func s3Sample(src *config.Source, o sendOptions, now time.Time) (sample, error) {
	event := firstNonEmpty(o.event, "ObjectCreated:Put")
	record := map[string]any{
		"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-west-1",
		"eventTime": now.UTC().Format("2006-01-02T15:04:05.000Z"), "eventName": event,
		"userIdentity":      map[string]any{"principalId": "AWS:AIDAEXAMPLE"},
		"requestParameters": map[string]any{"sourceIPAddress": "203.0.113.10"},
		"s3": map[string]any{
			"s3SchemaVersion": "1.0", "configurationId": "relayd-send",
			"bucket": map[string]any{"name": "landing", "arn": "arn:aws:s3:::landing",
				"ownerIdentity": map[string]any{"principalId": "A3EXAMPLE"}},
			"object": map[string]any{"key": "incoming/report+2026.csv", "size": 1024,
				"eTag": "d41d8cd98f00b204e9800998ecf8427e", "sequencer": o.delivery},
		},
	}
	rec, err := setFields(record, o.sets)
	if err != nil {
		return sample{}, err
	}
	notification, err := json.Marshal(map[string]any{"Records": []any{rec}})
	if err != nil {
		return sample{}, err
	}
	if !o.sns && src.Verify.Type != "sns" {
		return sample{body: notification, contentType: "application/json"}, nil
	}
	body, err := json.Marshal(map[string]any{
		"Type":             "Notification",
		"MessageId":        o.delivery,
		"TopicArn":         "arn:aws:sns:eu-west-1:123456789012:landing",
		"Subject":          "Amazon S3 Notification",
		"Message":          string(notification),
		"Timestamp":        now.UTC().Format("2006-01-02T15:04:05.000Z"),
		"SignatureVersion": "1",
		"Signature":        "",
		"SigningCertURL":   "",
		"UnsubscribeURL":   "",
	})
	// SNS posts its JSON as text/plain, with headers that repeat the envelope.
	return sample{body: body, contentType: "text/plain; charset=UTF-8", headers: map[string]string{
		"X-Amz-Sns-Message-Type": "Notification", "X-Amz-Sns-Message-Id": o.delivery,
		"X-Amz-Sns-Topic-Arn": "arn:aws:sns:eu-west-1:123456789012:landing",
	}}, err
}

// pubSubSample is a Pub/Sub push request carrying a Cloud Storage
// notification (JSON_API_V1), as authenticated push sends it.
func pubSubSample(o sendOptions, now time.Time) (sample, error) {
	object := map[string]any{
		"kind": "storage#object", "bucket": "landing", "name": "incoming/report.csv",
		"size": "1024", "contentType": "text/csv", "generation": "1700000000000000",
		"timeCreated": now.UTC().Format(time.RFC3339Nano), "updated": now.UTC().Format(time.RFC3339Nano),
	}
	data, err := setFields(object, o.sets)
	if err != nil {
		return sample{}, err
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return sample{}, err
	}
	body, err := json.Marshal(map[string]any{
		"message": map[string]any{
			"data": base64.StdEncoding.EncodeToString(raw),
			"attributes": map[string]any{
				"eventType": firstNonEmpty(o.event, "OBJECT_FINALIZE"), "bucketId": "landing",
				"objectId": "incoming/report.csv", "payloadFormat": "JSON_API_V1",
				"objectGeneration": "1700000000000000",
			},
			"messageId":    o.delivery,
			"message_id":   o.delivery,
			"publishTime":  now.UTC().Format(time.RFC3339Nano),
			"publish_time": now.UTC().Format(time.RFC3339Nano),
		},
		"subscription": "projects/my-project/subscriptions/relayd",
	})
	return sample{body: body, contentType: "application/json"}, err
}

// cloudEventSample is a structured-mode CloudEvent; its id is the delivery id.
func cloudEventSample(o sendOptions, now time.Time) (sample, error) {
	data, err := setFields(map[string]any{"message": "a test event from relayd send"}, o.sets)
	if err != nil {
		return sample{}, err
	}
	body, err := json.Marshal(map[string]any{
		"specversion": "1.0", "id": o.delivery, "source": "/relayd/send",
		"type": firstNonEmpty(o.event, "com.example.relayd.test"), "time": now.UTC().Format(time.RFC3339),
		"datacontenttype": "application/json", "data": data,
	})
	return sample{body: body, contentType: "application/cloudevents+json"}, err
}

// setFields applies --set to a generated document.
func setFields(doc map[string]any, sets []string) (map[string]any, error) {
	if len(sets) == 0 {
		return doc, nil
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	if b, err = applySets(b, sets); err != nil {
		return nil, err
	}
	var out map[string]any
	return out, json.Unmarshal(b, &out)
}

func looksLikeCloudEvent(body []byte) bool {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return false
	}
	_, ok := m["specversion"]
	return ok
}

// randomSequencer is an S3-style sequencer: hex, 18 digits.
func randomSequencer() string {
	var b [9]byte
	_, _ = rand.Read(b[:])
	return strings.ToUpper(hex.EncodeToString(b[:]))
}

// curlCommand renders a request as a curl command line that sends the same
// bytes, each argument single-quoted for a POSIX shell.
func curlCommand(url string, h http.Header, body []byte) (string, error) {
	if bytes.IndexByte(body, 0) >= 0 {
		return "", errors.New("--print: the body has NUL bytes, which a shell argument cannot carry")
	}
	var b strings.Builder
	b.WriteString("curl -sS -X POST " + shellQuote(url))
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		for _, v := range h[k] {
			b.WriteString(" \\\n  -H " + shellQuote(k+": "+v))
		}
	}
	b.WriteString(" \\\n  --data-binary " + shellQuote(string(body)))
	return b.String(), nil
}

// shellQuote single-quotes s: inside single quotes a POSIX shell takes
// every byte as is, and a quote itself is written '\”.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
