package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/relayd/relayd/internal/history"
	"github.com/relayd/relayd/internal/queue"
)

const (
	maxDryRunEvents = 200
	maxListed       = 500 // dead letters and conversations shown on one page
	defaultDryRun   = 10
)

// outcomes are the filter choices of the event list.
var outcomes = []string{
	history.Accepted, history.Duplicate, history.Rejected,
	history.Queued, history.Delivered, history.Partial, history.Dead,
	history.Filtered, history.FilterError, history.TemplateError, history.Superseded, history.Limited,
}

// view is what every page's template gets.
type view struct {
	Page     string
	Title    string
	CSRF     string
	LoggedIn bool // with an admin token: show Log out
	Refresh  bool // reload in a moment: what the page waits for is being written
	Now      time.Time
	Data     any
}

var pageNames = []string{"login", "events", "event", "dead", "chats", "dryrun", "error"}

func parsePages() map[string]*template.Template {
	funcs := template.FuncMap{
		"rel":        rel,
		"abs":        abs,
		"iso":        func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
		"since":      since,
		"prefix":     func() string { return Prefix },
		"badge":      badge,
		"replyBadge": replyBadge,
		// pathesc keeps a sender's id one path segment: html/template
		// leaves "/" and ".." as they are.
		"pathesc": url.PathEscape,
	}
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		pages[name] = template.Must(template.New("layout.html").Funcs(funcs).
			ParseFS(assets, "assets/layout.html", "assets/"+name+".html"))
	}
	return pages
}

func abs(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

func rel(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
}

// since is the time from a to b, for timings ("+1.2s").
func since(a, b time.Time) string {
	if a.IsZero() || b.IsZero() {
		return ""
	}
	return "+" + b.Sub(a).Round(time.Millisecond).String()
}

// badge is the CSS class of an outcome or kind; unknown words get none, so
// no stored text ever picks a class.
// replyBadge colours a reply post's outcome like the turn outcome it
// resembles: sent as delivered, queued and retry as queued, dead as dead.
func replyBadge(outcome string) string {
	switch outcome {
	case history.ReplySent:
		return badge(history.Delivered)
	case history.ReplyQueued, history.ReplyRetry:
		return badge(history.Queued)
	case history.ReplyDead:
		return badge(history.Dead)
	}
	return badge(outcome)
}

func badge(word string) string {
	for _, o := range outcomes {
		if o == word {
			return "b-" + strings.ReplaceAll(word, "_", "-")
		}
	}
	return "b-other"
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, s *session, data any) {
	v := view{Page: name, Title: titles[name], Now: c.o.Now(), Data: data}
	if e, ok := data.(errorData); ok {
		v.Refresh = e.Refresh
	}
	if s != nil {
		v.CSRF = s.csrf
		v.LoggedIn = c.o.Token() != ""
	}
	var b bytes.Buffer
	if err := c.pages[name].Execute(&b, v); err != nil {
		c.o.Logger.Error("console page failed", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

var titles = map[string]string{
	"login": "Log in", "events": "Events", "event": "Event", "dead": "Dead letters",
	"chats": "Conversations", "dryrun": "Dry run", "error": "Error",
}

type errorData struct {
	Status  int
	Message string
	Refresh bool
}

func (c *Console) refuse(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s, _ := c.session(r)
	c.render(w, r, status, "error", s, errorData{Status: status, Message: msg})
}

// fail answers a storage error as a page.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	switch {
	case errors.Is(err, history.ErrNotFound), errors.Is(err, queue.ErrNotFound):
		c.render(w, r, http.StatusNotFound, "error", s, errorData{Status: http.StatusNotFound, Message: "No such event. It may be older than the history's retention, or the id is wrong."})
	case errors.Is(err, queue.ErrUnavailable), errors.Is(err, queue.ErrClosed):
		c.render(w, r, http.StatusServiceUnavailable, "error", s, errorData{Status: http.StatusServiceUnavailable, Message: "The storage is unavailable: " + err.Error()})
	default:
		c.o.Logger.Error("console request failed", "path", r.URL.Path, "err", err)
		c.render(w, r, http.StatusInternalServerError, "error", s, errorData{Status: http.StatusInternalServerError, Message: err.Error()})
	}
}

func (c *Console) noHistory(w http.ResponseWriter, r *http.Request, s *session) bool {
	if c.o.Events != nil {
		return false
	}
	c.render(w, r, http.StatusNotImplemented, "error", s, errorData{Status: http.StatusNotImplemented, Message: "This storage backend keeps no history of requests. " + history.ErrUnsupported.Error() + "."})
	return true
}

func query(r *http.Request) history.Query {
	q := history.Query{Source: r.FormValue("source"), Route: r.FormValue("route"),
		Outcome: r.FormValue("outcome"), Before: r.FormValue("before")}
	if n, err := strconv.Atoi(r.FormValue("limit")); err == nil && n > 0 {
		q.Limit = min(n, 200)
	}
	return q
}

type eventsData struct {
	Query    history.Query
	Events   []history.Record
	Next     string // the URL of the next page
	Sources  []string
	Routes   []string
	Outcomes []string
	Filtered bool
}

func (c *Console) eventList(w http.ResponseWriter, r *http.Request, s *session) {
	if c.noHistory(w, r, s) {
		return
	}
	q := query(r)
	page, err := c.o.Events.Events(r.Context(), q)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	d := eventsData{Query: q, Events: page.Events, Outcomes: outcomes,
		Filtered: q.Source != "" || q.Route != "" || q.Outcome != ""}
	if page.Next != "" {
		v := url.Values{}
		for k, val := range map[string]string{"source": q.Source, "route": q.Route, "outcome": q.Outcome, "before": page.Next} {
			if val != "" {
				v.Set(k, val)
			}
		}
		d.Next = Prefix + "?" + v.Encode()
	}
	seen := map[string]bool{}
	for _, rt := range c.o.Routes() {
		d.Routes = append(d.Routes, rt.Name)
		if !seen[rt.Source] {
			seen[rt.Source] = true
			d.Sources = append(d.Sources, rt.Source)
		}
	}
	sort.Strings(d.Sources)
	c.render(w, r, http.StatusOK, "events", s, d)
}

// eventsJSON is the list's live feed: the newest page of summaries.
func (c *Console) eventsJSON(w http.ResponseWriter, r *http.Request, _ *session) {
	if c.o.Events == nil {
		http.Error(w, history.ErrUnsupported.Error(), http.StatusNotImplemented)
		return
	}
	page, err := c.o.Events.Events(r.Context(), query(r))
	if err != nil {
		http.Error(w, "history unavailable", http.StatusServiceUnavailable)
		return
	}
	if page.Events == nil {
		page.Events = []history.Record{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(page)
}

type header struct{ Name, Value string }

type eventData struct {
	Rec        history.Record
	Headers    []header
	Body       string
	BodyJSON   bool
	Replayable bool
	Replayed   bool
}

func (c *Console) eventPage(w http.ResponseWriter, r *http.Request, s *session) {
	if c.noHistory(w, r, s) {
		return
	}
	rec, err := c.o.Events.Event(r.Context(), r.PathValue("id"))
	if errors.Is(err, history.ErrNotFound) && r.FormValue("replayed") != "" {
		// The replay's record joins the storage's next write: wait for it.
		c.render(w, r, http.StatusAccepted, "error", s, errorData{Status: http.StatusAccepted, Refresh: true,
			Message: "Replayed as " + r.PathValue("id") + ". Its record is being written; this page reloads in a moment."})
		return
	}
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	d := eventData{Rec: rec, Body: rec.Body, Replayable: rec.Kind == history.Accepted && c.o.Pipeline != nil,
		Replayed: r.FormValue("replayed") != ""}
	for k, v := range rec.Headers {
		d.Headers = append(d.Headers, header{k, v})
	}
	sort.Slice(d.Headers, func(i, j int) bool { return d.Headers[i].Name < d.Headers[j].Name })
	var pretty bytes.Buffer
	if rec.Body != "" && json.Valid([]byte(rec.Body)) && json.Indent(&pretty, []byte(rec.Body), "", "  ") == nil {
		d.Body, d.BodyJSON = pretty.String(), true
	}
	c.render(w, r, http.StatusOK, "event", s, d)
}

func (c *Console) replay(w http.ResponseWriter, r *http.Request, s *session) {
	if c.noHistory(w, r, s) {
		return
	}
	if c.o.Pipeline == nil {
		c.refuse(w, r, http.StatusNotImplemented, "Replay is not available.")
		return
	}
	ctx := r.Context()
	rec, err := c.o.Events.Event(ctx, r.PostFormValue("id"))
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	if rec.Kind != history.Accepted {
		c.refuse(w, r, http.StatusConflict, "Only accepted events keep a body to replay.")
		return
	}
	delivery, err := history.ReplayDelivery(ctx, rec.Delivery, c.o.Events.Event)
	if errors.Is(err, history.ErrTooManyReplays) {
		c.refuse(w, r, http.StatusConflict, "This event was replayed too often.")
		return
	}
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	routes, err := c.o.Pipeline.Replay(ctx, rec, delivery)
	if err != nil {
		c.refuse(w, r, http.StatusUnprocessableEntity, "The replay failed: "+err.Error())
		return
	}
	c.o.Logger.Info("event replayed from the console", "delivery", rec.Delivery, "new_delivery", delivery, "routes", routes)
	http.Redirect(w, r, Prefix+"events/"+url.PathEscape(delivery)+"?replayed=1", http.StatusSeeOther)
}

type deadData struct {
	Route    string
	Dead     []queue.DeadLetter
	Total    int
	Replayed string
}

func (c *Console) deadPage(w http.ResponseWriter, r *http.Request, s *session) {
	if c.o.DeadLetters == nil {
		c.refuse(w, r, http.StatusNotImplemented, "Dead letters are not available.")
		return
	}
	route := r.FormValue("route")
	list, err := c.o.DeadLetters.ListDead(r.Context(), route)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].DeadAt.After(list[j].DeadAt) })
	d := deadData{Route: route, Total: len(list), Replayed: r.FormValue("replayed")}
	d.Dead = list[:min(len(list), maxListed)]
	c.render(w, r, http.StatusOK, "dead", s, d)
}

func (c *Console) replayDead(w http.ResponseWriter, r *http.Request, s *session) {
	if c.o.DeadLetters == nil {
		c.refuse(w, r, http.StatusNotImplemented, "Dead letters are not available.")
		return
	}
	id := r.PostFormValue("id")
	n, err := c.o.DeadLetters.ReplayDead(r.Context(), id)
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	if n == 0 {
		c.refuse(w, r, http.StatusNotFound, "No such dead letter: it was replayed or dropped meanwhile.")
		return
	}
	c.o.Logger.Info("dead letters replayed from the console", "id", id, "count", n)
	http.Redirect(w, r, Prefix+"dead?replayed="+strconv.Itoa(n), http.StatusSeeOther)
}

type chatsData struct {
	Route, Key string
	Chats      []queue.Chat
	Total      int
	Reset      bool
}

func (c *Console) chatsPage(w http.ResponseWriter, r *http.Request, s *session) {
	if c.o.Chats == nil {
		c.refuse(w, r, http.StatusNotImplemented, "Conversations are not available.")
		return
	}
	list, err := c.o.Chats.ListChats(r.Context())
	if err != nil {
		c.fail(w, r, s, err)
		return
	}
	d := chatsData{Route: r.FormValue("route"), Key: r.FormValue("key"), Reset: r.FormValue("reset") != ""}
	_, keyGiven := r.Form["key"]
	kept := list[:0]
	for _, ch := range list {
		if (d.Route == "" || ch.Route == d.Route) && (!keyGiven || ch.ConversationKey == d.Key) {
			kept = append(kept, ch)
		}
	}
	sort.SliceStable(kept, func(i, j int) bool { return kept[i].UpdatedAt.After(kept[j].UpdatedAt) })
	d.Total = len(kept)
	d.Chats = kept[:min(len(kept), maxListed)]
	c.render(w, r, http.StatusOK, "chats", s, d)
}

func (c *Console) resetChat(w http.ResponseWriter, r *http.Request, s *session) {
	if c.o.Chats == nil {
		c.refuse(w, r, http.StatusNotImplemented, "Conversations are not available.")
		return
	}
	route, key := r.PostFormValue("route"), r.PostFormValue("key")
	if err := c.o.Chats.DeleteChat(r.Context(), route, key); err != nil {
		c.fail(w, r, s, err)
		return
	}
	c.o.Logger.Info("conversation reset from the console", "route", route, "conversation", key)
	http.Redirect(w, r, Prefix+"chats?reset=1&route="+url.QueryEscape(route), http.StatusSeeOther)
}

type dryRunData struct {
	Routes   []Route
	Route    string
	Template string
	Filter   string
	Last     int
	IDs      string
	Ran      bool
	Error    string
	Results  []history.Trial
}

func (c *Console) dryRunForm(r *http.Request) dryRunData {
	d := dryRunData{Routes: c.o.Routes(), Route: r.FormValue("route"), IDs: r.FormValue("events"), Last: defaultDryRun}
	if d.Route == "" && len(d.Routes) > 0 {
		d.Route = d.Routes[0].Name
	}
	for _, rt := range d.Routes {
		if rt.Name == d.Route {
			d.Template, d.Filter = rt.Template, rt.Filter
		}
	}
	if n, err := strconv.Atoi(r.FormValue("last")); err == nil {
		d.Last = n
	}
	return d
}

func (c *Console) dryRunPage(w http.ResponseWriter, r *http.Request, s *session) {
	c.render(w, r, http.StatusOK, "dryrun", s, c.dryRunForm(r))
}

func (c *Console) dryRun(w http.ResponseWriter, r *http.Request, s *session) {
	if c.noHistory(w, r, s) {
		return
	}
	d := c.dryRunForm(r)
	d.Template, d.Filter, d.Ran = r.PostFormValue("template"), r.PostFormValue("filter"), true
	trials, err := c.runDry(r, d)
	if err != nil {
		d.Error = err.Error()
		c.render(w, r, http.StatusBadRequest, "dryrun", s, d)
		return
	}
	d.Results = trials
	c.render(w, r, http.StatusOK, "dryrun", s, d)
}

func (c *Console) runDry(r *http.Request, d dryRunData) ([]history.Trial, error) {
	if c.o.Pipeline == nil {
		return nil, errors.New("dry runs are not available")
	}
	ctx := r.Context()
	ids := strings.FieldsFunc(d.IDs, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
	if len(ids) > maxDryRunEvents || d.Last > maxDryRunEvents {
		return nil, fmt.Errorf("at most %d events", maxDryRunEvents)
	}
	var recs []history.Record
	for _, id := range ids {
		rec, err := c.o.Events.Event(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("event %s: %w", id, err)
		}
		recs = append(recs, rec)
	}
	if len(ids) == 0 {
		if d.Last <= 0 {
			return nil, errors.New("give event ids, or how many of the last events to render")
		}
		src, ok := c.o.Pipeline.RouteSource(d.Route)
		if !ok {
			return nil, fmt.Errorf("no such route: %s", d.Route)
		}
		page, err := c.o.Events.Events(ctx, history.Query{Source: src, Outcome: history.Accepted, Limit: d.Last})
		if err != nil {
			return nil, err
		}
		for _, sum := range page.Events {
			if rec, err := c.o.Events.Event(ctx, sum.ID); err == nil {
				recs = append(recs, rec)
			}
		}
	}
	if len(recs) == 0 {
		return nil, errors.New("no events to render: send one to the route's source first")
	}
	return c.o.Pipeline.DryRun(ctx, d.Route, d.Template, d.Filter, recs)
}
