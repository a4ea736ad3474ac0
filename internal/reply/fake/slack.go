package fake

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"sync"
)

// SlackOptions configure a fake Slack incoming webhook.
type SlackOptions struct {
	// Path is the webhook's path; default "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX".
	Path string
	// OnMessage, when set, is called with every message posted.
	OnMessage func(SlackMessage)
}

// SlackMessage is a message posted to the fake webhook.
type SlackMessage struct {
	Text string          `json:"text"`
	Raw  json.RawMessage `json:"raw"` // the whole payload
}

// Slack is a fake Slack incoming webhook. It answers as Slack does, in
// text: 200 "ok"; 400 invalid_payload (not JSON) or no_text (neither text
// nor blocks); 404 no_service for any other path or once Remove was
// called; and injected faults (SlackRateLimited, SlackError). It is safe
// for concurrent use.
type Slack struct {
	o      SlackOptions
	faults faults

	mu      sync.Mutex
	removed bool
	msgs    []SlackMessage
}

// NewSlack returns a fake Slack webhook; serve it with httptest or net/http.
func NewSlack(o SlackOptions) *Slack {
	if o.Path == "" {
		o.Path = "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
	}
	return &Slack{o: o}
}

// Path is the webhook's path on the server.
func (s *Slack) Path() string { return s.o.Path }

// Messages returns the messages posted so far, oldest first.
func (s *Slack) Messages() []SlackMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// FailNext answers the next n requests with f instead of handling them.
func (s *Slack) FailNext(n int, f Fault) { s.faults.add(n, f) }

// Remove deletes the webhook, as a workspace admin or an uninstalled app
// does: every later post gets 404 no_service.
func (s *Slack) Remove() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removed = true
}

func (s *Slack) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	removed := s.removed
	s.mu.Unlock()
	if r.URL.Path != s.o.Path || removed {
		text(w, http.StatusNotFound, "no_service")
		return
	}
	if r.Method != http.MethodPost {
		text(w, http.StatusMethodNotAllowed, "invalid_method")
		return
	}
	if s.faults.serve(w) {
		return
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var in struct {
		Text   string          `json:"text"`
		Blocks json.RawMessage `json:"blocks"`
	}
	if err != nil || json.Unmarshal(data, &in) != nil {
		text(w, http.StatusBadRequest, "invalid_payload")
		return
	}
	if in.Text == "" && len(in.Blocks) == 0 {
		text(w, http.StatusBadRequest, "no_text")
		return
	}
	m := SlackMessage{Text: in.Text, Raw: json.RawMessage(data)}
	s.mu.Lock()
	s.msgs = append(s.msgs, m)
	s.mu.Unlock()
	if s.o.OnMessage != nil {
		s.o.OnMessage(m)
	}
	text(w, http.StatusOK, "ok")
}

func text(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}
