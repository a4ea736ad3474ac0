package reply_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/relayd/relayd/internal/reply"
	"github.com/relayd/relayd/internal/samples"
	"github.com/relayd/relayd/internal/xtest"
)

// sample is a real GitHub payload, parsed as ingest presents bodies.
func sample(t testing.TB, event, action string) any {
	t.Helper()
	data, err := samples.GitHub(event, action)
	if err != nil {
		t.Fatal(err)
	}
	return xtest.DecodeJSON(t, data)
}

const runSHA = "3484a3fb816e0859fd6e1cea078d76385ff50625"

func TestFindTargetOnGitHubPayloads(t *testing.T) {
	tests := []struct {
		event, action string
		want          reply.Target
		ok            bool
	}{
		{"issues", "opened", reply.Target{Repo: "Codertocat/Hello-World", Number: 1}, true},
		{"pull_request", "opened", reply.Target{Repo: "Codertocat/Hello-World", Number: 2}, true},
		// The check run lists its pull request, based in the same repository.
		{"check_run", "completed", reply.Target{Repo: "Codertocat/Hello-World", Number: 2}, true},
		{"workflow_run", "completed", reply.Target{Repo: "octo-org/octo-repo", SHA: runSHA}, true},
		// This run lists a pull request of another repository
		// (Codertocat/Hello-World): #2 of octo-org/octo-repo is not it, so
		// the comment goes on the run's commit.
		{"workflow_run", "completed.with-pull-requests", reply.Target{Repo: "octo-org/octo-repo", SHA: runSHA}, true},
		{"workflow_job", "completed", reply.Target{Repo: "Codertocat/Hello-World", SHA: runSHA}, true},
		// A push that deleted a branch: after is all zeros.
		{"push", "", reply.Target{}, false},
		{"ping", "", reply.Target{}, false},
		{"release", "published", reply.Target{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.event+"/"+tt.action, func(t *testing.T) {
			got, ok := reply.FindTarget(sample(t, tt.event, tt.action))
			if got != tt.want || ok != tt.ok {
				t.Errorf("FindTarget = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
			if ok && !got.Valid() {
				t.Errorf("target %+v not valid", got)
			}
		})
	}
}

func TestFindTargetShapes(t *testing.T) {
	sha := "ec26c3e57ca3a959ca5aad62de7213c562f8c821"
	repo := map[string]any{"full_name": "o/r", "id": int64(7)}
	tests := []struct {
		name string
		body any
		want reply.Target
		ok   bool
	}{
		{"not an object", "text", reply.Target{}, false},
		{"nil", nil, reply.Target{}, false},
		{"no repository", map[string]any{"issue": map[string]any{"number": int64(3)}}, reply.Target{}, false},
		{"repository name with a path", map[string]any{"repository": map[string]any{"full_name": "o/r/../x"}, "issue": map[string]any{"number": int64(3)}}, reply.Target{}, false},
		{"float number", map[string]any{"repository": repo, "issue": map[string]any{"number": 3.0}}, reply.Target{Repo: "o/r", Number: 3}, true},
		{"json.Number", map[string]any{"repository": repo, "pull_request": map[string]any{"number": json.Number("4")}}, reply.Target{Repo: "o/r", Number: 4}, true},
		{"fractional number ignored", map[string]any{"repository": repo, "issue": map[string]any{"number": 3.5}}, reply.Target{}, false},
		{"check_suite pull request", map[string]any{"repository": repo, "check_suite": map[string]any{
			"head_sha": sha, "pull_requests": []any{map[string]any{"number": int64(9), "base": map[string]any{"repo": map[string]any{"id": int64(7)}}}},
		}}, reply.Target{Repo: "o/r", Number: 9}, true},
		{"first pull request of this repository", map[string]any{"repository": repo, "workflow_run": map[string]any{
			"head_sha": sha, "pull_requests": []any{
				map[string]any{"number": int64(1), "base": map[string]any{"repo": map[string]any{"id": int64(8)}}},
				map[string]any{"number": int64(2), "base": map[string]any{"repo": map[string]any{"id": int64(7)}}},
			},
		}}, reply.Target{Repo: "o/r", Number: 2}, true},
		{"check_suite commit", map[string]any{"repository": repo, "check_suite": map[string]any{"head_sha": sha, "pull_requests": []any{}}}, reply.Target{Repo: "o/r", SHA: sha}, true},
		{"push after", map[string]any{"repository": repo, "after": sha}, reply.Target{Repo: "o/r", SHA: sha}, true},
		{"short sha ignored", map[string]any{"repository": repo, "after": "ec26c3e"}, reply.Target{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := reply.FindTarget(tt.body)
			if got != tt.want || ok != tt.ok {
				t.Errorf("FindTarget = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestTargetsOfACoalescedTurn(t *testing.T) {
	bodies := []any{
		sample(t, "pull_request", "opened"),    // Codertocat/Hello-World#2
		sample(t, "check_run", "completed"),    // the same pull request
		sample(t, "workflow_run", "completed"), // octo-org/octo-repo@3484a3f
		sample(t, "push", ""),                  // none
		sample(t, "issues", "opened"),          // Codertocat/Hello-World#1
		sample(t, "workflow_run", "completed"), // the same commit again
		sample(t, "pull_request", "opened"),    // #2 again
		sample(t, "workflow_job", "completed"), // Codertocat/Hello-World@3484a3f: another repository's commit
	}
	want := []reply.Target{
		{Repo: "Codertocat/Hello-World", Number: 2},
		{Repo: "octo-org/octo-repo", SHA: runSHA},
		{Repo: "Codertocat/Hello-World", Number: 1},
		{Repo: "Codertocat/Hello-World", SHA: runSHA},
	}
	if got := reply.Targets(bodies...); !reflect.DeepEqual(got, want) {
		t.Errorf("Targets = %+v\nwant %+v", got, want)
	}
	if got := reply.Targets(); got != nil {
		t.Errorf("Targets() = %+v", got)
	}
}

func TestTargetValid(t *testing.T) {
	for _, tt := range []struct {
		t    reply.Target
		want bool
	}{
		{reply.Target{Repo: "o/r", Number: 1}, true},
		{reply.Target{Repo: "o/r", SHA: runSHA}, true},
		{reply.Target{Repo: "o/r"}, false},
		{reply.Target{Repo: "o/r", Number: 1, SHA: runSHA}, false},
		{reply.Target{Repo: "o/r", SHA: "HEAD"}, false},
		{reply.Target{Repo: "o/..", Number: 1}, false},
		{reply.Target{Repo: "o/r?x=1", Number: 1}, false},
		{reply.Target{Repo: "r", Number: 1}, false},
	} {
		if got := tt.t.Valid(); got != tt.want {
			t.Errorf("%+v.Valid() = %v", tt.t, got)
		}
	}
}
