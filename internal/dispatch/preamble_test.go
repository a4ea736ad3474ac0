package dispatch_test

import (
	"strings"
	"testing"

	"github.com/relayd/relayd/internal/dispatch"
	"github.com/relayd/relayd/internal/queue"
)

// The preamble starts the first turn of every new chat and no later turn;
// a route's own preamble wins, "" sends none, and a route missing from the
// settings gets the account's.
func TestPreambleOnNewChatsOnly(t *testing.T) {
	h := newHarness(t)
	h.settings.Concurrency = 1
	h.settings.Preamble = "ACCOUNT PREAMBLE"
	h.settings.Routes = map[string]dispatch.RouteSettings{
		"own":  {Preamble: "ROUTE PREAMBLE"},
		"none": {Preamble: ""},
	}
	h.enqueue(
		newMsg("own", "k", "own|k|first"), newMsg("own", "k", "own|k|second"),
		newMsg("none", "k", "none|k|first"),
		newMsg("gone", "k", "gone|k|first"), newMsg("gone", "k", "gone|k|second"),
	)
	h.start()
	h.waitFor("every message delivered", func() bool { return h.pending() == 0 })
	h.settled()

	sent := map[string][]string{}
	for _, r := range h.chatRequests() {
		prompt := r.Text
		if i := strings.LastIndex(prompt, "\n\n"); i >= 0 {
			prompt = prompt[i+2:]
		}
		route, _, _ := strings.Cut(prompt, "|")
		sent[route] = append(sent[route], r.Text)
	}
	want := map[string][]string{
		"own":  {"ROUTE PREAMBLE\n\nown|k|first", "own|k|second"},
		"none": {"none|k|first"},
		"gone": {"ACCOUNT PREAMBLE\n\ngone|k|first", "gone|k|second"},
	}
	for route, texts := range want {
		if strings.Join(sent[route], "\x00") != strings.Join(texts, "\x00") {
			t.Errorf("route %s sent %q, want %q", route, sent[route], texts)
		}
	}
}

// A coalesced turn that starts a chat gets the preamble once, before the
// whole turn; the next turn on that chat gets none. The budget the turn was
// formed to leaves the preamble out.
func TestPreambleOnCoalescedTurn(t *testing.T) {
	const budget = 64
	pre := strings.Repeat("P", 100) // longer than the budget itself
	h := turnHarness(t, queue.TurnPolicy{MaxEvents: 2, Fits: dispatch.TurnFits(nil, budget)}, dispatch.RouteSettings{Preamble: pre})
	h.settings.Concurrency = 1
	h.enqueue(newMsg("r", "c", "a"), newMsg("r", "c", "b"), newMsg("r", "c", "c"), newMsg("r", "c", "d"))
	h.start()
	h.settled()
	var got []string
	for _, r := range h.chatRequests() {
		got = append(got, r.Text)
	}
	want := []string{pre + "\n\n2 events:\na\n---\nb", "2 events:\nc\n---\nd"}
	if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		t.Fatalf("sent %q, want %q", got, want)
	}
}
