package console

import (
	"strings"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/history"
)

func TestRel(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		ago  time.Duration
		want string
	}{
		{-time.Second, "just now"},
		{0, "0s ago"},
		{59 * time.Second, "59s ago"},
		{time.Minute, "1m ago"},
		{59 * time.Minute, "59m ago"},
		{time.Hour, "1h ago"},
		{47 * time.Hour, "47h ago"},
		{48 * time.Hour, "2d ago"},
	}
	for _, tt := range tests {
		if got := rel(now, now.Add(-tt.ago)); got != tt.want {
			t.Errorf("rel(%v ago) = %q, want %q", tt.ago, got, tt.want)
		}
	}
	if got := rel(now, time.Time{}); got != "" {
		t.Errorf("rel(zero) = %q, want empty", got)
	}
}

// A class name never comes from stored text.
func TestBadge(t *testing.T) {
	for word, want := range map[string]string{
		"delivered":          "b-delivered",
		"template_error":     "b-template-error",
		"rejected":           "b-rejected",
		`x" onmouseover="a`:  "b-other",
		"delivered b-hidden": "b-other",
		"":                   "b-other",
	} {
		if got := badge(word); got != want {
			t.Errorf("badge(%q) = %q, want %q", word, got, want)
		}
	}
}

// Every page parses and names a title.
func TestPagesParse(t *testing.T) {
	pages := parsePages()
	for _, name := range pageNames {
		if pages[name] == nil || titles[name] == "" {
			t.Errorf("page %s: no template or no title", name)
		}
	}
}

// An event's page shows where the agent's reply went, each post's outcome
// and error, with a sender's text escaped.
func TestEventPageShowsReplies(t *testing.T) {
	now := time.Now()
	rec := history.Record{ID: "r1", Delivery: "d1", Source: "github", Kind: history.Accepted, ReceivedAt: now,
		Routes: []history.RouteOutcome{{Route: "ci", Outcome: history.Delivered, Reply: "fixed", Replies: []history.ReplyOutcome{
			{ID: "p1", Sink: "github_comment", Target: "octo/repo#12", Outcome: history.ReplySent, At: now},
			{ID: "p2", Sink: "slack", Outcome: history.ReplyDead, Attempts: 3, Error: `not_found: <b>no_service</b>`},
		}}}}
	var out strings.Builder
	v := view{Page: "event", Title: "Event", Now: now, Data: eventData{Rec: rec}}
	if err := parsePages()["event"].Execute(&out, v); err != nil {
		t.Fatal(err)
	}
	html := out.String()
	for _, want := range []string{
		"Where the reply went (2)", `class="badge b-delivered">sent</span> github_comment`, "octo/repo#12",
		`class="badge b-dead">dead</span> slack`, "3 attempts", "not_found: &lt;b&gt;no_service&lt;/b&gt;",
	} {
		if !strings.Contains(html, want) {
			t.Errorf("event page lacks %q", want)
		}
	}
}

// A filtered page may come back empty with a next: the storage read its
// window without a match. The list then offers Older, not "no match".
func TestEventListShortPage(t *testing.T) {
	tests := []struct {
		name string
		d    eventsData
		want []string
		not  []string
	}{
		{"empty with a next", eventsData{Filtered: true, Next: "/ui/?before=abc&route=rare"},
			[]string{`id="older"`, "before=abc"}, []string{"No event matches"}},
		{"empty at the end", eventsData{Filtered: true},
			[]string{"No event matches"}, []string{`id="older"`}},
		{"short page with a next", eventsData{Filtered: true, Next: "/ui/?before=abc", Events: []history.Record{{ID: "r1", Kind: history.Accepted}}},
			[]string{`data-id="r1"`, `id="older"`}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			if err := parsePages()["events"].Execute(&out, view{Page: "events", Title: "Events", Now: time.Now(), Data: tt.d}); err != nil {
				t.Fatal(err)
			}
			html := out.String()
			for _, w := range tt.want {
				if !strings.Contains(html, w) {
					t.Errorf("lacks %q", w)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(html, w) {
					t.Errorf("has %q", w)
				}
			}
		})
	}
}
