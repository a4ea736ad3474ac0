package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// startNATS runs a JetStream-enabled NATS server in this process, storing
// under dir, on a free loopback port.
func startNATS(dir string) (*natsserver.Server, error) {
	s, err := natsserver.NewServer(&natsserver.Options{
		ServerName: "relayd-bench", Host: "127.0.0.1", Port: -1,
		JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true,
	})
	if err != nil {
		return nil, err
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, errors.New("nats server not ready within 30s")
	}
	return s, nil
}

// modeBackend compares the bbolt and NATS JetStream backends: ingest at
// each concurrency and dispatch of a pre-filled queue, alternating.
func modeBackend(ctx context.Context, o options, rep *report) error {
	dir, cleanup := tempDir("nats")
	defer cleanup()
	ns, err := startNATS(dir)
	if err != nil {
		return err
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	url := ns.ClientURL()
	p := pushPayloads()
	stream := 0
	natsOpts := func() relaydOpts {
		stream++ // a fresh stream (and buckets) per run
		return relaydOpts{Backend: "nats", NATSURL: url, Stream: fmt.Sprintf("BENCH%d", stream)}
	}

	rep.printf("\n## backend\n\n")
	rep.printf("The same relayd (as a %s) on bbolt (a fresh file per run) and on NATS JetStream (a nats-server embedded "+
		"in the bench process, file storage, one replica, a fresh stream per run), alternating. The NATS server shares the two "+
		"cores with relayd and the load generator.\n\n", procWord())
	rep.printf("| backend | conns | req/s | p50 ms | p99 ms | non-2xx |\n|---|---:|---:|---:|---:|---:|\n")
	for _, conns := range o.conns {
		runs := map[string][]result{}
		for round := range o.rounds {
			for _, b := range []string{"bbolt", "nats"} {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				ro := relaydOpts{}
				if b == "nats" {
					ro = natsOpts()
				}
				srv, err := startRelaydTarget(ro)
				if err != nil {
					return fmt.Errorf("%s: %w", b, err)
				}
				r, err := runLoad(ctx, loadSpec{URL: srv.URL, Conns: conns, Duration: o.duration, Warmup: o.warmup, Payloads: p,
					Prefix: fmt.Sprintf("be-%s-%d-%d-%d-", b, conns, round, time.Now().UnixNano())})
				srv.stop()
				if err != nil {
					return fmt.Errorf("%s: %w", b, err)
				}
				logf("%s c=%d round %d: %.0f req/s p99 %s ms", b, conns, round+1, r.RPS(), ms(pct(r.Lat, 99)))
				runs[b] = append(runs[b], r)
			}
		}
		for _, b := range []string{"bbolt", "nats"} {
			m := merge(runs[b])
			rep.printf("| %s | %d | %.0f | %s | %s | %d |\n", b, conns, m.RPS(), ms(pct(m.Lat, 50)), ms(pct(m.Lat, 99)), m.Non2xx+m.Errors)
		}
	}

	n := min(o.messages, 10000)
	rep.printf("\nDispatch of %d pre-filled messages across %d conversations to an instant fake, `operator.concurrency: %d`:\n\n", n, o.convs, o.dconc)
	rep.printf("| backend | msgs/s | out of order | duplicates | overlapping requests |\n|---|---:|---:|---:|---:|\n")
	for _, b := range []string{"bbolt", "nats"} {
		ro := relaydOpts{Concurrency: o.dconc, Rate: 1e6, Burst: 100000}
		if b == "nats" {
			n := natsOpts()
			ro.Backend, ro.NATSURL, ro.Stream = n.Backend, n.NATSURL, n.Stream
		}
		r, err := drain(ctx, ro, n, o.convs, "")
		if err != nil {
			return fmt.Errorf("%s dispatch: %w", b, err)
		}
		logf("%s dispatch: %.0f msgs/s", b, r.rate())
		rep.printf("| %s | %.0f | %d | %d | %d |\n", b, r.rate(), r.check.outOfOrder, r.check.duplicates, r.check.overlaps)
	}
	return nil
}
