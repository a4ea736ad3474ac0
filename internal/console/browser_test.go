package console_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/relayd/relayd/internal/operator/fake"
)

// chromium finds a browser, or skips: CI installs Debian's chromium.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("RELAYD_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium binary found (apt-get install chromium, or set RELAYD_CHROMIUM): skipping the browser tests")
	return ""
}

// browser is one headless chromium tab that notes every dialog, uncaught
// exception and Content-Security-Policy report.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	dialogs  []string
	problems []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 900), chromedp.UserDataDir(t.TempDir()))
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(func() { bcancel(); acancel(); cancel() })
	b := &browser{t: t, ctx: bctx}
	err := chromedp.Listen(bctx, func(ev any) {
		if e, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			b.mu.Lock()
			b.dialogs = append(b.dialogs, string(e.Type)+": "+e.Message)
			b.mu.Unlock()
			// A dialog blocks the page: dismiss it, off the event loop.
			go func() {
				_, _ = chromedp.Call(bctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{})
			}()
		}
	})
	if err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	go func() {
		for m, err := range chromedp.Console(bctx) {
			if err != nil {
				return
			}
			if m.IsException() || strings.Contains(m.Text, "Content Security Policy") {
				b.mu.Lock()
				b.problems = append(b.problems, m.String())
				b.mu.Unlock()
			}
		}
	}()
	t.Cleanup(b.check)
	return b
}

// check fails the test for any dialog, exception or CSP report.
func (b *browser) check() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.dialogs) > 0 {
		b.t.Errorf("a JavaScript dialog opened: %q", b.dialogs)
	}
	if len(b.problems) > 0 {
		b.t.Errorf("the page reported problems: %q", b.problems)
	}
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

func eval[T any](b *browser, js string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// text is what the page shows in sel (innerText: rendered text only).
func (b *browser) text(sel string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Text(sel))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return v
}

// await waits until sel is in the page. Unlike WaitVisible it survives the
// navigation a click or a submit starts: each try is a fresh evaluation.
func (b *browser) await(sel string) {
	b.t.Helper()
	js := fmt.Sprintf(`!!document.querySelector(%q)`, sel)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](js)); err == nil && ok {
			return
		}
		if time.Now().After(deadline) || b.ctx.Err() != nil {
			body, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string]("document.documentElement.outerHTML"))
			b.t.Fatalf("%s did not appear; the page is %s:\n%s", sel, b.location(), body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (b *browser) location() string {
	loc, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string]("location.href"))
	return loc
}

func (b *browser) waitText(sel, want string) {
	b.t.Helper()
	js := fmt.Sprintf(`(document.querySelector(%q)||{innerText:""}).innerText.includes(%q)`, sel, want)
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](js, chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		b.t.Fatalf("waiting for %q in %s: %v", want, sel, err)
	}
}

func (b *browser) shows(sel string, wants ...string) {
	b.t.Helper()
	got := b.text(sel)
	for _, w := range wants {
		if !strings.Contains(got, w) {
			b.t.Errorf("%s does not show %q; it shows:\n%s", sel, w, got)
		}
	}
}

// noScriptRan checks that no payload ran: the title is the page's and the
// globals a payload sets are unset; no element the payloads describe exists.
func (b *browser) noScriptRan(title string) {
	b.t.Helper()
	if got := eval[string](b, "document.title"); got != title {
		b.t.Errorf("document.title = %q, want %q: a payload ran", got, title)
	}
	if got := eval[string](b, "typeof window.pwned"); got != "undefined" {
		b.t.Errorf("window.pwned is %s: a payload ran", got)
	}
	if n := eval[int](b, `document.querySelectorAll("main img, main script, [onerror]").length`); n != 0 {
		b.t.Errorf("%d elements from a payload in the page", n)
	}
	if n := eval[int](b, `[...document.querySelectorAll("a")].filter(a => a.protocol === "javascript:").length`); n != 0 {
		b.t.Errorf("%d javascript: links in the page", n)
	}
}

// screenshot keeps a PNG of the page in $RELAYD_SCREENSHOTS, when set.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	dir := os.Getenv("RELAYD_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func TestBrowserConsole(t *testing.T) {
	b := newBrowser(t)
	r := startRelay(t, "")
	evil := r.seed("")
	rec1, _ := r.event("d-1", "")
	evilRec, _ := r.event(evil, "")

	// The list: every kind of request, newest first, payloads as text.
	b.do(chromedp.Navigate(r.admin+"/ui/"), chromedp.WaitVisible("#events tbody tr"))
	b.shows("#events", "d-1", "d-2", "ci-failures: delivered", "ci-failures: filtered", "duplicate", "rejected 401",
		xssScript+xssImg, xssImg+xssScript)
	b.noScriptRan("Events · relayd")
	b.screenshot("console-events.png")

	// Live: a new event appears without a reload.
	r.post("workflow_run", "d-live", workflowRun(t, "octo/live", "failure"), nil)
	b.waitText("#events tbody tr:first-child", "d-live")
	b.noScriptRan("Events · relayd")

	// Keys: / focuses the filter, j selects the first row, Enter opens it.
	b.do(chromedp.KeyEvent("/"))
	if id := eval[string](b, "document.activeElement.id"); id != "filter-first" {
		t.Errorf("after /, focus is on %q, want the filter", id)
	}
	b.do(chromedp.KeyEvent("\x1b"), chromedp.KeyEvent("j"), chromedp.KeyEvent("\r"))
	b.await("#kind")
	b.shows("main", "d-live")

	// The event page: outcome, turn, reply, chat, links.
	b.do(chromedp.Navigate(r.admin+"/ui/events/"+rec1.ID), chromedp.WaitVisible("#kind"))
	b.shows("main", "delivered", "CI failed on octo/api (master)", "The test suite failed in TestLogin",
		rec1.Routes[0].ChatID, "x-github-event", `"full_name": "octo/api"`)
	b.noScriptRan("Event · relayd")
	b.screenshot("console-event.png")

	// Replay: a new delivery reaches the fake Operator.
	before := delivered(r.fake)
	b.do(chromedp.Click("#replay"))
	b.await("#replayed")
	if loc := eval[string](b, "location.pathname"); !strings.HasSuffix(loc, "/d-1.replay-1") {
		t.Errorf("after Replay the page is %s, want the new delivery d-1.replay-1", loc)
	}
	waitFor(t, "the replayed delivery at the Operator", func() bool { return delivered(r.fake) == before+1 })
	last := r.fake.Requests()[len(r.fake.Requests())-1]
	if !strings.Contains(last.Text, "CI failed on octo/api") {
		t.Errorf("the replay sent %q", last.Text)
	}

	// The hostile event: every field shows as text and nothing runs.
	b.do(chromedp.Navigate(r.admin+"/ui/events/"+evilRec.ID), chromedp.WaitVisible("#body"))
	b.shows("main", xssScript, xssImg, xssLink, xssReply)
	b.noScriptRan("Event · relayd")
	b.do(chromedp.Navigate(r.admin+"/ui/events/d-evil-event"), chromedp.WaitVisible("#kind"))
	b.shows("main", xssImg+xssScript)
	b.noScriptRan("Event · relayd")

	// Dry run with an edited template.
	b.do(chromedp.Navigate(r.admin+"/ui/dry-run?route=ci-failures&events="+url.QueryEscape(rec1.ID+","+evilRec.ID)),
		chromedp.WaitVisible("#template"),
		chromedp.SetValue("#template", "EDITED {{ .event }} for {{ .body.repository.full_name }}"),
		chromedp.Click("#run"))
	b.await("#results")
	b.shows("#results", "EDITED workflow_run for octo/api", "matched", xssScript)
	b.noScriptRan("Dry run · relayd")
	b.screenshot("console-dryrun.png")

	// An unknown id: the error page, the id as text.
	b.do(chromedp.Navigate(r.admin+"/ui/events/"+url.PathEscape(xssScript)), chromedp.WaitVisible("main"))
	b.shows("main", "No such event")
	b.noScriptRan("Error · relayd")
	b.screenshot("console-error.png")

	// Conversations: Reset forgets one.
	b.do(chromedp.Navigate(r.admin+"/ui/chats?route=ci-failures&key=octo%2Fweb"), chromedp.WaitVisible("table.events"))
	b.shows("table.events", "octo/web")
	b.screenshot("console-chats.png")
	b.do(chromedp.Click("table.events button"))
	b.await(".flash.ok")
	if strings.Contains(b.text("main"), "octo/web") {
		t.Error("the reset conversation is still listed")
	}

	// Dead letters: one the Operator refused for good, replayed.
	b.do(chromedp.Navigate(r.admin+"/ui/dead"), chromedp.WaitVisible(".empty"))
	b.screenshot("console-dead-empty.png")
	r.fake.FailNext(1, fake.Fault{Status: http.StatusUnprocessableEntity})
	r.post("workflow_run", "d-dead", workflowRun(t, "octo/dead", "failure"), nil)
	waitFor(t, "a dead letter", func() bool { rec, ok := r.event("d-dead", ""); return ok && rec.Routes[0].Outcome == "dead" })
	before = delivered(r.fake)
	b.do(chromedp.Navigate(r.admin+"/ui/dead"), chromedp.WaitVisible("table.events"))
	b.shows("table.events", "d-dead", "ci-failures")
	b.screenshot("console-dead.png")
	b.do(chromedp.Click("table.events button"))
	b.await(".flash.ok")
	waitFor(t, "the dead letter delivered", func() bool { return delivered(r.fake) == before+1 })
}

func TestBrowserLogin(t *testing.T) {
	b := newBrowser(t)
	r := startRelay(t, "  admin_token: "+adminToken)
	r.post("workflow_run", "d-1", workflowRun(t, "octo/api", "failure"), nil)
	rec := r.waitDelivered("d-1", adminToken)

	b.do(chromedp.Navigate(r.admin+"/ui/"), chromedp.WaitVisible("#token"))
	b.do(chromedp.SendKeys("#token", "not-the-token"), chromedp.Submit("#token"))
	b.await(".flash.err")
	b.do(chromedp.SendKeys("#token", adminToken), chromedp.Submit("#token"))
	b.await("#events tbody tr")
	b.shows("#events", "d-1")
	if c := eval[string](b, "document.cookie"); c != "" {
		t.Errorf("the page can read cookies %q: the session cookie must be HttpOnly", c)
	}

	// The session alone does not make a state change: the CSRF token must
	// come with it.
	b.do(chromedp.Navigate(r.admin+"/ui/events/"+rec.ID), chromedp.WaitVisible("#replay"))
	before := delivered(r.fake)
	post := `fetch("/ui/replay", {method: "POST", body: new URLSearchParams(%s)}).then(r => r.status + " " + new URL(r.url).pathname)`
	if got := eval[string](b, fmt.Sprintf(post, fmt.Sprintf(`{id: %q}`, rec.ID))); !strings.HasPrefix(got, "403 ") {
		t.Errorf("a POST without the CSRF token answered %s, want 403", got)
	}
	withToken := fmt.Sprintf(`{id: %q, csrf: document.querySelector("input[name=csrf]").value}`, rec.ID)
	if got := eval[string](b, fmt.Sprintf(post, withToken)); !strings.HasSuffix(got, " /ui/events/d-1.replay-1") {
		t.Errorf("a POST with the CSRF token answered %s, want the page of the new delivery", got)
	}
	waitFor(t, "the replay at the Operator", func() bool { return delivered(r.fake) == before+1 })

	// Another site's form is refused: SameSite=Strict keeps the cookie
	// home, and it has no CSRF token anyway.
	evilSite := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<form method="post" action="%s/ui/replay"><input name="id" value="%s"></form><script>document.forms[0].submit()</script>`, r.admin, rec.ID)
	}))
	defer evilSite.Close()
	other := strings.Replace(evilSite.URL, "127.0.0.1", "localhost", 1) // another site than the console's
	b.do(chromedp.Navigate(other))
	b.await("#error")
	b.shows("#error", "another site")
	if n := delivered(r.fake); n != before+1 {
		t.Errorf("the cross-site form made a delivery: %d, want %d", n, before+1)
	}

	// Log out: the console asks for the token again.
	b.do(chromedp.Navigate(r.admin+"/ui/"), chromedp.WaitVisible("#events"), chromedp.Click("button.link"))
	b.await("#token")
	b.do(chromedp.Navigate(r.admin+"/ui/"), chromedp.WaitVisible("#token"))
}
