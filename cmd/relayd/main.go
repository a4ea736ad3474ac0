// Command relayd relays verified webhooks into Operator conversations.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
)

// Set by the build (-ldflags "-X main.version=… -X main.revision=…").
var (
	version  = "dev"
	revision = "unknown"
)

const usage = `relayd relays verified webhooks into Operator conversations.

Usage:
  relayd serve [-c relay.yaml] [--dev] [--log-format json|text] [--log-level LEVEL]
  relayd check [-c relay.yaml] [--dev] [--online]
  relayd send --source NAME [--event EVENT] [--file payload.json] [--set path=value]... [--delivery ID] [--print] [-c relay.yaml] [--url URL]
  relayd dlq list|show|replay|drop [ID] [--all] [--route R] [-o json] [-c relay.yaml | --admin URL] [--token T]
  relayd chats list|reset [ROUTE [KEY]] [-o json] [-c relay.yaml | --admin URL] [--token T]
  relayd events list|show|replay [ID] [--route R] [--outcome O] [--source S] [-o json] [-c relay.yaml | --admin URL] [--token T]
  relayd dry-run --route R [--template-file F] [--filter EXPR] [--last N | --event ID]... [-o json] [-c relay.yaml | --admin URL]
  relayd healthcheck [-c relay.yaml | --admin URL]
  relayd mock-operator [--listen 127.0.0.1:8099] [--key ck_live_…] [--turn-wait D] [--turn-steps N] [--turn-every D] [--turn-cut N]
  relayd mock-github [--listen 127.0.0.1:8098] [--token T]... [--prefix /api/v3] [--rate-limit N]
  relayd compact [-c relay.yaml] [--path FILE]
  relayd version | relayd --version

Run "relayd COMMAND -h" for a command's flags.
`

func main() {
	info, ok := debug.ReadBuildInfo()
	version, revision = buildVersion(version, revision, info, ok)
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks errors that should be followed by the usage text.
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"serve":         cmdServe,
		"check":         cmdCheck,
		"send":          cmdSend,
		"dlq":           cmdDLQ,
		"chats":         cmdChats,
		"events":        cmdEvents,
		"dry-run":       cmdDryRun,
		"mock-operator": cmdMockOperator,
		"mock-github":   cmdMockGitHub,
		"compact":       cmdCompact,
		"version":       cmdVersion,
		"healthcheck":   cmdHealthcheck,
	}
	name := args[0]
	if name == "--version" || name == "-version" || name == "-v" {
		name = "version"
	}
	if name == "-h" || name == "--help" || name == "help" {
		fmt.Fprint(stdout, usage)
		return 0
	}
	cmd, ok := cmds[name]
	if !ok {
		fmt.Fprintf(stderr, "relayd: unknown command %q\n\n%s", name, usage)
		return 2
	}
	if err := cmd(ctx, args[1:], stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "relayd %s: %v\n", name, err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	return 0
}

// parseFlags parses flags wherever they stand among the arguments
// ("dlq replay ID -c relay.yaml" and "dlq replay -c relay.yaml ID" both
// work) and returns the positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// newFlagSet returns a FlagSet that reports errors instead of exiting.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("relayd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func configFlag(fs *flag.FlagSet) *string {
	p := new(string)
	fs.StringVar(p, "c", "relay.yaml", "config file")
	fs.StringVar(p, "config", "relay.yaml", "config file")
	return p
}

func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

func trimSlash(s string) string { return strings.TrimRight(s, "/") }

func lookupEnv(k string) (string, bool) { return os.LookupEnv(k) }
