package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/daemon"
	"github.com/relayd/relayd/internal/operator"
)

func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", stderr)
	path := configFlag(fs)
	online := fs.Bool("online", false, "also check the Operator API key with GET /api/cli/health")
	dev := fs.Bool("dev", false, "validate as serve --dev runs: no Operator API key needed")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.LoadWith(*path, config.Options{Dev: *dev})
	if err != nil {
		return err
	}
	table, err := daemon.CompileIngest(cfg)
	if err != nil {
		return cfg.Describe(err)
	}
	if err := daemon.CheckReplies(cfg); err != nil {
		return cfg.Describe(err)
	}
	fmt.Fprintf(stdout, "config %s is valid\n\n", *path)
	fmt.Fprintf(stdout, "public listener %s, admin listener %s, storage %s\n\n", cfg.Server.Listen, cfg.Server.AdminListen, describeStorage(cfg))
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tPATH\tVERIFY\tROUTES")
	for _, s := range table.Sources() {
		var names []string
		for _, r := range s.Routes {
			names = append(names, r.Name)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Name, s.Path, s.VerifyType, joinOrDash(names))
	}
	tw.Flush()
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROUTE\tSOURCE\tFILTER\tCONVERSATION")
	for _, r := range cfg.Routes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.Source, orDash(r.Filter), orDash(r.Conversation))
	}
	tw.Flush()

	if *online {
		return checkOnline(ctx, stdout, cfg, *dev)
	}
	return nil
}

// checkOnline asks the Operator API whether the key works; under --dev it
// asks the fake Operator that serve --dev would run.
func checkOnline(ctx context.Context, stdout io.Writer, cfg *config.Config, dev bool) error {
	base, key := cfg.Operator.BaseURL, string(cfg.Operator.APIKey)
	if dev {
		addr, shutdown, err := startDevOperator(slog.New(slog.DiscardHandler))
		if err != nil {
			return err
		}
		defer shutdown()
		base = "http://" + addr
		if key == "" {
			key = devAPIKey
		}
	}
	client := operator.New(operator.Options{
		BaseURL: base, APIKey: key, Version: cfg.Operator.Version,
		Timeout: 15 * time.Second, UserAgent: "relayd/" + version,
	})
	h, err := client.Health(ctx)
	if err != nil {
		return fmt.Errorf("operator.api_key: health check against %s failed: %w", base, err)
	}
	if !h.Authenticated {
		return fmt.Errorf("operator.api_key: the Operator API at %s does not authenticate the key", base)
	}
	plan := orDash(h.PlanSlug)
	if !h.HasPlan {
		plan = "none"
	}
	limit := "-"
	if h.TokenLimit > 0 {
		limit = fmt.Sprint(h.TokenLimit)
	}
	fmt.Fprintf(stdout, "\nOperator API at %s: authenticated, plan %s, token limit %s\n", base, plan, limit)
	return nil
}

func describeStorage(cfg *config.Config) string {
	if cfg.Storage.Backend == "nats" {
		return "nats (stream " + cfg.Storage.NATS.Stream + ")"
	}
	return "bbolt (" + cfg.Storage.Path + ")"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func joinOrDash(list []string) string {
	if len(list) == 0 {
		return "-"
	}
	out := list[0]
	for _, s := range list[1:] {
		out += ", " + s
	}
	return out
}
