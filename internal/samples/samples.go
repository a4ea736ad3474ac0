// Package samples embeds real webhook payloads, for `relayd send` and tests.
package samples

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

//go:embed github
var files embed.FS

// GitHub returns the sample payload for a GitHub event (the X-GitHub-Event
// value). When the event has several samples, the first by name is used
// unless action names one ("completed", "opened").
func GitHub(event, action string) ([]byte, error) {
	entries, err := fs.ReadDir(files, "github/"+event)
	if err != nil {
		return nil, fmt.Errorf("no sample for GitHub event %q (have: %s)", event, strings.Join(GitHubEvents(), ", "))
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		if action == "" || strings.HasPrefix(n, action+".") {
			return files.ReadFile("github/" + event + "/" + n)
		}
	}
	return nil, fmt.Errorf("no sample for GitHub event %q action %q", event, action)
}

// GitHubEvents lists the events that have samples.
func GitHubEvents() []string {
	entries, _ := fs.ReadDir(files, "github")
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}
