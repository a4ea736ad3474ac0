package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/relayd/relayd/internal/reply"
	replyfake "github.com/relayd/relayd/internal/reply/fake"
	"github.com/relayd/relayd/internal/xtest"
)

func TestMockGitHubPrintsComments(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out xtest.Buffer
	done := make(chan error, 1)
	go func() {
		done <- serveMockGitHub(ctx, ln, replyfake.GitHubOptions{PathPrefix: "/api/v3"}, &out, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	r, err := reply.Compile("ci-failures", []reply.Spec{
		{Type: reply.TypeGitHub, Token: "ghp_anything", APIURL: "http://" + ln.Addr().String() + "/api/v3"},
	}, "", reply.Options{})
	if err != nil {
		t.Fatal(err)
	}
	posts, err := r.Plan(reply.Reply{Route: "ci-failures", Text: "The failure is a flaky test.\n", Events: []reply.Event{
		{Target: &reply.Target{Repo: "octo-org/octo-repo", Number: 7}},
		{Target: &reply.Target{Repo: "octo-org/octo-repo", SHA: strings.Repeat("ab", 20)}},
	}})
	if err != nil || len(posts) != 2 {
		t.Fatalf("Plan = %+v, %v", posts, err)
	}
	for _, p := range posts {
		if err := r.Send(ctx, p); err != nil {
			t.Fatalf("send: %v", err)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	got := out.String()
	for _, want := range []string{
		"on octo-org/octo-repo#7 ──\nThe failure is a flaky test.\n",
		"on octo-org/octo-repo@" + strings.Repeat("ab", 20) + " ──\nThe failure is a flaky test.\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("stdout lacks %q:\n%s", want, got)
		}
	}
}

func TestMockGitHubFlags(t *testing.T) {
	for _, args := range [][]string{
		{"mock-github", "--rate-limit", "0"},
		{"mock-github", "--prefix", "api/v3"},
	} {
		var stderr bytes.Buffer
		if code := run(context.Background(), args, io.Discard, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2 (%s)", args, code, stderr.String())
		}
	}
}
