package reply

import (
	"encoding/json"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// Target is where a github_comment goes: an issue or pull request of a
// repository, or, when the event names none, a commit.
type Target struct {
	Repo   string `json:"repo"`             // "owner/name"
	Number int64  `json:"number,omitempty"` // issue or pull request
	SHA    string `json:"sha,omitempty"`    // a commit, when Number is 0
}

// String reads "owner/name#12" or "owner/name@3484a3f…".
func (t Target) String() string {
	if t.Number > 0 {
		return t.Repo + "#" + strconv.FormatInt(t.Number, 10)
	}
	return t.Repo + "@" + t.SHA
}

// Valid reports whether t names a repository and exactly one of an issue
// number or a commit, each in a form safe to put in a URL path.
func (t Target) Valid() bool {
	if !repoRE.MatchString(t.Repo) || strings.Contains(t.Repo, "..") {
		return false
	}
	if t.Number > 0 {
		return t.SHA == ""
	}
	return t.Number == 0 && shaRE.MatchString(t.SHA)
}

// path is the REST path (below the API URL) that creates a comment on t.
func (t Target) path() string {
	if t.Number > 0 {
		return "/repos/" + t.Repo + "/issues/" + strconv.FormatInt(t.Number, 10) + "/comments"
	}
	return "/repos/" + t.Repo + "/commits/" + t.SHA + "/comments"
}

var (
	// GitHub owner and repository names: letters, digits, '-', '_', '.'.
	repoRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}/[A-Za-z0-9_.-]{1,100}$`)
	// A full SHA-1 or SHA-256 object name.
	shaRE = regexp.MustCompile(`^(?:[0-9a-f]{40}|[0-9a-f]{64})$`)
)

// FindTarget finds, in a GitHub event's parsed body, what a comment about it
// should go on, in this order: issue.number or pull_request.number; the
// first pull request of a workflow_run, check_run or check_suite; else the
// commit (the head_sha of a workflow_run, workflow_job, check_run or
// check_suite, or a push's after). The repository is repository.full_name.
//
// A pull request listed in a run but based in another repository (GitHub
// lists those for runs whose commit is also a fork's branch head) is
// skipped: its number means a different issue here. A push that deleted a
// branch (after is all zeros) has no target. ok is false when nothing
// usable is found.
func FindTarget(body any) (t Target, ok bool) {
	m, _ := body.(map[string]any)
	repo, _ := str(dig(m, "repository", "full_name"))
	t.Repo = repo
	if !repoRE.MatchString(repo) {
		return Target{}, false
	}
	for _, k := range []string{"issue", "pull_request"} {
		if n, ok := number(dig(m, k, "number")); ok {
			t.Number = n
			return t, true
		}
	}
	repoID, hasID := number(dig(m, "repository", "id"))
	for _, k := range []string{"workflow_run", "check_run", "check_suite"} {
		prs, _ := dig(m, k, "pull_requests").([]any)
		for _, pr := range prs {
			pm, _ := pr.(map[string]any)
			n, ok := number(pm["number"])
			if !ok {
				continue
			}
			if base, ok := number(dig(pm, "base", "repo", "id")); ok && hasID && base != repoID {
				continue
			}
			t.Number = n
			return t, true
		}
	}
	for _, k := range []string{"workflow_run", "workflow_job", "check_run", "check_suite"} {
		if sha, _ := str(dig(m, k, "head_sha")); commitSHA(sha) {
			t.SHA = sha
			return t, true
		}
	}
	if sha, _ := str(m["after"]); commitSHA(sha) {
		t.SHA = sha
		return t, true
	}
	return Target{}, false
}

// Targets returns the distinct targets of a turn's events (their parsed
// bodies), in the order they first appear: a coalesced turn comments once
// on each pull request, issue or commit it is about.
func Targets(bodies ...any) []Target {
	var out []Target
	seen := map[Target]bool{}
	for _, b := range bodies {
		t, ok := FindTarget(b)
		if !ok || seen[t] {
			continue
		}
		seen[t] = true
		out = append(out, t)
	}
	return out
}

func commitSHA(s string) bool {
	return shaRE.MatchString(s) && strings.Trim(s, "0") != ""
}

func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func str(v any) (string, bool) {
	s, ok := v.(string)
	return s, ok
}

// number reads a positive integer as any JSON decoder may give it.
func number(v any) (int64, bool) {
	var n int64
	switch x := v.(type) {
	case int64:
		n = x
	case int:
		n = int64(x)
	case float64:
		if x != math.Trunc(x) || x > math.MaxInt64/2 {
			return 0, false
		}
		n = int64(x)
	case json.Number:
		i, err := x.Int64()
		if err != nil {
			return 0, false
		}
		n = i
	default:
		return 0, false
	}
	return n, n > 0
}
