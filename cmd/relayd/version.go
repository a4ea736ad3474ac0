package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
)

// buildVersion fills in what -ldflags did not stamp from the module's build
// information, so a `go install` or `go build` binary says what it is.
func buildVersion(version, revision string, info *debug.BuildInfo, ok bool) (string, string) {
	if !ok || info == nil {
		return version, revision
	}
	if version == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		version = info.Main.Version
	}
	if revision == "unknown" {
		var rev string
		var dirty bool
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" {
			revision = rev
			if dirty {
				revision += "-dirty"
			}
		}
	}
	return version, revision
}

func cmdVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", stderr)
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "relayd %s (%s)\n", version, revision)
	return nil
}
