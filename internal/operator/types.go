// Package operator talks to the Operator API and classifies its answers.
//
// Client posts prompts to /api/chat and checks keys with /api/cli/health;
// Classify turns any answer or error into one Verdict, so the rules of the
// API's status table live in one place. The client reads the answer as a
// stream by default and times out on silence, not on length, so a long
// turn is not cut and sent twice; an answer cut after it began is Partial.
package operator

import (
	"fmt"
	"time"
)

// ChatRequest is one user message. ChatID "" starts a new conversation.
type ChatRequest struct {
	ChatID         string
	Text           string
	IdempotencyKey string
}

// ChatResponse is what an answer said. ChatID is the chat the API named,
// "" when it named none (202 has no body); Chat also fills it from a cut
// answer and from a 409's error body.
type ChatResponse struct {
	Status int
	ChatID string
	Text   string // the agent's reply; what arrived of it when Partial
	// Partial: the answer began (a 2xx status line) and was cut off before
	// its end. The API took the message; it must not be sent again.
	Partial bool
}

// Health is GET /api/cli/health's answer.
type Health struct {
	Authenticated bool   `json:"authenticated"`
	UserID        string `json:"userId"`
	PlanSlug      string `json:"planSlug"`
	HasPlan       bool   `json:"hasPlan"`
	TokenLimit    int64  `json:"tokenLimit"`
}

// APIError is a non-2xx answer, with the API's error body when it sent one.
type APIError struct {
	Status     int
	Code       string         // the body's stable identifier
	Transient  *bool          // the body's transient flag; nil when absent
	Message    string         // human text; never branch on it
	Data       map[string]any // optional extra context
	ChatID     string         // data.chatId (or chat_id) when the body names a chat, as a 409 does
	RetryAfter time.Duration  // from Retry-After; 0 when absent
}

func (e *APIError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("operator: HTTP %d %s: %s", e.Status, e.Code, e.Message)
	}
	return fmt.Sprintf("operator: HTTP %d", e.Status)
}
