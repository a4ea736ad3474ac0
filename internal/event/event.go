// Package event defines the one event model that filters and templates see.
package event

import "time"

// Event is a verified webhook as routes see it. The same names appear in expr
// filters (body.action) and in templates ({{ .body.action }}).
type Event struct {
	Source     string            // the source's configured name
	Event      string            // X-GitHub-Event, X-Gitlab-Event, ce-type, or empty
	Delivery   string            // the sender's delivery id, or a generated one
	Headers    map[string]string // lower-case header name to its first value
	Body       any               // parsed JSON, decoded form payload, or the text
	Raw        string            // the body as received (after transfer decoding); Body's strings may share it
	ReceivedAt time.Time

	// Extra holds source-specific attributes exposed at the top level of the
	// environment: "ce" (CloudEvents attributes), "attributes" (Pub/Sub),
	// "object" (object-store bucket and key). Keys must be listed in ExtraKeys.
	Extra map[string]any
}

// ExtraKeys are the top-level names Extra may set. They are always declared
// in the expr environment (nil when absent) so filters compile at load.
var ExtraKeys = []string{"ce", "attributes", "object"}

// Env returns the environment for expr programs and templates.
func (e *Event) Env() map[string]any {
	env := make(map[string]any, 7+len(ExtraKeys))
	env["source"] = e.Source
	env["event"] = e.Event
	env["delivery"] = e.Delivery
	env["headers"] = e.Headers
	env["body"] = e.Body
	env["raw"] = e.Raw
	env["received_at"] = e.ReceivedAt
	for _, k := range ExtraKeys {
		env[k] = e.Extra[k]
	}
	return env
}

// SampleEnv is an environment with every name present and typed as at run
// time, for compiling expr programs at load.
func SampleEnv() map[string]any {
	e := Event{Headers: map[string]string{}, Body: map[string]any{}, ReceivedAt: time.Unix(0, 0)}
	env := e.Env()
	for _, k := range ExtraKeys {
		env[k] = map[string]any{}
	}
	return env
}
