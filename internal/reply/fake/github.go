package fake

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// GitHubOptions configure a fake GitHub.
type GitHubOptions struct {
	// Tokens are the accepted tokens, sent as "Authorization: Bearer T" or
	// "token T"; empty accepts any token (but one is still required).
	Tokens []string
	// PathPrefix is where the API sits on the server: "" as on
	// api.github.com, "/api/v3" as on GitHub Enterprise Server.
	PathPrefix string
	// Open makes every repository, issue, pull request and commit exist;
	// otherwise only those added with AddIssue and AddCommit do.
	Open bool
	// RateLimit is the number of requests per hour per token; 0 means
	// 5000, GitHub's for a personal token.
	RateLimit int
	// Now is the clock for created_at and rate-limit resets; nil: time.Now.
	Now func() time.Time
	// OnComment, when set, is called with every comment created.
	OnComment func(Comment)
}

// Comment is a comment the fake GitHub created.
type Comment struct {
	ID        int64     `json:"id"`
	Repo      string    `json:"repo"`
	Number    int64     `json:"number,omitempty"` // issue or pull request
	SHA       string    `json:"sha,omitempty"`    // commit comments
	Body      string    `json:"body"`
	Scheme    string    `json:"scheme"` // the Authorization scheme used: Bearer or token
	CreatedAt time.Time `json:"created_at"`
}

// GitHub is a fake of the GitHub REST API's comment endpoints:
// POST /repos/{owner}/{repo}/issues/{number}/comments and
// POST /repos/{owner}/{repo}/commits/{sha}/comments. It checks the token,
// answers 201 with the created comment, 401 without a valid token, 404 for
// an unknown repository, issue or pull request, 422 for an empty or too
// long body or an unknown commit, and 403 with x-ratelimit-remaining 0 and
// x-ratelimit-reset once a token has used its hourly requests. Every
// answer carries the x-ratelimit-* headers.
//
// Under {prefix}/_fake/, with no token: GET comments lists the comments;
// POST faults with {"next": N, "fault": {"status", "header", "body"}}
// answers the next N requests with the fault; DELETE faults drops them;
// POST rate-limit with {"reset_in": "90s"} uses up the hourly requests.
// It is safe for concurrent use.
type GitHub struct {
	o      GitHubOptions
	faults faults

	mu       sync.Mutex
	issues   map[string]bool // "owner/repo#12"
	commits  map[string]bool // "owner/repo@sha"
	comments []Comment
	nextID   int64
	used     map[string]int // per token in the current window
	reset    time.Time
}

// NewGitHub returns a fake GitHub; serve it with httptest or net/http.
func NewGitHub(o GitHubOptions) *GitHub {
	if o.RateLimit == 0 {
		o.RateLimit = 5000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.PathPrefix = strings.TrimRight(o.PathPrefix, "/")
	return &GitHub{o: o, issues: map[string]bool{}, commits: map[string]bool{}, used: map[string]int{}, nextID: 1000}
}

// AddIssue makes issue or pull request number exist in repo ("owner/name").
func (g *GitHub) AddIssue(repo string, number int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.issues[strings.ToLower(repo)+"#"+strconv.FormatInt(number, 10)] = true
}

// AddCommit makes commit sha exist in repo.
func (g *GitHub) AddCommit(repo, sha string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.commits[strings.ToLower(repo)+"@"+sha] = true
}

// Comments returns the comments created so far, oldest first.
func (g *GitHub) Comments() []Comment {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.comments)
}

// FailNext answers the next n requests with f instead of handling them.
func (g *GitHub) FailNext(n int, f Fault) { g.faults.add(n, f) }

// ClearFaults drops the faults not yet given.
func (g *GitHub) ClearFaults() { g.faults.clear() }

// ExhaustRateLimit uses up every token's requests until the window resets
// at reset: from now on each request gets GitHub's primary rate-limit 403.
func (g *GitHub) ExhaustRateLimit(reset time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reset = reset
	g.used = map[string]int{"*": g.o.RateLimit}
}

var (
	issuePath  = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/issues/([0-9]+)/comments$`)
	commitPath = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/commits/([0-9a-fA-F]{7,64})/comments$`)
)

const maxCommentChars = 65536

func (g *GitHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, g.o.PathPrefix)
	if !ok || path == "" {
		notFound(w)
		return
	}
	if strings.HasPrefix(path, "/_fake/") {
		g.control(w, r, path)
		return
	}
	token, scheme, ok := bearer(r.Header.Get("Authorization"))
	switch {
	case !ok:
		writeJSON(w, http.StatusUnauthorized, ghError("Requires authentication", "https://docs.github.com/rest"))
		return
	case len(g.o.Tokens) > 0 && !g.known(token):
		writeJSON(w, http.StatusUnauthorized, ghError("Bad credentials", "https://docs.github.com/rest"))
		return
	}
	if !g.rateHeaders(w, token) {
		return
	}
	if g.faults.serve(w) {
		return
	}
	var c Comment
	var resource string
	if m := issuePath.FindStringSubmatch(path); m != nil {
		c.Repo = m[1] + "/" + m[2]
		c.Number, _ = strconv.ParseInt(m[3], 10, 64)
		resource = "IssueComment"
	} else if m := commitPath.FindStringSubmatch(path); m != nil {
		c.Repo, c.SHA, resource = m[1]+"/"+m[2], strings.ToLower(m[3]), "CommitComment"
	} else {
		notFound(w)
		return
	}
	if r.Method != http.MethodPost {
		notFound(w) // GitHub answers 404 for methods a path does not take
		return
	}
	if c.Number > 0 && !g.exists(c.Repo, "#"+strconv.FormatInt(c.Number, 10)) {
		notFound(w)
		return
	}
	var in struct {
		Body *string `json:"body"`
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil || json.Unmarshal(data, &in) != nil {
		writeJSON(w, http.StatusBadRequest, ghError("Problems parsing JSON", "https://docs.github.com/rest/issues/comments#create-an-issue-comment"))
		return
	}
	switch {
	case in.Body == nil || strings.TrimSpace(*in.Body) == "":
		writeJSON(w, http.StatusUnprocessableEntity, validation(resource, "missing_field", ""))
		return
	case utf8.RuneCountInString(*in.Body) > maxCommentChars:
		writeJSON(w, http.StatusUnprocessableEntity, validation(resource, "custom", fmt.Sprintf("body is too long (maximum is %d characters)", maxCommentChars)))
		return
	}
	if c.SHA != "" && !g.exists(c.Repo, "@"+c.SHA) {
		writeJSON(w, http.StatusUnprocessableEntity, ghError("No commit found for SHA: "+c.SHA, "https://docs.github.com/rest/commits/comments#create-a-commit-comment"))
		return
	}
	c.Body, c.Scheme = *in.Body, scheme
	api := "http://" + r.Host + g.o.PathPrefix
	g.mu.Lock()
	g.nextID++
	c.ID, c.CreatedAt = g.nextID, g.o.Now().UTC().Truncate(time.Second)
	g.comments = append(g.comments, c)
	g.mu.Unlock()
	if g.o.OnComment != nil {
		g.o.OnComment(c)
	}
	out := map[string]any{
		"id": c.ID, "body": c.Body, "author_association": "NONE",
		"user":       map[string]any{"login": "relayd-bot", "id": 1, "type": "Bot"},
		"created_at": c.CreatedAt.Format(time.RFC3339), "updated_at": c.CreatedAt.Format(time.RFC3339),
	}
	if c.Number > 0 {
		out["node_id"] = "IC_kwDO" + strconv.FormatInt(c.ID, 10)
		out["url"] = fmt.Sprintf("%s/repos/%s/issues/comments/%d", api, c.Repo, c.ID)
		out["html_url"] = fmt.Sprintf("https://github.com/%s/issues/%d#issuecomment-%d", c.Repo, c.Number, c.ID)
		out["issue_url"] = fmt.Sprintf("%s/repos/%s/issues/%d", api, c.Repo, c.Number)
	} else {
		out["node_id"] = "CC_kwDO" + strconv.FormatInt(c.ID, 10)
		out["url"] = fmt.Sprintf("%s/repos/%s/comments/%d", api, c.Repo, c.ID)
		out["html_url"] = fmt.Sprintf("https://github.com/%s/commit/%s#commitcomment-%d", c.Repo, c.SHA, c.ID)
		out["commit_id"], out["path"], out["position"], out["line"] = c.SHA, nil, nil, nil
	}
	w.Header().Set("Location", out["url"].(string))
	writeJSON(w, http.StatusCreated, out)
}

func (g *GitHub) known(token string) bool {
	for _, t := range g.o.Tokens {
		if subtle.ConstantTimeCompare([]byte(t), []byte(token)) == 1 {
			return true
		}
	}
	return false
}

func (g *GitHub) exists(repo, key string) bool {
	if g.o.Open {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if key[0] == '#' {
		return g.issues[strings.ToLower(repo)+key]
	}
	return g.commits[strings.ToLower(repo)+key]
}

// rateHeaders counts the request against its token, sets the
// x-ratelimit-* headers, and answers 403 when none are left.
func (g *GitHub) rateHeaders(w http.ResponseWriter, token string) bool {
	g.mu.Lock()
	now := g.o.Now()
	if g.reset.IsZero() || !now.Before(g.reset) {
		g.reset, g.used = now.Add(time.Hour).Truncate(time.Second), map[string]int{}
	}
	used := max(g.used[token], g.used["*"])
	over := used >= g.o.RateLimit
	if !over {
		used++
		g.used[token] = used
	}
	reset := g.reset
	g.mu.Unlock()
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(g.o.RateLimit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(g.o.RateLimit-used))
	h.Set("X-RateLimit-Used", strconv.Itoa(used))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
	h.Set("X-RateLimit-Resource", "core")
	if over {
		f := GitHubRateLimited(reset)
		writeJSON(w, f.Status, json.RawMessage(f.Body))
		return false
	}
	return true
}

// bearer reads "Bearer T" or "token T" (GitHub takes both).
func bearer(h string) (token, scheme string, ok bool) {
	scheme, token, ok = strings.Cut(strings.TrimSpace(h), " ")
	if !ok || (!strings.EqualFold(scheme, "bearer") && !strings.EqualFold(scheme, "token")) {
		return "", "", false
	}
	token = strings.TrimSpace(token)
	return token, scheme, token != ""
}

func ghError(msg, doc string) map[string]any {
	return map[string]any{"message": msg, "documentation_url": doc}
}

func validation(resource, code, msg string) map[string]any {
	e := map[string]any{"resource": resource, "code": code, "field": "body"}
	if msg != "" {
		e["message"] = msg
	}
	return map[string]any{
		"message": "Validation Failed", "errors": []any{e},
		"documentation_url": "https://docs.github.com/rest/issues/comments#create-an-issue-comment",
	}
}

func notFound(w http.ResponseWriter) {
	writeJSON(w, http.StatusNotFound, ghError("Not Found", "https://docs.github.com/rest"))
}

// control serves the /_fake/ surface described on GitHub.
func (g *GitHub) control(w http.ResponseWriter, r *http.Request, path string) {
	switch r.Method + " " + path {
	case "GET /_fake/comments":
		writeJSON(w, http.StatusOK, g.Comments())
	case "POST /_fake/faults":
		var in struct {
			Next  int    `json:"next"`
			Fault *Fault `json:"fault"`
		}
		if json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in) != nil || in.Next < 1 || in.Fault == nil || in.Fault.Status < 100 || in.Fault.Status > 599 {
			writeJSON(w, http.StatusBadRequest, ghError(`want {"next": N >= 1, "fault": {"status": 100-599, "header": {…}, "body": "…"}}`, ""))
			return
		}
		g.FailNext(in.Next, *in.Fault)
		w.WriteHeader(http.StatusNoContent)
	case "DELETE /_fake/faults":
		g.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	case "POST /_fake/rate-limit":
		var in struct {
			ResetIn string `json:"reset_in"`
		}
		d, err := time.Duration(0), error(nil)
		if err = json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in); err == nil {
			d, err = time.ParseDuration(in.ResetIn)
		}
		if err != nil || d <= 0 {
			writeJSON(w, http.StatusBadRequest, ghError(`want {"reset_in": "90s"}`, ""))
			return
		}
		g.ExhaustRateLimit(g.o.Now().Add(d))
		w.WriteHeader(http.StatusNoContent)
	default:
		notFound(w)
	}
}
