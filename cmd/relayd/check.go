package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/relayd/relayd/internal/config"
	"github.com/relayd/relayd/internal/ingest"
	"github.com/relayd/relayd/internal/operator"
)

func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", stderr)
	path := configFlag(fs)
	online := fs.Bool("online", false, "also check the Operator API key with GET /api/cli/health")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	table, err := ingest.Compile(cfg)
	if err != nil {
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
		client := operator.New(operator.Options{
			BaseURL: cfg.Operator.BaseURL, APIKey: string(cfg.Operator.APIKey), Version: cfg.Operator.Version,
			Timeout: 15 * time.Second, UserAgent: "relayd/" + version,
		})
		h, err := client.Health(ctx)
		if err != nil {
			return fmt.Errorf("operator.api_key: health check against %s failed: %w", cfg.Operator.BaseURL, err)
		}
		fmt.Fprintf(stdout, "\nOperator API at %s: authenticated=%t plan=%s\n", cfg.Operator.BaseURL, h.Authenticated, h.PlanSlug)
	}
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
