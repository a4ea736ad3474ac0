package reply

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/relayd/relayd/internal/templates"
)

// Sink types, as written in a route's reply list; also the "sink" label of
// relayd_replies_total.
const (
	TypeGitHub  = "github_comment"
	TypeSlack   = "slack"
	TypeWebhook = "webhook"
)

// Types lists the accepted sink types.
var Types = []string{TypeGitHub, TypeSlack, TypeWebhook}

// DefaultGitHubAPI is github_comment's api_url when none is given. GitHub
// Enterprise Server's is https://HOST/api/v3.
const DefaultGitHubAPI = "https://api.github.com"

// DefaultTemplate renders the agent's answer as it is.
const DefaultTemplate = "{{ .reply }}"

// PartialMarker ends the text of a reply whose answer was cut off.
const PartialMarker = "[The answer was cut off; this is the part that arrived.]"

// Reply is the agent's answer to one delivered turn, and what the turn was
// about.
type Reply struct {
	Route        string
	Conversation string // the conversation key
	ChatID       string
	Text         string // the agent's answer
	Partial      bool   // the answer was cut off (outcome partial); Text is what arrived
	Events       []Event
}

// Event is one event of the turn, oldest first.
type Event struct {
	Source   string
	Event    string
	Delivery string
	Prompt   string // the event's rendered prompt
	// Body is the event's parsed body, when the caller still has it; the
	// reply template sees it as .body.
	Body any
	// Target is where a github_comment about the event goes, found when
	// the event was accepted (FindTarget on its body). When nil, Plan looks
	// in Body.
	Target *Target
}

// Post is one reply to send to one sink (and for github_comment one
// target). It is plain data, stored with the turn's acknowledgement and
// sent, retried and dead-lettered on its own.
type Post struct {
	// ID is the same for every attempt, and for the same turn, sink and
	// target planned again: the webhook sink sends it as webhook-id, so a
	// receiver can drop repeats.
	ID           string   `json:"id"`
	Route        string   `json:"route"`
	Sink         int      `json:"sink"` // index in the route's reply list
	Type         string   `json:"type"` // the sink's type, checked again on Send
	Target       *Target  `json:"target,omitempty"`
	Conversation string   `json:"conversation,omitempty"`
	ChatID       string   `json:"chat_id,omitempty"`
	Deliveries   []string `json:"deliveries,omitempty"`
	Partial      bool     `json:"partial,omitempty"`
	// Text is the rendered reply, marked when partial, cut to fit the sink.
	Text string `json:"text"`
}

// Spec is one reply sink as configured; which fields apply depends on Type.
type Spec struct {
	Type   string // one of Types
	Token  string // github_comment: a token that may comment (issues and pull requests: write; commits: contents read)
	APIURL string // github_comment; default DefaultGitHubAPI
	URL    string // slack (the incoming webhook URL) and webhook
	Secret string // webhook: whsec_ + base64, as Standard Webhooks
}

// Options are shared by a route's sinks.
type Options struct {
	// Client makes the requests; nil means one with a 30s timeout.
	// Redirects are never followed: a token must not travel elsewhere.
	Client *http.Client
	// Now is the clock for signatures and rate-limit resets; nil: time.Now.
	Now func() time.Time
	// UserAgent is sent with every request (GitHub requires one).
	UserAgent string
}

// Sink sends Posts to one destination. Implementations are safe for
// concurrent use.
type Sink interface {
	// Type is the sink's type, one of Types.
	Type() string
	// Send posts p once. A non-nil error is an *Error.
	Send(ctx context.Context, p Post) error
}

// Replier is a route's compiled reply configuration.
type Replier struct {
	route string
	tmpl  *templates.Template
	sinks []Sink
}

// Compile builds a route's Replier at load. Errors name the sub-field
// ("reply[1].url: required for type slack", "reply_template: line 1, col
// 4: …"); the caller prefixes the route's path.
func Compile(route string, specs []Spec, template string, o Options) (*Replier, error) {
	if template != "" && len(specs) == 0 {
		return nil, errors.New("reply_template: set, but the route has no reply sinks")
	}
	if template == "" {
		template = DefaultTemplate
	}
	t, err := templates.Compile("reply_template", template)
	if err != nil {
		return nil, fmt.Errorf("reply_template: %w", err)
	}
	r := &Replier{route: route, tmpl: t}
	var errs []error
	for i, s := range specs {
		sk, err := NewSink(s, o)
		if err != nil {
			errs = append(errs, fmt.Errorf("reply[%d].%w", i, err))
			continue
		}
		r.sinks = append(r.sinks, sk)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return r, nil
}

// Route is the name of the route r was compiled for.
func (r *Replier) Route() string { return r.route }

// Sinks returns the route's sinks, in the order of its reply list.
func (r *Replier) Sinks() []Sink { return r.sinks }

// Plan renders rep and returns what to send: one Post per sink, and for
// github_comment one per distinct target of the turn's events (none when
// the events name no pull request, issue or commit). A reply whose text
// renders blank is not sent anywhere. Plan does no I/O.
func (r *Replier) Plan(rep Reply) ([]Post, error) {
	if r == nil || len(r.sinks) == 0 {
		return nil, nil
	}
	text, err := r.render(rep)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(text) == "" {
		return nil, nil
	}
	deliveries := make([]string, len(rep.Events))
	for i, e := range rep.Events {
		deliveries[i] = e.Delivery
	}
	var targets []Target
	var found bool
	var posts []Post
	for i, s := range r.sinks {
		p := Post{
			Route: r.route, Sink: i, Type: s.Type(), Conversation: rep.Conversation, ChatID: rep.ChatID,
			Deliveries: deliveries, Partial: rep.Partial, Text: fit(text, rep.Partial, maxText(s.Type())),
		}
		if s.Type() != TypeGitHub {
			p.ID = postID(p)
			posts = append(posts, p)
			continue
		}
		if !found {
			targets, found = eventTargets(rep.Events), true
		}
		for _, t := range targets {
			q := p
			q.Target = &t
			q.ID = postID(q)
			posts = append(posts, q)
		}
	}
	return posts, nil
}

// Send posts p to its sink once. A non-nil error is an *Error; Classify
// says whether to retry.
func (r *Replier) Send(ctx context.Context, p Post) error {
	if p.Sink < 0 || p.Sink >= len(r.sinks) || r.sinks[p.Sink].Type() != p.Type {
		// The route's reply list changed since the post was planned.
		return &Error{Sink: p.Type, Reason: ReasonBadPost, Msg: fmt.Sprintf("route %q has no %s sink at reply[%d]", r.route, p.Type, p.Sink)}
	}
	return r.sinks[p.Sink].Send(ctx, p)
}

func (r *Replier) render(rep Reply) (string, error) {
	events := make([]any, len(rep.Events))
	for i, e := range rep.Events {
		events[i] = map[string]any{
			"source": e.Source, "event": e.Event, "delivery": e.Delivery, "prompt": e.Prompt, "body": e.Body,
		}
	}
	text, err := r.tmpl.Render(map[string]any{
		"reply": rep.Text, "chat_id": rep.ChatID, "route": rep.Route, "conversation": rep.Conversation,
		"events": events, "partial": rep.Partial,
	})
	if err != nil {
		return "", fmt.Errorf("reply_template: %w", err)
	}
	return text, nil
}

func eventTargets(events []Event) []Target {
	var out []Target
	seen := map[Target]bool{}
	for _, e := range events {
		var t Target
		if e.Target != nil {
			t = *e.Target
		} else if ft, ok := FindTarget(e.Body); ok {
			t = ft
		}
		if !t.Valid() || seen[t] {
			continue
		}
		seen[t] = true
		out = append(out, t)
	}
	return out
}

// postID derives a Post's id from what identifies it: the same turn, sink
// and target give the same id when planned again.
func postID(p Post) string {
	h := sha256.New()
	for _, s := range append([]string{p.Route, p.Conversation, p.ChatID, strconv.Itoa(p.Sink), p.Type}, p.Deliveries...) {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	if p.Target != nil {
		h.Write([]byte(p.Target.String()))
	}
	return "rpl_" + hex.EncodeToString(h.Sum(nil)[:16])
}

// Longest text each sink takes, in bytes (so in characters too): GitHub
// refuses comments over 65536 characters; Slack truncates text past 40000.
func maxText(typ string) int {
	switch typ {
	case TypeGitHub:
		return 65536
	case TypeSlack:
		return 40000
	}
	return 1 << 20
}

// fit cuts text to limit bytes at a UTF-8 boundary, ending with the marker
// "[… N bytes cut]" when it cuts, and adds PartialMarker to a partial
// reply, keeping both within limit.
func fit(text string, partial bool, limit int) string {
	var tail string
	if partial {
		tail = "\n\n" + PartialMarker
	}
	if len(text)+len(tail) <= limit {
		return text + tail
	}
	const room = len("\n\n[… 1234567890 bytes cut]")
	n := limit - len(tail) - room
	for n > 0 && !utf8.RuneStart(text[n]) {
		n--
	}
	return text[:n] + fmt.Sprintf("\n\n[… %d bytes cut]", len(text)-n) + tail
}
